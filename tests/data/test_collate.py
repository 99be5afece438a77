"""The collator: batches shaped for the model, cut to its limit, cheap to send to workers."""


import numpy as np
import torch
from conftest import hf_vit, timm_vit
from PIL import Image

from pela.data.collate import Collator
from pela.metadata import info


def test_hf_image_processor(tmp_path):
    from transformers import ViTImageProcessor

    model = hf_vit()
    ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(tmp_path)
    info(model).files = str(tmp_path)
    batch = Collator(model)([{"image": Image.new("RGB", (64, 48))}])
    assert batch["pixel_values"].shape == (1, 3, 32, 32)


def test_text_is_truncated_to_the_models_limit(hf_bert_dir):
    import pela

    model = pela.load(str(hf_bert_dir))
    batch = Collator(model, max_length=16)([{"text": " ".join(["w1"] * 500)}, {"text": "w2"}])
    assert batch["input_ids"].shape == (2, 16)


def test_collator_pickles_small_for_spawned_loader_workers(hf_bert_dir):
    """Workers started by spawn/forkserver get the collator pickled: it must not drag the model along."""
    import pickle

    import pela

    model = pela.load(str(hf_bert_dir))
    collate = Collator(model, max_length=16)
    examples = [{"text": "w1 w2 w3"}, {"text": "w4"}]
    expected = collate(examples)  # the tokenizer is loaded now, and pickled with the collator
    blob = pickle.dumps(collate)
    assert len(blob) < sum(p.numel() * p.element_size() for p in model.parameters()) / 4
    again = pickle.loads(blob)(examples)
    assert all(torch.equal(expected[k], again[k]) for k in expected)
    vit = Collator(timm_vit())
    image = Image.new("RGB", (40, 30), "blue")
    assert torch.equal(pickle.loads(pickle.dumps(vit))([{"image": image}])["pixel_values"], vit([{"image": image}])["pixel_values"])


def test_timm_preprocessing_follows_the_size_the_model_was_built_for():
    """A model at its pretrained size keeps its pretrained evaluation transform (crop_pct included); one
    built with img_size=... gets images of that size, wherever its patch embedding is (or if it has none)."""
    import timm

    import pela
    from pela.data.collate import _timm_data_config

    pretrained_size = timm.create_model("vit_tiny_patch16_224", depth=1)
    cfg = _timm_data_config(pretrained_size)
    assert cfg["input_size"] == (3, 224, 224) and cfg["crop_pct"] == pretrained_size.pretrained_cfg["crop_pct"] < 1
    assert _timm_data_config(timm_vit())["input_size"] == (3, 32, 32)
    mixer = timm.create_model("mixer_s16_224", img_size=32, num_classes=3)  # patch embedding called stem
    assert _timm_data_config(mixer)["input_size"] == (3, 32, 32)
    hiera = pela.load("timm:hiera_tiny_224", random_init=True, img_size=64, embed_dim=16, num_heads=1, stages=(1, 1, 1, 1))
    image = Image.fromarray(np.zeros((80, 90, 3), dtype=np.uint8))
    x = Collator(hiera)([{"image": image}])["pixel_values"]  # no img_size anywhere in it: the one recorded at load
    assert x.shape == (1, 3, 64, 64) and hiera(x).shape[0] == 1
