import pytest
import torch
from conftest import ARCHITECTURES, Tokens, example_data, hf_bert
from conftest import stack as stack_batch

from pela.compression.allocate import sensitivities
from pela.compression.linearized import linearized_sensitivities
from pela.compression.targets import linear_layers


def _layers(model, scale, seed=1):
    g = torch.Generator().manual_seed(seed)
    out = []
    for c in linear_layers(model):
        d = scale * torch.randn(c.weight.shape, generator=g) * c.weight.std()
        out.append((c.name, c.module, lambda d=d: d, 1.0))
    return out


def test_gradient_estimates_match_replayed_perturbations_where_the_model_is_linear_enough():
    torch.manual_seed(0)
    model = hf_bert()
    data = Tokens(n=32, length=10)
    probe = [stack_batch([data[i] for i in range(j, j + 16)]) for j in (0, 16)]
    layers = _layers(model, 0.01)
    exact = sensitivities(model, layers, probe)
    approx = linearized_sensitivities(model, layers, probe, draws=16)
    assert [a is None for a in approx] == [e is None for e in exact] and approx[-1] is None  # the pooler is in no block
    ratios = [a / e for a, e in zip(approx, exact) if e is not None]
    assert len(ratios) == 12 and all(0.6 < r < 1.5 for r in ratios), ratios
    spread = [a / e for a, e in zip(linearized_sensitivities(model, layers, probe, draws=16, seed=1), approx) if e is not None]
    assert any(abs(r - 1) > 1e-3 for r in spread)  # another draw of r: another estimate (it is one, not a replay)


def test_layers_the_probe_never_reaches_get_no_weight():
    torch.manual_seed(0)
    model = ARCHITECTURES["hf_clip"]()
    probe = [{"pixel_values": torch.randn(4, 3, 32, 32)}]
    layers = _layers(model, 0.01)
    got = linearized_sensitivities(model, layers, probe, draws=1)
    names = [name for name, *_ in layers]
    assert all(w is None for n, w in zip(names, got) if n.startswith("text_model."))
    assert all(w is not None and w > 0 for n, w in zip(names, got) if n.startswith("vision_model.encoder."))


@pytest.mark.parametrize("name", sorted(ARCHITECTURES))
def test_every_architecture_gets_finite_nonnegative_sensitivities(name):
    torch.manual_seed(0)
    model = ARCHITECTURES[name]()
    _, _, batch = example_data(model, batch_size=2, seq_len=8)
    got = linearized_sensitivities(model, _layers(model, 0.05), [batch], draws=1)
    measured = [w for w in got if w is not None]
    assert measured and all(w >= 0 and w == w and w != float("inf") for w in measured)


def test_param_budget_with_gradient_sensitivity_end_to_end():
    import pela
    from pela import LowRankConfig

    torch.manual_seed(0)
    model = hf_bert()
    cal = pela.calibrate(model, Tokens(n=64), collate_fn=stack_batch)
    report = pela.compress(model, LowRankConfig(param_budget=0.4, init="whiten", align=1, sensitivity="gradient"), calibration=cal)
    factorizable = sum(r.in_features * r.out_features for r in report.factorized)
    assert sum(r.rank * (r.in_features + r.out_features) for r in report.factorized) <= 0.4 * factorizable
    assert len({r.rank for r in report.factorized}) > 2  # allocated, not one ratio
    assert report.config["sensitivity"] == "gradient"
