import copy
import warnings
from types import SimpleNamespace

import pytest
import torch
from conftest import ARCHITECTURES, Tokens, example_data, hf_bert
from conftest import stack as stack_batch

import pela
from pela import LowRankConfig, LowRankLinear, PelaError, arch
from pela.features import BlockCapture, feature_loss
from pela.linalg import corrected_weight, whiten_spectrum

pytestmark = pytest.mark.slow  # block-by-block refits of whole models


def test_corrected_weight_is_the_least_squares_map_from_student_to_teacher_inputs():
    g = torch.Generator().manual_seed(0)
    x_t = torch.randn(400, 12, generator=g, dtype=torch.float64)
    x_s = x_t + 0.3 * torch.randn(400, 12, generator=g, dtype=torch.float64)  # the student's inputs drifted
    w = torch.randn(7, 12, generator=g, dtype=torch.float64)
    c, p = x_s.T @ x_s / 400, x_t.T @ x_s / 400
    m = corrected_weight(w, c, p, damping=1e-12)
    best = torch.linalg.lstsq(x_s, x_t @ w.T).solution.T  # argmin ‖x_s Mᵀ − x_t Wᵀ‖
    torch.testing.assert_close(m, best, rtol=1e-6, atol=1e-8)
    assert torch.equal(corrected_weight(w, c, c), w)  # the student's inputs are the teacher's: nothing to correct


def _compressed(model, config, data):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cal = pela.calibrate(model, data, config, collate_fn=stack_batch, samples=len(data), batch_size=32)
    return pela.compress(model, config, calibration=cal), cal


def _mse(student, teacher, data):
    blocks = arch.find_blocks(teacher)
    ct, cs = BlockCapture(teacher, blocks), BlockCapture(student, blocks)
    batch = stack_batch([data[i] for i in range(len(data))])
    with torch.no_grad():
        teacher(**batch)
        student(**batch)
    return float(feature_loss(cs.take(), ct.take()))


def test_sequential_student_is_closer_to_the_teacher_at_the_same_size():
    torch.manual_seed(0)
    teacher = hf_bert()
    data, heldout = Tokens(n=256, length=12), Tokens(n=64, length=12, seed=1)
    one_shot, sequential = copy.deepcopy(teacher), copy.deepcopy(teacher)
    base = dict(param_budget=0.3, init="whiten", align=1)
    r1, _ = _compressed(one_shot, LowRankConfig(**base), data)
    r2, _ = _compressed(sequential, LowRankConfig(**base, sequential=True), data)
    assert [r.rank for r in r1.factorized] == [r.rank for r in r2.factorized]  # ranks are chosen first, the same way
    assert r1.params_after == r2.params_after
    assert _mse(sequential, teacher, heldout) < 0.95 * _mse(one_shot, teacher, heldout)


def test_the_first_stage_sees_the_teachers_inputs_so_its_factors_are_one_shots():
    torch.manual_seed(0)
    teacher = hf_bert()
    data = Tokens(n=128, length=12)
    one_shot, sequential = copy.deepcopy(teacher), copy.deepcopy(teacher)
    _compressed(one_shot, LowRankConfig(ratio=3, init="whiten", align=1), data)
    _compressed(sequential, LowRankConfig(ratio=3, init="whiten", align=1, sequential=True), data)
    first = one_shot.encoder.layer[0].attention.self.query, sequential.encoder.layer[0].attention.self.query
    torch.testing.assert_close(first[1].b.weight @ first[1].a.weight, first[0].b.weight @ first[0].a.weight, rtol=1e-5, atol=1e-6)
    later = one_shot.encoder.layer[1].output.dense, sequential.encoder.layer[1].output.dense
    assert not torch.allclose(later[1].b.weight @ later[1].a.weight, later[0].b.weight @ later[0].a.weight, atol=1e-4)  # fit on other inputs


def test_sequential_needs_the_calibration_batches():
    model = hf_bert()
    cal = pela.calibrate(model, Tokens(n=32), LowRankConfig(init="whiten"), collate_fn=stack_batch)
    with pytest.raises(PelaError, match="taken with sequential=False and the model is compressed with sequential=True"):
        pela.compress(model, LowRankConfig(init="whiten", sequential=True), calibration=cal)
    assert not any(isinstance(m, LowRankLinear) for m in model.modules())
    with pytest.raises(PelaError, match="needs a calibrated init"):
        LowRankConfig(sequential=True)


