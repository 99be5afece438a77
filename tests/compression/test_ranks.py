"""pela.compression.ranks: PELA's rank rule, alignment, and never a larger layer."""

import math

import pytest
import torch
from torch import nn

import pela
from pela import LowRankConfig, PelaError
from pela.compression.ranks import choose_rank

NO_SIGMA = torch.ones(1)



@pytest.mark.parametrize("m, n, k", [(768, 3072, 2), (768, 2304, 2), (768, 768, 1.5), (384, 1536, 3), (100, 37, 2)])
def test_rank_formula_is_the_papers(m, n, k):
    r, reason = choose_rank(n, m, NO_SIGMA, LowRankConfig(ratio=k, align=1))
    assert r == math.floor(m * n / (k * (m + n)))
    assert reason is None


def test_alignment_rounds_down_for_ratio_and_up_for_energy():
    r, _ = choose_rank(3072, 768, NO_SIGMA, LowRankConfig(ratio=2, align=8))  # exact 307
    assert r == 304
    sigma = torch.linspace(10, 1, 64)
    exact, _ = choose_rank(64, 64, sigma, LowRankConfig(energy=0.5, align=1))
    aligned, _ = choose_rank(64, 64, sigma, LowRankConfig(energy=0.5, align=8))
    assert aligned % 8 == 0 and exact <= aligned < exact + 8
    energy = sigma**2
    assert energy[:exact].sum() / energy.sum() >= 0.5 > energy[: exact - 1].sum() / energy.sum()


@pytest.mark.parametrize("k", [1.01, 1.2, 1.5, 2, 3, 8])
@pytest.mark.parametrize("align", [1, 8, 64])
def test_never_larger(k, align):
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(40, 40), nn.Linear(40, 200), nn.Linear(200, 12), nn.Linear(12, 300))
    before = {n: m.weight.numel() + m.bias.numel() for n, m in net.named_children()}
    try:
        report = pela.compress(net, LowRankConfig(ratio=k, align=align, min_features=1))
    except PelaError as e:  # every layer may legitimately stay dense at small k or big align
        assert "no layer was factorized" in str(e)
        return
    for row in report.layers:
        assert row.params_after <= row.params_before == before[row.name]
        if row.status == "factorized":
            assert row.params_after - row.out_features <= (row.params_before - row.out_features) / k + 1e-9
    assert report.params_after < report.params_before
