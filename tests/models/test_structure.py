"""A model's factorized structure: recorded by name and rank, rebuilt on a fresh model, or refused."""

import pytest
import torch
from conftest import hf_bert

import pela
from pela.errors import PelaError
from pela.layers.lowrank import LowRankLinear
from pela.models.structure import apply_structure, factorized_layers


def test_the_structure_of_a_student_rebuilds_on_a_fresh_model():
    torch.manual_seed(0)
    student = hf_bert()
    pela.compress(student, pela.LowRankConfig(ratio=2, align=1))
    layers = factorized_layers(student)
    assert layers and all({"rank", "in_features", "out_features", "bias"} <= set(s) for s in layers.values())
    fresh = hf_bert()
    apply_structure(fresh, layers)
    assert factorized_layers(fresh) == layers
    fresh.load_state_dict(student.state_dict())  # the same parameters, name for name
    x = torch.randint(0, 100, (2, 7))
    assert torch.equal(fresh.eval()(x).last_hidden_state, student.eval()(x).last_hidden_state)
    assert all(isinstance(dict(fresh.named_modules())[n], LowRankLinear) for n in layers)


def test_a_structure_that_does_not_fit_is_refused():
    spec = {"rank": 2, "in_features": 32, "out_features": 32, "bias": True}
    with pytest.raises(PelaError, match="does not have as a linear layer"):
        apply_structure(hf_bert(), {"encoder.no_such_layer": spec})
    name = "encoder.layer.0.intermediate.dense"  # 32 -> 64
    with pytest.raises(PelaError, match="is 32->64 here but 32->32"):
        apply_structure(hf_bert(), {name: spec})
