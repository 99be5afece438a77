"""Language models in stage 2: packed text, next-token KL to the teacher, and the generations written beside the student."""

import json

import pytest
import torch
from conftest import TEXTS, tiny_llama, word_tokenizer

import pela
from pela import DistillConfig, PelaError
from pela.cli.app import main
from pela.data.collate import Collator
from pela.data.inputs import as_dataset
from pela.data.packing import PackedText


def test_a_tokenizer_without_a_pad_token_pads_with_its_end_of_text_token(tmp_path):
    model, tok = tiny_llama(), word_tokenizer()
    assert tok.pad_token is None  # as many language models' tokenizers
    model.save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    batch = Collator(pela.load(tmp_path))([{"text": "w1 w2 w3"}, {"text": "w4"}])
    assert batch["input_ids"].shape[0] == 2 and batch["attention_mask"].sum(1).tolist()[1] < batch["input_ids"].shape[1]
    assert batch["input_ids"][1, -1] == tok.eos_token_id


def test_a_temperature_needs_logit_distillation():
    with pytest.raises(PelaError, match="give it a weight too"):
        DistillConfig(temperature=2.0)
    with pytest.raises(PelaError, match="temperature must be a finite number > 0"):
        DistillConfig(beta=1.0, temperature=0.0)


def test_distill_a_language_model_packed_with_kl_and_generations(tmp_path, capsys):
    model, tok = tiny_llama(), word_tokenizer()
    model.save_pretrained(tmp_path / "lm")
    tok.save_pretrained(tmp_path / "lm")
    (tmp_path / "corpus.txt").write_text("\n".join(TEXTS) + "\n")
    assert main(["compress", str(tmp_path / "lm"), "--out", str(tmp_path / "small"), "--ratio", "2", "--config", "align=1"]) == 0
    code = main(["distill", "--student", str(tmp_path / "small"), "--teacher", str(tmp_path / "lm"), "--data", str(tmp_path / "corpus.txt"),
                 "--out", str(tmp_path / "d"), "--pack", "16", "--config", "beta=1", "--config", "temperature=2", "--steps", "3", "--batch-size", "4",
                 "--config", "log_every=1"])
    assert code == 0, capsys.readouterr().err
    rows = [json.loads(line) for line in (tmp_path / "d" / "metrics.jsonl").read_text().splitlines()]
    logged = [r for r in rows if "logit" in r]
    assert logged and all(r["logit"] > 0 and r["feature"] >= 0 for r in logged)
    text = (tmp_path / "d" / "generations.md").read_text()
    assert text.count("**teacher**") == 3 and text.count("**student**") == 3 and TEXTS[0].split()[0] in text
    capsys.readouterr()
    assert main(["distill", "--student", str(tmp_path / "small"), "--teacher", str(tmp_path / "lm"), "--data", str(tmp_path / "corpus.txt"),
                 "--out", str(tmp_path / "e"), "--config", "temperature=2"]) == 2
    assert "error: a temperature applies to logit distillation" in capsys.readouterr().err
    assert main(["distill", "--student", str(tmp_path / "small"), "--teacher", str(tmp_path / "lm"), "--data", str(tmp_path / "corpus.txt"),
                 "--out", str(tmp_path / "e"), "--config", "feature_loss=cosine"]) == 2
    assert "error: feature_loss must be one of relative, mse, got 'cosine'" in capsys.readouterr().err


def test_a_language_models_evaluations_report_its_perplexity_and_keep_best_can_pick_by_it(tmp_path):
    from pela.evaluation.compare import eval_subset
    from pela.evaluation.perplexity import perplexity

    teacher, tok = tiny_llama(), word_tokenizer()
    student = tiny_llama()
    pela.compress(student, pela.LowRankConfig(ratio=2, align=1))
    collate = Collator(student, tokenizer=tok)
    train = PackedText(as_dataset(TEXTS), tok, 16)
    held_out = as_dataset(TEXTS[::-1])
    config = DistillConfig(steps=4, batch_size=2, lr=1e-3, eval_every=2, keep_best="perplexity", log_every=1)
    result = pela.distill(student, teacher, train, config, collate_fn=collate, eval_data=held_out, eval_samples=3)
    assert [e["step"] for e in result.evals] == [2, 4] and all(e["perplexity"] > 1 for e in result.evals)
    best = min(e["perplexity"] for e in result.evals)
    assert result.best["perplexity"] == best
    # the student ends as the best evaluation's, measured on those 3 held-out texts, in windows of the packed length
    again = perplexity(student, eval_subset(held_out, 3), context=16, tokenizer=tok)["perplexity"]
    assert again == pytest.approx(best, rel=1e-5)
    with pytest.raises(PelaError, match="needs a language model"):
        from conftest import hf_bert
        encoder = hf_bert()
        pela.compress(encoder, pela.LowRankConfig(ratio=2, align=1))
        pela.distill(encoder, hf_bert(), ["a b"], DistillConfig(steps=1, keep_best="perplexity"), eval_data=["a b"])


