"""pela.compression.budget: a parameter budget spent across layers, within the budget."""

import pytest
import torch
from conftest import Tokens, hf_bert, stack

import pela
from pela import LowRankConfig
from pela.compression.allocate import max_rank
from pela.compression.budget import uniform_rank


@pytest.mark.parametrize("shape, fraction, align, expected", [
    ((64, 64), 0.5, 1, 16),  # floor(0.5 · 64·64 / 128)
    ((64, 64), 0.5, 8, 16),
    ((96, 64), 0.5, 8, 16),  # floor(19.2) = 19, down to 16
    ((64, 64), 0.01, 8, 8),  # never below one step
    ((64, 64), 0.99, 8, 24),  # never at break-even: max_rank
])
def test_the_uniform_rank_keeps_the_fraction_between_one_step_and_break_even(shape, fraction, align, expected):
    assert uniform_rank(*shape, fraction, align) == expected
    assert uniform_rank(*shape, fraction, align) <= max(align, max_rank(*shape, align))


def test_a_budget_is_spent_within_itself_and_not_evenly():
    torch.manual_seed(0)
    model = hf_bert()
    config = LowRankConfig(param_budget=0.5, init="whiten", align=1)
    cal = pela.calibrate(model, Tokens(n=32), config, collate_fn=stack, samples=32)
    report = pela.compress(model, config, calibration=cal)
    factorized = [r for r in report.layers if r.status == "factorized"]
    dense = sum(r.in_features * r.out_features for r in factorized)
    kept = sum(r.rank * (r.in_features + r.out_features) for r in factorized)
    assert 0.4 * dense <= kept <= 0.5 * dense
    same_shape = {}
    for r in factorized:
        same_shape.setdefault((r.in_features, r.out_features), set()).add(r.rank)
    assert any(len(ranks) > 1 for ranks in same_shape.values())  # sensitivity moved the ranks


def test_a_layer_whose_factors_are_no_faster_stays_dense_and_the_others_pay_for_it(monkeypatch):
    from pela.compression import speed

    # the feed-forward layers that widen (32 -> 64) are "slower" factored at any rank here
    monkeypatch.setattr(speed, "layer_ms", lambda out_f, in_f, rank, rows, w: (1.0, 2.0 if out_f > in_f else 0.5))
    torch.manual_seed(0)
    model = hf_bert()
    config = LowRankConfig(param_budget=0.5, init="whiten", align=1, speed_check=True, serve_rows=4)
    cal = pela.calibrate(model, Tokens(n=32), config, collate_fn=stack, samples=32)
    report = pela.compress(model, config, calibration=cal)
    widening = [r for r in report.layers if r.out_features > r.in_features]
    assert widening and all(r.status == "dense" and "the budget went to the other layers" in r.reason
                            for r in widening)
    eligible = [r for r in report.layers if r.status == "factorized" or r in widening]
    dense = sum(r.in_features * r.out_features for r in eligible)
    kept = sum(r.in_features * r.out_features if r.status == "dense" else r.rank * (r.in_features + r.out_features)
               for r in eligible)
    assert 0.45 * dense <= kept <= 0.5 * dense  # the budget still holds, dense layers included
