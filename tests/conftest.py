"""Tiny random-init models of every architecture family pela promises to handle (all offline)."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.utils.data import Dataset

import pela
from pela import LowRankConfig
from pela.utils import products

os.environ.setdefault("HF_HUB_OFFLINE", "1")
# transformers copies a model's own code (trust_remote_code) into a module cache: keep it out of the home directory
os.environ.setdefault("HF_MODULES_CACHE", tempfile.mkdtemp(prefix="pela-tests-hf-modules-"))
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
# what pela caches (product timings, converted GGUF files) stays out of the home directory too
os.environ.setdefault("PELA_CACHE", tempfile.mkdtemp(prefix="pela-tests-cache-"))
torch.set_num_threads(min(2, torch.get_num_threads()))
# the tiny models here have layers whose factors a CPU multiplies no faster than the dense weight
# (the call, not the arithmetic, is the cost): the speed check would keep them all dense. Its own
# tests (tests/compression/test_speed.py) turn it on.
os.environ["PELA_SPEED_CHECK"] = "0"
# the tiny models' products are timed streaming 64 MiB in at most 512 calls, not twice this
# machine's last-level cache (up to 2 GiB, seconds a shape): tests/utils/test_products.py sets
# its own
products.MAX_STREAM_BYTES, products.MAX_WEIGHTS = products.STREAM_BYTES, 512

TIMM_VIT = dict(img_size=32, patch_size=8, embed_dim=32, depth=2, num_heads=2, num_classes=5)
TIMM_SWIN = dict(embed_dim=16, depths=(1, 1), num_heads=(1, 2), window_size=4, img_size=32, num_classes=5)


def timm_vit() -> nn.Module:
    import timm

    return timm.create_model("vit_tiny_patch16_224", pretrained=False, **TIMM_VIT).eval()


def timm_swin() -> nn.Module:
    import timm

    return timm.create_model("swin_tiny_patch4_window7_224", pretrained=False, **TIMM_SWIN).eval()


def hf_bert() -> nn.Module:
    from transformers import BertConfig, BertModel

    cfg = BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                     max_position_embeddings=64)
    return BertModel(cfg).eval()


def hf_vit() -> nn.Module:
    from transformers import ViTConfig, ViTForImageClassification

    cfg = ViTConfig(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                    intermediate_size=64, num_labels=5)
    return ViTForImageClassification(cfg).eval()


def hf_clip() -> nn.Module:
    from transformers import CLIPConfig, CLIPModel

    cfg = CLIPConfig(
        text_config=dict(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                         max_position_embeddings=32),
        vision_config=dict(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                           intermediate_size=64),
        projection_dim=16,
    )
    return CLIPModel(cfg).eval()


def hf_gpt2() -> nn.Module:
    from transformers import GPT2Config, GPT2Model

    return GPT2Model(GPT2Config(vocab_size=100, n_embd=32, n_layer=2, n_head=2, n_positions=32)).eval()


def hf_t5() -> nn.Module:
    """An encoder-decoder model with a language-model head: its decoder needs inputs of its own."""
    from transformers import T5Config, T5ForConditionalGeneration

    return T5ForConditionalGeneration(T5Config(vocab_size=100, d_model=32, d_ff=64, d_kv=16, num_layers=2, num_heads=2)).eval()


def word_tokenizer():
    """A word-level tokenizer for the tiny language models: w0 … w96, with <s>, </s> and <unk>."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2, **{f"w{i}": i + 3 for i in range(97)}}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", bos_token="<s>", eos_token="</s>")


# 30 documents of 5 to 13 words of `word_tokenizer`'s vocabulary: text for the tiny language models
TEXTS = [" ".join(f"w{(i * 7 + j * 3) % 97}" for j in range(5 + i % 9)) for i in range(30)]


def tiny_llama() -> nn.Module:
    """A 2-block Llama with grouped-query attention (4 heads, 2 key-value heads) and its next-token head."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=100, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                      num_key_value_heads=2, max_position_embeddings=64)
    return LlamaForCausalLM(cfg).eval()


ARCHITECTURES = {"timm_vit": timm_vit, "timm_swin": timm_swin, "hf_bert": hf_bert, "hf_vit": hf_vit,
                 "hf_clip": hf_clip, "hf_gpt2": hf_gpt2, "hf_t5": hf_t5}


def example_data(model: nn.Module, n: int = 8, batch_size: int = 4, seq_len: int = 16) -> tuple[Dataset, object, dict]:
    """``(dataset, collate_fn, batch)`` for any architecture: ``n`` examples whose batches are slices of one
    example batch of the model's own inputs (token ids, pixels, or an encoder-decoder's pair)."""
    from pela.arch.inputs import example_inputs

    inputs = example_inputs(model, batch_size=batch_size, seq_len=seq_len)
    batch = {"x": inputs[0]} if isinstance(inputs, tuple) else inputs

    class Indices(Dataset):
        def __len__(self):
            return n

        def __getitem__(self, i):
            return i

    return Indices(), lambda idx: {k: v[: len(idx)] for k, v in batch.items()}, batch


@pytest.fixture
def mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(64, 96), nn.GELU(), nn.Linear(96, 64), nn.GELU(), nn.Linear(64, 4)).eval()


@pytest.fixture
def hf_bert_dir(tmp_path):
    """A Hugging Face model directory (config + safetensors + tokenizer vocab), as save_pretrained writes it."""
    torch.manual_seed(0)
    model = hf_bert()
    path = tmp_path / "bert"
    model.save_pretrained(path)
    (path / "vocab.txt").write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + [f"w{i}" for i in range(95)]))
    return path


REMOTE_CONFIG = """
from transformers import PretrainedConfig


