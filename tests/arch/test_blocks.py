"""pela.arch.blocks: the Transformer blocks feature distillation matches."""

import re

import pytest
from conftest import ARCHITECTURES

import pela
from pela import LowRankConfig, PelaError
from pela.arch.blocks import find_blocks


@pytest.mark.parametrize("name, expected", [
    ("timm_vit", ["blocks.0", "blocks.1"]),
    ("timm_swin", ["layers.0.blocks.0", "layers.1.blocks.0"]),
    ("hf_bert", ["encoder.layer.0", "encoder.layer.1"]),
    ("hf_vit", ["vit.layers.0", "vit.layers.1"]),
    ("hf_clip", ["text_model.encoder.layers.0", "text_model.encoder.layers.1", "vision_model.encoder.layers.0", "vision_model.encoder.layers.1"]),
])
def test_find_blocks(name, expected):
    model = ARCHITECTURES[name]()
    assert find_blocks(model) == expected
    pela.compress(model, LowRankConfig(align=1))
    assert find_blocks(model) == expected  # the student has the same blocks
    assert find_blocks(model, "^" + re.escape(expected[-1]) + "$") == [expected[-1]]  # a user regex overrides
    with pytest.raises(PelaError, match="matches no module"):
        find_blocks(model, "nothing_here")
