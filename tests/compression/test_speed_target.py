"""pela.compression.speed_target: the most parameters whose predicted time meets a named speed-up.

The device's timings are replaced by a model of memory-bound products (time ∝ weights read, plus a
cost per call), so that what the search finds can be checked exactly."""

import pytest
import torch
from conftest import Tokens, hf_bert, stack

import pela
from pela import LowRankConfig, PelaError
from pela.compression import speed, speed_target
from pela.compression.speed_target import SpeedModel

CALL = 2e-4  # ms a product costs whatever its size


def dense_ms(out_f, in_f):
    return out_f * in_f * 1e-6 + CALL


def factors_ms(out_f, in_f, rank):
    return rank * (out_f + in_f) * 1e-6 + 2 * CALL


def linears_ms(model, per_factor=0.0):
    """The products of the model's linear layers, each factor ``per_factor`` ms more."""
    linears = [(n, m) for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)]
    return sum(dense_ms(*m.weight.shape) + (per_factor if n.endswith((".a", ".b")) else 0)
               for n, m in linears)


REST = linears_ms(hf_bert())  # the original's other work: as long as its products


@pytest.fixture
def bytes_bound(monkeypatch):
    """Products whose time is the weights they read."""
    def model_ms(model, rows, *args, **kwargs):
        return REST + linears_ms(model)

    monkeypatch.setattr(speed_target, "model_ms", model_ms)
    monkeypatch.setattr(speed_target, "product_ms", lambda shape, *a, **k: (dense_ms(*shape),) * 2)
    monkeypatch.setattr(speed_target, "factored_ms",
                        lambda shape, rank, *a, **k: (dense_ms(*shape), factors_ms(*shape, rank)))
    monkeypatch.setattr(speed, "layer_ms", lambda o, i, rank, rows, w: (dense_ms(o, i),
                                                                        factors_ms(o, i, rank)))


def true_speedup(report):
    """The speed-up the products model gives the student, from its ranks."""
    student = sum(dense_ms(r.out_features, r.in_features) if r.rank is None
                  else factors_ms(r.out_features, r.in_features, r.rank) for r in report.layers)
    return 2 * REST / (REST + student)


@pytest.mark.parametrize("target", [1.2, 1.4])
def test_the_target_is_met_with_the_most_parameters_that_meet_it(bytes_bound, target):
    torch.manual_seed(0)
    report = pela.compress(hf_bert(), LowRankConfig(speedup=target, align=1, serve_rows=4))
    assert report.speed["predicted"] == pytest.approx(true_speedup(report))
    assert report.speed["measured"] == pytest.approx(true_speedup(report))  # swapped in and timed
    assert target <= report.speed["predicted"] < target * 1.02  # no parameter given up for nothing
    assert report.speed["target"] == target and report.speed["students"] == 1
    assert f"measured {report.speed['measured']:.2f}×" in report.summary()


def test_a_student_slower_in_the_model_than_predicted_is_cut_again_until_it_is_fast_enough(
        bytes_bound, monkeypatch):
    # each factor's call costs more in the whole model than timed alone (say, caches it shares)
    monkeypatch.setattr(speed_target, "model_ms", lambda model, rows, *a, **k: REST + linears_ms(model, 1e-4))
    torch.manual_seed(0)
    report = pela.compress(hf_bert(), LowRankConfig(speedup=1.3, align=1, serve_rows=4))
    assert report.speed["students"] >= 2 and report.speed["measured"] >= 1.3
    # the second prediction knows what the first missed: each factor's cost in the whole model
    assert report.speed["predicted"] == pytest.approx(report.speed["measured"])
    assert report.params_after < report.params_before


def test_a_student_much_faster_than_asked_gives_parameters_back(bytes_bound, monkeypatch):
    torch.manual_seed(0)
    predicted_only = pela.compress(hf_bert(), LowRankConfig(speedup=1.3, align=1, serve_rows=4))
    # each factor's call costs less in the whole model than timed alone
    monkeypatch.setattr(speed_target, "model_ms", lambda model, rows, *a, **k: REST + linears_ms(model, -2e-4))
    torch.manual_seed(0)
    report = pela.compress(hf_bert(), LowRankConfig(speedup=1.3, align=1, serve_rows=4))
    assert report.speed["students"] >= 2 and 1.3 <= report.speed["measured"]
    assert report.params_after > predicted_only.params_after


def test_a_faster_target_keeps_fewer_parameters(bytes_bound):
    sizes = []
    for target in (1.2, 1.4):
        torch.manual_seed(0)
        sizes.append(pela.compress(hf_bert(), LowRankConfig(speedup=target, align=1, serve_rows=4)).params_after)
    assert sizes[1] < sizes[0]


def test_a_target_out_of_reach_says_how_far_it_can_go(bytes_bound):
    with pytest.raises(PelaError, match=r"a 3× speed-up is out of reach.*predicted 1\.\d\d× faster"):
        pela.compress(hf_bert(), LowRankConfig(speedup=3, serve_rows=4))


def test_with_calibration_the_ranks_follow_sensitivity_and_meet_the_target(bytes_bound):
    torch.manual_seed(0)
    model = hf_bert()
    config = LowRankConfig(speedup=1.3, init="whiten", align=1, serve_rows=4)
    cal = pela.calibrate(model, Tokens(n=32), config, collate_fn=stack, samples=32)
    report = pela.compress(model, config, calibration=cal)
    assert 1.3 <= report.speed["predicted"] == pytest.approx(true_speedup(report))
    same_shape = {}
    for r in report.factorized:
        same_shape.setdefault((r.in_features, r.out_features), set()).add(r.rank)
    assert any(len(ranks) > 1 for ranks in same_shape.values())


def test_times_between_the_ranks_timed_are_interpolated_and_never_fall():
    timing = SpeedModel(1, 5.0, 1.0, {(8, 8): 2.0}, {(8, 8): {2: 0.5, 4: 0.4, 6: 0.9}}, torch.float32,
                        torch.device("cpu"))
    assert timing.factors_ratio((8, 8), 1) == 0.5  # below the smallest: no lower
    assert timing.factors_ratio((8, 8), 3) == 0.5  # 4's dip is noise: the curve only rises
    assert timing.factors_ratio((8, 8), 5) == pytest.approx(0.7)
    assert timing.factors_ratio((8, 8), 9) == 0.9