@pytest.mark.slow
def test_a_language_model_distilled_on_two_processes_ddp_and_fsdp_scores_as_on_one(tmp_path):
    """2 CPU processes, plain (DDP) and under FSDP2 with activation checkpointing (student and teacher sharded): the held-out perplexity
    (its windows split over the processes, or all on each when sharded), the student and its generations
    match 1 process's."""
    import os
    import subprocess
    import sys

    from transformers import LlamaForCausalLM

    torch.manual_seed(0)
    config = tiny_llama().config
    config.tie_word_embeddings = True  # as small language models do: FSDP must save the shared weight once, as pela does
    model, tok = LlamaForCausalLM(config), word_tokenizer()
    assert model.lm_head.weight is model.model.embed_tokens.weight
    model.save_pretrained(tmp_path / "lm")
    tok.save_pretrained(tmp_path / "lm")
    (tmp_path / "corpus.txt").write_text("\n".join(TEXTS) + "\n")
    assert main(["compress", str(tmp_path / "lm"), "--out", str(tmp_path / "small"), "--ratio", "2", "--config", "align=1"]) == 0
    cmd = ["-m", "pela", "distill", "--student", str(tmp_path / "small"), "--teacher", str(tmp_path / "lm"), "--data",
           str(tmp_path / "corpus.txt"), "--eval-data", str(tmp_path / "corpus.txt"), "--pack", "16", "--config", "beta=1",
           "--config", "temperature=2", "--steps", "4", "--batch-size", "4", "--config", "eval_every=2"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    launch = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29523"]
    fsdp = {**env, "ACCELERATE_USE_FSDP": "true", "FSDP_VERSION": "2", "FSDP_AUTO_WRAP_POLICY": "TRANSFORMER_BASED_WRAP",
            "FSDP_ACTIVATION_CHECKPOINTING": "true"}
    # the one-process run (one thread) beside the two-process ones, which leave a core idle while they communicate;
    # its messages in a file, which unlike a pipe never fills while nothing reads it
    with (tmp_path / "one.log").open("w") as log:
        single = subprocess.Popen([sys.executable, *cmd, "--out", str(tmp_path / "one")], stdout=subprocess.DEVNULL,
                                  stderr=log, env=env)
    for name, e in (("ddp", env), ("fsdp", fsdp)):
        done = subprocess.run([*launch, *cmd, "--out", str(tmp_path / name)], capture_output=True, text=True, env=e, timeout=600)
        assert done.returncode == 0, done.stderr[-3000:]
    assert single.wait(timeout=600) == 0, (tmp_path / "one.log").read_text()[-3000:]
    runs = ("one", "ddp", "fsdp")
    meta = {name: json.loads((tmp_path / name / "pela.json").read_text())["distill"] for name in runs}
    assert meta["fsdp"]["sharded"] == {"student": True, "teacher": True} and "sharded" not in meta["ddp"]
    assert meta["ddp"]["processes"] == 2 and meta["ddp"]["rank_checksums"][0] == meta["ddp"]["rank_checksums"][1]
    ppl = {name: [e["perplexity"] for e in m["evals"]] for name, m in meta.items()}
    assert len(ppl["one"]) == 2 and ppl["one"][0] > 1
    one = pela.load(tmp_path / "one")
    for name in ("ddp", "fsdp"):
        assert ppl[name] == pytest.approx(ppl["one"], rel=1e-4)
        other = pela.load(tmp_path / name)
        assert other.lm_head.weight is other.model.embed_tokens.weight
        assert max(float((a - b).abs().max()) for a, b in zip(one.state_dict().values(), other.state_dict().values())) < 1e-5
        assert (tmp_path / name / "generations.md").read_text().count("**student**") == 3
