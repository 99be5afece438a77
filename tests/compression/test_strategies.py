"""pela.compression.strategies: the config picks one-shot, sequential or block by block; sequential
puts the model back on a failure."""

import pytest
import torch
from conftest import Tokens, hf_bert, stack

import pela
from pela import LowRankConfig, LowRankLinear, PelaError
from pela.compression import strategies
from pela.compression.strategies import BlockByBlock, OneShot, Sequential, strategy_for


def test_the_config_picks_the_strategy():
    assert type(strategy_for(LowRankConfig(ratio=2))) is OneShot
    assert type(strategy_for(LowRankConfig(param_budget=0.5, init="whiten", sequential=True))) is Sequential
    assert type(strategy_for(LowRankConfig(ratio=2, init="whiten", sequential=True))) is BlockByBlock
    assert BlockByBlock.lazy and not OneShot.lazy and not Sequential.lazy


def test_one_shot_leaves_the_stream_of_layers_alone():
    layers = iter(())
    assert OneShot().refit(None, layers, {}, LowRankConfig(), None, {}, False) == (layers, set())


def test_sequential_needs_the_calibration_batches():
    config = LowRankConfig(param_budget=0.5, init="whiten", sequential=True)
    cal = pela.calibrate(hf_bert(), Tokens(n=8), LowRankConfig(init="whiten"), collate_fn=stack)
    assert cal.inputs is None
    with pytest.raises(PelaError, match="runs the calibration examples again"):
        Sequential().refit(hf_bert(), [], {}, config, cal, {}, False)


def test_a_sequential_failure_puts_the_model_back(monkeypatch):
    torch.manual_seed(0)
    model = hf_bert()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    config = LowRankConfig(energy=0.9, init="whiten", align=1, sequential=True)
    assert not config.block_by_block
    cal = pela.calibrate(model, Tokens(n=16), config, collate_fn=stack)

    def refit_then_fail(model, fits, inputs, progress):
        fits[0].swap(*_spectrum_and_rank(model, fits[0]))
        assert any(isinstance(m, LowRankLinear) for m in model.modules())
        raise RuntimeError("out of memory halfway")

    monkeypatch.setattr(strategies, "refit", refit_then_fail)
    with pytest.raises(RuntimeError, match="halfway"):
        pela.compress(model, config, calibration=cal)
    assert not any(isinstance(m, LowRankLinear) for m in model.modules())
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())


def _spectrum_and_rank(model, fit):
    from pela.linalg import whiten_spectrum

    w = model.get_submodule(fit.name).weight.detach().double()
    return whiten_spectrum(w, torch.eye(w.shape[1], dtype=torch.float64)), fit.rank