@pytest.mark.parametrize("block_by_block", [False, True])
def test_a_failure_halfway_leaves_the_model_as_it_was_or_block_by_block_what_was_done(monkeypatch, block_by_block):
    """With every spectrum in hand (a parameter budget) the model is put back; block by block the dense layers
    were already let go, so the layers done stay factorized and the rest is untouched."""
    torch.manual_seed(0)
    model = hf_bert()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    config = LowRankConfig(ratio=2, init="whiten", sequential=True) if block_by_block else \
        LowRankConfig(param_budget=0.5, init="whiten", sequential=True)
    assert config.block_by_block == block_by_block
    cal = pela.calibrate(model, Tokens(n=64), config, collate_fn=stack_batch)
    calls = []

    def failing(*args):
        calls.append(1)
        if len(calls) > 3:
            raise RuntimeError("boom")
        return whiten_spectrum(*args)

    monkeypatch.setattr("pela.compression.sequential.whiten_spectrum", failing)
    with pytest.raises(RuntimeError, match="boom"):
        pela.compress(model, config, calibration=cal)
    factorized = [n for n, m in model.named_modules() if isinstance(m, LowRankLinear)]
    assert len(factorized) == (3 if block_by_block else 0)
    untouched = {k: v for k, v in model.state_dict().items() if not k.startswith(tuple(f + "." for f in factorized))}
    assert untouched and all(torch.equal(v, before[k]) for k, v in untouched.items())


def test_block_by_block_lets_each_dense_layer_go_once_its_factors_are_in(monkeypatch):
    """Memory holds the dense layers of one block beside the factors, not the whole dense model too."""
    import gc
    import weakref

    torch.manual_seed(0)
    model = hf_bert()
    blocks = arch.find_blocks(model)
    dense = {n: weakref.ref(m.weight) for n, m in model.named_modules()
             if isinstance(m, torch.nn.Linear) and n.startswith(tuple(b + "." for b in blocks))}
    config = LowRankConfig(ratio=2, init="whiten", sequential=True)
    cal = pela.calibrate(model, Tokens(n=64), config, collate_fn=stack_batch)
    alive = []

    def counting(*args):
        gc.collect()
        alive.append(sum(r() is not None for r in dense.values()))
        return corrected_weight(*args)

    monkeypatch.setattr("pela.compression.sequential.corrected_weight", counting)
    pela.compress(model, config, calibration=cal)
    per_block = len(dense) // len(blocks)
    assert len(alive) == len(dense) and alive[0] == len(dense) and alive[-1] == 1 and max(alive[per_block:]) <= per_block


@pytest.mark.parametrize("name", sorted(ARCHITECTURES))
def test_sequential_on_every_architecture(name):
    """Chains of blocks are refit block by block; models whose blocks are not one chain (encoder-decoders,
    stages with downsampling, two towers) are said to fall back to one-shot factorization, and still work."""
    torch.manual_seed(0)
    model = ARCHITECTURES[name]()
    data, collate, batch = example_data(model)
    config = LowRankConfig(param_budget=0.5, init="whiten", align=1, sequential=True)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        cal = pela.calibrate(model, data, config, collate_fn=collate, batch_size=4, probe_samples=4)
        reference = copy.deepcopy(model)
        report = pela.compress(model, config, calibration=cal)
    fell_back = any("factorized one-shot" in str(w.message) for w in caught)
    assert fell_back == (name in ("hf_t5", "hf_clip", "timm_swin"))
    assert report.factorized and report.params_after < report.params_before
    with torch.no_grad():
        out, ref = (arch.main_output(arch.forward(m, batch)) for m in (model, reference))
    assert out.shape == ref.shape and torch.isfinite(out).all()


