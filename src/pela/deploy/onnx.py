"""A model as an ONNX graph that ONNX Runtime runs, checked against the model before it is kept.

`export_onnx` hands the model to torch.onnx's exporter (``torch.export`` underneath); a factorized
layer stays two products (``B(A x)``), so the graph keeps the student's smaller arithmetic. The
batch and sequence dimensions stay dynamic. A causal language model exports as one forward step
with its key-value cache (`pela.deploy.onnx_decoder`), which reads a prompt and writes token by
token alike. Before the file is kept, ONNX Runtime runs it on random inputs of other shapes than
exported and its outputs must match the model's within ``atol``; the figures go to
``pela_onnx.json`` beside ``model.onnx``.
"""

from __future__ import annotations

import json
import os
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.export import Dim

from pela.arch import is_causal_lm
from pela.arch.inputs import example_inputs
from pela.arch.properties import max_positions
from pela.deploy.onnx_decoder import DecoderStep, step_inputs, step_names
from pela.deploy.quantize import quantize_onnx
from pela.errors import PelaError
from pela.metadata import info
from pela.models.saving import copy_companion_files
from pela.utils.files import atomic_dir

ONNX_NAME = "model.onnx"
RECORD_NAME = "pela_onnx.json"
IMAGE_INPUT = "pixel_values"  # the name a model taking one positional image tensor gets
# opset 23 has attention, rotary embedding and RMS norm as single operators, which ONNX Runtime
# (>= 1.23) runs as one kernel each; before, attention became a dozen primitives that copy the
# whole key cache at every decoding step (SmolLM2, batch 32: 2.3× the tokens/s)
OPSET = 23


@dataclass
class OnnxExport:
    """What was written, and how closely ONNX Runtime reproduces the model."""

    path: Path
    inputs: list[str]
    outputs: list[str]
    max_abs_difference: float  # ONNX Runtime against PyTorch, on inputs of a shape not exported
    checked_shape: list[int]
    opset: int | None
    tolerance: float = 1e-4  # the largest difference allowed (`export_onnx`'s atol, scaled)
    int8: bool = False  # int8 weights and dynamic int8 activations (`pela.deploy.quantize`)
    # the int8 graph against PyTorch's float32 outputs: the largest difference, and relative to
    # the outputs' norm
    int8_max_abs_difference: float | None = None
    int8_relative_error: float | None = None


