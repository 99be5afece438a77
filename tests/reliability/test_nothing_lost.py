"""Nothing trained is lost, and every mistake or interruption is said in one line (docs/RELIABILITY.md).

`CASES` is the catalogue of issue #36: each case runs one command and names the exit code, a fragment of
the last line it prints, and the model directory that must be there and load afterwards (unchanged,
when the command failed). Cases marked ``early`` must fail before the slow part starts (no training
progress line). The table in docs/RELIABILITY.md is what this prints:

    .venv/bin/python tests/reliability/test_nothing_lost.py --table
"""

from __future__ import annotations

import errno
import json
import shutil
import sys
import tempfile
from pathlib import Path

import pytest
import torch

import pela
from pela.cli.app import main

pytestmark = pytest.mark.slow  # real commands end to end, one per mistake

WORDS = [f"w{i}" for i in range(95)]
VOCAB = "\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + WORDS)


def make_world(root: Path) -> Path:
    """Models and data for every case: a tiny BERT and its student, a tiny Llama whose (BERT) tokenizer
    returns ``token_type_ids``, its student and export, a ViT, text, labels, images, a good output."""
    from PIL import Image
    from transformers import (
        AutoTokenizer,
        BertConfig,
        BertModel,
        LlamaConfig,
        LlamaForCausalLM,
        ViTConfig,
        ViTForImageClassification,
        ViTImageProcessor,
    )

    torch.manual_seed(0)
    BertModel(BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                         max_position_embeddings=64, hidden_dropout_prob=0.0)).save_pretrained(root / "teacher")
    (root / "teacher" / "vocab.txt").write_text(VOCAB)
    LlamaForCausalLM(LlamaConfig(vocab_size=100, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                                 num_key_value_heads=2, max_position_embeddings=64)).save_pretrained(root / "llama")
    AutoTokenizer.from_pretrained(root / "teacher").save_pretrained(root / "llama")  # a BERT tokenizer beside a Llama
    vit = ViTForImageClassification(ViTConfig(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                                              intermediate_size=64, num_labels=2))
    vit.save_pretrained(root / "vit")
    ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(root / "vit")
    g = torch.Generator().manual_seed(0)
    lines = [" ".join(WORDS[int(i)] for i in torch.randint(0, 95, (20,), generator=g)) for _ in range(32)]
    (root / "text.txt").write_text("\n".join(lines) + "\n")  # 20 words a line: long enough to prompt generations
    rows = [{"text": f"w{i} w{i + 1}", "label": "a" if i % 2 else "b"} for i in range(16)]
    (root / "labeled.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    for cls in ("cat", "dog"):
        (root / "images" / cls).mkdir(parents=True)
        for i in range(2):
            Image.new("RGB", (32, 32), (i * 60, 30, 90)).save(root / "images" / cls / f"{i}.png")
    choice = {"prompt": "w1 w2", "choices": ["w3", "w4"], "answer": 0}
    (root / "empty_prompt.jsonl").write_text(json.dumps({**choice, "prompt": ""}) + "\n")
    (root / "empty_choice.jsonl").write_text(json.dumps({**choice, "choices": ["w3", " "]}) + "\n")
    for model, ratio in (("teacher", "4"), ("llama", "1.25")):
        assert main(["compress", str(root / model), "--out", str(root / f"{model}_student"), "--ratio", ratio, "--config", "align=1"]) == 0
    assert main(["export", str(root / "llama_student"), "--out", str(root / "llama_export")]) == 0
    shutil.copytree(root / "teacher_student", root / "truncated")
    weights = root / "truncated" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    assert main([*DISTILL.format(**names(root, root)).split(), "--out", str(root / "good")]) == 0
    # a run with a checkpoint and no final model, as a killed one leaves it
    pela.distill(pela.load(root / "teacher_student"), pela.load(str(root / "teacher")), pela.load_dataset(root / "text.txt"),
                 pela.DistillConfig(steps=4, batch_size=8, save_every=2), out=root / "unfinished")
    return root


def names(root: Path, tmp: Path) -> dict[str, Path]:
    return dict(root=root, teacher=root / "teacher", student=root / "teacher_student", llama=root / "llama",
                llama_student=root / "llama_student", export=root / "llama_export", vit=root / "vit", text=root / "text.txt",
                labeled=root / "labeled.jsonl", images=root / "images", truncated=root / "truncated", good=tmp / "good",
                copy=tmp / "copy", unfinished=tmp / "unfinished", out=tmp / "out")


DISTILL = "distill --student {student} --teacher {teacher} --data {text} --steps 2 --batch-size 8"
D_LLAMA = "distill --student {llama_student} --teacher {llama} --data {text} --steps 2 --batch-size 4"
FINETUNE = "finetune {student} --data {labeled} --steps 2 --batch-size 4"
TRAINING = ("distilling:", "fine-tuning:")  # progress lines of the slow part

# name, command, exit code, fragment of the last line (None: exit 0), the directory that must be there and
# load afterwards ({copy}: a copy of the named input made first), checked before the slow part
CASES = [
    ("causal LM, tokenizer returns token_type_ids: distill", D_LLAMA + " --out {out}", 0, None, "{out}", False),
    ("the same over a good output with --overwrite", D_LLAMA + " --out {good} --overwrite", 0, None, "{good}", False),
    ("distill --overwrite, teacher misspelled", DISTILL + " --teacher {root}/typo --out {good} --overwrite", 2,
     "unknown model source", "{good}", True),
    ("finetune --overwrite, source misspelled", "finetune {root}/typo --data {labeled} --out {good} --overwrite", 2,
     "unknown model source", "{good}", True),
    ("distill --overwrite, max_length=100000", DISTILL + " --config max_length=100000 --out {good} --overwrite", 2,
     "at most 64 positions", "{good}", True),
    ("shrink --overwrite, source misspelled", "shrink {root}/typo --data {text} --out {good} --overwrite", 2,
     "unknown model source", "{good}", True),
    ("distill --out is the student", DISTILL.replace("{student}", "{copy}") + " --out {copy} --overwrite", 2,
     "is the input --student", "{copy}=student", True),
    ("distill --out is the teacher", DISTILL.replace("{teacher}", "{copy}") + " --out {copy} --overwrite", 2,
     "is the input --teacher", "{copy}=teacher", True),
    ("finetune --out is its source", FINETUNE.replace("{student}", "{copy}") + " --out {copy} --overwrite", 2,
     "is the input model", "{copy}=student", True),
    ("shrink --out is its source", "shrink {copy} --data {text} --out {copy} --overwrite", 2,
     "is the input the model", "{copy}=teacher", True),
    ("finetune --eval-data unlabelled", FINETUNE + " --eval-data {text} --out {out}", 2,
     "evaluation needs labelled data", None, True),
    ("distill --eval-data images, text model", DISTILL + " --eval-data {images} --out {out}", 2,
     "this is a text model (BertModel): it reads text, and the data is images", None, True),
    ("text data given to a ViT", "finetune {vit} --data {labeled} --steps 1 --batch-size 2 --out {out}", 2,
     "this is an image model (ViTForImageClassification)", None, True),
    ("an output holding checkpoints", DISTILL + " --out {unfinished}", 2, "--resume continues it", None, True),
    ("clip=-1", DISTILL + " --config clip=-1 --out {out}", 2, "clip must be a number > 0", None, True),
    ("alpha=0 on unlabelled data", DISTILL + " --config alpha=0 --out {out}", 2, "nothing to learn", None, True),
    ("eval --perplexity context=0", "eval {llama} --perplexity --data {text} --config context=0", 2, "context must be between 2", None,
     True),
    ("eval --perplexity stride=0", "eval {llama} --perplexity --data {text} --config stride=0", 2, "stride must be between 1", None,
     True),
    ("bench --seq-len 10000", "bench {teacher} --seq-len 10000", 2, "at most 64 positions", None, True),
    ("uniform_ranks without --calib", "compress {teacher} --config uniform_ranks=true --out {out}", 2, "add --calib DATA", None, True),
    ("sensitivity=gradient without --calib", "compress {teacher} --config sensitivity=gradient --out {out}", 2, "add --calib DATA",
     None, True),
    ("export of a truncated weights file", "export {truncated} --out {out}", 2, "not a valid safetensors file", None, True),
    ("device=cuda without a GPU", "compress {teacher} --config device=cuda --out {out}", 2, "no CUDA GPU is available", None, True),
    ("an unknown device", "compress {teacher} --config device=tpu --out {out}", 2, "unknown device 'tpu'", None, True),
    ("eval --choices, an empty prompt", "eval {llama} --choices --data {root}/empty_prompt.jsonl", 2, "the prompt ('prompt') is empty",
     None, True),
    ("eval --choices, an empty choice", "eval {llama} --choices --data {root}/empty_choice.jsonl", 2, "choice 2 ('choices') is empty",
     None, True),
    ("eval of pela's own export", "eval {export} --perplexity --data {text}", 0, None, None, False),
    ("bench of pela's own export", "bench {export} --vs {llama_student} --seq-len 16 --config iters=1 --config rounds=1", 0, None, None, False),
]


def prepare(case: tuple, root: Path, tmp: Path) -> tuple[list[str], Path | None, bytes | None]:
    """The command's arguments, the directory it must leave loadable, and that directory's weights before."""
    _, command, _, _, kept, _ = case
    paths = names(root, tmp)
    if "{good}" in command:
        shutil.copytree(root / "good", tmp / "good")
    if "{unfinished}" in command:
        shutil.copytree(root / "unfinished", tmp / "unfinished")
    if kept and "=" in kept:  # a copy of an input, named as the output too
        kept, source = kept.split("=")
        shutil.copytree(paths[source], tmp / "copy")
    directory = Path(kept.format(**paths)) if kept else None
    weights = directory / "model.safetensors" if directory is not None else None
    before = weights.read_bytes() if weights is not None and weights.exists() else None
    return command.format(**paths).split(), directory, before


def run_case(case: tuple, root: Path, tmp: Path, capsys) -> dict:
    """Run one case; what it did: exit code, its last line, and whether the kept directory loads."""
    argv, directory, before = prepare(case, root, tmp)
    return run_argv(argv, directory, before, capsys)


def run_argv(argv: list[str], directory: Path | None, before: bytes | None, capsys) -> dict:
    code = main(argv)
    out, err = capsys.readouterr()
    lines = err.strip("\n").splitlines()
    return {"code": code, "last": lines[-1] if lines else "", "stderr": err, "stdout": out, "loads": _loads(directory),
            "unchanged": before is None or (directory / "model.safetensors").read_bytes() == before, "directory": directory}


def _loads(directory: Path | None) -> bool | None:
    if directory is None:
        return None
    try:
        pela.load(directory)
        return True
    except Exception:  # noqa: BLE001 - any failure to load is what the case reports
        return False


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return make_world(tmp_path_factory.mktemp("world"))


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_case(world, tmp_path, capsys, case):
    name, _, code, fragment, kept, early = case
    got = run_case(case, world, tmp_path, capsys)
    assert got["code"] == code, (name, got["stderr"][-3000:])
    assert "Traceback" not in got["stderr"]
    if fragment is not None:
        assert got["last"].startswith("error: ") and fragment in got["last"], got["stderr"]
        assert sum(line.startswith("error:") for line in got["stderr"].splitlines()) == 1
    if early:
        assert not any(line.startswith(TRAINING) for line in got["stderr"].splitlines()), got["stderr"]
    if kept is not None:
        assert got["loads"], f"{got['directory']} does not load after: {got['stderr'][-2000:]}"
        assert code == 0 or got["unchanged"], f"{got['directory']} changed although the command failed"
    if code == 0 and "{good}" in case[1]:
        assert not got["unchanged"], "the good output was not replaced by the new run"
    leftovers = [p.name for p in tmp_path.iterdir() if p.name.endswith(".partial") or ".tmp-" in p.name or ".old-" in p.name]
    assert not leftovers, leftovers


def test_generations_are_written_for_a_causal_lm_whose_tokenizer_returns_token_type_ids(world, tmp_path, capsys):
    argv = D_LLAMA.format(**names(world, tmp_path)).split() + ["--out", str(tmp_path / "d")]
    assert main(argv) == 0, capsys.readouterr().err
    text = (tmp_path / "d" / "generations.md").read_text()
    assert text.count("**student**") >= 1 and "warning" not in capsys.readouterr().err


# ---------------------------------------------------------------- save first, extras after; faults
def _broken(*args, **kwargs):
    raise RuntimeError("injected failure")


def _failing_extra(module: str, function: str, command: list[str]):
    """A scenario: ``command`` with ``module.function`` (one of its optional steps) failing."""
    def scenario(root: Path, tmp: Path, patch) -> tuple[list[str], Path]:
        import importlib

        patch.setattr(importlib.import_module(module), function, _broken)
        p = names(root, tmp)
        return [a.format(**p) for a in command], tmp / "out"

    return scenario


def _full_disk_in_training(root: Path, tmp: Path, patch) -> tuple[list[str], Path | None]:
    """A scenario: the disk fills up while a distillation logs its third row (after checkpoints were written)."""
    from pela.training.metrics_log import MetricsLog

    real, calls = MetricsLog.write, [0]

    def fill_up(self, row):
        calls[0] += 1
        if calls[0] == 3:
            raise OSError(errno.ENOSPC, "No space left on device", str(tmp / "out" / "metrics.jsonl"))
        return real(self, row)

    patch.setattr(MetricsLog, "write", fill_up)
    argv = DISTILL.format(**names(root, tmp)).split() + ["--steps", "6", "--config", "save_every=1", "--config", "log_every=1"]
    return argv + ["--out", str(tmp / "out")], None


# name, scenario (patches, then the command and the directory that must load after), exit code, fragment
SCENARIOS = [
    ("compress --plot, the plot fails", _failing_extra("pela.cli.compress_cmd", "plot_compression", [
        "compress", "{teacher}", "--ratio", "4", "--plot", "{out}.png", "--out", "{out}"]), 0,
     "warning: skipped the plot"),
    ("distill, generations.md fails", _failing_extra("pela.cli.common", "write_generations",
                                                     [*D_LLAMA.split(), "--out", "{out}"]), 0, "warning: skipped generations.md"),
    ("finetune, the final evaluation fails", _failing_extra("pela.cli.train_cmd", "evaluate", [
        *FINETUNE.split(), "--eval-data", "{labeled}", "--out", "{out}"]), 0, "warning: skipped the final evaluation"),
    ("shrink, generations.md fails", _failing_extra("pela.cli.common", "write_generations", [
        "shrink", "{llama}", "--data", "{text}", "--ratio", "1.25", "--steps", "2", "--batch-size", "4", "--config", "calib_samples=16",
        "--out", "{out}"]), 0, "warning: skipped generations.md"),
    ("disk full while distilling", _full_disk_in_training, 2, "error: no space left on device writing"),
]


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s[0] for s in SCENARIOS])
def test_scenario(world, tmp_path, capsys, monkeypatch, scenario):
    name, make, code, fragment = scenario
    argv, directory = make(world, tmp_path, monkeypatch)
    got = run_argv(argv, directory, None, capsys)
    assert got["code"] == code and fragment in got["last"] and "Traceback" not in got["stderr"], got["stderr"][-3000:]
    if code == 0:  # the extra's failure is said once, with what broke, and the model is there
        warnings = [line for line in got["stderr"].splitlines() if line.startswith("warning: skipped")]
        assert len(warnings) == 1 and "RuntimeError: injected failure" in warnings[0], got["stderr"]
        assert any(isinstance(m, pela.LowRankLinear) for m in pela.load(directory).modules())
    else:
        assert (tmp_path / "out" / "checkpoints" / "latest.json").is_file()  # the checkpoints written before stay


