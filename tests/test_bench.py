import pytest
import torch
from conftest import ARCHITECTURES, hf_bert, timm_vit

import pela
from pela import LowRankConfig, PelaError
from pela.arch.inputs import example_inputs
from pela.bench import benchmark, eager_peak_bytes


def test_side_by_side():
    dense, small = timm_vit(), timm_vit()
    pela.compress(small, LowRankConfig(align=1))
    results = benchmark({"dense": dense, "small": small}, batch_size=2, iters=1, rounds=2, warmup=1)
    assert [r.name for r in results] == ["dense", "small"]
    assert all(r.items_per_s > 0 for r in results)
    assert results[1].params < results[0].params
    assert results[1].peak_memory_bytes < results[0].peak_memory_bytes  # measured on a CPU too
    for r in results:  # at least the weights and the batch of 2 images
        assert r.peak_memory_bytes > 4 * (r.params + 2 * 3 * 32 * 32)
    for r in results:  # every round is kept, and the figure is their median
        assert len(r.round_ms) == 2 and r.ms_per_batch == pytest.approx(sum(r.round_ms) / 2)


def test_cpu_peak_memory_counts_weights_inputs_and_activations():
    model = torch.nn.Sequential(torch.nn.Linear(64, 128), torch.nn.ReLU(), torch.nn.Linear(128, 2))
    x = torch.randn(16, 64)
    weights = 4 * sum(p.numel() for p in model.parameters())
    # the peak is while ReLU runs: the input, the first layer's output and ReLU's output are all alive
    assert eager_peak_bytes(model, (x,), {}) == weights + x.nbytes + 2 * 16 * 128 * 4
    model[1].inplace = True  # ReLU writes over its input: now the peak is in the last layer, its output alive too
    assert eager_peak_bytes(model, (x,), {}) == weights + x.nbytes + 16 * 128 * 4 + 16 * 2 * 4


