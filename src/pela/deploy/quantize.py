"""int8 on top: ONNX Runtime's dynamic quantization of an exported graph.

Weights become int8 with one scale per output channel (per tensor, MiniLM's outputs moved twice as
far); activations are quantized on the fly, batch by batch (``DynamicQuantizeLinear``), so no
calibration data is needed. A factorized layer's two products are
quantized like any other: the low-rank student and int8 compose.
"""

from __future__ import annotations

import logging
from pathlib import Path

from pela.errors import PelaError

# what the quantizer would quantize, but "Attention": it takes any node of that name for its own
# com.microsoft Attention, and ONNX's (opset 23, `pela.deploy.onnx.OPSET`) has other attributes
_OP_TYPES = ["Conv", "MatMul", "LSTM", "Gather", "Transpose", "EmbedLayerNormalization"]


def quantize_onnx(source: Path, target: Path) -> None:
    """Write the ONNX graph ``source`` to ``target`` with int8 weights and dynamic int8
    activations."""
    try:
        from onnxruntime.quantization import QuantType, quantize_dynamic
    except ImportError as e:
        raise PelaError(f"int8 export needs {e.name}: pip install 'pela[deploy]'") from e
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # its advice to pre-process the graph, on every call
    try:
        quantize_dynamic(str(source), str(target), weight_type=QuantType.QInt8, per_channel=True,
                         op_types_to_quantize=_OP_TYPES)
    finally:
        root.setLevel(level)
