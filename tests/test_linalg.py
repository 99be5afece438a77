"""pela.linalg: truncated and whitened SVD, as spectra cut into factors at any rank."""

import pytest
import torch
from torch import nn

import pela
from pela import LowRankConfig
from pela.linalg import svd_spectrum


@pytest.mark.parametrize("shape", [(96, 64), (64, 96), (50, 50)])
def test_eckart_young_optimal(shape):
    torch.manual_seed(1)
    u, _ = torch.linalg.qr(torch.randn(shape[0], shape[0], dtype=torch.float64))
    v, _ = torch.linalg.qr(torch.randn(shape[1], shape[1], dtype=torch.float64))
    s = torch.logspace(0, -3, min(shape), dtype=torch.float64)
    w = (u[:, : len(s)] * s) @ v[:, : len(s)].T
    lin = nn.Linear(shape[1], shape[0])
    with torch.no_grad():
        lin.weight.copy_(w)
    net = nn.Sequential(lin)
    report = pela.compress(net, LowRankConfig(rank=16, align=1))
    row = report.layers[0]
    optimum = float(torch.sqrt((s[16:] ** 2).sum() / (s**2).sum()))
    assert row.rank == 16 and row.rel_error == pytest.approx(optimum, abs=1e-5)
    achieved = torch.linalg.matrix_norm(w.float() - net[0].weight) / torch.linalg.matrix_norm(w.float())
    assert float(achieved.detach()) <= optimum + 1e-4


def test_rank_deficient_weight_gives_finite_factors():
    lin = nn.Linear(32, 32)
    with torch.no_grad():
        lin.weight.zero_()
        lin.weight[:4] = torch.randn(4, 32)
    net = nn.Sequential(lin)
    pela.compress(net, LowRankConfig(rank=8, align=1))
    assert torch.isfinite(net[0].a.weight).all() and torch.isfinite(net[0].b.weight).all()
    assert torch.allclose(net[0].weight, lin.weight, atol=1e-5)


def test_svd_split_is_balanced():
    torch.manual_seed(0)
    w = torch.randn(40, 30)
    sp = svd_spectrum(w)
    a, b = sp.factors(10)
    # B = U√Σ and A = √Σ Vᵀ: both factors carry the same singular values
    assert torch.allclose(torch.linalg.svdvals(a), torch.linalg.svdvals(b), rtol=1e-4)


def test_whitening_by_cholesky_gives_the_factors_an_eigendecomposition_would():
    """Any S with S Sᵀ = C gives the same optimal BA: Cholesky (fast) and QΛ½ agree, and damped statistics never fail."""
    from pela.linalg import WHITEN_DAMPING, whiten_spectrum

    g = torch.Generator().manual_seed(0)
    w = torch.randn(48, 64, generator=g, dtype=torch.float64)
    x = torch.randn(500, 64, generator=g, dtype=torch.float64) @ torch.randn(64, 64, generator=g, dtype=torch.float64)
    c = x.T @ x / len(x)
    a, b = whiten_spectrum(w, c).factors(12)
    evals, q = torch.linalg.eigh(c)
    root = (evals.clamp_min(0) + WHITEN_DAMPING * float(evals.mean())).sqrt()
    u, s, vh = torch.linalg.svd(w @ (q * root), full_matrices=False)
    reference = (u[:, :12] * s[:12]) @ vh[:12] @ (q / root).T
    assert torch.allclose(b @ a, reference, atol=1e-8)
    rank_deficient = x[:10].T @ x[:10] / 10  # fewer inputs than dimensions: damping keeps it invertible
    a, b = whiten_spectrum(w, rank_deficient).factors(12)
    assert torch.isfinite(b @ a).all()