def test_cpu_peak_memory_of_a_model_that_hands_a_parameter_to_a_module():
    """CaiT's class token, a sinusoidal position table: a parameter given to a submodule as it is.
    PyTorch's MemTracker fails on these (it hooks every input that requires grad)."""

    class Prefixed(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.token, self.mix = torch.nn.Parameter(torch.zeros(1, 8)), torch.nn.Linear(8, 8)

        def forward(self, x):
            return torch.cat([self.mix(self.token), self.mix(x)])

    model, x = Prefixed(), torch.randn(3, 8)
    weights = 4 * sum(p.numel() for p in model.parameters())
    # at the end: the token's row and the input's three rows out of the layer, and the four rows joined
    assert eager_peak_bytes(model, (x,), {}) == weights + x.nbytes + (1 + 3 + 4) * 8 * 4
    assert all(p.requires_grad for p in model.parameters())


@pytest.mark.slow
def test_compile_mode_implies_compile():
    (r,) = benchmark({"vit": timm_vit()}, batch_size=2, compile_mode="reduce-overhead", iters=1, rounds=1, warmup=1)
    assert r.compiled and r.compile_mode == "reduce-overhead" and r.items_per_s > 0


def test_bfloat16_text_model():
    model = hf_bert()
    (r,) = benchmark({"bert": model}, batch_size=2, dtype="bfloat16", seq_len=8, iters=1, rounds=1, warmup=1)
    assert r.dtype == "bfloat16" and r.items_per_s > 0
    assert r.input_shapes["input_ids"] == [2, 8]
    # cast outside inference mode: the caller can still train the model afterwards
    assert not any(p.is_inference() for p in model.parameters())


def test_progress_bar_on_stderr(capsys):
    benchmark({"bert": hf_bert()}, batch_size=2, seq_len=8, iters=2, rounds=2, warmup=1, progress=True)
    out, err = capsys.readouterr()
    assert out == "" and "benchmarking" in err and "6/6" in err  # 1 warm-up + 1 counting memory + 2 rounds × 2 passes


def test_text_cut_to_the_models_positions_unless_a_length_is_asked():
    (r,) = benchmark({"bert": hf_bert()}, batch_size=2, iters=1, rounds=1, warmup=1)
    assert r.input_shapes["input_ids"] == [2, 64]  # 128 by default, cut to max_position_embeddings; the table says so
    with pytest.raises(PelaError, match="a sequence length of 1000 tokens is more than bert takes: at most 64 positions"):
        benchmark({"bert": hf_bert()}, batch_size=2, seq_len=1000, iters=1, rounds=1, warmup=1)  # not measured at 64 quietly


@pytest.mark.parametrize("kwargs, fragment", [
    (dict(batch_size=0), "batch size"),
    (dict(dtype="float8"), "dtype must be"),
    (dict(device="tpu"), "unknown device 'tpu'"),
    (dict(compile_mode="fastest"), "compile mode must be"),
    (dict(seq_len=0), "seq_len must be >= 1"),
    (dict(rounds=0), "rounds and seq_len must be >= 1"),
])
def test_bad_arguments(kwargs, fragment):
    with pytest.raises(PelaError, match=fragment):
        benchmark({"m": hf_bert()}, **kwargs)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU message")
def test_cuda_missing_is_clear():
    with pytest.raises(PelaError, match="no CUDA GPU"):
        benchmark({"m": hf_bert()}, device="cuda")


def test_example_inputs_follow_the_model():
    (x,) = example_inputs(timm_vit(), 3)
    assert x.shape == (3, 3, 32, 32)
    import timm

    mixer = timm.create_model("mixer_s16_224", img_size=32, num_classes=3)  # its patch embedding is called stem
    (x,) = example_inputs(mixer, 1)
    assert x.shape == (1, 3, 32, 32) and mixer(x).shape == (1, 3)
    from transformers import XLNetConfig, XLNetModel

    from pela.arch.properties import max_positions

    xlnet = XLNetModel(XLNetConfig(vocab_size=100, d_model=32, n_layer=1, n_head=2, d_inner=64))  # its limit reads -1: none
    assert example_inputs(xlnet, 2, seq_len=12)["input_ids"].shape == (2, 12) and max_positions(xlnet) is None
    clip = example_inputs(ARCHITECTURES["hf_clip"](), 2, seq_len=100)
    assert clip["input_ids"].shape == (2, 32) and clip["pixel_values"].shape == (2, 3, 32, 32)
    with pytest.raises(PelaError, match="cannot tell what inputs"):
        example_inputs(torch.nn.Linear(2, 2), 1)


def test_example_inputs_of_fine_tuned_classifiers():
    """A model with a head pela added (`pela finetune`) takes its backbone's inputs; one that classifies
    with a tower of CLIP takes that tower's alone."""
    from pela.arch.classifier import SequenceClassifier

    text = SequenceClassifier(hf_bert(), 32, 3)
    assert set(example_inputs(text, 2, seq_len=8)) == {"input_ids", "attention_mask"}
    images = SequenceClassifier(ARCHITECTURES["hf_clip"](), 32, 3, tower="vision_model")
    assert set(example_inputs(images, 2)) == {"pixel_values"}
    results = benchmark({"text": text, "images": images}, batch_size=2, seq_len=8, iters=1, rounds=1, warmup=1)
    assert all(r.items_per_s > 0 for r in results)


def test_generation_speed_of_a_language_model_and_its_student(tmp_path, capsys):
    import copy
    import json

    from conftest import tiny_llama, word_tokenizer

    from pela.bench import generation_benchmark
    from pela.cli.app import main

    model = tiny_llama()
    student = copy.deepcopy(model)
    pela.compress(student, pela.LowRankConfig(ratio=2, align=1))
    results = generation_benchmark({"student": student, "teacher": model}, prompt_tokens=16, new_tokens=4, rounds=2)
    assert [r.name for r in results] == ["student", "teacher"] and results[0].params < results[1].params
    assert all(r.prefill_tokens_per_s > 0 and r.decode_tokens_per_s > 0 and r.decode_ms_per_token > 0 for r in results)
    with pytest.raises(pela.PelaError, match="needs a causal language model"):
        generation_benchmark({"bert": hf_bert()})
    model.save_pretrained(tmp_path / "lm")
    word_tokenizer().save_pretrained(tmp_path / "lm")
    assert main(["compress", str(tmp_path / "lm"), "--out", str(tmp_path / "small"), "--ratio", "2", "--align", "1"]) == 0
    capsys.readouterr()
    assert main(["bench", str(tmp_path / "small"), "--vs", str(tmp_path / "lm"), "--generate", "--seq-len", "8", "--new-tokens", "3",
                 "--rounds", "1", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert len(report["results"]) == 2 and report["ratios"]["decode_tokens_per_s"] > 0


def test_every_model_is_laid_out_for_the_device_before_it_is_timed(monkeypatch, tmp_path):
    from pela.deploy import memory_layout

    monkeypatch.setenv("PELA_CACHE", str(tmp_path))

    monkeypatch.setattr(memory_layout, "_measure", lambda weights, rows: (2.0, 1.0))  # columns win
    dense = timm_vit()
    (r,) = benchmark({"dense": dense}, batch_size=2, iters=1, rounds=1, warmup=1)
    linears = {id(m.weight) for m in dense.modules() if isinstance(m, torch.nn.Linear)}
    assert r.column_weights == len(linears) > 0
    (r,) = benchmark({"dense": timm_vit()}, batch_size=2, iters=1, rounds=1, warmup=1, tune=False)
    assert r.column_weights is None


@pytest.mark.slow  # torch.compile of a language model: about half a minute
def test_compiled_generation_decodes_with_a_static_cache_and_the_same_tokens():
    import copy

    from conftest import tiny_llama

    from pela.bench import _prefill_and_decode, _Steps, generation_benchmark

    model = tiny_llama()
    prompt = torch.randint(0, 100, (2, 8))
    tokens = {}
    for compile in (False, True):
        steps = _Steps(copy.deepcopy(model), compile, None, 8 + 5)
        seen = []
        original = steps.decode
        steps.decode = lambda token, past: seen.append(token) or original(token, past)
        for _ in range(2):  # twice: the static cache is emptied between prompts
            seen.clear()
            _prefill_and_decode(steps, prompt, 5, torch.device("cpu"))
        tokens[compile] = torch.cat(seen, 1)
    assert torch.equal(tokens[False], tokens[True])
    (r,) = generation_benchmark({"lm": model}, prompt_tokens=8, new_tokens=3, rounds=1,
                                compile_mode="default")
    assert r.compiled and r.decode_tokens_per_s > 0 and r.column_weights is not None
