"""A disk that fills up during a save: exit 2 with one line, no half-written model, the previous one intact."""

from __future__ import annotations

import errno
import json

import pytest
import torch
from conftest import TIMM_VIT

import pela
from pela.cli.app import main


def full_disk(real):
    """A writer that writes part of the file, then fails as a full disk does."""

    def write(obj, filename, *args, **kwargs):
        with open(filename, "wb") as f:
            f.write(b"\0" * 1000)
        raise OSError(errno.ENOSPC, "No space left on device", str(filename))

    return write


@pytest.fixture
def dense(tmp_path):
    return pela.save_pretrained(pela.load("timm:vit_tiny_patch16_224", random_init=True, **TIMM_VIT), tmp_path / "dense")


def test_full_disk_during_compress_leaves_nothing(dense, tmp_path, capsys, monkeypatch):
    import safetensors.torch

    monkeypatch.setattr(safetensors.torch, "save_model", full_disk(safetensors.torch.save_model))
    before = sorted(p.name for p in tmp_path.iterdir())
    code = main(["compress", str(dense), "--out", str(tmp_path / "k2")])
    err = capsys.readouterr().err
    assert code == 2 and err.strip().splitlines()[-1].startswith("error: ") and "No space left on device" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # no k2, no temporary


def test_full_disk_during_overwrite_keeps_the_old_model(dense, tmp_path, capsys, monkeypatch):
    import safetensors.torch

    assert main(["compress", str(dense), "--out", str(tmp_path / "k2"), "--rank", "8"]) == 0
    old = pela.load(tmp_path / "k2").state_dict()
    monkeypatch.setattr(safetensors.torch, "save_model", full_disk(safetensors.torch.save_model))
    assert main(["compress", str(dense), "--out", str(tmp_path / "k2"), "--rank", "16", "--overwrite"]) == 2
    kept = pela.load(tmp_path / "k2").state_dict()
    assert all(torch.equal(a, b) for a, b in zip(old.values(), kept.values()))


def test_full_disk_during_a_checkpoint_keeps_the_previous_one(tmp_path, capsys, monkeypatch, hf_bert_dir):
    import pela.training.checkpoint as ckpt

    text = tmp_path / "t.txt"
    text.write_text("".join(f"w{i} w{i + 3} w{i + 5}\n" for i in range(40)))
    assert main(["compress", str(hf_bert_dir), "--out", str(tmp_path / "s"), "--ratio", "4", "--config", "align=1"]) == 0
    real, calls = ckpt.write_weights, [0]

    def fail_third(*args, **kwargs):
        calls[0] += 1
        if calls[0] == 3:
            return full_disk(real)(*args, **kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(ckpt, "write_weights", fail_third)
    args = ["distill", "--student", str(tmp_path / "s"), "--teacher", str(hf_bert_dir), "--data", str(text), "--out", str(tmp_path / "run"),
            "--steps", "6", "--batch-size", "8", "--config", "save_every=1"]
    assert main(args) == 2
    assert "No space left on device" in capsys.readouterr().err
    assert ckpt.latest_checkpoint(tmp_path / "run" / "checkpoints").name == "checkpoint-2"  # the last good one, still there
    monkeypatch.setattr(ckpt, "write_weights", real)  # space freed: resume finishes the run
    assert main([*args, "--resume"]) == 0
    student = pela.load(tmp_path / "run")
    assert json.loads((tmp_path / "run" / "pela.json").read_text())["distill"]["trained_steps"] == 6
    assert any(isinstance(m, pela.LowRankLinear) for m in student.modules())