def test_a_finetuned_models_final_evaluation_is_recorded_after_it_is_saved(world, tmp_path, capsys):
    argv = FINETUNE.format(**names(world, tmp_path)).split() + ["--eval-data", str(world / "labeled.jsonl"), "--out",
                                                                 str(tmp_path / "f"), "--json"]
    assert main(argv) == 0
    printed = json.loads(capsys.readouterr().out)
    recorded = json.loads((tmp_path / "f" / "pela.json").read_text())["finetune"]
    assert recorded["eval"]["accuracy"] == printed["eval"]["accuracy"] and recorded["eval"]["samples"] == 16


# ---------------------------------------------------------------- inputs the model does not take
def test_no_path_gives_a_model_inputs_it_does_not_take(world, tmp_path):
    """A BERT tokenizer beside a Llama makes token_type_ids: no forward pass or generate call receives them."""
    from pela.bench import benchmark, generation_benchmark
    from pela.data.collate import Collator
    from pela.evaluation.generation import side_by_side

    seen: list[set[str]] = []

    def watch(model):
        model.register_forward_pre_hook(lambda m, args, kwargs: seen.append(set(kwargs)), with_kwargs=True)
        return model

    teacher, student = watch(pela.load(str(world / "llama"))), watch(pela.load(world / "llama_student"))
    collate = Collator(student)
    data = pela.load_dataset(world / "text.txt")
    assert "token_type_ids" in collate.tokenizer("w1 w2") and "token_type_ids" not in collate([data[0]])
    calls = {
        "calibration": lambda: pela.calibrate(watch(pela.load(str(world / "llama"))), data, samples=8),
        "distillation": lambda: pela.distill(student, teacher, data, pela.DistillConfig(steps=1, batch_size=4),
                                             eval_data=data, eval_samples=4),
        "comparison": lambda: pela.compare(student, teacher, data, samples=4),
        "perplexity": lambda: pela.perplexity(student, data),
        "multiple choice": lambda: pela.multiple_choice(student, [{"prompt": "w1 w2", "choices": ["w3", "w4"], "answer": 0}]),
        "generation": lambda: side_by_side(student, teacher, ["w1 w2 w3"], collate.tokenizer, max_new_tokens=2),
        "bench": lambda: benchmark({"s": student}, batch_size=2, seq_len=8, iters=1, rounds=1, warmup=1),
        "bench --generate": lambda: generation_benchmark({"s": student}, prompt_tokens=4, new_tokens=2, rounds=1),
    }
    for name, call in calls.items():
        seen.clear()
        call()
        assert seen, f"{name}: the model was not called"
        assert not any("token_type_ids" in s for s in seen), f"{name} passed token_type_ids"


