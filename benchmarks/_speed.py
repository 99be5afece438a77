"""What the deployment-speed studies share (`never_slower`, `speed_target`): the originals they
measure, and a table of rows, one per model and setting, saved after each (a rerun resumes)."""

from __future__ import annotations

import json
from typing import Callable

import torch

import pela
from benchmarks._results import report, results_dir
from pela.models.bundled import minilm_dir, smollm2_gguf
from pela.models.sources import load_for_training


def original(name: str) -> torch.nn.Module:
    """One of the originals, in eval mode. ViT-B/16 and BERT-base (`BertConfig()`'s size) are
    randomly initialized: speed does not depend on the weights."""
    if name == "minilm":
        model = load_for_training(str(minilm_dir()))
    elif name == "vit_b16":
        model = load_for_training("timm:vit_base_patch16_224", random_init=True)
    elif name == "bert_base":
        from transformers import BertConfig, BertModel

        torch.manual_seed(0)
        model = BertModel(BertConfig())
    else:
        model = pela.load(str(smollm2_gguf()))
    return model.eval()


def study(name: str, key: str, settings: dict[str, list[float]],
          row: Callable[[str, torch.nn.Module, float], dict]) -> None:
    """For each model and each of its ``settings`` not in NAME.json yet, ``row(model name, model,
    setting)`` (the setting under ``key``), saved after each."""
    path = results_dir() / f"{name}.json"
    done = json.loads(path.read_text())["rows"] if path.is_file() else []  # resumes
    for model_name, values in settings.items():
        todo = [v for v in values if not any(d["model"] == model_name and d[key] == v for d in done)]
        if not todo:
            continue
        model = original(model_name)
        for value in todo:
            done.append(row(model_name, model, value))
            report(name, {"device": "cpu", "threads": torch.get_num_threads(), "rows": done})
