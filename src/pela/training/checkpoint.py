"""Training checkpoints that survive crashes: safetensors + JSON, never pickle.

Each checkpoint is a directory ``checkpoint-<step>`` written under a temporary name and renamed
into place, then ``latest.json`` is replaced atomically to point at it, and only then are older
checkpoints removed. A process killed at any instant leaves at least one complete checkpoint.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from pela.errors import PelaError
from pela.models.saving import write_weights
from pela.models.weights import load_weights
from pela.utils.files import atomic_dir, atomic_write_text, read_json

LATEST = "latest.json"
BEST = "best"  # the weights of the best evaluation so far (`pela.training.loop.fit` with keep_best)


def _optimizer_to_files(
    optimizer: torch.optim.Optimizer,
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    sd = optimizer.state_dict()
    tensors, scalars = {}, {}
    for idx, state in sd["state"].items():
        for key, value in state.items():
            if torch.is_tensor(value):
                tensors[f"{idx}.{key}"] = value.detach().cpu().contiguous()
            else:
                scalars[f"{idx}.{key}"] = value
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def _optimizer_from_files(
    optimizer: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], meta: dict[str, Any]
) -> None:
    state: dict[int, dict[str, Any]] = {}
    for flat, value in [*tensors.items(), *meta["scalars"].items()]:
        idx, key = flat.split(".", 1)
        state.setdefault(int(idx), {})[key] = value
    groups = [
        {**g, "betas": tuple(g["betas"])} if "betas" in g else g for g in meta["param_groups"]
    ]
    optimizer.load_state_dict({"state": state, "param_groups": groups})


def _rng_state() -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    tensors = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"cuda.{i}"] = s
    np_state = np.random.get_state()
    py_state = random.getstate()
    meta = {
        "python": [py_state[0], list(py_state[1]), py_state[2]],
        "numpy": [
            np_state[0],
            np_state[1].tolist(),
            int(np_state[2]),
            int(np_state[3]),
            float(np_state[4]),
        ],
    }
    return tensors, meta


def _set_rng_state(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
    torch.set_rng_state(tensors["torch"])
    cuda = [tensors[k] for k in sorted(k for k in tensors if k.startswith("cuda."))]
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda)
    py = meta["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    n = meta["numpy"]
    np.random.set_state((n[0], np.array(n[1], dtype=np.uint32), n[2], n[3], n[4]))


def save_checkpoint(
    root: Path,
    step: int,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    run_id: str,
    keep: int = 1,
) -> Path:
    """Write ``root/checkpoint-<step>`` atomically and point ``root/latest.json`` at it."""
    root.mkdir(parents=True, exist_ok=True)
    target = root / f"checkpoint-{step}"
    with atomic_dir(target, overwrite=True) as tmp:
        write_weights(model, tmp / "model.safetensors")
        opt_tensors, opt_meta = _optimizer_to_files(optimizer)
        save_file(opt_tensors, str(tmp / "optimizer.safetensors"))
        rng_tensors, rng_meta = _rng_state()
        save_file(rng_tensors, str(tmp / "rng.safetensors"))
        state = {
            "step": step,
            "run_id": run_id,
            "optimizer": opt_meta,
            "rng": rng_meta,
            "scheduler": scheduler.state_dict(),
        }
        (tmp / "state.json").write_text(json.dumps(state))
    atomic_write_text(root / LATEST, json.dumps({"step": step, "path": target.name}))
    for old in _checkpoints(root)[:-keep]:
        _discard(old)
    return target


def _discard(path: Path) -> None:
    """Remove a checkpoint directory so that a kill midway never leaves a half-deleted
    ``checkpoint-N``: it is first renamed to a temporary name (atomic), which every reader ignores,
    then deleted."""
    doomed = path.with_name(f".{path.name}.old-{os.getpid()}")
    try:
        os.replace(path, doomed)
    except OSError:
        doomed = path
    shutil.rmtree(doomed, ignore_errors=True)


def _checkpoint_dirs(root: Path) -> list[Path]:
    """Every ``checkpoint-<step>`` directory, complete or not."""
    return [
        p
        for p in root.glob("checkpoint-*")
        if re.fullmatch(r"checkpoint-\d+", p.name) and p.is_dir()
    ]


def _checkpoints(root: Path) -> list[Path]:
    """The complete checkpoints, oldest first."""
    found = [p for p in _checkpoint_dirs(root) if (p / "state.json").is_file()]
    return sorted(found, key=lambda p: int(p.name.split("-")[1]))


def latest_checkpoint(root: Path) -> Path | None:
    """The newest complete checkpoint under ``root`` (``latest.json`` first, then a directory
    scan)."""
    try:
        pointer = read_json(root / LATEST)
        candidate = root / str(pointer["path"])
        if (candidate / "state.json").is_file():
            return candidate
    except (PelaError, KeyError):
        pass
    found = _checkpoints(root)
    return found[-1] if found else None


def load_checkpoint(
    path: Path,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    run_id: str,
) -> int:
    """Restore model, optimizer, scheduler and RNG from ``path``; returns the step to continue
    from."""
    state = read_json(path / "state.json")
    if state.get("run_id") != run_id:
        raise PelaError(
            f"checkpoint {path} belongs to another run (different model, data or settings); start "
            "afresh with --overwrite"
        )
    load_weights(model, path / "model.safetensors")
    _optimizer_from_files(
        optimizer, load_file(str(path / "optimizer.safetensors")), state["optimizer"]
    )
    scheduler.load_state_dict(state["scheduler"])
    _set_rng_state(load_file(str(path / "rng.safetensors")), state["rng"])
    return int(state["step"])


def remove_checkpoints(root: Path) -> None:
    """Delete ``root`` with every checkpoint in it and the temporaries that killed writes left
    behind."""
    for p in _checkpoint_dirs(root):
        _discard(p)
    if (root / BEST).is_dir():
        _discard(root / BEST)
    (root / LATEST).unlink(missing_ok=True)
    # temporaries of a write or delete that was killed: a checkpoint directory, the old one it
    # replaced,
    # and the pointer file (a kill while latest.json is replaced leaves ".latest.json.tmp-*")
    for p in [
        *root.glob(".checkpoint-*"),
        *root.glob(f".{BEST}.*"),
        *root.glob(f".{LATEST}.tmp-*"),
    ]:
        if p.is_dir():
            shutil.rmtree(p, ignore_errors=True)
        else:
            p.unlink(missing_ok=True)
    if root.is_dir() and not any(root.iterdir()):
        os.rmdir(root)
