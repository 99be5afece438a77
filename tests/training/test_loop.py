"""pela.training.loop: the shared loop resumes bitwise, refuses another run's checkpoint, stops on a NaN."""

import json

import pytest
import torch
from conftest import Tokens, crashing_stack, hf_bert, pair, stack

import pela
from pela import DistillConfig, PelaError


def test_resume_after_crash_is_bitwise(tmp_path):
    config = DistillConfig(steps=6, batch_size=8, lr=1e-3, save_every=2)
    student, teacher = pair(hf_bert)
    pela.distill(student, teacher, Tokens(), config, collate_fn=stack, out=tmp_path / "straight")
    expected = student.state_dict()

    student, teacher = pair(hf_bert)
    with pytest.raises(KeyboardInterrupt):  # dies in step 5, after the step-4 checkpoint
        pela.distill(student, teacher, Tokens(), config, collate_fn=crashing_stack(), out=tmp_path / "crashed")
    assert (tmp_path / "crashed" / "checkpoints" / "checkpoint-4").is_dir()
    student, teacher = pair(hf_bert)  # a fresh process would rebuild from scratch
    pela.distill(student, teacher, Tokens(), config, collate_fn=stack, out=tmp_path / "crashed", resume=True)
    assert all(torch.equal(v, student.state_dict()[k]) for k, v in expected.items())
    steps = [json.loads(line)["step"] for line in (tmp_path / "crashed" / "metrics.jsonl").read_text().splitlines()]
    assert steps == sorted(set(steps))  # no duplicated rows after the resume


def test_resume_checks(tmp_path):
    student, teacher = pair(hf_bert)
    with pytest.raises(PelaError, match="no checkpoint"):
        pela.distill(student, teacher, Tokens(), DistillConfig(steps=2, batch_size=8), collate_fn=stack, out=tmp_path, resume=True)
    pela.distill(student, teacher, Tokens(), DistillConfig(steps=4, batch_size=8, save_every=2), collate_fn=stack, out=tmp_path)
    student, teacher = pair(hf_bert)
    with pytest.raises(PelaError, match="another run"):
        pela.distill(student, teacher, Tokens(), DistillConfig(steps=4, batch_size=8, lr=0.5, save_every=2), collate_fn=stack, out=tmp_path, resume=True)


def test_nan_loss_stops_and_keeps_checkpoint(tmp_path):
    student, teacher = pair(hf_bert)
    data = Tokens()

    def poison(examples):
        batch = stack(examples)
        if poison.calls == 3:
            with torch.no_grad():
                next(m for m in student.modules() if isinstance(m, pela.LowRankLinear)).a.weight.fill_(float("nan"))
        poison.calls += 1
        return batch

    poison.calls = 0
    with pytest.raises(PelaError, match="loss became nan at step 3.*last good checkpoint"):
        pela.distill(student, teacher, data, DistillConfig(steps=6, batch_size=8, save_every=2), collate_fn=poison, out=tmp_path)
    assert (tmp_path / "checkpoints" / "checkpoint-2").is_dir()


def test_fsdp_on_the_cpu_needs_several_processes_and_fsdp2(monkeypatch):
    """One process has nothing to shard over; on several, the CPU takes FSDP2 only (FSDP1 needs CUDA).
    Sharding itself is tested on 2 processes in tests/cli/test_train_cmd.py."""
    from types import SimpleNamespace

    from pela.training import accelerator as acc
    from pela.training.config import TrainConfig

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setenv("ACCELERATE_USE_FSDP", "true")
    assert not acc.is_sharded(acc.make_accelerator(TrainConfig()))
    monkeypatch.setenv("FSDP_VERSION", "1")
    monkeypatch.setattr(acc, "partial_state", lambda: SimpleNamespace(num_processes=2))
    with pytest.raises(PelaError, match="FSDP on the CPU needs FSDP2"):
        acc.make_accelerator(TrainConfig())
