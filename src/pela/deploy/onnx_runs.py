"""A model as ONNX Runtime serves it, float32 and int8, ready to time beside PyTorch
(`pela bench --onnx`)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from pela.deploy.onnx import export_onnx, named_inputs, onnx_feed

RUNTIMES = ("onnxruntime", "onnxruntime int8")


@dataclass
class OnnxRun:
    runtime: str  # one of RUNTIMES
    run: Callable[[], Any]  # one batch through the session
    file_bytes: int  # the graph and its weights on disk


def onnx_runs(
    model: nn.Module, batch_size: int, seq_len: int, work: str | os.PathLike
) -> list[OnnxRun]:
    """``model`` exported under ``work`` in float32 and with int8 weights (`pela.export_onnx`, each
    checked against PyTorch), and a session of each on the CPU, fed the batch `pela.bench` times
    in PyTorch (same shape, same values)."""
    inputs, _ = named_inputs(model, batch_size, seq_len)
    runs = []
    for runtime in RUNTIMES:
        int8 = runtime.endswith("int8")
        out = Path(work) / runtime.replace(" ", "-")
        record = export_onnx(model, out, overwrite=True, int8=int8)
        session = cpu_session(record.path)
        feed = onnx_feed(session, inputs)
        runs.append(OnnxRun(runtime, lambda s=session, f=feed: s.run(None, f), _bytes(record.path)))
    return runs


def cpu_session(path: Path) -> Any:
    """An ONNX Runtime session of ``path`` on the CPU, with the threads PyTorch uses."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()  # the cores PyTorch uses
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _bytes(path: Path) -> int:
    """The graph and its external weights, if any."""
    return sum(f.stat().st_size for f in path.parent.glob(f"{path.name}*"))
