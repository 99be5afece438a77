"""pela.training.periodic_evaluation: evaluations during training change nothing else; the best kept, across a crash; patience."""

import json

import pytest
import torch
from conftest import Labelled, hf_bert, stack

import pela
from pela import FinetuneConfig, PelaError


def _tune(config, out=None, resume=False, collate_fn=stack):
    torch.manual_seed(0)
    model = hf_bert()
    return pela.finetune(model, Labelled(), config, collate_fn=collate_fn, eval_data=Labelled(48, seed=1), out=out, resume=resume)


def test_evaluations_during_training_change_nothing_else(tmp_path):
    config = FinetuneConfig(steps=8, batch_size=16, lr=3e-3)
    plain, _ = _tune(config)
    watched, result = _tune(FinetuneConfig(steps=8, batch_size=16, lr=3e-3, eval_every=3), out=tmp_path)
    assert [e["step"] for e in result.evals] == [3, 6, 8] and result.best is None  # every 3 steps and at the end
    assert all(torch.equal(a, b) for a, b in zip(plain.state_dict().values(), watched.state_dict().values()))
    last = pela.evaluate(watched, Labelled(48, seed=1), collate_fn=stack)
    assert result.evals[-1]["accuracy"] == last["accuracy"] and result.evals[-1]["loss"] == pytest.approx(last["loss"], rel=1e-6)
    logged = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in logged if "eval_accuracy" in r] == [3, 6, 8]
    with pytest.raises(PelaError, match="eval_every needs data"):
        pela.finetune(hf_bert(), Labelled(), FinetuneConfig(steps=2, batch_size=16, eval_every=1), collate_fn=stack)
    with pytest.raises(PelaError, match="keep_best must be one of accuracy"):
        FinetuneConfig(keep_best="acc")


@pytest.mark.parametrize("metric", ["loss", "macro_f1"])
def test_keep_best_returns_the_best_evaluations_weights(metric):
    # a learning rate high enough to overshoot: the best evaluation is not always the last
    tuned, result = _tune(FinetuneConfig(steps=12, batch_size=16, lr=3e-3, eval_every=2, keep_best=metric))
    values = [e[metric] for e in result.evals]
    best = (min if metric == "loss" else max)(values)
    assert result.best == {"step": result.evals[values.index(best)]["step"], metric: best}
    assert pela.evaluate(tuned, Labelled(48, seed=1), collate_fn=stack)[metric] == pytest.approx(best, rel=1e-6)
    if metric == "loss":
        assert result.best["step"] < 12  # this run's loss rises again: the model is not the last one
        last, _ = _tune(FinetuneConfig(steps=12, batch_size=16, lr=3e-3))
        assert pela.evaluate(last, Labelled(48, seed=1), collate_fn=stack)["loss"] > best


def test_keep_best_survives_a_crash_and_resume(tmp_path):
    config = FinetuneConfig(steps=12, batch_size=16, lr=3e-3, eval_every=2, keep_best="loss", save_every=4)
    straight, expected = _tune(config, out=tmp_path / "straight")
    assert expected.best["step"] <= 8  # so that the resumed run must read it from disk
    assert (tmp_path / "straight" / "checkpoints" / "best" / "best.json").is_file()

    calls = {"n": 0}

    def crashing(examples):
        calls["n"] += len(examples) == 16  # training batches (the evaluation's is one of 48)
        if calls["n"] == 11:  # the loader runs one batch ahead: this dies in step 10, after the step-8 checkpoint
            raise KeyboardInterrupt
        return stack(examples)

    with pytest.raises(KeyboardInterrupt):
        _tune(config, out=tmp_path / "crashed", collate_fn=crashing)
    assert (tmp_path / "crashed" / "checkpoints" / "checkpoint-8").is_dir()
    resumed, result = _tune(config, out=tmp_path / "crashed", resume=True)
    assert result.best == expected.best
    assert result.evals == expected.evals  # the whole run's, not only since the resume
    same = ("step", "loss", "task", "lr")  # not the speed or memory of the moment
    assert [{k: r[k] for k in same} for r in result.history] == [{k: r[k] for k in same} for r in expected.history]
    assert all(torch.equal(a, b) for a, b in zip(straight.state_dict().values(), resumed.state_dict().values()))
    from pela.training.checkpoint import remove_checkpoints

    remove_checkpoints(tmp_path / "crashed" / "checkpoints")
    assert not (tmp_path / "crashed" / "checkpoints").exists()


