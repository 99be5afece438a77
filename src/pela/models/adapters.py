"""A LoRA fine-tune as a model: the base model its adapter names, with the adapter merged in (peft).

Users who could not afford to fine-tune a large model whole often hold a peft adapter directory
(``adapter_config.json`` + ``adapter_model.safetensors``) rather than a model. pela loads the base
the adapter names (a local directory, or a hub id when online), builds it for the adapter's task
(``task_type``: a sequence classifier, a causal LM, ...) with a head of the adapter's size, and
merges the low-rank updates into the weights, so the result compresses like any dense model.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any, Callable

from torch import nn

from pela.errors import PelaError
from pela.metadata import info
from pela.models.hf_source import hf_from_dir, hf_snapshot
from pela.models.saving import is_pela_dir
from pela.models.timm_source import is_timm_dir
from pela.models.weights import load_pickled_tensors, read_weights

# peft's task types, and the transformers auto class of the model each is trained on
TASK_CLASSES = {
    "SEQ_CLS": "AutoModelForSequenceClassification",
    "TOKEN_CLS": "AutoModelForTokenClassification",
    "CAUSAL_LM": "AutoModelForCausalLM",
    "SEQ_2_SEQ_LM": "AutoModelForSeq2SeqLM",
    "QUESTION_ANS": "AutoModelForQuestionAnswering",
    "FEATURE_EXTRACTION": "AutoModel",
}
# tasks whose head is trained whole, at the fine-tune's number of labels
HEADED_TASKS = ("SEQ_CLS", "TOKEN_CLS")
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "vocab.txt",
    "spiece.model",
    "tokenizer.model",
)


def _read_config(path: Path) -> dict[str, Any]:
    try:
        config = json.loads((path / "adapter_config.json").read_text())
    except (OSError, ValueError) as e:
        raise PelaError(f"{path}/adapter_config.json is not readable JSON: {e}") from None
    if not isinstance(config, dict):
        raise PelaError(f"{path}/adapter_config.json must hold an object")
    return config


def _adapter_state(path: Path, allow_pickle: bool) -> dict[str, Any]:
    """The adapter's tensors, read once (safetensors checked first; a pickle only
    with ``allow_pickle``, and then as tensors alone) before peft reads the file itself."""
    safe = path / "adapter_model.safetensors"
    if safe.is_file():
        return read_weights(str(safe))
    pickled = path / "adapter_model.bin"
    if pickled.is_file() and allow_pickle:
        return load_pickled_tensors(pickled)
    extra = (
        " (found adapter_model.bin: pickle files are loaded only with allow_pickle=true)"
        if pickled.is_file()
        else ""
    )
    raise PelaError(f"{path} has no adapter_model.safetensors{extra}")


def _head_size(state: dict[str, Any], config: dict[str, Any]) -> int | None:
    """The number of labels of a classifier fine-tune: the outputs of its head's last layer, saved
    whole beside the LoRA factors (``modules_to_save``); the smallest output count of the head's
    weights."""
    names = config.get("modules_to_save") or ()
    sizes = [
        int(t.shape[0])
        for key, t in state.items()
        if t.ndim == 2
        and "lora_" not in key
        and any(f".{n}." in f".{key}" for n in names if isinstance(n, str))
    ]
    return min(sizes) if sizes else None


def _base_path(path: Path, base: str) -> Path | None:
    """The base as a local directory: as written (relative to where the adapter was trained, usually
    the working directory), or beside the adapter."""
    for candidate in (Path(base).expanduser(), path.parent / base):
        if candidate.is_dir():
            return candidate
    return None


def load_adapter(
    path: Path,
    load_base: Callable[..., nn.Module],
    *,
    random_init: bool = False,
    allow_pickle: bool = False,
    trust_remote_code: bool = False,
) -> nn.Module:
    """The base model named in ``path``/adapter_config.json with the adapter in ``path`` merged in,
    in eval mode.

    ``load_base`` (`pela.models.sources.load_for_training`) loads a base that is a pela or timm
    directory.
    """

    if random_init:
        raise PelaError(
            f"{path} is a LoRA adapter, a fine-tune of trained weights: random_init does not apply "
            "to it"
        )
    config = _read_config(path)
    if config.get("peft_type") not in (None, "LORA"):
        raise PelaError(
            f"{path} holds a {config.get('peft_type')} adapter; pela merges LoRA adapters only"
        )
    base = config.get("base_model_name_or_path")
    if not isinstance(base, str) or not base:
        raise PelaError(f"{path}/adapter_config.json names no base model (base_model_name_or_path)")
    state = _adapter_state(path, allow_pickle)
    task = config.get("task_type")
    labels = _head_size(state, config) if task in HEADED_TASKS else None
    where = _base_path(path, base)
    if where is None:
        if base.startswith((".", "/", "~")):
            raise PelaError(
                f"the base model of {path}, {base}, is not a directory (relative to here or to "
                f"{path.parent})"
            )
        try:  # a hub id, as peft records a base loaded from the hub
            where = hf_snapshot(base, False, allow_pickle, trust_remote_code)
        except PelaError as e:
            raise PelaError(
                f"the base model of {path}, {base}, is no local directory (relative to here or to "
                f"{path.parent}), and {e}"
            ) from None
    if is_pela_dir(where) or is_timm_dir(where):
        model = load_base(
            str(where), allow_pickle=allow_pickle, trust_remote_code=trust_remote_code
        )
    else:
        model = hf_from_dir(
            where,
            False,
            allow_pickle,
            trust_remote_code,
            task_class=TASK_CLASSES.get(task),
            num_labels=labels,
        )
    source, files = info(model).source, info(model).files
    try:
        from peft import PeftModel

        # peft's use of deprecated transformers names is not the user's concern
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            merged = PeftModel.from_pretrained(model, str(path)).merge_and_unload()
    # peft raises many kinds of error for an adapter that does not fit its base
    except Exception as e:  # noqa: BLE001
        raise PelaError(
            f"could not merge the adapter in {path} into {base}: "
            f"{str(e).splitlines()[0] if str(e) else type(e).__name__}"
        ) from e
    info(merged).source = source
    # a tokenizer saved with the fine-tune (one that added tokens, say) wins over the base's, except
    # where the base brings code of its own, which lives beside the base
    own = any((path / f).is_file() for f in TOKENIZER_FILES) and not (source or {}).get(
        "remote_code"
    )
    info(merged).files = str(path) if own else files
    return merged.eval()
