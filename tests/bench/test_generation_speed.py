"""Prefill and decode speed of language models, eager and compiled with a static cache."""

import re

import pytest
import torch
from conftest import hf_bert

import pela


@pytest.mark.slow
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
    assert main(["compress", str(tmp_path / "lm"), "--out", str(tmp_path / "small"), "--ratio", "2", "--config", "align=1"]) == 0
    capsys.readouterr()
    assert main(["bench", str(tmp_path / "small"), "--vs", str(tmp_path / "lm"), "--generate", "--seq-len", "8", "--config", "new_tokens=3",
                 "--config", "rounds=1", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert len(report["results"]) == 2 and report["ratios"]["decode_tokens_per_s"] > 0
    # beside PyTorch, each model's step graph in ONNX Runtime, float32 and int8, with a ratio per runtime
    assert main(["bench", str(tmp_path / "small"), "--vs", str(tmp_path / "lm"), "--generate", "--seq-len", "8", "--config", "new_tokens=3",
                 "--config", "rounds=1", "--onnx"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    for runtime in ("pytorch", "onnxruntime", "onnxruntime int8"):
        assert re.search(rf"small / .*lm \({runtime}\): prefill \d+\.\d\d×, decode \d+\.\d\d×", out), (runtime, out)
    with pytest.raises(pela.PelaError, match="CPU in float32"):
        generation_benchmark({"lm": model}, prompt_tokens=8, new_tokens=2, dtype="bfloat16", onnx=True)


@pytest.mark.slow  # torch.compile of a language model: about half a minute
def test_compiled_generation_decodes_with_a_static_cache_and_the_same_tokens():
    import copy

    from conftest import tiny_llama

    from pela.bench.generation_speed import GreedySteps, _prefill_and_decode, generation_benchmark

    model = tiny_llama()
    prompt = torch.randint(0, 100, (2, 8))
    tokens = {}
    for compile in (False, True):
        steps = GreedySteps(copy.deepcopy(model), compile, None, 8 + 5)
        seen = []
        original = steps.decode
        steps.decode = lambda token: seen.append(token) or original(token)
        for _ in range(2):  # twice: the static cache is emptied between prompts
            seen.clear()
            _prefill_and_decode(steps, prompt, 5, torch.device("cpu"))
        tokens[compile] = torch.cat(seen, 1)
    assert torch.equal(tokens[False], tokens[True])
    # the shapes above: the benchmark reuses what was compiled for them
    (r,) = generation_benchmark({"lm": model}, prompt_tokens=8, new_tokens=5, batch_size=2,
                                rounds=1, compile=True)
    assert r.compiled and r.decode_tokens_per_s > 0 and r.column_weights is not None