class TinyNetConfig(PretrainedConfig):
    model_type = "pela-test-tinynet"

    def __init__(self, vocab_size=100, hidden_size=32, num_hidden_layers=2, **kwargs):
        self.vocab_size, self.hidden_size, self.num_hidden_layers = vocab_size, hidden_size, num_hidden_layers
        super().__init__(**kwargs)
"""

REMOTE_MODEL = """
import torch
from torch import nn
from torch.utils.data import Dataset

import pela
from pela import LowRankConfig
from transformers import PreTrainedModel
from transformers.modeling_outputs import BaseModelOutput

from .configuration_tinynet import TinyNetConfig


class TinyNetBlock(nn.Module):
    def __init__(self, hidden):
        super().__init__()
        self.norm, self.fc1, self.fc2 = nn.LayerNorm(hidden), nn.Linear(hidden, 4 * hidden), nn.Linear(4 * hidden, hidden)

    def forward(self, x):
        return x + self.fc2(torch.nn.functional.gelu(self.fc1(self.norm(x))))


class TinyNetModel(PreTrainedModel):
    config_class = TinyNetConfig
    base_model_prefix = "tinynet"

    def __init__(self, config):
        super().__init__(config)
        self.embed = nn.Embedding(config.vocab_size, config.hidden_size)
        self.layers = nn.ModuleList(TinyNetBlock(config.hidden_size) for _ in range(config.num_hidden_layers))
        self.post_init()

    def forward(self, input_ids, attention_mask=None, **kwargs):
        h = self.embed(input_ids)
        for block in self.layers:
            h = block(h)
        return BaseModelOutput(last_hidden_state=h)
"""


def remote_code_model_dir(path: Path) -> Path:
    """A Hugging Face model whose architecture transformers lacks: its code comes along (auto_map), as
    models shared with trust_remote_code do; with a BERT tokenizer."""
    import transformers

    path.mkdir(parents=True)
    (path / "configuration_tinynet.py").write_text(REMOTE_CONFIG)
    (path / "modeling_tinynet.py").write_text(REMOTE_MODEL)
    (path / "config.json").write_text(json.dumps({
        "model_type": "pela-test-tinynet", "architectures": ["TinyNetModel"],
        "auto_map": {"AutoConfig": "configuration_tinynet.TinyNetConfig", "AutoModel": "modeling_tinynet.TinyNetModel"}}))
    torch.manual_seed(0)
    config = transformers.AutoConfig.from_pretrained(str(path), trust_remote_code=True)
    transformers.AutoModel.from_config(config, trust_remote_code=True).save_pretrained(path)
    (path / "vocab.txt").write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + [f"w{i}" for i in range(95)]))
    (path / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "BertTokenizer"}))
    return path


class Tokens(Dataset):
    def __init__(self, n=64, length=8, vocab=100, seed=0):
        g = torch.Generator().manual_seed(seed)
        self.ids = torch.randint(0, vocab, (n, length), generator=g)

    def __len__(self):
        return len(self.ids)

    def __getitem__(self, i):
        return {"input_ids": self.ids[i]}


def pair(make, ratio=4):
    torch.manual_seed(0)
    teacher = make()
    student = make()
    student.load_state_dict(teacher.state_dict())
    pela.compress(student, LowRankConfig(ratio=ratio, align=1))
    return student, teacher


def stack(examples):
    return {k: torch.stack([e[k] for e in examples]) for k in examples[0]}


def crashing_stack(at_call: int = 6):
    """`stack` that is interrupted at its ``at_call``-th batch, as a crash would: the loader runs one batch ahead,
    so the default dies in step 5, after a step-4 checkpoint."""
    calls = {"n": 0}

    def crashing(examples):
        calls["n"] += 1
        if calls["n"] == at_call:
            raise KeyboardInterrupt
        return stack(examples)

    return crashing


class Labelled(Dataset):
    """Token sequences whose class is decided by the first token: learnable in a few steps."""

    classes = ["a", "b", "c"]

    def __init__(self, n=96, seed=0):
        g = torch.Generator().manual_seed(seed)
        self.y = torch.randint(0, 3, (n,), generator=g)
        self.ids = torch.randint(10, 100, (n, 8), generator=g)
        self.ids[:, 0] = self.y + 1

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        return {"input_ids": self.ids[i], "attention_mask": torch.ones(8, dtype=torch.long), "labels": self.y[i]}


class FourImages(Dataset):
    """16 images of four classes, each one brightness."""

    classes = [str(i) for i in range(4)]

    def __len__(self):
        return 16

    def __getitem__(self, i):
        return {"pixel_values": torch.full((3, 32, 32), float(i % 4)), "labels": torch.tensor(i % 4)}


def run_cli(capsys, *args):
    """``pela ARGS`` run in this process: ``(exit code, stdout, stderr)``."""
    from pela.cli.app import main

    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err
