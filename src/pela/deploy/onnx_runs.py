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
from pela.deploy.quantize import quantize_onnx

RUNTIMES = ("onnxruntime", "onnxruntime int8")


@dataclass
class OnnxRun:
    runtime: str  # one of RUNTIMES
    run: Callable[[], Any]  # one batch through the session
    file_bytes: int  # the graph and its weights on disk


def onnx_runs(
    model: nn.Module, batch_size: int, seq_len: int, work: str | os.PathLike
) -> list[OnnxRun]:
    """``model`` exported once under ``work`` (`pela.export_onnx`: the float32 graph, checked
    against PyTorch) and that graph quantized to int8 (`pela.deploy.quantize`), with a session of
    each on the CPU, fed the batch `pela.bench` times in PyTorch (same shape, same values)."""
    inputs, _ = named_inputs(model, batch_size, seq_len)
    fp32 = export_onnx(model, Path(work) / "onnxruntime", overwrite=True).path
    int8 = Path(work) / "onnxruntime-int8" / fp32.name
    int8.parent.mkdir(parents=True, exist_ok=True)
    quantize_onnx(fp32, int8)
    runs = []
    for runtime, path in zip(RUNTIMES, (fp32, int8)):
        session = cpu_session(path)
        feed = onnx_feed(session, inputs)
        runs.append(OnnxRun(runtime, lambda s=session, f=feed: s.run(None, f), _bytes(path)))
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
