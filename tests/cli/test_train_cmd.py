"""`pela distill` and `pela compare` end to end, including a 2-process Accelerate run on CPU (gloo)."""

import json
import os
import re
import shutil
import subprocess
import sys

import pytest
import torch
from conftest import run_cli

import pela
from pela.cli.app import main

pytestmark = pytest.mark.slow  # whole commands on real (tiny) models

WORDS = [f"w{i}" for i in range(95)]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    from transformers import BertConfig, BertModel

    root = tmp_path_factory.mktemp("distill")
    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                     max_position_embeddings=64, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    BertModel(cfg).save_pretrained(root / "teacher")
    (root / "teacher" / "vocab.txt").write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + WORDS))
    g = torch.Generator().manual_seed(0)
    lines = [" ".join(WORDS[int(i)] for i in torch.randint(0, 95, (6,), generator=g)) for _ in range(64)]  # equal lengths
    (root / "text.txt").write_text("\n".join(lines) + "\n")
    assert main(["compress", str(root / "teacher"), "--out", str(root / "student"), "--ratio", "4", "--config", "align=1"]) == 0
    return root




def test_distill_and_compare(setup, tmp_path, capsys):
    code, out, _ = run_cli(capsys, "compare", setup / "student", setup / "teacher", "--data", setup / "text.txt", "--json")
    before = json.loads(out)["mean_mse"]
    code, out, err = run_cli(capsys, "distill", "--student", setup / "student", "--teacher", setup / "teacher", "--data", setup / "text.txt",
                         "--out", tmp_path / "o", "--steps", 30, "--batch-size", 16, "--lr", 3e-4, "--config", "log_every=5")
    assert code == 0, err
    rows = [json.loads(line) for line in (tmp_path / "o" / "metrics.jsonl").read_text().splitlines()]
    assert rows[-1]["step"] == 30 and "feature" in rows[-1]
    meta = json.loads((tmp_path / "o" / "pela.json").read_text())
    assert meta["distill"]["steps"] == 30 and not (tmp_path / "o" / "checkpoints").exists()
    code, out, _ = run_cli(capsys, "compare", tmp_path / "o", setup / "teacher", "--data", setup / "text.txt", "--json")
    after = json.loads(out)
    assert after["mean_mse"] < 0.5 * before
    assert len(after["blocks"]) == 2 and {"mse", "cosine"} <= set(after["blocks"][0])
    code, out, err = run_cli(capsys, "compare", tmp_path / "o", setup / "teacher", "--data", setup / "text.txt", "--config", "batch_size=16")
    assert code == 0 and "comparing" in err and "feature MSE" in out  # the table, after a bar on stderr


