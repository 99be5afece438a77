"""Never slower: a layer whose factors this device multiplies no faster than its dense weight stays
dense, and every factorized layer's report row carries both times."""

import pytest
import torch
from conftest import hf_bert, run_cli, tiny_llama
from torch import nn

import pela
from pela.compression import speed
from pela.compression.speed import layer_ms, serving_rows


def _timings(monkeypatch, slow_shape=None):
    """Fake product times: a product costs its weight's size; the factors of ``slow_shape`` ten
    times as much."""
    calls = []

    def factored_ms(shape, rank, rows, dtype, device, cache=True):
        calls.append((shape, rows))
        factors = rank * sum(shape) * (10 if shape == slow_shape else 1)
        return shape[0] * shape[1] / 1e6, factors / 1e6

    monkeypatch.setattr(speed, "factored_ms", factored_ms)
    return calls


def _mlp():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 48))


def test_a_layer_whose_factors_are_slower_stays_dense_and_says_why(monkeypatch):
    calls = _timings(monkeypatch, slow_shape=(64, 64))  # the first layer
    model = _mlp()
    report = pela.compress(model, pela.LowRankConfig(ratio=2, speed_check=True, serve_rows=4))
    first, second = report.layers
    assert first.rank is None and "no faster here" in first.reason and "at 4 rows" in first.reason
    assert isinstance(model[0], nn.Linear) and first.params_after == first.params_before
    assert second.rank is not None and isinstance(model[2], pela.LowRankLinear)
    assert second.ms_factored < second.ms_dense and second.serve_rows == 4
    assert all(rows == 4 for _, rows in calls)


def test_when_no_layer_would_be_faster_the_error_says_so(monkeypatch):
    monkeypatch.setattr(speed, "factored_ms", lambda *a, **k: (1.0, 1.0))  # factors no faster
    with pytest.raises(pela.PelaError, match="no layer was factorized.*no faster here"):
        pela.compress(_mlp(), pela.LowRankConfig(ratio=2, speed_check=True, serve_rows=1))


def test_explicit_ranks_or_the_check_turned_off_time_nothing(monkeypatch):
    calls = _timings(monkeypatch)
    pela.compress(_mlp(), pela.LowRankConfig(rank=8, speed_check=True))
    report = pela.compress(_mlp(), pela.LowRankConfig(ratio=2, speed_check=False))
    assert calls == [] and all(r.ms_dense is None for r in report.layers)


def test_the_check_is_on_by_default_unless_the_environment_says_otherwise(monkeypatch):
    monkeypatch.delenv("PELA_SPEED_CHECK")
    assert pela.LowRankConfig().speed_check
    monkeypatch.setenv("PELA_SPEED_CHECK", "0")
    assert not pela.LowRankConfig().speed_check
    with pytest.raises(pela.PelaError, match="serve_rows must be an integer >= 1"):
        pela.LowRankConfig(serve_rows=0)


def test_a_language_model_is_served_a_token_at_a_time_an_encoder_a_batch():
    assert serving_rows(tiny_llama()) == 1
    model = hf_bert()
    length = min(128, model.config.max_position_embeddings)
    assert serving_rows(model) == 32 * length


@pytest.mark.slow
def test_real_timings_of_a_layer_dense_and_factored(monkeypatch, tmp_path):
    monkeypatch.setenv("PELA_CACHE", str(tmp_path))
    dense, factored = layer_ms(256, 256, 16, 8, torch.empty(256, 256))
    assert dense > 0 and factored > 0


def test_the_cli_shows_each_layers_time_against_dense(monkeypatch, tmp_path, capsys, hf_bert_dir):
    _timings(monkeypatch)
    monkeypatch.setenv("PELA_SPEED_CHECK", "1")
    code, out, _ = run_cli(capsys, "compress", str(hf_bert_dir), "--out", str(tmp_path / "s"),
                           "--ratio", "2", "--config", "align=1")
    assert code == 0 and "×" in out and "rows at a time" in out


@pytest.mark.parametrize("build, rows", [(hf_bert, 16), (tiny_llama, 2)])
def test_the_model_is_timed_where_it_is_served_and_left_in_its_mode(build, rows):
    model = build().train()
    assert speed.model_ms(model, rows, min_seconds=0) > 0
    assert model.training