def test_fed_the_originals_activations_it_gives_the_one_shot_factors():
    """Block by block on the teacher's inputs is one-shot whitening: every factor equal within 1e-5."""
    from pela.compression.sequential import Fit, refit
    from pela.compression.targets import select

    torch.manual_seed(0)
    teacher = hf_bert()
    config = LowRankConfig(ratio=3, init="whiten", align=1, sequential=True)
    one_shot_config = LowRankConfig(ratio=3, init="whiten", align=1)
    cal = pela.calibrate(teacher, Tokens(n=128, length=12), one_shot_config, collate_fn=stack_batch)
    block_by_block = pela.calibrate(teacher, Tokens(n=128, length=12), config, collate_fn=stack_batch)
    assert block_by_block.moments == {} and block_by_block.tokens == cal.tokens  # only the batches, the same ones
    one_shot = copy.deepcopy(teacher)
    pela.compress(one_shot, one_shot_config, calibration=cal)
    expected = {n: m for n, m in one_shot.named_modules() if isinstance(m, LowRankLinear)}
    fed, got = copy.deepcopy(teacher), {}
    layers = {c.name: c for c in select(fed, config) if c.skip_reason is None}

    def swapper(name):
        def swap(spectrum, rank):
            a, b = spectrum.factors(rank)
            got[name] = b.double() @ a.double()
        return swap

    fits = [Fit(n, expected[n].rank, swapper(n)) for n in layers if n in expected]
    done = refit(fed, fits, block_by_block.inputs, feed="teacher")
    assert done == {f.name for f in fits if not f.name.startswith("pooler")} and len(done) == 12
    for name in done:
        want = (expected[name].b.weight @ expected[name].a.weight).double()
        assert float((got[name] - want).norm() / want.norm()) < 1e-5, name


def test_block_by_block_holds_no_whole_model_statistics_and_whitens_what_the_refit_does_not_reach(monkeypatch):
    """With a ratio, calibration keeps only the batches, and no one-shot spectrum is computed for a layer the
    refit reaches; a layer outside the blocks (BERT's pooler) is whitened on the inputs it gets at the end."""
    from pela.compression import factors as factors_module
    from pela.compression.calibrate import input_moments
    from pela.compression.targets import select

    torch.manual_seed(0)
    model = hf_bert()
    config = LowRankConfig(ratio=3, init="whiten", align=1, sequential=True)
    assert config.block_by_block and not LowRankConfig(param_budget=0.5, init="whiten", sequential=True).block_by_block
    cal = pela.calibrate(model, Tokens(n=64, length=12), config, collate_fn=stack_batch)
    assert cal.moments == {} and set(cal.tokens) == {c.name for c in select(model, config) if c.skip_reason is None}
    one_shot: list[int] = []
    whiten = factors_module.INITS["whiten"]
    monkeypatch.setitem(factors_module.INITS, "whiten", lambda w, stats: one_shot.append(w.shape) or whiten(w, stats))
    original = model.pooler.dense.weight.detach().clone()
    report = pela.compress(model, config, calibration=cal)
    assert one_shot == [(32, 32)]  # the pooler's alone
    pooler = next(r for r in report.layers if r.name == "pooler.dense")
    assert pooler.init == "whiten" and pooler.status == "factorized"
    assert all(r.init == "whiten" for r in report.layers if r.status == "factorized")
    # the pooler's statistics are those of the inputs the compressed model gives it
    stats = input_moments(model, [SimpleNamespace(name="pooler.dense", module=model.pooler.dense)], cal.inputs)["pooler.dense"]
    a, b = whiten(original, stats).factors(pooler.rank)
    layer = model.pooler.dense
    assert torch.allclose(b @ a, layer.b.weight @ layer.a.weight, atol=1e-5)
    with pytest.raises(PelaError, match="taken with sequential=True and the model is compressed with sequential=False"):
        pela.compress(hf_bert(), LowRankConfig(ratio=3, init="whiten"), calibration=cal)


def test_block_by_block_on_blocks_that_are_no_chain_gives_the_one_shot_student():
    """An encoder-decoder falls back to one-shot factors; block by block, their statistics are taken then, the same."""
    from conftest import hf_t5

    torch.manual_seed(0)
    model = hf_t5()
    data, collate, batch = example_data(model)
    lean, one_shot = LowRankConfig(ratio=3, init="whiten", align=1, sequential=True), LowRankConfig(ratio=3, init="whiten", align=1)
    students = []
    for config in (lean, one_shot):
        student = copy.deepcopy(model)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            pela.compress(student, config, calibration=pela.calibrate(student, data, config, collate_fn=collate, batch_size=4))
        students.append(student)
    with torch.no_grad():
        got, want = (arch.main_output(arch.forward(m, batch)) for m in students)
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)
