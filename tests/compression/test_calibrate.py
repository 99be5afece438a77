import copy
import warnings

import pytest
import torch
from conftest import ARCHITECTURES, Tokens, example_data, hf_bert
from conftest import stack as stack_batch
from torch import nn
from torch.utils.data import Dataset

import pela
from pela import LowRankConfig, PelaError, arch
from pela.compression.allocate import allocate, max_rank
from pela.linalg import svd_factors, whiten_spectrum


def arch_forward(model, batch):
    return arch.main_output(arch.forward(model, batch))


class Vectors(Dataset):
    def __init__(self, x):
        self.x = x

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return {"x": self.x[i]}


def stack(examples):
    return {"x": torch.stack([e["x"] for e in examples])}


def anisotropic(n, dim, seed=0):
    g = torch.Generator().manual_seed(seed)
    scales = torch.logspace(0, -3, dim)
    return (torch.randn(n, dim, generator=g) * scales) @ torch.linalg.qr(torch.randn(dim, dim, generator=g))[0]


def test_moments_are_the_input_second_moments(mlp):
    x = anisotropic(300, 64)
    cal = pela.calibrate(mlp, Vectors(x), collate_fn=stack, samples=1000, batch_size=7)
    assert cal.samples == 300 and cal.tokens["0"] == 300
    torch.testing.assert_close(cal.moments["0"], (x.double().T @ x.double()) / 300, rtol=1e-5, atol=1e-9)
    hidden = mlp[1](mlp[0](x))  # what the second layer sees
    torch.testing.assert_close(cal.moments["2"], (hidden.double().T @ hidden.double()) / 300, rtol=1e-4, atol=1e-7)
    assert "4" not in cal.moments  # 4 outputs: stays dense, so it is not calibrated


def test_partial_sums_fold_into_the_total_without_changing_it(mlp, monkeypatch):
    from pela.compression import calibrate as module

    x = anisotropic(300, 64)
    whole = pela.calibrate(mlp, Vectors(x), collate_fn=stack, batch_size=7).moments["0"]
    monkeypatch.setattr(module._Moments, "FOLD_TOKENS", 10)  # fold after every second batch
    folded = pela.calibrate(mlp, Vectors(x), collate_fn=stack, batch_size=7).moments["0"]
    assert folded.dtype == torch.float64
    torch.testing.assert_close(folded, whole, rtol=1e-6, atol=1e-9)
    torch.testing.assert_close(folded, (x.double().T @ x.double()) / 300, rtol=1e-5, atol=1e-9)


def test_padding_tokens_are_left_out():
    torch.manual_seed(0)
    model = hf_bert()
    ids = torch.randint(5, 100, (2, 6))
    mask = torch.tensor([[1, 1, 1, 1, 1, 1], [1, 1, 1, 0, 0, 0]])

    class Batch(Dataset):
        def __len__(self):
            return 2

        def __getitem__(self, i):
            return i

    def collate(idx):
        return {"input_ids": ids[idx], "attention_mask": mask[idx]}

    cal = pela.calibrate(model, Batch(), collate_fn=collate)
    assert cal.tokens["encoder.layer.0.attention.self.query"] == 9  # 6 + 3 real tokens, not 12


def test_texts_are_batched_by_length_and_the_probe_is_a_sample_of_them():
    torch.manual_seed(0)
    model = hf_bert()
    texts = [" ".join(["w"] * (1 + (7 * i) % 23)) for i in range(96)]  # lengths 1..23, interleaved
    data = pela.data.inputs.as_dataset(texts)
    ids = lambda i: torch.randint(5, 100, (1 + (7 * i) % 23,), generator=torch.Generator().manual_seed(i))  # noqa: E731

    def collate(examples):  # pads to the longest, as a tokenizer does
        rows = [ids(texts.index(e["text"])) for e in examples]
        width = max(len(r) for r in rows)
        return {"input_ids": torch.stack([nn.functional.pad(r, (0, width - len(r))) for r in rows]),
                "attention_mask": torch.stack([(torch.arange(width) < len(r)).long() for r in rows])}

    config = LowRankConfig(init="whiten", sequential=True)  # keeps its batches, to count their padding
    cal = pela.calibrate(model, data, config, collate_fn=collate, batch_size=8, probe_samples=16, samples=64)
    padded = sum(b["attention_mask"].numel() for b in cal.inputs)
    real = sum(int(b["attention_mask"].sum()) for b in cal.inputs)
    assert cal.tokens["encoder.layer.0.attention.self.query"] == real
    idx = torch.randperm(96, generator=torch.Generator().manual_seed(0))[:64].sort().values.tolist()
    in_order = sum(8 * max(len(ids(i)) for i in idx[j:j + 8]) for j in range(0, 64, 8))
    assert padded < 0.8 * in_order  # batches of similar lengths: far less padding than in index order
    probe_real = sorted(int(n) for b in cal.probe for n in b["attention_mask"].sum(1))
    assert probe_real == sorted(len(ids(i)) for i in idx[:16])  # the probe: 16 of the sampled examples, not the 16 shortest
    assert sum(b["attention_mask"].numel() for b in cal.probe) < sum(8 * max(len(ids(i)) for i in idx[j:j + 8]) for j in (0, 8))
    with pytest.raises(PelaError, match="probe_samples"):
        pela.calibrate(model, data, collate_fn=collate, probe_samples=-1)


