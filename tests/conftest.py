"""Tiny random-init models of every architecture family pela promises to handle (all offline)."""

from __future__ import annotations

import os

import pytest
import torch
from torch import nn

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
torch.set_num_threads(min(2, torch.get_num_threads()))

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


ARCHITECTURES = {"timm_vit": timm_vit, "timm_swin": timm_swin, "hf_bert": hf_bert, "hf_vit": hf_vit,
                 "hf_clip": hf_clip, "hf_gpt2": hf_gpt2, "hf_t5": hf_t5}


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
