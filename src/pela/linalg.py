"""Linear algebra of low-rank approximation: truncated SVD and whitened (data-aware) SVD, as spectra
that can be cut into factors at any rank. Pure functions of tensors; nothing here knows models.
"""

from __future__ import annotations

import math
import weakref
from dataclasses import dataclass
from typing import Any, Callable

import torch


@dataclass
class Spectrum:
    """A layer's singular values and a way to cut factors from them at any rank."""

    sigma: torch.Tensor  # descending singular values
    factors: Callable[[int], tuple[torch.Tensor, torch.Tensor]]  # rank -> (A: r × in, B: out × r)


def svd_spectrum(weight: torch.Tensor, stats: Any = None) -> Spectrum:
    """Truncated SVD of ``weight`` (out × in), factors split evenly: ``B = U√Σ``, ``A = √Σ Vᵀ``.

    Computed from the eigendecomposition of the smaller Gram matrix (``W Wᵀ`` or ``Wᵀ W``), which is
    several times faster than an SVD and, since the top-r projection is what matters, loses nothing
    measurable against the Eckart–Young optimum (tests check this against a float64 SVD).
    """
    w = weight
    n_out, n_in = w.shape
    wide = n_out <= n_in  # eigenvectors are then the left singular vectors U
    gram = w @ w.T if wide else w.T @ w
    try:
        evals, vecs = torch.linalg.eigh(gram)
    except RuntimeError:  # ill-conditioned in float32: retry in float64
        evals, vecs = (t.to(w.dtype) for t in torch.linalg.eigh(gram.double()))
    sigma = evals.flip(0).clamp_min(0).sqrt()
    vecs = vecs.flip(1)
    floor = sigma[0] * torch.finfo(w.dtype).eps * max(n_out, n_in)

    def factors(rank: int) -> tuple[torch.Tensor, torch.Tensor]:
        root = sigma[:rank].sqrt()
        inv = torch.where(sigma[:rank] > floor, 1 / root.clamp_min(1e-30), torch.zeros_like(root))
        v = vecs[:, :rank]
        if wide:  # B = U√Σ, A = √Σ⁻¹ Uᵀ W  (= √Σ Vᵀ)
            return (v * inv).T @ w, v * root
        return (v * root).T, w @ (v * inv)  # A = √Σ Vᵀ, B = W V √Σ⁻¹ (= U√Σ)

    return Spectrum(sigma, factors)


WHITEN_DAMPING = 1e-2  # the default ridge added to E[x xᵀ], relative to its mean eigenvalue


def whiten_spectrum(
    weight: torch.Tensor, stats: torch.Tensor, damping: float = WHITEN_DAMPING
) -> Spectrum:
    """The rank-r ``BA`` that minimizes ``E‖(W − BA)x‖²`` over the calibration inputs (SVD-LLM's
    whitening).

    With ``C = E[x xᵀ] = S Sᵀ`` the output error is ``‖(W − BA) S‖_F²``, so the best ``BA`` is the
    truncated SVD of ``W S`` mapped back through ``S⁻¹``; any ``S`` with ``S Sᵀ = C`` gives the same
    factors. ``S`` is the Cholesky factor of ``C`` plus ``damping`` × its mean eigenvalue (its
    trace over its size), so rank-deficient statistics (too few or degenerate calibration inputs)
    stay invertible; in float64, it never fails on a damped matrix, and where it would (non-finite
    statistics), an eigendecomposition takes over. The singular values are those of ``W S``: they
    measure output error on calibration data, which is what rank allocation should see.
    """
    s, s_inv = _whitening(stats, weight.device, damping)
    inner = svd_spectrum(weight.double() @ s)  # W S

    def factors(rank: int) -> tuple[torch.Tensor, torch.Tensor]:
        a, b = inner.factors(rank)
        a = (
            torch.linalg.solve_triangular(s, a, upper=False, left=False)
            if s_inv is None
            else a @ s_inv
        )  # A S⁻¹
        return a.to(weight.dtype), b.to(weight.dtype)

    return Spectrum(inner.sigma, factors)