def test_whiten_beats_svd_on_the_outputs_it_was_calibrated_for(mlp):
    x = anisotropic(2000, 64)
    cal = pela.calibrate(mlp, Vectors(x[:1000]), collate_fn=stack, samples=1000)
    errors = {}
    for init in ("svd", "whiten"):
        model = copy.deepcopy(mlp)
        report = pela.compress(model, LowRankConfig(ratio=2, init=init, align=1), calibration=cal if init == "whiten" else None)
        assert {r.init for r in report.factorized} == {init}
        with torch.no_grad():
            errors[init] = float((model[0](x[1000:]) - mlp[0](x[1000:])).pow(2).mean())  # held-out inputs
    assert errors["whiten"] < 0.5 * errors["svd"]


def test_whiten_with_white_inputs_is_plain_svd():
    torch.manual_seed(0)
    w = torch.randn(48, 32, dtype=torch.float64)
    a, b = whiten_spectrum(w, torch.eye(32, dtype=torch.float64)).factors(8)
    a0, b0 = svd_factors(w, 8)
    torch.testing.assert_close(b @ a, b0 @ a0)


@pytest.mark.parametrize("moment", ["zeros", "rank1"])
def test_whiten_survives_rank_deficient_statistics(moment):
    torch.manual_seed(0)
    w = torch.randn(40, 30)
    v = torch.randn(30, 1, dtype=torch.float64)
    stats = torch.zeros(30, 30, dtype=torch.float64) if moment == "zeros" else v @ v.T
    a, b = whiten_spectrum(w, stats).factors(8)
    assert torch.isfinite(a).all() and torch.isfinite(b).all() and a.shape == (8, 30) and b.shape == (40, 8)


def test_too_few_calibration_inputs_warn_but_work(mlp):
    with pytest.warns(UserWarning, match="rank-deficient"):
        cal = pela.calibrate(mlp, Vectors(anisotropic(5, 64)), collate_fn=stack)
    pela.compress(mlp, LowRankConfig(init="whiten"), calibration=cal)


def test_calibration_errors(mlp):
    with pytest.raises(PelaError, match="empty"):
        pela.calibrate(mlp, Vectors(torch.zeros(0, 64)), collate_fn=stack)
    with pytest.raises(PelaError, match="at least 1 sample"):
        pela.calibrate(mlp, Vectors(anisotropic(5, 64)), collate_fn=stack, samples=0)
    with pytest.raises(PelaError, match="needs calibration data"):
        pela.compress(copy.deepcopy(mlp), LowRankConfig(init="whiten"))
    with pytest.raises(PelaError, match="needs calibration"):
        pela.compress(copy.deepcopy(mlp), LowRankConfig(param_budget=0.5))
    other = nn.Sequential(nn.Linear(16, 16))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cal = pela.calibrate(other, Vectors(torch.randn(4, 16)), collate_fn=stack)
    with pytest.raises(PelaError, match="taken on another model: none of the 1 layers to factorize is one of its 1"):
        pela.compress(nn.Sequential(nn.Identity(), nn.Linear(16, 16)), LowRankConfig(init="whiten"), calibration=cal)


