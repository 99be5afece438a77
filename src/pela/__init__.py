"""pela: smaller, faster Transformers by low-rank approximation and distillation (PELA, CVPR 2024).

    import pela
    model = pela.load("timm:vit_base_patch16_224")
    report = pela.compress(model, pela.LowRankConfig(ratio=2))   # stage 1, in place
    teacher = pela.load("timm:vit_base_patch16_224")
    pela.distill(model, teacher, pela.load_dataset("images/"))   # stage 2
    # or stages 1 and 2 as pela's recipe runs them: pela.shrink(model, teacher, data, ratio=2)
    model, _ = pela.finetune(model, pela.load_dataset("labelled/"))  # stage 3
    pela.save_pretrained(model, "vit-b-k2")
    model = pela.load("vit-b-k2")
    pela.export_onnx(model, "vit-b-k2-onnx")                     # model.onnx for ONNX Runtime
    pela.pack(model)                  # layers reading one input (q, k, v) share one product of A
    pela.tune_layout(model, rows=1)   # weights in the order this device reads fastest, 1 row a step
    # or int8 weights and products in PyTorch (torchao), saved and loaded like any pela model:
    pela.save_pretrained(pela.quantize_int8(pela.load("vit-b-k2")), "vit-b-k2-int8")

The pipeline lives in sub-packages, lowest first: `pela.layers` (the low-rank layer), `pela.arch`
(what pela knows about architectures, and where to teach it more), `pela.data` and `pela.models`
(data and models in and out), `pela.compression` (stage 1), `pela.evaluation` (how good a model is),
`pela.deploy` (the runtimes models are served with), `pela.training` (stages 2 and 3), `pela.cli`.
"""

# first: its filters are in place before transformers imports torchao
from pela.utils import quiet  # noqa: F401

# isort: split
from pela.compression.calibrate import calibrate
from pela.compression.compress import compress
from pela.compression.config import LowRankConfig
from pela.compression.recipe import recipe
from pela.data.load import load_dataset
from pela.deploy.onnx import export_onnx
from pela.deploy.packed import pack
from pela.errors import PelaError
from pela.evaluation.classifier import evaluate
from pela.evaluation.compare import compare
from pela.evaluation.multiple_choice import multiple_choice
from pela.evaluation.perplexity import perplexity
from pela.layers.int8 import quantize_int8
from pela.layers.lowrank import LowRankLinear
from pela.layers.storage_order import tune_layout
from pela.models.saving import save_pretrained
from pela.models.sources import load
from pela.training.distill import DistillConfig, distill
from pela.training.finetune import FinetuneConfig, finetune
from pela.training.shrink import shrink
from pela.version import __version__

__all__ = [
    "compress",
    "recipe",
    "calibrate",
    "distill",
    "shrink",
    "finetune",
    "evaluate",
    "perplexity",
    "multiple_choice",
    "compare",
    "load",
    "load_dataset",
    "save_pretrained",
    "export_onnx",
    "tune_layout",
    "pack",
    "quantize_int8",
    "LowRankLinear",
    "PelaError",
    "LowRankConfig",
    "DistillConfig",
    "FinetuneConfig",
    "__version__",
]