def corrected_weight(
    weight: torch.Tensor, stats: torch.Tensor, cross: torch.Tensor, damping: float = WHITEN_DAMPING
) -> torch.Tensor:
    """The full-rank ``M`` that best maps a student's inputs to the teacher's outputs: ``argmin E‖W
    x_t − M x_s‖²``.

    ``stats`` is ``C = E[x_s x_sᵀ]`` (the student's inputs), ``cross`` is ``P = E[x_t x_sᵀ]``. The
    normal equations give ``M = W P C⁻¹``, written ``W + W (P − C)(C + δI)⁻¹`` with the damping of
    `whiten_spectrum`: where the student's inputs equal the teacher's, ``P = C`` and ``M = W``
    exactly. The rank-r factors that then minimize the same error are ``whiten_spectrum(M, stats)``,
    because
    ``E‖W x_t − BA x_s‖² = E‖W x_t − M x_s‖² + ‖(M − BA) S‖_F²`` with ``S Sᵀ = C``.
    """
    s, s_inv = _whitening(stats, weight.device, damping)
    w = weight.double()
    # (P − C)ᵀ Wᵀ, C being symmetric
    rhs = (cross.to(w.device, torch.float64).T - stats.to(w.device, torch.float64)) @ w.T
    # (C + δI)⁻¹ (P − C)ᵀ Wᵀ
    solved = torch.cholesky_solve(rhs, s) if s_inv is None else s_inv.T @ (s_inv @ rhs)
    return (w + solved.T).to(weight.dtype)


# id(stats) -> (it, device, damping, S, S⁻¹)
_WHITENINGS: dict[
    int, tuple[weakref.ref, torch.device, float, torch.Tensor, torch.Tensor | None]
] = {}


def _whitening(
    stats: torch.Tensor, device: torch.device, damping: float
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``S`` with ``S Sᵀ = C + δI``: lower triangular (and ``S⁻¹`` None: solve with it) when
    Cholesky succeeds, else ``QΛ½`` with its inverse. Computed once for layers that share one
    statistics matrix (q, k, v)."""
    cached = _WHITENINGS.get(id(stats))
    if cached is not None and cached[0]() is stats and cached[1:3] == (device, damping):
        return cached[3], cached[4]
    # symmetric by construction; Cholesky and eigh read one triangle
    c = stats.to(device, torch.float64)
    scale = float(torch.diagonal(c).mean())  # the mean eigenvalue
    # all-zero inputs: every BA is equally good, so plain SVD
    if not scale > 1e-30 or not math.isfinite(scale):
        c, scale = torch.eye(len(c), dtype=c.dtype, device=c.device), 1.0
    damped = c.clone()
    damped.diagonal().add_(damping * scale)
    s, info = torch.linalg.cholesky_ex(damped)
    del damped
    s_inv = None
    # not positive definite after all (non-finite entries): Q Λ½ of its clamped spectrum
    if int(info) != 0:
        evals, q = torch.linalg.eigh(torch.nan_to_num(c))
        root = (evals.clamp_min(0) + damping * scale).sqrt()
        s, s_inv = q * root, (q / root).T
    key = id(stats)
    _WHITENINGS[key] = (
        weakref.ref(stats, lambda _: _WHITENINGS.pop(key, None)),
        device,
        damping,
        s,
        s_inv,
    )
    return s, s_inv


def svd_factors(weight: torch.Tensor, rank: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(A, B)`` of the best rank-``rank`` approximation of ``weight``, in its dtype."""
    w = weight.to(torch.float64 if weight.dtype == torch.float64 else torch.float32)
    a, b = svd_spectrum(w).factors(rank)
    return a.to(weight.dtype), b.to(weight.dtype)
