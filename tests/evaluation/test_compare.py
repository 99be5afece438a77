"""pela.evaluation.compare: how far a student is from its teacher, block by block and at the output."""

import copy

import pytest
import torch
from conftest import Tokens, hf_bert, pair, stack

import pela
from pela import PelaError


def test_a_model_is_at_distance_zero_from_itself():
    teacher = hf_bert()
    result = pela.compare(copy.deepcopy(teacher), teacher, Tokens(), collate_fn=stack, samples=16)
    assert result["samples"] == 16 and len(result["blocks"]) == 2
    assert result["mean_mse"] == 0.0 and result["mean_cosine"] == pytest.approx(1.0)
    assert result["output_agreement"] == pytest.approx(1.0)


def test_a_compressed_student_is_measurably_apart_and_the_sample_is_seeded():
    student, teacher = pair(hf_bert)
    first = pela.compare(student, teacher, Tokens(), collate_fn=stack, samples=24, seed=3)
    assert first["mean_mse"] > 0 and first["mean_cosine"] < 1
    assert all(b["mse"] >= 0 for b in first["blocks"])
    assert pela.compare(student, teacher, Tokens(), collate_fn=stack, samples=24, seed=3) == first  # same sample, same numbers


def test_a_teacher_of_another_architecture_is_refused():
    from transformers import BertConfig, BertModel

    student, teacher = pair(hf_bert)
    deeper = BertModel(BertConfig(**{**teacher.config.to_dict(), "num_hidden_layers": 3})).eval()
    with pytest.raises(PelaError, match="the student has no block 'encoder.layer.2' of the teacher"):
        pela.compare(student, deeper, Tokens(), collate_fn=stack, samples=8)
    with pytest.raises(PelaError, match="found no Transformer blocks in the teacher"):
        pela.compare(student, torch.nn.Sequential(torch.nn.Linear(4, 4)), Tokens(), collate_fn=stack, samples=8)