# ---------------------------------------------------------------- progress, warnings, interruptions
def test_json_output_keeps_progress_on_stderr(world, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("PELA_PROGRESS_SECONDS", "0")
    argv = ["compress", str(world / "llama"), "--calib", str(world / "text.txt"), "--ratio", "1.25", "--config", "align=1",
            "--out", str(tmp_path / "c"), "--json"]
    assert main(argv) == 0
    out, err = capsys.readouterr()
    assert json.loads(out)["layers"]  # stdout is the report alone
    assert any(line.startswith("calibrating") for line in err.splitlines()), err
    assert any(line.startswith("factorizing") for line in err.splitlines()), err


def test_progress_never_passes_its_total(world, capsys, monkeypatch):
    monkeypatch.setenv("PELA_PROGRESS_SECONDS", "0")
    assert main(["bench", str(world / "llama_student"), "--generate", "--seq-len", "8", "--config", "new_tokens=2", "--config", "rounds=3"]) == 0
    counts = [line.split(": ", 1)[1].split(" ")[0] for line in capsys.readouterr().err.splitlines() if line.startswith("generating:")]
    assert counts and all(int(done) <= int(total) for done, total in (c.split("/") for c in counts)), counts
    assert counts[-1] == "4/4"  # 3 rounds and the warm-up, for one model


def test_pelas_warnings_are_one_line_wherever_they_come_from(world, tmp_path, capsys):
    """A warning raised under torch's no_grad decorator once showed torch's file and source line."""
    import warnings

    argv = ["compress", str(world / "teacher"), "--calib", str(world / "text.txt"), "--config", "calib_samples=1", "--out",
            str(tmp_path / "c"), "--ratio", "4", "--config", "align=1"]
    def show(message, category, filename, lineno, file=None, line=None):  # as Python shows them, not recorded by pytest
        sys.stderr.write(warnings.formatwarning(message, category, filename, lineno, line))

    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.showwarning = show
        assert main(argv) == 0
    err = capsys.readouterr().err
    assert "warning: calibration saw" in err and "UserWarning" not in err and "_contextlib.py" not in err, err


def interrupt(root: Path, tmp: Path) -> dict:
    """Ctrl-C (SIGINT) a running `pela distill` 20 steps in; what it did."""
    import os
    import signal
    import subprocess
    import time

    args = [*DISTILL.format(**names(root, tmp)).split()[:-4], "--steps", "200", "--batch-size", "8", "--out", str(tmp / "run")]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "pela", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    deadline, log = time.time() + 120, tmp / "run" / "metrics.jsonl"
    while time.time() < deadline and proc.poll() is None and not (log.exists() and '"step": 20,' in log.read_text()):
        time.sleep(0.01)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    lines = err.strip().splitlines()
    return {"code": proc.returncode, "last": lines[-1] if lines else "", "stderr": err, "loads": None}


@pytest.mark.slow  # a real process, stopped by a real signal
def test_ctrl_c_saves_the_step_exits_130_and_says_how_to_continue(world, tmp_path):
    got = interrupt(world, tmp_path)
    assert got["code"] == 130, got["stderr"][-2000:]
    last = got["last"]
    assert last.startswith("error: interrupted at step ") and "Traceback" not in got["stderr"], got["stderr"][-2000:]
    command = last.split("continue with: ", 1)[1]
    assert command.startswith("pela distill ") and command.endswith(" --resume")
    step = int(last.split("at step ")[1].split(" ")[0])
    state = json.loads((tmp_path / "run" / "checkpoints" / "latest.json").read_text())
    assert state["step"] == step  # the step it stopped at is the checkpoint, not an older one
    assert main(command.split()[1:]) == 0  # and the command it names finishes the run


class _Patch:
    """monkeypatch's setattr, outside pytest."""

    def __init__(self):
        self.undo: list[tuple] = []

    def setattr(self, obj, name, value):
        self.undo.append((obj, name, getattr(obj, name)))
        setattr(obj, name, value)

    def restore(self):
        for obj, name, value in reversed(self.undo):
            setattr(obj, name, value)


class _Capture:
    """capsys's readouterr, outside pytest."""

    def __enter__(self):
        import io

        self.real = sys.stdout, sys.stderr
        sys.stdout, sys.stderr = io.StringIO(), io.StringIO()
        return self

    def __exit__(self, *exc):
        sys.stdout, sys.stderr = self.real

    def readouterr(self):
        out, err = sys.stdout.getvalue(), sys.stderr.getvalue()
        for stream in (sys.stdout, sys.stderr):
            stream.seek(0), stream.truncate()
        return out, err


def _row(name: str, got: dict, failed: bool, places: list[Path]) -> str:
    kept = "—" if got["loads"] is None else ("present, loads" if got["loads"] else "**does not load**")
    if got["loads"] is None and got.get("resumable"):
        kept = "its checkpoints kept (for --resume)"
    if got["loads"] and failed:
        kept += ", unchanged" if got["unchanged"] else ", **changed**"
    line = got["last"] if got["last"].startswith(("error:", "warning:")) else "(none: the command's own output)"
    for place in places:
        line = line.replace(f"{place}/", "")
    return f"| {name} | {got['code']} | `{line.replace('|', '/')}` | {kept} |"


def _table(root: Path) -> None:
    """Print the catalogue as docs/RELIABILITY.md shows it."""
    rows = []
    for case in CASES:
        with tempfile.TemporaryDirectory() as tmp, _Capture() as capture:
            got = run_case(case, root, Path(tmp), capture)
            got["resumable"] = any(Path(tmp).glob("*/checkpoints/latest.json"))
        rows.append(_row(case[0], got, bool(case[2]), [root, Path(tmp)]))
    for name, make, code, _ in SCENARIOS:
        patch = _Patch()
        with tempfile.TemporaryDirectory() as tmp, _Capture() as capture:
            try:
                argv, directory = make(root, Path(tmp), patch)
                got = run_argv(argv, directory, None, capture)
                got["resumable"] = any(Path(tmp).glob("*/checkpoints/latest.json"))
            finally:
                patch.restore()
        rows.append(_row(name, got, bool(code), [root, Path(tmp)]))
    with tempfile.TemporaryDirectory() as tmp:
        got = interrupt(root, Path(tmp))
        got["resumable"] = any(Path(tmp).glob("*/checkpoints/latest.json"))
        rows.append(_row("Ctrl-C during distill", got, True, [root, Path(tmp)]))
        with _Capture():  # what it says to run finishes the run
            assert main(got["last"].split("continue with: ")[1].split()[1:]) == 0
    print("| case | exit | last line on stderr | model directory after |\n|---|---:|---|---|")
    print("\n".join(rows))


if __name__ == "__main__" and "--table" in sys.argv:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # conftest's settings (offline, quiet)
    import conftest  # noqa: F401

    with tempfile.TemporaryDirectory(prefix="pela-catalogue-") as tmp:
        with _Capture():
            world = make_world(Path(tmp))
        _table(world)
