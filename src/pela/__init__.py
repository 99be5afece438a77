"""pela: smaller, faster Transformers by low-rank approximation and distillation (PELA, CVPR 2024).

    import pela
    model = pela.load_model("timm:vit_base_patch16_224")
    report = pela.compress(model, pela.LowRankConfig(ratio=2))
    pela.save_pretrained(model, "vit-b-k2")
    model = pela.load("vit-b-k2")
"""

from pela.compression.calibrate import Calibration, calibrate
from pela.compression.compress import compress
from pela.compression.config import LowRankConfig
from pela.compression.report import CompressionReport
from pela.errors import PelaError
from pela.layers.lowrank import LowRankLinear
from pela.models.export import export_hf
from pela.models.pela_dir import load
from pela.models.saving import save_pretrained
from pela.models.sources import load_model
from pela.training.compare import compare
from pela.training.distill import DistillConfig, distill
from pela.training.evaluate import evaluate
from pela.training.finetune import FinetuneConfig, finetune
from pela.utils.memory import keep_freed_memory

__version__ = "0.1.0"
__all__ = ["Calibration", "calibrate", "DistillConfig", "FinetuneConfig", "LowRankConfig", "compare", "distill", "evaluate", "export_hf", "finetune", "keep_freed_memory", "LowRankLinear", "CompressionReport", "PelaError", "compress", "load", "load_model", "save_pretrained"]