# ---------------------------------------------------------------- global rank allocation
def test_allocation_spends_the_budget_where_the_weighted_error_is():
    flat, steep = torch.ones(64), torch.logspace(0, -4, 64)
    shapes = [(64, 64), (64, 64)]
    budget = 24 * 128  # 24 ranks of 64+64 parameters: 8 each, and one more step for one of them
    ranks = allocate(shapes, [flat, steep], budget, align=8)
    assert ranks[0] > ranks[1] and sum(r * 128 for r in ranks) <= budget
    # weights reverse the preference: the steep layer is said to matter 10⁶ times more
    ranks = allocate(shapes, [flat, steep], budget, align=8, weights=[1.0, 1e6])
    assert ranks[1] > ranks[0]
    assert all(r % 8 == 0 and 8 <= r <= max_rank(64, 64, 8) for r in ranks)


def test_allocation_is_optimal_for_concave_gains():
    torch.manual_seed(0)
    spectra = [torch.sort(torch.rand(32) * s, descending=True).values for s in (1.0, 3.0, 0.3)]
    shapes = [(32, 32)] * 3
    budget = 40 * 64
    ranks = allocate(shapes, spectra, budget, align=1, weights=[1, 1, 1])
    kept = sum(float((sp[:r] ** 2).sum()) for sp, r in zip(spectra, ranks))
    # brute force over all rank triples within the budget
    best = max(float((spectra[0][:a] ** 2).sum() + (spectra[1][:b] ** 2).sum() + (spectra[2][:c] ** 2).sum())
               for a in range(1, 16) for b in range(1, 16) for c in range(1, 16) if (a + b + c) * 64 <= budget)
    assert kept == pytest.approx(best, rel=1e-6)


def test_budget_below_the_smallest_model_is_refused():
    with pytest.raises(PelaError, match="below the smallest possible"):
        allocate([(64, 64)] * 3, [torch.ones(64)] * 3, budget=100, align=8)


def test_param_budget_end_to_end_fits_and_uses_sensitivity():
    torch.manual_seed(0)
    model = hf_bert()
    ids = torch.randint(5, 100, (64, 12))

    class Ids(Dataset):
        def __len__(self):
            return 64

        def __getitem__(self, i):
            return i

    collate = lambda idx: {"input_ids": ids[idx], "attention_mask": torch.ones(len(idx), 12, dtype=torch.long)}  # noqa: E731
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cal = pela.calibrate(model, Ids(), collate_fn=collate, probe_samples=8)
    assert sum(b["input_ids"].shape[0] for b in cal.probe) == 8
    report = pela.compress(model, LowRankConfig(param_budget=0.4, align=1), calibration=cal)
    factorizable = sum(r.in_features * r.out_features for r in report.layers if r.status == "factorized")
    kept = sum(r.rank * (r.in_features + r.out_features) for r in report.factorized)
    assert kept <= 0.4 * factorizable
    assert len({r.rank for r in report.factorized}) > 1  # not one ratio for all
    assert set(report.spectra) == {r.name for r in report.factorized}
    assert report.config["param_budget"] == 0.4


@pytest.mark.parametrize("arch", sorted(ARCHITECTURES))
def test_whiten_and_budget_work_on_every_architecture(arch):
    """Calibration hooks, whitening, sensitivity probes and allocation on each supported family."""
    torch.manual_seed(0)
    model = ARCHITECTURES[arch]()
    data, collate, batch = example_data(model)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tiny calibration sets are rank-deficient by design here
        cal = pela.calibrate(model, data, collate_fn=collate, batch_size=4, probe_samples=4)
    reference = copy.deepcopy(model)
    report = pela.compress(model, LowRankConfig(param_budget=0.5, init="whiten", align=1), calibration=cal)
    assert report.factorized and {r.init for r in report.factorized} <= {"whiten", "svd"}
    factorizable = sum(r.in_features * r.out_features for r in report.factorized)
    assert sum(r.rank * (r.in_features + r.out_features) for r in report.factorized) <= 0.5 * factorizable
    with torch.no_grad():
        out, ref = (arch_forward(m, batch) for m in (model, reference))
    assert out.shape == ref.shape and torch.isfinite(out).all()


