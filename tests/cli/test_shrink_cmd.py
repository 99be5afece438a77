"""pela shrink: stages 1 and 2 in one command, with pela's recipe."""

import json

import pytest

import pela
from pela.cli.app import main
from pela.training.shrink import distill_steps


def test_distillation_length_comes_from_the_data_and_the_time_budget():
    assert distill_steps(1000, 32, seconds_per_example=0.01, minutes=None) == 31  # one epoch
    assert distill_steps(1000, 32, seconds_per_example=0.01, minutes=0.1) == 5  # 6 s at 1.12 s a step
    assert distill_steps(1000, 32, seconds_per_example=0.01, minutes=60) == 31  # never past one epoch
    assert distill_steps(10, 32, seconds_per_example=1.0, minutes=0.001) == 1


def test_one_command_compresses_with_pelas_recipe_and_distills(hf_bert_dir, tmp_path, capsys):
    (tmp_path / "t.txt").write_text("".join(f"w{i} w{i % 9} w{(5 * i) % 13}\n" for i in range(48)))
    code = main(["shrink", str(hf_bert_dir), "--data", str(tmp_path / "t.txt"), "--out", str(tmp_path / "s"), "--ratio", "2",
                 "--batch-size", "8", "--config", "calib_samples=24"])
    out, err = capsys.readouterr()
    assert code == 0, err
    meta = json.loads((tmp_path / "s" / "pela.json").read_text())
    assert meta["compression"]["config"]["init"] == "whiten" and meta["compression"]["config"]["param_budget"] <= 0.5
    assert meta["distill"]["trained_steps"] == 48 // 8  # one epoch of the data, shared by the two stages of size
    stages = meta["stages"]
    assert [s["trained_steps"] for s in stages] == [3, 3] and stages[0]["params_after"] >= stages[1]["params_after"]
    assert stages[0]["ratio"] == pytest.approx(2 ** 0.5) and stages[1]["ratio"] == 2
    assert (tmp_path / "s" / "stages" / "1" / "metrics.jsonl").is_file()
    student = pela.load(tmp_path / "s")
    assert any(isinstance(m, pela.LowRankLinear) for m in student.modules()) and "student saved to" in out
    assert main(["shrink", str(hf_bert_dir), "--data", str(tmp_path / "t.txt"), "--out", str(tmp_path / "x"), "--minutes", "0"]) == 2
    assert main(["shrink", str(hf_bert_dir), "--data", str(tmp_path / "t.txt"), "--out", str(tmp_path / "x"), "--config", "stages=0"]) == 2
    assert "error: stages must be at least 1, got 0" in capsys.readouterr().err


def test_a_language_model_is_distilled_packed_with_next_token_kl(tmp_path, capsys):
    from conftest import tiny_llama, word_tokenizer

    from pela.data.inputs import as_dataset
    from pela.data.packing import PackedText

    texts = [" ".join(f"w{(i * 7 + j * 3) % 97}" for j in range(5 + i % 9)) for i in range(30)]
    model, tok = tiny_llama(), word_tokenizer()
    model.save_pretrained(tmp_path / "lm")
    tok.save_pretrained(tmp_path / "lm")
    (tmp_path / "corpus.txt").write_text("\n".join(texts) + "\n")
    code = main(["shrink", str(tmp_path / "lm"), "--data", str(tmp_path / "corpus.txt"), "--out", str(tmp_path / "s"),
                 "--pack", "16", "--batch-size", "2", "--ratio", "1.25"])
    assert code == 0, capsys.readouterr().err
    meta = json.loads((tmp_path / "s" / "pela.json").read_text())["distill"]
    assert meta["beta"] == 1.0 and meta["temperature"] == 1.0
    assert meta["trained_steps"] == len(PackedText(as_dataset(texts), tok, 16)) // 2  # one epoch of packed sequences
    rows = [json.loads(line) for line in (tmp_path / "s" / "metrics.jsonl").read_text().splitlines()]
    assert any(r.get("logit", 0) > 0 for r in rows)
    assert (tmp_path / "s" / "generations.md").read_text().count("**student**") == 3
    capsys.readouterr()
    assert main(["shrink", str(tmp_path / "lm"), "--data", str(tmp_path / "corpus.txt"), "--out", str(tmp_path / "x"), "--pack", "65"]) == 2
    assert "at most 64 positions" in capsys.readouterr().err


def test_pack_is_refused_for_a_model_without_a_next_token_head(hf_bert_dir, tmp_path, capsys):
    (tmp_path / "t.txt").write_text("".join(f"w{i} w{i % 9}\n" for i in range(16)))
    assert main(["shrink", str(hf_bert_dir), "--data", str(tmp_path / "t.txt"), "--out", str(tmp_path / "x"), "--pack", "8"]) == 2
    assert "no next-token head" in capsys.readouterr().err and not (tmp_path / "x").exists()
