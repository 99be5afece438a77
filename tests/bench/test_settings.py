"""What every measurement shares: text no longer than the model takes."""

import pytest
import torch
from conftest import hf_bert, timm_vit

from pela import PelaError
from pela.bench import benchmark


def test_text_cut_to_the_models_positions_unless_a_length_is_asked():
    (r,) = benchmark({"bert": hf_bert()}, batch_size=2, iters=1, rounds=1, warmup=1)
    assert r.input_shapes["input_ids"] == [2, 64]  # 128 by default, cut to max_position_embeddings; the table says so
    with pytest.raises(PelaError, match="a sequence length of 1000 tokens is more than bert takes: at most 64 positions"):
        benchmark({"bert": hf_bert()}, batch_size=2, seq_len=1000, iters=1, rounds=1, warmup=1)  # not measured at 64 quietly


def test_a_length_beyond_a_text_models_positions_is_refused_before_anything_runs():
    from pela.bench import check_length

    check_length("bert", hf_bert(), 64, "prompt")
    check_length("vit", timm_vit(), 10_000, "prompt")  # images have no positions to count
    with pytest.raises(PelaError, match="a prompt of 65 tokens is more than bert takes"):
        check_length("bert", hf_bert(), 65, "prompt")


def test_an_int8_model_keeps_the_layout_torchao_gave_it():
    import pela
    from pela.bench.settings import lay_out

    model = pela.quantize_int8(torch.nn.Sequential(torch.nn.Linear(64, 64)))
    assert lay_out(model, 1) == 0  # tune_layout, which refuses an int8 model, is not called
