"""Speed and memory, side by side: `benchmark` (throughput, PyTorch and ONNX Runtime) and
`generation_benchmark` (a language model's prefill and decode); `pela bench` is these calls."""

from pela.bench.generation_speed import GenerationResult, generation_benchmark
from pela.bench.peak_memory import eager_peak_bytes
from pela.bench.settings import COMPILE_MODES, DTYPES, check_length
from pela.bench.throughput import BenchResult, batch_for, benchmark

__all__ = [
    "benchmark",
    "generation_benchmark",
    "BenchResult",
    "GenerationResult",
    "batch_for",
    "eager_peak_bytes",
    "check_length",
    "DTYPES",
    "COMPILE_MODES",
]