class _Outputs(nn.Module):
    """The model called with keyword inputs, its tensor outputs as a tuple (ONNX has no objects)."""

    def __init__(self, model: nn.Module, inputs: list[str], positional: bool):
        super().__init__()
        self.model, self.inputs, self.positional = model, inputs, positional
        self.names: list[str] = []

    def forward(self, *tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
        if self.positional:
            out = self.model(*tensors)
        else:
            out = self.model(**dict(zip(self.inputs, tensors)))
        if isinstance(out, torch.Tensor):  # a classifier's scores (timm's, pela's head) or features
            self.names = ["logits" if getattr(self.model, "num_classes", 0) else "output"]
            return (out,)
        items = [(k, v) for k, v in out.items() if isinstance(v, torch.Tensor)]
        self.names = [k for k, _ in items]
        return tuple(v for _, v in items)


def export_onnx(model: nn.Module, out: str | os.PathLike, *, overwrite: bool = False,
                atol: float = 1e-4, int8: bool = False, opset: int = OPSET) -> OnnxExport:
    """Write ``model`` to ``out/model.onnx``, checked with ONNX Runtime; returns the record.

    The model is exported as it will run: in float32 and evaluation mode (it is left so).

    Encoders, vision models and classifiers export as one pass; a causal language model as one
    forward step with its key-value cache (`pela.deploy.onnx_decoder`). The float32 graph must
    match the model within ``atol``, times the largest output where that is above 1 for a
    language model (logits of tens differ in float32 by more than ``atol`` when summed in another
    order, layer after layer: 4e-4 on SmolLM2-135M's, a relative 2e-5); with ``int8``, it is
    then quantized (`pela.deploy.quantize`) and the int8 graph's distance to the model is
    recorded. The tokenizer and processor files the model was loaded with are copied beside the
    graph. ``opset``: the ONNX operator set written (`OPSET`; an older runtime may need less).
    """
    ort = _onnxruntime()
    model = model.float().eval()
    graph = _decoder_graph(model) if is_causal_lm(model) else _model_graph(model)
    with atomic_dir(out, overwrite) as tmp:
        program = _export(graph, opset)
        program.save(str(tmp / ONNX_NAME))
        diff = max(d for d, _ in _distances(ort, tmp / ONNX_NAME, graph))
        largest = max(float(t.abs().max()) for outputs in graph.expected for t in outputs)
        limit = atol * max(1.0, largest) if graph.scaled else atol
        if diff > limit:
            raise PelaError(f"ONNX Runtime's outputs differ from the model's by {diff:.3g} "
                            f"(more than {limit:.3g}); nothing was written")
        shape = list(next(iter(graph.checks[0].values())).shape)
        record = OnnxExport(Path(out) / ONNX_NAME, list(graph.inputs), graph.outputs, diff, shape,
                            _opset(program), limit)
        if int8:
            _to_int8(tmp / ONNX_NAME)
            record.int8 = True
            distances = _distances(ort, tmp / ONNX_NAME, graph)
            record.int8_max_abs_difference = max(d for d, _ in distances)
            record.int8_relative_error = max(r for _, r in distances)
        (tmp / RECORD_NAME).write_text(json.dumps(asdict(record), indent=2, default=str))
        copy_companion_files(info(model).files, tmp)
    return record


@dataclass
class _Graph:
    """What to export: the module, its example inputs by name and how each may vary, the output
    names, and the inputs of other shapes that ONNX Runtime is checked on."""

    module: nn.Module
    inputs: dict[str, torch.Tensor]
    dynamic: tuple
    outputs: list[str]
    checks: list[dict[str, torch.Tensor]]
    expected: list[tuple[torch.Tensor, ...]]  # the module's outputs on each check
    scaled: bool = False  # the tolerance grows with the largest output (a language model's logits)


def _model_graph(model: nn.Module) -> _Graph:
    """One pass of an encoder, vision model or classifier; every dimension but the features may
    vary (batch, sequence, image size as the model allows)."""
    inputs, positional = named_inputs(model, batch_size=2, seq_len=16)
    wrapped = _Outputs(model, list(inputs), positional).eval()
    check, _ = named_inputs(model, batch_size=3, seq_len=11)  # another batch size and length
    with torch.no_grad():
        expected = wrapped(*check.values())  # also names the outputs, as the graph will
    dynamic = (tuple({d: Dim.AUTO for d in range(min(v.dim(), 2))} for v in inputs.values()),)
    return _Graph(wrapped, inputs, dynamic, wrapped.names, [check], [expected])


def _decoder_graph(model: nn.Module) -> _Graph:
    """One forward step of a causal language model with its cache; checked writing one token
    after a cache of another length and batch, and reading a prompt (an empty cache)."""
    step = DecoderStep(model).eval()
    with torch.no_grad():
        inputs = step_inputs(model, batch_size=2, cached=5, new=3)
        checks = [step_inputs(model, 3, cached=7, new=1), step_inputs(model, 1, cached=0, new=6)]
        expected = [step(*c.values()) for c in checks]
    layers = (len(inputs) - 3) // 2
    varying = {0: Dim.AUTO, 1: Dim.AUTO}  # batch, and tokens (new, or in all for the mask)
    cache = tuple({0: Dim.AUTO, 2: Dim.AUTO} for _ in range(2 * layers))  # batch, positions
    dynamic = (varying, varying, varying, cache)
    return _Graph(step, inputs, dynamic, step_names(layers)[1], checks, expected, True)


def _to_int8(path: Path) -> None:
    """Replace the float32 graph at ``path`` by its int8 form."""
    quantized = path.with_name("int8-" + path.name)
    quantize_onnx(path, quantized)
    os.replace(quantized, path)


def _onnxruntime() -> Any:
    try:
        import onnxruntime
        import onnxscript  # noqa: F401 - torch.onnx's exporter translates with it
    except ImportError as e:
        raise PelaError(f"ONNX export needs {e.name}: pip install 'pela[deploy]'") from e
    return onnxruntime


def named_inputs(model: nn.Module, batch_size: int,
                 seq_len: int) -> tuple[dict[str, torch.Tensor], bool]:
    """Random inputs by the names the ONNX graph gives them, and whether the model takes them
    positionally (one image tensor); text is cut to the model's positions."""
    limit = max_positions(model)
    inputs = example_inputs(model, batch_size, min(seq_len, limit) if limit else seq_len)
    if isinstance(inputs, tuple):
        if len(inputs) != 1:
            name = type(model).__name__
            raise PelaError(f"cannot name the {len(inputs)} positional inputs of {name}")
        return {IMAGE_INPUT: inputs[0]}, True
    return dict(inputs), False


def _export(graph: _Graph, opset: int) -> Any:
    """The ONNX program of ``graph``, in operator set ``opset``."""
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch's own deprecations, not the user's
        try:
            return torch.onnx.export(graph.module, tuple(graph.inputs.values()), dynamo=True,
                                     opset_version=opset, verbose=False,
                                     dynamic_shapes=graph.dynamic,
                                     input_names=list(graph.inputs), output_names=graph.outputs)
        except Exception as e:  # noqa: BLE001 - the exporter's failures are many; say which
            root = e
            while root.__cause__ is not None:  # the exporter wraps what torch.export said
                root = root.__cause__
            line = str(root).strip().splitlines()[0] if str(root).strip() else type(root).__name__
            name = type(getattr(graph.module, "model", graph.module)).__name__
            raise PelaError(f"torch.onnx could not export {name}: "
                            f"{line}") from e


def onnx_feed(session: Any, inputs: dict[str, torch.Tensor]) -> dict[str, Any]:
    """``inputs`` as an ONNX Runtime session takes them: arrays, only those its graph reads (the
    exporter drops an input the graph never uses)."""
    taken = {i.name for i in session.get_inputs()}
    return {k: v.numpy() for k, v in inputs.items() if k in taken}


def _distances(ort: Any, path: Path, graph: _Graph) -> list[tuple[float, float]]:
    """ONNX Runtime's outputs on each of ``graph``'s checks against PyTorch's: the largest
    difference, and the largest relative to an output's norm (one session for all checks)."""
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    found = []
    for inputs, expected in zip(graph.checks, graph.expected):
        got = session.run(None, onnx_feed(session, inputs))
        if len(got) != len(expected):
            raise PelaError(f"ONNX Runtime returned {len(got)} outputs, the model {len(expected)}")
        gaps = [torch.from_numpy(g) - e for g, e in zip(got, expected)]
        diff = max(float(gap.abs().max()) for gap in gaps)
        relative = max(float(gap.norm() / e.norm().clamp_min(1e-12))
                       for gap, e in zip(gaps, expected))
        found.append((diff, relative))
    return found


def _opset(program: Any) -> int | None:
    model = getattr(program, "model_proto", None)
    found = [o.version for o in getattr(model, "opset_import", []) if o.domain in ("", "ai.onnx")]
    return found[0] if found else None
