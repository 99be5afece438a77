"""A model as ONNX Runtime serves it, float32 and int8, ready to time beside PyTorch
(`pela bench --onnx`; a language model's generation: `decoder_runs`)."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from pela.deploy.onnx import export_onnx, named_inputs, onnx_feed
from pela.deploy.onnx_decoder import OnnxDecoder
from pela.deploy.quantize import quantize_onnx

RUNTIMES = ("onnxruntime", "onnxruntime int8")


# a fresh process: load the graph, run one batch, print the resident memory it gained (KiB)
_PEAK_SCRIPT = """
import sys
import numpy as np
import onnxruntime as ort

def kib(field):
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(field))

feed = dict(np.load(sys.argv[2]))
before = kib("VmRSS")
options = ort.SessionOptions()
options.intra_op_num_threads = int(sys.argv[3])
session = ort.InferenceSession(sys.argv[1], options, providers=["CPUExecutionProvider"])
session.run(None, feed)
print(kib("VmHWM") - before)
"""


@dataclass
class OnnxRun:
    runtime: str  # one of RUNTIMES
    run: Callable[[], Any]  # one batch through the session
    file_bytes: int  # the graph and its weights on disk
    # resident memory a fresh process gains loading the graph and running the batch (None: this
    # system does not say)
    peak_bytes: int | None = None


def onnx_runs(
    model: nn.Module, batch_size: int, seq_len: int, work: str | os.PathLike
) -> list[OnnxRun]:
    """``model`` exported once under ``work`` (`pela.export_onnx`: the float32 graph, checked
    against PyTorch) and that graph quantized to int8 (`pela.deploy.quantize`), with a session of
    each on the CPU, fed the batch `pela.bench` times in PyTorch (same shape, same values)."""
    inputs, _ = named_inputs(model, batch_size, seq_len)
    runs = []
    for runtime, path in zip(RUNTIMES, _graphs(model, work)):
        session = cpu_session(path)
        feed = onnx_feed(session, inputs)
        runs.append(OnnxRun(runtime, lambda s=session, f=feed: s.run(None, f), _bytes(path),
                            process_peak_bytes(path, feed)))
    return runs


def decoder_runs(model: nn.Module, work: str | os.PathLike) -> list[tuple[str, OnnxDecoder, int]]:
    """A causal language model's step graph exported once under ``work`` (checked against
    PyTorch) and quantized to int8: each runtime's name, its greedy loop on a CPU session, and
    its file's bytes."""
    return [(runtime, OnnxDecoder(cpu_session(path)), _bytes(path))
            for runtime, path in zip(RUNTIMES, _graphs(model, work))]


def _graphs(model: nn.Module, work: str | os.PathLike) -> tuple[Path, Path]:
    """``model``'s float32 graph (`pela.export_onnx`, checked against PyTorch) under ``work``, and
    that graph quantized to int8 (`pela.deploy.quantize`): one per entry of `RUNTIMES`."""
    fp32 = export_onnx(model, Path(work) / "onnxruntime", overwrite=True).path
    int8 = Path(work) / "onnxruntime-int8" / fp32.name
    int8.parent.mkdir(parents=True, exist_ok=True)
    quantize_onnx(fp32, int8)
    return fp32, int8


def process_peak_bytes(path: Path, feed: dict[str, Any]) -> int | None:
    """The resident memory a fresh process gains while ONNX Runtime loads ``path`` and runs
    ``feed`` once: the weights, the runtime's arena and the activations (in this process, memory
    freed earlier would hide what it reuses). None where ``/proc`` does not say (not Linux)."""
    if not Path("/proc/self/status").is_file():
        return None
    import numpy as np

    arrays = path.parent / "peak_inputs.npz"
    np.savez(arrays, **feed)
    try:
        done = subprocess.run([sys.executable, "-c", _PEAK_SCRIPT, str(path), str(arrays),
                               str(torch.get_num_threads())], capture_output=True, text=True,
                              timeout=600)
    finally:
        arrays.unlink(missing_ok=True)
    if done.returncode != 0:
        return None  # the speed is still measured; memory is left blank
    return int(done.stdout.split()[-1]) * 1024


def cpu_session(path: Path) -> Any:
    """An ONNX Runtime session of ``path`` on the CPU, with the threads PyTorch uses."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()  # the cores PyTorch uses
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _bytes(path: Path) -> int:
    """The graph and its external weights, if any."""
    return sum(f.stat().st_size for f in path.parent.glob(f"{path.name}*"))