def test_patience_stops_after_evaluations_without_a_better_one(tmp_path):
    config = FinetuneConfig(steps=30, batch_size=16, lr=3e-3, eval_every=2, keep_best="loss", patience=2)
    tuned, result = _tune(config, out=tmp_path)
    assert result.stopped_early and result.steps == result.best["step"] + 4 < 30  # two evaluations, 2 steps apart, no better
    assert [e["step"] for e in result.evals] == list(range(2, result.steps + 1, 2))
    assert min(e["loss"] for e in result.evals) == result.best["loss"]
    assert pela.evaluate(tuned, Labelled(48, seed=1), collate_fn=stack)["loss"] == pytest.approx(result.best["loss"], rel=1e-6)
    logged = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert logged[-1]["step"] == result.steps and "loss" in logged[-1]  # the last step's training row, though not a log_every step
    _, full = _tune(FinetuneConfig(steps=30, batch_size=16, lr=3e-3, eval_every=2, keep_best="loss"))
    assert not full.stopped_early and full.steps == 30 and full.evals[:len(result.evals)] == result.evals
    with pytest.raises(PelaError, match="patience needs keep_best"):
        FinetuneConfig(eval_every=2, patience=2)


def test_keep_best_with_lora_adapters():
    """Only the adapters and the head train: those are what the best evaluation keeps, before they are merged."""
    tuned, result = _tune(FinetuneConfig(steps=12, batch_size=16, lr=3e-2, eval_every=2, keep_best="loss", lora=4))
    losses = [e["loss"] for e in result.evals]
    assert result.best["step"] == result.evals[losses.index(min(losses))]["step"] < 12
    assert not any("lora" in n for n, _ in tuned.named_parameters())  # merged back
    assert pela.evaluate(tuned, Labelled(48, seed=1), collate_fn=stack)["loss"] == pytest.approx(min(losses), rel=1e-4)


def test_evaluation_data_is_read_by_class_name():
    class Reordered(Labelled):
        classes = ["c", "b", "a"]  # the same classes, numbered the other way round

        def __getitem__(self, i):
            item = super().__getitem__(i)
            return {**item, "labels": 2 - item["labels"]}

    _, straight = _tune(FinetuneConfig(steps=4, batch_size=16, lr=3e-3, eval_every=2))
    torch.manual_seed(0)
    _, reordered = pela.finetune(hf_bert(), Labelled(), FinetuneConfig(steps=4, batch_size=16, lr=3e-3, eval_every=2),
                                 collate_fn=stack, eval_data=Reordered(48, seed=1))
    assert reordered.evals == straight.evals

    class Other(Labelled):
        classes = ["a", "b", "z"]

    with pytest.raises(PelaError, match="the evaluation data has classes the training data lacks: 'z'"):
        pela.finetune(hf_bert(), Labelled(), FinetuneConfig(steps=2, batch_size=16, eval_every=1), collate_fn=stack, eval_data=Other(48))


def test_a_failing_evaluation_is_skipped_unless_it_picks_the_model(monkeypatch):
    """An evaluation that breaks (a bug, data it cannot read) must not cost the training: it is said once and
    skipped; with keep_best, which needs it to pick the model, it stops the run."""
    import pela.training.finetune

    def broken(*args, **kwargs):
        raise RuntimeError("injected failure")

    monkeypatch.setattr(pela.training.finetune, "evaluate", broken)
    with pytest.warns(UserWarning, match="evaluations skipped from step 3 on, training goes on: RuntimeError: injected failure"):
        tuned, result = _tune(FinetuneConfig(steps=8, batch_size=16, lr=3e-3, eval_every=3))
    assert result.steps == 8 and result.evals == []
    with pytest.raises(RuntimeError, match="injected failure"):
        _tune(FinetuneConfig(steps=8, batch_size=16, lr=3e-3, eval_every=3, keep_best="accuracy"))