def test_budget_keeps_the_uniform_rank_where_calibration_never_reached():
    """CLIP calibrated on images alone: the probe measures nothing about the text tower, so its layers keep
    the rank one ratio would give (plain SVD), not the rank a measured sensitivity of zero would starve them to."""
    import math

    torch.manual_seed(0)
    model = ARCHITECTURES["hf_clip"]()
    images = [{"pixel_values": torch.randn(3, 32, 32)} for _ in range(16)]
    calibration = pela.calibrate(model, images, collate_fn=lambda b: {"pixel_values": torch.stack([e["pixel_values"] for e in b])})
    report = pela.compress(model, LowRankConfig(param_budget=0.5, align=1, init="whiten"), calibration=calibration)
    text = [r for r in report.layers if r.name.startswith("text_model.") and r.status == "factorized"]
    vision = [r for r in report.layers if r.name.startswith("vision_model.") and r.status == "factorized"]
    assert text and vision and all(r.init == "svd" for r in text) and all(r.init == "whiten" for r in vision)
    assert all(r.rank == math.floor(0.5 * r.in_features * r.out_features / (r.in_features + r.out_features)) for r in text)


def test_layers_reading_one_input_share_one_matrix():
    """q, k and v read the same hidden states: one E[x xᵀ] serves the three, so memory grows with the inputs."""
    torch.manual_seed(0)
    model = hf_bert().eval()
    inputs = []
    model.encoder.layer[0].attention.self.query.register_forward_pre_hook(lambda m, a: inputs.append(a[0].reshape(-1, 32)))
    cal = pela.calibrate(model, Tokens(n=16), collate_fn=stack_batch, batch_size=8)
    att = "encoder.layer.0.attention.self."
    q, k, v = (cal.moments[att + n] for n in ("query", "key", "value"))
    assert q is k is v and cal.tokens[att + "key"] == cal.tokens[att + "query"] == 16 * 8
    x = torch.cat(inputs).double()
    assert torch.allclose(q, x.T @ x / len(x), atol=1e-5)  # XᵀX is summed in float32 per batch
    assert len({id(m) for m in cal.moments.values()}) == 4 * 2 + 1  # per layer: q/k/v, attention output, MLP in, MLP out; the pooler


@pytest.mark.parametrize("sequential", [False, True])
def test_a_language_models_logits_are_never_computed_unless_its_head_is_factorized(sequential):
    """The vocabulary head runs last and its logits are a pass's largest tensor: calibration, the probes and the
    block-by-block refit stop before it; a head that is itself factorized still gets its statistics."""
    from conftest import tiny_llama

    model = tiny_llama()
    calls = []
    model.lm_head.register_forward_hook(lambda *_: calls.append(1))
    data = [{"input_ids": torch.randint(0, 100, (12,), generator=torch.Generator().manual_seed(i))} for i in range(8)]
    collate = lambda items: {"input_ids": torch.stack([i["input_ids"] for i in items])}  # noqa: E731
    config = LowRankConfig(ratio=2, init="whiten", align=1, sequential=sequential)
    budget = LowRankConfig(param_budget=0.5, init="whiten", align=1, sequential=sequential)
    for cfg in (config, budget):
        m = copy.deepcopy(model)
        pela.compress(m, cfg, calibration=pela.calibrate(m, data, cfg, collate_fn=collate, samples=8, probe_samples=4))
    assert calls == []
    head_too = LowRankConfig(ratio=2, init="whiten", align=1, exclude=[])
    calibration = pela.calibrate(model, data, head_too, collate_fn=collate, samples=8)
    assert calibration.tokens["lm_head"] == 8 * 12 and "lm_head" in calibration.moments and calls


def test_a_calibration_refuses_another_config_or_model_in_one_line(mlp):
    """A Calibration records the config and the layers it was taken for; compressing with another way, a
    layer it did not see or a layer of another shape is refused, naming what differs."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cal = pela.calibrate(mlp, Vectors(anisotropic(64, 64)), LowRankConfig(init="whiten", exclude=(r"^2$",)), collate_fn=stack)
    assert cal.config.exclude == (r"^2$",) and set(cal.layers) == {"0"}  # "4" is too narrow (min_features), "2" excluded
    with pytest.raises(PelaError, match=r"not taken on layer '2' \(and 0 more\)"):
        pela.compress(copy.deepcopy(mlp), LowRankConfig(init="whiten"), calibration=cal)
    wider = nn.Sequential(nn.Linear(64, 128), nn.GELU(), nn.Linear(128, 64))
    with pytest.raises(PelaError, match=r"taken on another model: 0 is \(96, 64\) there and \(128, 64\) here"):
        pela.compress(wider, LowRankConfig(init="whiten", exclude=(r"^2$",)), calibration=cal)
    pela.compress(copy.deepcopy(mlp), LowRankConfig(init="whiten", exclude=(r"^2$",), ratio=4), calibration=cal)  # the same way