def test_distill_scores_held_out_data(setup, tmp_path, capsys):
    lines = (setup / "text.txt").read_text().splitlines()
    (tmp_path / "train.txt").write_text("\n".join(lines[:48]) + "\n")
    (tmp_path / "heldout.txt").write_text("\n".join(lines[48:]) + "\n")
    code, out, err = run_cli(capsys, "distill", "--student", setup / "student", "--teacher", setup / "teacher", "--data", tmp_path / "train.txt",
                         "--eval-data", tmp_path / "heldout.txt", "--config", "eval_every=4", "--keep-best", "mean_cosine",
                         "--out", tmp_path / "o", "--steps", 12, "--batch-size", 8, "--lr", 1e-3)
    assert code == 0, err
    meta = json.loads((tmp_path / "o" / "pela.json").read_text())["distill"]
    assert [e["step"] for e in meta["evals"]] == [4, 8, 12]
    cosines = [e["mean_cosine"] for e in meta["evals"]]
    assert meta["best"] == {"step": meta["evals"][cosines.index(max(cosines))]["step"], "mean_cosine": max(cosines)}
    assert f"held-out mean_cosine {max(cosines):.4g}" in " ".join(out.split()), out
    code, out, err = run_cli(capsys, "compare", tmp_path / "o", setup / "teacher", "--data", tmp_path / "heldout.txt", "--json")
    assert code == 0 and json.loads(out)["mean_cosine"] == pytest.approx(max(cosines), rel=1e-5), err
    logged = [json.loads(line) for line in (tmp_path / "o" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in logged if "eval_mean_mse" in r] == [4, 8, 12]


@pytest.mark.parametrize("args, fragment", [
    (["--steps", "0"], "steps must be an integer >= 1"),
    (["--batch-size", "0"], "batch_size must be"),
    (["--lr", "nan"], "lr must be"),
    (["--config", "alpha=0", "--config", "task_weight=0"], "nothing to train"),
    (["--config", "max_length=0"], "max_length must be >= 1"),
    (["--config", "workers=-1"], "workers must be an integer >= 0"),
    (["--resume"], "no checkpoint to resume from"),
    (["--config", "save_dtype=int8"], "weights can be saved in float32, bfloat16, float16"),
    (["--keep-best", "mean_mse"], "--keep-best needs --eval-data"),
    (["--config", "eval_every=5"], "eval_every needs --eval-data"),
    (["--eval-data", "EVAL", "--keep-best", "accuracy"], "keep_best must be one of mean_mse, mean_cosine, output_agreement"),
    (["--eval-data", "EVAL", "--config", "eval_samples=0"], "eval_samples must be >= 1"),
])
def test_distill_user_errors(setup, tmp_path, capsys, args, fragment):
    args = [setup / "text.txt" if a == "EVAL" else a for a in args]
    code, _, err = run_cli(capsys, "distill", "--student", setup / "student", "--teacher", setup / "teacher", "--data", setup / "text.txt",
                       "--out", tmp_path / "o", *args)
    assert code == 2 and err.startswith("error: ") and err.count("\n") == 1 and fragment in err, err
    assert not (tmp_path / "o").exists()


def test_distill_input_errors(setup, tmp_path, capsys):
    (tmp_path / "empty.txt").write_text("")
    cases = [
        (["--student", setup / "teacher", "--teacher", setup / "teacher", "--data", setup / "text.txt"], "is not a directory written by pela"),
        (["--student", setup / "student", "--teacher", setup / "teacher", "--data", tmp_path / "empty.txt"], "is empty"),
        (["--student", setup / "student", "--teacher", setup / "teacher", "--data", tmp_path / "missing.txt"], "does not exist"),
        (["--student", setup / "student", "--teacher", setup / "student", "--data", setup / "text.txt"], "teacher is itself compressed"),
    ]
    for args, fragment in cases:
        code, _, err = run_cli(capsys, "distill", *args, "--out", tmp_path / "o", "--steps", 1, "--batch-size", 8)
        assert code == 2 and fragment in err and err.count("\n") == 1, (args, err)
        shutil.rmtree(tmp_path / "o", ignore_errors=True)


def test_half_precision_student_trains_in_float32(setup, tmp_path, capsys):
    """A student compressed with --save-dtype bfloat16 (half the file) distills in float32, and the
    distilled student is written in the dtype asked for."""
    code, out, err = run_cli(capsys, "compress", setup / "teacher", "--out", tmp_path / "s16", "--ratio", 4, "--config", "align=1", "--config", "save_dtype=bfloat16")
    assert code == 0 and "MB in bfloat16)" in " ".join(out.split()), err  # rich wraps long lines
    assert "note:" not in err  # the float32 teacher's size is kept as it is
    size = lambda d: (d / "model.safetensors").stat().st_size  # noqa: E731
    assert 0.45 < size(tmp_path / "s16") / size(setup / "student") < 0.6  # the header and integer buffers stay
    assert {p.dtype for p in pela.load(tmp_path / "s16").parameters()} == {torch.bfloat16}
    common = ["distill", "--student", tmp_path / "s16", "--teacher", setup / "teacher", "--data", setup / "text.txt",
              "--steps", 3, "--batch-size", 8, "--lr", 1e-3]
    code, _, err = run_cli(capsys, *common, "--out", tmp_path / "d32")
    assert code == 0 and "note: the weights came in bfloat16 and were saved in float32" in " ".join(err.split()), err
    assert {p.dtype for p in pela.load(tmp_path / "d32").parameters()} == {torch.float32}  # trained in float32
    code, out, err = run_cli(capsys, *common, "--out", tmp_path / "d16", "--config", "save_dtype=float16")
    assert code == 0 and "MB in float16)" in " ".join(out.split()) and "note:" not in err, err
    d32, d16 = pela.load(tmp_path / "d32"), pela.load(tmp_path / "d16")
    assert all(torch.equal(a.half(), b) for a, b in zip(d32.state_dict().values(), d16.state_dict().values()) if a.is_floating_point())


def test_loader_workers_give_the_same_student(setup, tmp_path, capsys):
    """Batches prepared by 2 DataLoader worker processes train exactly the student that in-process batches do."""
    common = ["distill", "--student", setup / "student", "--teacher", setup / "teacher", "--data", setup / "text.txt",
              "--steps", 6, "--batch-size", 8, "--lr", 1e-3]
    for workers in (0, 2):
        code, _, err = run_cli(capsys, *common, "--out", tmp_path / f"w{workers}", "--config", f"workers={workers}")
        assert code == 0, err
    a, b, start = pela.load(tmp_path / "w0"), pela.load(tmp_path / "w2"), pela.load(setup / "student")
    assert any(not torch.equal(x, y) for x, y in zip(a.state_dict().values(), start.state_dict().values()))
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


def _max_gap(a, b) -> float:
    return max(float((x - y).abs().max()) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


# what `accelerate launch --use_fsdp --fsdp_version 2 --fsdp_transformer_layer_cls_to_wrap BertLayer` sets for each process
FSDP_ENV = {"ACCELERATE_USE_FSDP": "true", "FSDP_VERSION": "2", "FSDP_AUTO_WRAP_POLICY": "TRANSFORMER_BASED_WRAP",
            "FSDP_TRANSFORMER_CLS_TO_WRAP": "BertLayer"}


@pytest.mark.slow
def test_fsdp_two_processes_match_one(setup, tmp_path):
    """FSDP2 over 2 CPU processes (gloo): fine-tuning ends with the model 1 process gives, saved whole.
    (Distillation under FSDP, student and teacher sharded: tests/training/test_causal_lm.py.)"""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    launch = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29519", "-m", "pela"]
    lines = (setup / "text.txt").read_text().splitlines()
    rows = [json.dumps({"text": line, "label": "even" if int(line.split()[0][1:]) % 2 == 0 else "odd"}) for line in lines]
    (tmp_path / "train.jsonl").write_text("\n".join(rows) + "\n")
    cmd = ["finetune", str(setup / "student"), "--data", str(tmp_path / "train.jsonl"), "--steps", "6", "--batch-size", "8",
           "--lr", "1e-3"]
    # the one-process run (one thread) beside the two-process one, which leaves a core idle while it communicates;
    # its messages in a file, which unlike a pipe never fills while nothing reads it
    with (tmp_path / "f1.log").open("w") as log:
        one = subprocess.Popen([sys.executable, "-m", "pela", *cmd, "--out", str(tmp_path / "f1")],
                               stdout=subprocess.DEVNULL, stderr=log, env=env)
    two = subprocess.run([*launch, *cmd, "--out", str(tmp_path / "f2")], capture_output=True, text=True, env={**env, **FSDP_ENV})
    assert two.returncode == 0, two.stderr[-3000:]
    assert one.wait(timeout=600) == 0, (tmp_path / "f1.log").read_text()[-2000:]
    meta = json.loads((tmp_path / "f2" / "pela.json").read_text())["finetune"]
    assert meta["processes"] == 2 and meta["sharded"] == {"model": True}
    assert meta["trained_steps"] == 6 and meta["final"]["loss"] > 0
    one, two = pela.load(tmp_path / "f1"), pela.load(tmp_path / "f2")
    assert one.num_classes == two.num_classes == 2 and _max_gap(one, two) < 1e-5


def test_fsdp_refuses_what_it_cannot_do_yet(setup, tmp_path, monkeypatch, capsys):
    """Under FSDP, checkpoints and weight regularization say so before training, and leave no run directory."""
    monkeypatch.setattr("pela.training.loop.is_sharded", lambda _: True)
    monkeypatch.setattr("pela.training.distill.is_sharded", lambda _: True)
    monkeypatch.setattr("pela.training.distill.shard_frozen", lambda model, _: model)
    common = ["distill", "--student", setup / "student", "--teacher", setup / "teacher", "--data", setup / "text.txt", "--steps", 2,
              "--batch-size", 8]
    for flags, says in ((["--config", "save_every=1"], "does not write checkpoints"), (["--config", "gamma=1"], "reads whole weights")):
        code, _, err = run_cli(capsys, *common, "--out", tmp_path / "o", *flags)
        assert code == 2 and err.startswith("error: ") and says in err, err
        assert not (tmp_path / "o").exists()


def test_finetune_and_eval_cli(setup, tmp_path, capsys):
    lines = (setup / "text.txt").read_text().splitlines()
    rows = [json.dumps({"text": line, "label": "even" if int(line.split()[0][1:]) % 2 == 0 else "odd"}) for line in lines]
    (tmp_path / "train.jsonl").write_text("\n".join(rows) + "\n")
    code, out, err = run_cli(capsys, "finetune", setup / "student", "--data", tmp_path / "train.jsonl", "--eval-data", tmp_path / "train.jsonl",
                         "--out", tmp_path / "ft", "--epochs", 2, "--batch-size", 16, "--lr", 1e-3, "--json")
    assert code == 0, err
    summary = json.loads(out)
    assert summary["eval"]["samples"] == 64 and 0 <= summary["eval"]["accuracy"] <= 1
    for workers in (0, 1):  # batches prepared in a worker process give the same result
        code, out, err = run_cli(capsys, "eval", tmp_path / "ft", "--data", tmp_path / "train.jsonl", "--json", "--config", f"workers={workers}")
        assert code == 0, err
        assert json.loads(out)["accuracy"] == summary["eval"]["accuracy"]
    code, out, err = run_cli(capsys, "eval", tmp_path / "ft", "--data", tmp_path / "train.jsonl", "--batch-size", 16)
    assert code == 0 and "evaluating" in err and "4/4" in err and "accuracy" in out  # 64 examples, a bar over 4 batches
    per_class = summary["eval"]["per_class"]
    assert set(per_class) == {"even", "odd"} and per_class["even"]["support"] + per_class["odd"]["support"] == 64
    worst = min(per_class, key=lambda c: (per_class[c]["recall"], -per_class[c]["support"]))  # the table names it first
    assert "macro_f1" in out and re.search(rf"lowest recall: {worst} {per_class[worst]['recall']:.2f} \({per_class[worst]['support']} examples\)", out)
    code, _, err = run_cli(capsys, "eval", tmp_path / "ft", "--data", tmp_path / "train.jsonl", "--config", "workers=-2")
    assert code == 2 and err.startswith("error: workers must be >= 0"), err
    # a test set with a class the training data lacked: every example scored, those as errors, and said in one line
    extra = [json.dumps({"text": line, "label": "prime"}) for line in lines[:3]]
    (tmp_path / "test.jsonl").write_text("\n".join(rows + extra) + "\n")
    with pytest.warns(UserWarning, match=r"the data has 1 class the model was not trained on: 'prime' \(3 examples\); their 3 examples count as errors"):
        code, out, err = run_cli(capsys, "eval", tmp_path / "ft", "--data", tmp_path / "test.jsonl", "--json")
    metrics = json.loads(out)
    assert code == 0 and metrics["samples"] == 67 and metrics["per_class"]["prime"] == {"support": 3, "recall": 0.0, "precision": 0.0, "f1": 0.0}
    code, _, err = run_cli(capsys, "finetune", setup / "student", "--data", setup / "text.txt", "--out", tmp_path / "x", "--steps", 1)
    assert code == 2 and "labelled data" in err
    for bad in ("fast", "0"):
        code, _, err = run_cli(capsys, "finetune", setup / "student", "--data", tmp_path / "train.jsonl", "--out", tmp_path / "x", "--config", f"factor_lr={bad}")
        assert code == 2 and err.startswith("error: ") and "factor" in err and not (tmp_path / "x").exists(), err
    code, _, err = run_cli(capsys, "eval", setup / "teacher", "--data", tmp_path / "train.jsonl")
    assert code == 2 and "fine-tune it first" in err


def test_finetune_keeps_its_best_evaluation(setup, tmp_path, capsys):
    lines = (setup / "text.txt").read_text().splitlines()
    rows = [json.dumps({"text": line, "label": "even" if int(line.split()[0][1:]) % 2 == 0 else "odd"}) for line in lines]
    (tmp_path / "train.jsonl").write_text("\n".join(rows[:48]) + "\n")
    (tmp_path / "dev.jsonl").write_text("\n".join(rows[48:]) + "\n")
    common = ["finetune", setup / "student", "--data", tmp_path / "train.jsonl", "--batch-size", 8, "--lr", 3e-3]
    code, out, err = run_cli(capsys, *common, "--eval-data", tmp_path / "dev.jsonl", "--out", tmp_path / "ft", "--epochs", 2,
                         "--config", "eval_every=3", "--keep-best", "loss", "--json")
    assert code == 0, err
    summary = json.loads(out)
    assert [e["step"] for e in summary["evals"]] == [3, 6, 9, 12]
    losses = [e["loss"] for e in summary["evals"]]
    assert summary["best"] == {"step": summary["evals"][losses.index(min(losses))]["step"], "loss": min(losses)}
    assert summary["eval"]["loss"] == pytest.approx(min(losses), rel=1e-6)  # the saved model is the best one
    logged = [json.loads(line) for line in (tmp_path / "ft" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in logged if "eval_loss" in r] == [3, 6, 9, 12]
    assert not (tmp_path / "ft" / "checkpoints").exists()
    code, out, err = run_cli(capsys, *common, "--eval-data", tmp_path / "dev.jsonl", "--out", tmp_path / "ft2", "--steps", 4, "--keep-best", "accuracy")
    assert code == 0 and "kept step 4's weights, the best evaluation by accuracy" in " ".join(out.split()), err  # at the end (an epoch is 6 steps)
    code, out, err = run_cli(capsys, *common, "--eval-data", tmp_path / "dev.jsonl", "--out", tmp_path / "ft3", "--steps", 30, "--config", "eval_every=2",
                         "--keep-best", "loss", "--config", "patience=2", "--json")
    summary = json.loads(out)
    assert code == 0 and summary["stopped_early"] and summary["steps"] == summary["best"]["step"] + 4 < 30, err
    assert summary["eval"]["loss"] == pytest.approx(summary["best"]["loss"], rel=1e-6)
    for args, fragment in [(["--keep-best", "loss"], "--keep-best needs --eval-data"),
                           (["--eval-data", tmp_path / "dev.jsonl", "--config", "patience=2"], "patience needs keep_best"), (["--config", "eval_every=2"], "eval_every needs --eval-data"),
                           (["--eval-data", tmp_path / "dev.jsonl", "--keep-best", "f1"], "keep_best must be one of accuracy, balanced_accuracy"),
                           (["--eval-data", tmp_path / "dev.jsonl", "--config", "eval_every=0"], "eval_every must be an integer >= 1")]:
        code, _, err = run_cli(capsys, *common, "--out", tmp_path / "bad", *args)
        assert code == 2 and err.startswith("error: ") and err.count("\n") == 1 and fragment in err, err
        assert not (tmp_path / "bad").exists()


def test_timm_checkpoint_through_every_stage(tmp_path, capsys):
    """A user's fine-tuned timm checkpoint (3 classes, architecture default 1000): compressed with --checkpoint,
    distilled and compared against it with --teacher-checkpoint, evaluated with --checkpoint."""
    import numpy as np
    import timm
    from conftest import TIMM_VIT, run_cli
    from PIL import Image
    from safetensors.torch import save_file

    arch = {k: v for k, v in TIMM_VIT.items() if k != "num_classes"}
    timm.models.save_for_hf(timm.create_model("vit_tiny_patch16_224", **arch), str(tmp_path / "arch"), safe_serialization=True)
    torch.manual_seed(0)
    tuned = timm.create_model("vit_tiny_patch16_224", **arch, num_classes=3)
    save_file(tuned.state_dict(), tmp_path / "tuned.safetensors")
    g = np.random.default_rng(0)
    for cls in ("a", "b", "c"):
        (tmp_path / "images" / cls).mkdir(parents=True)
        for i in range(4):
            Image.fromarray(g.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(tmp_path / "images" / cls / f"{i}.png")
    teacher, ckpt, images = f"timm:local-dir:{tmp_path / 'arch'}", tmp_path / "tuned.safetensors", tmp_path / "images"

    code, _, err = run_cli(capsys, "compress", teacher, "--checkpoint", ckpt, "--out", tmp_path / "s", "--config", "align=1")
    assert code == 0, err
    code, out, err = run_cli(capsys, "compare", tmp_path / "s", teacher, "--config", f"teacher_checkpoint={ckpt}", "--data", images, "--json")
    assert code == 0, err
    before = json.loads(out)["mean_mse"]
    code, _, err = run_cli(capsys, "distill", "--student", tmp_path / "s", "--teacher", teacher, "--config", f"teacher_checkpoint={ckpt}",
                       "--data", images, "--out", tmp_path / "d", "--steps", 8, "--batch-size", 6, "--lr", 1e-3)
    assert code == 0, err
    assert "without the task loss" not in err  # the data's 3 classes are the head's 3
    assert pela.load(tmp_path / "d")(torch.randn(1, 3, 32, 32)).shape == (1, 3)
    code, out, err = run_cli(capsys, "compare", tmp_path / "s", teacher, "--data", images, "--json")  # the directory's own weights
    assert code == 0 and json.loads(out)["mean_mse"] > 100 * before, err
    code, out, err = run_cli(capsys, "eval", teacher, "--config", f"checkpoint={ckpt}", "--data", images, "--json")
    assert code == 0 and json.loads(out)["samples"] == 12 and "warning" not in err, err
    code, _, err = run_cli(capsys, "eval", tmp_path / "d", "--config", f"checkpoint={ckpt}", "--data", images)
    assert code == 2 and err.startswith("error: a checkpoint file applies to timm: sources only"), err


def test_model_with_its_own_code_through_every_stage(setup, tmp_path, capsys):
    """--trust-remote-code on every command that loads the model or its student; without it, one line."""
    from conftest import remote_code_model_dir

    teacher = remote_code_model_dir(tmp_path / "custom")
    code, _, err = run_cli(capsys, "compress", teacher, "--out", tmp_path / "s")
    assert code == 2 and err.startswith("error: ") and "--trust-remote-code" in err and not (tmp_path / "s").exists(), err
    trust = "--trust-remote-code"
    code, _, err = run_cli(capsys, "compress", teacher, "--out", tmp_path / "s", "--config", "align=1", trust)
    assert code == 0, err
    code, _, err = run_cli(capsys, "distill", "--student", tmp_path / "s", "--teacher", teacher, "--data", setup / "text.txt",
                       "--out", tmp_path / "d", "--steps", 2, "--batch-size", 8)
    assert code == 2 and "--trust-remote-code" in err and not (tmp_path / "d").exists(), err
    code, _, err = run_cli(capsys, "distill", "--student", tmp_path / "s", "--teacher", teacher, "--data", setup / "text.txt",
                       "--out", tmp_path / "d", "--steps", 2, "--batch-size", 8, trust)
    assert code == 0, err
    code, out, err = run_cli(capsys, "compare", tmp_path / "d", teacher, "--data", setup / "text.txt", "--json", trust)
    assert code == 0, err
    assert len(json.loads(out)["blocks"]) == 2, out
    lines = (setup / "text.txt").read_text().splitlines()
    (tmp_path / "train.jsonl").write_text("".join(json.dumps({"text": t, "label": i % 2}) + "\n" for i, t in enumerate(lines)))
    code, _, err = run_cli(capsys, "finetune", tmp_path / "d", "--data", tmp_path / "train.jsonl", "--out", tmp_path / "f", "--steps", 2,
                       "--batch-size", 8, trust)
    assert code == 0, err
    code, out, err = run_cli(capsys, "eval", tmp_path / "f", "--data", tmp_path / "train.jsonl", "--json", trust)
    assert code == 0 and json.loads(out)["samples"] == 64, err
    code, out, err = run_cli(capsys, "bench", tmp_path / "f", "--batch-size", 2, "--config", "iters=1", "--config", "rounds=1", "--seq-len", 8, "--json", trust)
    assert code == 0, err
    assert (tmp_path / "f" / "modeling_tinynet.py").is_file()


def _lora_adapter(base: "os.PathLike", out: "os.PathLike", num_labels: int, base_name: str) -> torch.nn.Module:
    """A LoRA fine-tune of a sequence classifier as peft saves it (adapter + the head, trained whole),
    its LoRA factors made non-zero as training would; returns peft's own merge of it."""
    import peft
    from transformers import BertForSequenceClassification, logging

    logging.set_verbosity_error()
    torch.manual_seed(1)
    model = BertForSequenceClassification.from_pretrained(base, num_labels=num_labels, ignore_mismatched_sizes=True)
    tuned = peft.get_peft_model(model, peft.LoraConfig(r=4, target_modules=["query", "value"], task_type="SEQ_CLS"))
    with torch.no_grad():
        for name, p in tuned.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.5)
    tuned.peft_config["default"].base_model_name_or_path = base_name
    tuned.save_pretrained(out)
    return tuned.merge_and_unload().eval()


def test_lora_adapter_through_every_stage(setup, tmp_path, capsys, monkeypatch):
    """A peft LoRA directory is its base with the adapter merged in: as student source and as teacher."""
    from transformers import BertForSequenceClassification

    BertForSequenceClassification.from_pretrained(setup / "teacher").save_pretrained(tmp_path / "base")
    shutil.copy(setup / "teacher" / "vocab.txt", tmp_path / "base")
    monkeypatch.chdir(tmp_path)  # peft records the base as the path it was given, relative to where training ran
    merged = _lora_adapter(tmp_path / "base", tmp_path / "lora", 3, "base")
    model = pela.load(str(tmp_path / "lora"))
    x = torch.randint(5, 100, (2, 6))
    with torch.inference_mode():
        assert torch.equal(model(input_ids=x).logits, merged(input_ids=x).logits)  # peft's own merge, bitwise
    assert model.config.num_labels == 3 and type(model).__name__ == "BertForSequenceClassification"
    code, _, err = run_cli(capsys, "compress", tmp_path / "lora", "--out", tmp_path / "s", "--ratio", 4)
    assert code == 0, err
    code, _, err = run_cli(capsys, "distill", "--student", tmp_path / "s", "--teacher", tmp_path / "lora", "--data", setup / "text.txt",
                       "--out", tmp_path / "d", "--steps", 2, "--batch-size", 8)
    assert code == 0, err
    lines = (setup / "text.txt").read_text().splitlines()
    (tmp_path / "train.jsonl").write_text("".join(json.dumps({"text": t, "label": i % 3}) + "\n" for i, t in enumerate(lines)))
    code, _, err = run_cli(capsys, "finetune", tmp_path / "d", "--data", tmp_path / "train.jsonl", "--out", tmp_path / "f", "--steps", 2,
                       "--batch-size", 8)
    assert code == 0, err
    code, out, err = run_cli(capsys, "eval", tmp_path / "f", "--data", tmp_path / "train.jsonl", "--json")
    assert code == 0 and json.loads(out)["samples"] == 64, err
    # the base found beside the adapter when the working directory is elsewhere
    monkeypatch.chdir(setup)
    assert pela.load(str(tmp_path / "lora")).config.num_labels == 3
