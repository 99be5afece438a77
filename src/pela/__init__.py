"""pela: smaller, faster Transformers by low-rank approximation and distillation (PELA, CVPR 2024).

    import pela
    model = pela.load_model("timm:vit_base_patch16_224")
    report = pela.compress(model, pela.LowRankConfig(ratio=2))
    pela.save_pretrained(model, "vit-b-k2")
    model = pela.load("vit-b-k2")
"""

from .allocator import keep_freed_memory
from .calibrate import Calibration, calibrate
from .compare import compare
from .config import LowRankConfig
from .distill import DistillConfig, distill
from .errors import PelaError
from .factorize import compress
from .export import export_hf
from .finetune import FinetuneConfig, evaluate, finetune
from .io import load, save_pretrained
from .layers import LowRankLinear
from .loading import load_model
from .report import CompressionReport

__version__ = "0.1.0"
__all__ = ["Calibration", "calibrate", "DistillConfig", "FinetuneConfig", "LowRankConfig", "compare", "distill", "evaluate", "export_hf", "finetune", "keep_freed_memory", "LowRankLinear", "CompressionReport", "PelaError", "compress", "load", "load_model", "save_pretrained"]
