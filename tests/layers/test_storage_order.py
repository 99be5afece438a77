"""Weights stored in the order the device reads fastest: same outputs, measured once, kept shared."""

import pytest
import torch
from conftest import hf_bert, tiny_llama
from torch import nn

import pela
from pela.arch.inputs import linear_rows
from pela.layers import storage_order
from pela.layers.storage_order import tune_layout
from pela.utils.products import order_of


def _fake_timings(monkeypatch, row_ms: float, column_ms: float) -> list:
    calls = []

    def product_ms(shape, rows, dtype, device, cache=True):
        calls.append((shape, rows))
        return row_ms, column_ms

    monkeypatch.setattr(storage_order, "product_ms", product_ms)
    return calls


def test_the_faster_order_is_kept_and_the_outputs_do_not_change(monkeypatch, tmp_path):
    monkeypatch.setenv("PELA_CACHE", str(tmp_path))
    model = tiny_llama()
    pela.compress(model, pela.LowRankConfig(ratio=2, align=1))
    ids = torch.randint(0, 100, (2, 9))
    with torch.no_grad():
        before = model(input_ids=ids).logits
    params = {name: id(p) for name, p in model.named_parameters()}
    _fake_timings(monkeypatch, row_ms=2.0, column_ms=1.0)
    choices = tune_layout(model)
    linears = [m.weight for m in model.modules() if isinstance(m, nn.Linear)]
    assert all(c.order == "column" for c in choices) and all(order_of(w) == "column" for w in linears)
    assert sum(c.count for c in choices) == len({id(w) for w in linears})
    with torch.no_grad():
        torch.testing.assert_close(model(input_ids=ids).logits, before, rtol=1e-5, atol=1e-5)
    # the same Parameter objects: a tied embedding and head stay one tensor
    assert params == {name: id(p) for name, p in model.named_parameters()}
    _fake_timings(monkeypatch, row_ms=1.0, column_ms=2.0)
    tune_layout(model, cache=False)  # measured again: back to rows
    assert all(order_of(w) == "row" and w.is_contiguous() for w in linears)


def test_a_gain_within_the_margin_keeps_pytorchs_order(monkeypatch):
    _fake_timings(monkeypatch, row_ms=1.0, column_ms=0.97)
    model = nn.Sequential(nn.Linear(8, 16))
    assert [c.order for c in tune_layout(model, cache=False)] == ["row"]
    assert model[0].weight.is_contiguous()


def test_each_shape_is_timed_once_at_the_rows_asked_for(monkeypatch):
    calls = _fake_timings(monkeypatch, row_ms=2.0, column_ms=1.0)
    model = nn.Sequential(nn.Linear(8, 16), nn.Linear(8, 16), nn.Linear(16, 8))
    choices = tune_layout(model, rows=4)
    assert sorted(calls) == [((8, 16), 4), ((16, 8), 4)]  # two shapes: two timings
    assert sorted((c.shape, c.count) for c in choices) == [((8, 16), 1), ((16, 8), 2)]


def test_a_tuned_model_saves_and_loads_as_any_other(tmp_path, monkeypatch):
    model = hf_bert()
    _fake_timings(monkeypatch, row_ms=2.0, column_ms=1.0)
    tune_layout(model, cache=False)
    pela.save_pretrained(model, tmp_path / "m")
    loaded = pela.load(str(tmp_path / "m"))
    for (name, p), q in zip(model.state_dict().items(), loaded.state_dict().values()):
        assert torch.equal(p, q), name


def test_linear_rows_counts_the_rows_the_first_linear_layer_multiplies():
    model = hf_bert()
    ids = torch.randint(0, 50, (3, 7))
    assert linear_rows(model, (), {"input_ids": ids}) == 21
    with pytest.raises(ValueError, match="rows must be >= 1"):
        tune_layout(model, rows=0)


def test_laid_out_for_a_block_puts_every_weight_back_as_it_was(monkeypatch):
    _fake_timings(monkeypatch, row_ms=2.0, column_ms=1.0)
    model = nn.Sequential(nn.Linear(8, 16), nn.Linear(16, 8))
    model[1].weight.data = model[1].weight.data.t().contiguous().t()  # stored by column already
    added = nn.Linear(8, 8)
    with storage_order.laid_out(model):
        assert all(order_of(m.weight) == "column" for m in model)
        model.append(added)  # a layer swapped in inside the block
        tune_layout(model)
        assert order_of(added.weight) == "column"
    assert [order_of(m.weight) for m in model] == ["row", "column", "row"]
