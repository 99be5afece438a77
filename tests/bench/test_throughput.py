"""Throughput side by side: PyTorch (laid out for the device) and ONNX Runtime."""

import pytest
import torch
from conftest import ARCHITECTURES, hf_bert, timm_vit

import pela
from pela import LowRankConfig, PelaError
from pela.arch.inputs import example_inputs
from pela.bench import benchmark


@pytest.mark.slow
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


@pytest.mark.slow
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


def test_every_model_is_laid_out_for_the_device_before_it_is_timed(monkeypatch, tmp_path):
    from pela.layers import storage_order

    monkeypatch.setenv("PELA_CACHE", str(tmp_path))

    monkeypatch.setattr(storage_order, "product_ms", lambda *a, **k: (2.0, 1.0))  # columns win
    dense = timm_vit()
    (r,) = benchmark({"dense": dense}, batch_size=2, iters=1, rounds=1, warmup=1)
    linears = {id(m.weight) for m in dense.modules() if isinstance(m, torch.nn.Linear)}
    assert r.column_weights == len(linears) > 0
    (r,) = benchmark({"dense": timm_vit()}, batch_size=2, iters=1, rounds=1, warmup=1, tune=False)
    assert r.column_weights is None


@pytest.mark.slow  # two ONNX exports a model and their sessions
def test_onnx_runtime_is_timed_beside_pytorch_on_the_same_batch():
    student = hf_bert()
    pela.compress(student, LowRankConfig(ratio=2, align=1))
    results = benchmark({"student": student, "original": hf_bert()}, batch_size=2, seq_len=8,
                        iters=1, rounds=2, warmup=1, onnx=True)
    assert [(r.name, r.runtime) for r in results] == [
        (name, runtime) for name in ("student", "original")
        for runtime in ("pytorch", "onnxruntime", "onnxruntime int8")]
    assert all(r.items_per_s > 0 and len(r.round_ms) == 2 and r.file_bytes > 0 for r in results)
    by = {(r.name, r.runtime): r for r in results}
    assert by["student", "onnxruntime int8"].file_bytes < by["student", "onnxruntime"].file_bytes
    assert by["student", "onnxruntime"].file_bytes < by["original", "onnxruntime"].file_bytes
    # a fresh process's resident growth: at least the graph's weights, which it loads
    assert all(by[name, "onnxruntime"].peak_memory_bytes >= by[name, "onnxruntime"].file_bytes
               for name in ("student", "original"))
    assert by["student", "pytorch"].input_shapes == by["student", "onnxruntime"].input_shapes
    from pela.cli.bench_cmd import _ratios

    ratios = _ratios(results)  # what pela bench --onnx prints, per runtime
    assert set(ratios) == {"pytorch", "onnxruntime", "onnxruntime int8"}
    assert ratios["onnxruntime"]["weights"] < 1 and ratios["onnxruntime"]["memory"] > 0
    with pytest.raises(PelaError, match="ONNX Runtime is measured on the CPU in float32"):
        benchmark({"m": hf_bert()}, dtype="bfloat16", onnx=True)


def test_int8_in_pytorch_is_timed_beside_the_float_model_with_its_smaller_weights():
    student = hf_bert()
    pela.compress(student, pela.LowRankConfig(ratio=2, align=1))
    results = benchmark({"s": student}, batch_size=2, seq_len=8, iters=1, rounds=1, int8=True)
    assert [r.runtime for r in results] == ["pytorch", "pytorch int8"]
    fp32, int8 = results
    assert int8.params == fp32.params and int8.file_bytes < 0.5 * fp32.file_bytes
    assert int8.items_per_s > 0 and int8.peak_memory_bytes > 0
