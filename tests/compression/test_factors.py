"""pela.compression.factors: each eligible layer's spectrum and factors, its report row filled in."""

import pytest
import torch
from torch import nn

from pela import LowRankConfig, LowRankLinear, PelaError
from pela.compression.factors import factorized, let_go, lowrank, spectra
from pela.compression.report import LayerReport
from pela.compression.targets import select


def _net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(48, 64), nn.GELU(), nn.Linear(64, 48), nn.Linear(48, 2))


def test_every_candidate_gets_a_row_and_the_eligible_ones_a_spectrum():
    net, config = _net(), LowRankConfig(ratio=2, align=1, exclude=(r"^2$",))
    rows: list[LayerReport] = []
    layers = list(spectra(select(net, config), config, {}, rows, progress=False))
    assert [r.name for r in rows] == ["0", "2", "3"]
    assert [x.name for x in layers] == ["0"]  # "2" excluded, "3" too small (2 outputs)
    assert all(r.status == "dense" and r.reason for r in rows[1:])
    assert all(x.cached is not None for x in layers)  # computed as they streamed by
    sigma = torch.linalg.svdvals(net[0].weight.detach())
    torch.testing.assert_close(layers[0].spectrum.sigma.float(), sigma, rtol=1e-4, atol=1e-5)


def test_a_lazy_spectrum_is_computed_when_first_asked_for_with_the_statistics_it_has_then():
    net, config = _net(), LowRankConfig(ratio=2, align=1, init="whiten")
    moments: dict = {}
    layer = next(spectra(select(net, config), config, moments, [], progress=False, lazy=True))
    assert layer.cached is None
    x = torch.randn(256, 48)
    moments["0"] = x.T @ x / 256
    assert layer.spectrum is not None and layer.weighted and layer.row.init == "whiten"
    other = next(spectra(select(net, config), config, {}, [], progress=False, lazy=True))
    assert other.spectrum is not None and other.row.init == "svd"  # no input reached it: plain SVD


def test_factors_at_full_rank_give_the_layer_back_and_their_row_says_so():
    net, config = _net(), LowRankConfig(ratio=2, align=1)
    layer = next(spectra(select(net, config), config, {}, [], progress=False))
    full = lowrank(layer, layer.spectrum, 48)
    assert isinstance(full, LowRankLinear)
    x = torch.randn(5, 48)
    torch.testing.assert_close(full(x), net[0](x), rtol=1e-4, atol=1e-5)
    cut = factorized(layer, None, config)  # the config's ratio: floor(48·64 / (2·112)) = 13
    assert cut.rank == 13 and layer.row.rank == 13 and layer.row.status == "factorized"
    assert layer.row.params_after == 13 * (48 + 64) + 64 and 0 < layer.row.rel_error < 1


def test_a_layer_let_go_holds_no_weight_and_refuses_a_new_spectrum():
    net, config = _net(), LowRankConfig(ratio=2, align=1)
    layer = next(spectra(select(net, config), config, {}, [], progress=False, lazy=True))
    let_go(layer)
    assert layer.work.device.type == "meta" and layer.candidate.module is None
    with pytest.raises(RuntimeError, match="let go"):
        layer.spectrum  # noqa: B018


def test_a_layer_without_data_is_refused():
    with torch.device("meta"):
        net = nn.Sequential(nn.Linear(48, 64))
    config = LowRankConfig(ratio=2, align=1)
    with pytest.raises(PelaError, match="meta device"):
        list(spectra(select(net, config), config, {}, [], progress=False))
