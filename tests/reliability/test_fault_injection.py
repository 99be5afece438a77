"""SIGKILL `pela distill` at random points, checkpoint writes and the final save included, and resume each time:
the final student is bitwise the one an uninterrupted run gives, and no kill ever leaves a checkpoint that fails to
load. The same for one rank of a two-process run."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import pela
from pela.cli.app import main
from pela.training.checkpoint import latest_checkpoint

pytestmark = pytest.mark.slow  # kills and resumes real processes

WORDS = [f"w{i}" for i in range(95)]
STEPS = 40


def _setup(root: Path) -> list[str]:
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                     max_position_embeddings=64)  # dropout on: resume must restore the RNG too
    BertModel(cfg).save_pretrained(root / "teacher")
    (root / "teacher" / "vocab.txt").write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + WORDS))
    g = torch.Generator().manual_seed(0)
    lines = [" ".join(WORDS[int(i)] for i in torch.randint(0, 95, (int(n),), generator=g))
             for n in torch.randint(3, 12, (64,), generator=g)]
    (root / "text.txt").write_text("\n".join(lines) + "\n")
    assert main(["compress", str(root / "teacher"), "--out", str(root / "student"), "--ratio", "4", "--config", "align=1"]) == 0
    return [sys.executable, "-m", "pela", "distill", "--student", str(root / "student"), "--teacher", str(root / "teacher"),
            "--data", str(root / "text.txt"), "--steps", str(STEPS), "--batch-size", "8", "--lr", "1e-3", "--config", "save_every=1"]


def _assert_checkpoints_load(run: Path) -> int:
    """Every complete checkpoint in ``run`` loads; returns the newest step (0 if none yet)."""
    ckpt = latest_checkpoint(run / "checkpoints")
    if ckpt is None:
        return 0
    for path in (run / "checkpoints").glob("checkpoint-*"):
        if path.is_dir() and (path / "state.json").is_file():
            state = json.loads((path / "state.json").read_text())
            for name in ("model", "optimizer", "rng"):
                load_file(str(path / f"{name}.safetensors"))
            assert state["step"] == int(path.name.split("-")[1])
    return json.loads((ckpt / "state.json").read_text())["step"]


def _step(run: Path) -> int:
    try:
        return json.loads((run / "checkpoints" / "latest.json").read_text()).get("step", 0)
    except (OSError, ValueError):
        return 0


def test_sigkill_at_random_points_then_resume_is_bitwise(tmp_path):
    command = _setup(tmp_path)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    # the uninterrupted run, on the core the killed runs (one thread each) leave free; its messages in a file,
    # which unlike a pipe never fills while nothing reads it
    with (tmp_path / "straight.log").open("w") as log:
        straight = subprocess.Popen([*command, "--out", str(tmp_path / "straight")], stdout=subprocess.DEVNULL,
                                    stderr=log, env=env)

    run = tmp_path / "killed"
    rng = random.Random(1234)
    targets = sorted(rng.sample(range(2, STEPS - 8), 2))
    kills: list[tuple[str, int | None]] = [("after step", t) for t in targets]
    # kills at exact instants of a checkpoint's life, each with the temporary it must leave behind
    kills[1:1] = [("rng", None), ("pointer", None), ("discard", None)]
    kills.append(("save", None))  # the last: the run reaches its end and is killed writing the final model
    left_behind = {"rng": ".checkpoint-", "pointer": ".latest.json.tmp-", "discard": ".checkpoint-", "save": ".model.tmp-"}
    inject = str(Path(__file__).with_name("_inject"))
    resumed_from = []
    for i, (kind, target) in enumerate(kills):
        args = [*command, "--out", str(run)] + (["--resume"] if i else [])
        run_env = dict(env)
        marker = tmp_path / f"writing-{i}"
        if target is None:
            run_env.update(PYTHONPATH=inject + os.pathsep + env.get("PYTHONPATH", ""), PELA_FAULT_MARKER=str(marker),
                           PELA_FAULT_NTH="1" if kind == "save" else "3", PELA_FAULT_AT=kind)
        proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=run_env)
        deadline = time.time() + 180
        while time.time() < deadline and proc.poll() is None:
            if (marker.exists() if target is None else _step(run) >= target):
                break
            time.sleep(0.002)
        if target is not None:
            time.sleep(rng.uniform(0, 0.02))  # land anywhere in the next step, checkpoint writes included
        assert proc.poll() is None, f"kill {i} ({kind}): the run ended first: {proc.stderr.read().decode()[-1500:]}"
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        if target is None:  # the half-written (or half-deleted) entry is there, under its temporary name, and is ignored
            where = run if kind == "save" else run / "checkpoints"
            assert any(p.name.startswith(left_behind[kind]) for p in where.iterdir()), kind
        step = _assert_checkpoints_load(run)
        assert not (run / "pela.json").exists()
        resumed_from.append(step)
    assert len(kills) >= 6 and resumed_from == sorted(resumed_from) and resumed_from[-1] < STEPS

    final = subprocess.run([*command, "--out", str(run), "--resume"], capture_output=True, text=True, env=env)
    assert final.returncode == 0, final.stderr[-2000:]
    assert straight.wait(timeout=180) == 0, (tmp_path / "straight.log").read_text()[-2000:]
    assert not (run / "checkpoints").exists() and not list(run.glob(".*"))  # temporaries of killed writes are gone too
    a, b = pela.load(tmp_path / "straight"), pela.load(run)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


def _rank_pid(launcher: int, rank: int) -> int | None:
    """The process of ``rank`` among ``launcher``'s children (torchrun's workers carry RANK in their environment)."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
            environ = (stat.parent / "environ").read_bytes().split(b"\0")
        except (OSError, ValueError, IndexError):
            continue
        if ppid == launcher and f"RANK={rank}".encode() in environ:
            return int(stat.parent.name)
    return None


@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="finds torchrun's workers through /proc (Linux)")
def test_sigkill_of_one_rank_then_resume_is_bitwise(tmp_path):
    """Two processes (torchrun, gloo): SIGKILL of rank 1 mid-run stops the run with its checkpoints intact; --resume
    on two processes ends with the student an uninterrupted two-process run gives, bitwise."""
    command = _setup(tmp_path)[3:]  # pela's own arguments
    steps = 24
    command[command.index("--steps") + 1] = str(steps)
    command[command.index("save_every=1")] = "save_every=3"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    launch = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29523", "-m", "pela"]
    straight = subprocess.run([*launch, *command, "--out", str(tmp_path / "straight")], capture_output=True, text=True, env=env)
    assert straight.returncode == 0, straight.stderr[-3000:]

    run = tmp_path / "killed"
    proc = subprocess.Popen([*launch, *command, "--out", str(run)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    deadline = time.time() + 180
    while time.time() < deadline and proc.poll() is None and _step(run) < 9:
        time.sleep(0.005)
    victim = _rank_pid(proc.pid, 1)
    assert victim is not None and proc.poll() is None, "rank 1 was not found running"
    os.kill(victim, signal.SIGKILL)
    proc.wait(timeout=120)
    assert proc.returncode != 0  # torchrun stops the other rank and reports the failure
    step = _assert_checkpoints_load(run)
    assert 9 <= step < steps and not (run / "pela.json").exists()

    resumed = subprocess.run([*launch, *command, "--out", str(run), "--resume"], capture_output=True, text=True, env=env)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    meta = json.loads((run / "pela.json").read_text())["distill"]
    assert meta["processes"] == 2 and meta["trained_steps"] == steps
    a, b = pela.load(tmp_path / "straight"), pela.load(run)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
