import json
import os
import platform
import re
import subprocess
import sys

import pytest
import torch
from conftest import TIMM_VIT

import pela
from pela.cli.app import main


@pytest.fixture
def vit_dir(tmp_path):
    """A dense tiny ViT saved as a pela directory, so the CLI can load it offline."""
    model = pela.load("timm:vit_tiny_patch16_224", random_init=True, **TIMM_VIT)
    return pela.save_pretrained(model, tmp_path / "dense")


def run(capsys, *args):
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def test_compress_json(vit_dir, tmp_path, capsys):
    code, out, err = run(capsys, "compress", vit_dir, "--out", tmp_path / "k2", "--ratio", 2, "--align", 1, "--json")
    assert code == 0, err
    report = json.loads(out)
    assert report["params_after"] < report["params_before"] and report["seconds"] >= 0
    qkv = next(layer for layer in report["layers"] if layer["name"] == "blocks.0.attn.qkv")
    assert qkv["rank"] == 32 * 96 // (2 * 128) and qkv["in_features"] == 32 and 0 < qkv["rel_error"] < 1
    loaded = pela.load(tmp_path / "k2")
    assert loaded.get_submodule("blocks.0.attn.qkv").rank == qkv["rank"]


def test_compress_table_and_bench(vit_dir, tmp_path, capsys):
    code, out, _ = run(capsys, "compress", vit_dir, "--out", tmp_path / "k2", "--rank", 8)
    assert code == 0 and "factorized" in out
    code, out, _ = run(capsys, "bench", tmp_path / "k2", "--vs", vit_dir, "--batch-size", 1, "--iters", 1, "--rounds", 1)
    table = out[:out.index("throughput ratio")]
    assert code == 0 and "…" not in table  # long directory names are folded, never cut to a shared prefix
    assert table.count("MiB") == 2 and re.search(r"peak\s+memory\s+ratio\s+0\.\d\d×", out)  # peak memory on a CPU too
    code, out, err = run(capsys, "bench", tmp_path / "k2", "--vs", vit_dir, "--batch-size", 2, "--iters", 1, "--rounds", 1, "--json")
    assert code == 0, err
    result = json.loads(out)
    assert result["ratio"] == pytest.approx(result["results"][0]["items_per_s"] / result["results"][1]["items_per_s"])
    assert result["results"][0]["params"] < result["results"][1]["params"]
    small, dense = (r["peak_memory_bytes"] for r in result["results"])
    assert 0 < small < dense and result["memory_ratio"] == pytest.approx(small / dense)
    first, second = (r["input_shapes"]["arg0"] for r in result["results"])  # a batch of 2 images, the same for both
    assert first == second and first[:2] == [2, 3] and len(first) == 4
    assert all(len(r["round_ms"]) == 1 and r["round_ms"][0] == pytest.approx(r["ms_per_batch"]) for r in result["results"])
    assert result["keep_freed_memory"] is (platform.system() == "Linux" and platform.libc_ver()[0] == "glibc")


@pytest.mark.parametrize("args, fragment", [
    (["--ratio", "1"], "ratio must be a finite number > 1"),
    (["--ratio", "nan"], "ratio must be"),
    (["--ratio", "two"], "Invalid value for '--ratio'"),
    (["--rank", "0"], "rank must be an integer >= 1"),
    (["--energy", "1.5"], "energy must be"),
    (["--exclude", "no_such_layer"], "exclude pattern 'no_such_layer' matches no linear layer"),
    (["--include", "("], "not a valid regular expression"),
    (["--ratio", "2", "--rank", "4"], "only one of"),
])
def test_compress_user_errors(vit_dir, tmp_path, capsys, args, fragment):
    code, out, err = run(capsys, "compress", vit_dir, "--out", tmp_path / "o", *args)
    assert code == 2
    assert err.startswith("error: ") and err.count("\n") == 1 and fragment in err
    assert not (tmp_path / "o").exists()


def test_bad_sources_and_checkpoints(tmp_path, capsys):
    torch.save({"w": torch.zeros(1)}, tmp_path / "ckpt.safetensors")
    (tmp_path / "trunc.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{\"a\":")
    cases = [
        (["compress", "nowhere", "--out", tmp_path / "o"], "unknown model source"),
        (["compress", "timm:vit_tiny_patch16_224", "--checkpoint", tmp_path / "ckpt.safetensors", "--out", tmp_path / "o"], "pickle"),
        (["compress", "timm:vit_tiny_patch16_224", "--checkpoint", tmp_path / "trunc.safetensors", "--out", tmp_path / "o"], "not a valid safetensors"),
        (["compress", "timm:vit_tiny_patch16_224", "--checkpoint", tmp_path / "missing.safetensors", "--out", tmp_path / "o"], "does not exist"),
        (["bench", "nowhere"], "unknown model source"),
        (["bench", "timm:vit_tiny_patch16_224", "--random-init", "--batch-size", "0"], "--batch-size must be >= 1"),
        (["bench", "timm:vit_tiny_patch16_224", "--random-init", "--rounds", "0"], "--rounds must be >= 1, got 0"),
        (["bench", "timm:vit_tiny_patch16_224", "--random-init", "--seq-len", "0"], "--seq-len must be >= 1, got 0"),
        (["bench", "timm:vit_tiny_patch16_224", "--random-init", "--iters", "-1"], "--iters must be >= 1, got -1"),
        (["bench", "timm:vit_tiny_patch16_224", "--random-init", "--compile-mode", "fastest"], "--compile-mode must be one of"),
    ]
    for args, fragment in cases:
        code, _, err = run(capsys, *args)
        assert code == 2 and err.startswith("error: ") and err.count("\n") == 1 and fragment in err, (args, err)
    assert not (tmp_path / "o").exists()


def test_existing_output_refused(vit_dir, tmp_path, capsys):
    (tmp_path / "o").mkdir()
    (tmp_path / "o" / "keep.txt").write_text("precious")
    code, _, err = run(capsys, "compress", vit_dir, "--out", tmp_path / "o")
    assert code == 2 and "--overwrite" in err
    assert (tmp_path / "o" / "keep.txt").read_text() == "precious"


@pytest.mark.slow
def test_real_process_exit_code_and_no_traceback(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "pela", "compress", "timm:vit_tiny_patch16_224", "--random-init",
                           "--ratio", "0.5", "--out", str(tmp_path / "o")], capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("error: ratio must be") and "Traceback" not in proc.stderr
    assert proc.stderr.strip().count("\n") == 0


def test_the_calibration_batch_size_changes_memory_not_the_student(hf_bert_dir, tmp_path, capsys, monkeypatch):
    """Block by block (--sequential with a ratio) with 3 examples per pass, or the default 16: the same factors
    up to float rounding."""
    from pela.cli import compress_cmd

    sizes = []

    def calibrate(*args, **kwargs):
        sizes.append(kwargs["batch_size"])
        return pela.calibrate(*args, **kwargs)

    monkeypatch.setattr(compress_cmd, "calibrate", calibrate)
    calib = tmp_path / "calib.txt"
    calib.write_text("".join(f"w{i} w{i + 1} w{(i * 7) % 95}\n" for i in range(40)))
    for name, flags in (("a", []), ("b", ["--calib-batch-size", 3])):
        code, _, err = run(capsys, "compress", hf_bert_dir, "--out", tmp_path / name, "--calib", calib, "--ratio", 2, "--sequential",
                           "--align", 1, *flags)
        assert code == 0, err
    assert sizes == [16, 3]
    a, b = pela.load(tmp_path / "a"), pela.load(tmp_path / "b")
    assert max(float((x - y).abs().max() / x.abs().max().clamp_min(1e-12))
               for x, y in zip(a.state_dict().values(), b.state_dict().values()) if x.is_floating_point()) < 1e-3


def test_compress_whiten_with_budget_and_plot(hf_bert_dir, tmp_path, capsys):
    calib = tmp_path / "calib.txt"
    calib.write_text("".join(f"w{i} w{i + 1} w{i + 2} w{(i * 7) % 95}\n" for i in range(60)))
    code, out, err = run(capsys, "compress", hf_bert_dir, "--out", tmp_path / "b", "--calib", calib, "--calib-samples", 40,
                         "--param-budget", 0.5, "--align", 1, "--plot", tmp_path / "plots" / "ranks.png", "--json")
    assert code == 0, err
    report = json.loads(out)
    assert report["config"]["init"] == "whiten" and report["config"]["param_budget"] == 0.5
    assert {layer["init"] for layer in report["layers"] if layer["status"] == "factorized"} == {"whiten"}
    assert (tmp_path / "plots" / "ranks.png").stat().st_size > 10_000
    umask = os.umask(0)
    os.umask(umask)
    assert (tmp_path / "plots" / "ranks.png").stat().st_mode & 0o777 == 0o666 & ~umask
    model = pela.load(tmp_path / "b")
    assert sum(p.numel() for p in model.parameters()) == report["params_after"]


def test_calibration_data_gets_pelas_recipe_at_the_ratios_size(hf_bert_dir, tmp_path, capsys):
    """With --calib, a ratio is a size: whitened factors, ranks allocated across layers at that size (--uniform-ranks: one ratio)."""
    from pela.compression.targets import budget_of

    calib = tmp_path / "calib.txt"
    calib.write_text("".join(f"w{i} w{i + 1} w{i + 2} w{(i * 7) % 95}\n" for i in range(60)))
    code, out, err = run(capsys, "compress", hf_bert_dir, "--out", tmp_path / "b", "--calib", calib, "--ratio", 3, "--align", 1, "--json")
    assert code == 0, err
    report = json.loads(out)
    budget = budget_of(pela.load(str(hf_bert_dir)), pela.LowRankConfig(ratio=3, align=1))
    assert report["config"]["init"] == "whiten" and report["config"]["ratio"] is None and report["config"]["param_budget"] == budget
    code, out, err = run(capsys, "compress", hf_bert_dir, "--out", tmp_path / "u", "--calib", calib, "--ratio", 3, "--align", 1,
                         "--uniform-ranks", "--json")
    uniform = json.loads(out)
    assert code == 0 and uniform["config"]["ratio"] == 3 and uniform["config"]["param_budget"] is None
    assert abs(report["params_after"] - uniform["params_after"]) < 0.02 * uniform["params_after"]  # the same size
    code, out, err = run(capsys, "compress", hf_bert_dir, "--out", tmp_path / "s", "--calib", calib, "--ratio", 3, "--align", 1,
                         "--sequential", "--json")
    sequential = json.loads(out)
    assert code == 0 and sequential["config"]["sequential"] is True and sequential["params_after"] == report["params_after"]
    assert [r["rank"] for r in sequential["layers"]] == [r["rank"] for r in report["layers"]]  # the same ranks, other factors


@pytest.mark.parametrize("args, fragment", [
    (["--param-budget", "0.5"], "--param-budget needs calibration data: add --calib"),
    (["--init", "whiten"], "--init whiten needs calibration data"),
    (["--init", "qr"], "init must be one of svd, whiten"),
    (["--param-budget", "1.2", "--calib", "CALIB"], "param_budget must be a fraction in (0, 1)"),
    (["--ratio", "2", "--init", "svd", "--calib", "CALIB"], "--calib is used by --init whiten and --param-budget"),
    (["--calib", "CALIB", "--calib-samples", "0"], "--calib-samples must be >= 1"),
    (["--calib", "CALIB", "--calib-batch-size", "0"], "--calib-batch-size must be >= 1"),
    (["--calib", "MISSING"], "does not exist"),
    (["--sequential"], "--sequential fits each layer on calibration inputs: add --calib"),
    (["--ratio", "2", "--plot", "ranks.txt"], "must end in .png"),
])
def test_calibration_user_errors(hf_bert_dir, tmp_path, capsys, args, fragment):
    calib = tmp_path / "calib.txt"
    calib.write_text("w1 w2\n")
    args = [str(calib) if a == "CALIB" else str(tmp_path / "missing.txt") if a == "MISSING" else a for a in args]
    code, out, err = run(capsys, "compress", hf_bert_dir, "--out", tmp_path / "o", *args)
    assert code == 2, err
    assert err.startswith("error: ") and err.count("\n") == 1 and fragment in err, err
    assert not (tmp_path / "o").exists()


def test_every_command_reads_named_columns(hf_bert_dir, tmp_path, capsys):
    """A TSV whose columns are not called text/label (GLUE's sentence, say) works in every command that
    reads data, once --text-field/--label-field name them; without them, the error says which option."""
    rows = "".join(f"w{i} w{(i * 3) % 90} w{i % 7}\t{'ab'[i % 2]}\n" for i in range(16))
    (tmp_path / "d.tsv").write_text("sentence\ttarget\n" + rows)
    data, fields = tmp_path / "d.tsv", ["--text-field", "sentence"]
    labelled = fields + ["--label-field", "target"]
    commands = [
        ["compress", hf_bert_dir, "--out", tmp_path / "k", "--param-budget", 0.5, "--calib", data, "--calib-samples", 16, "--align", 1],
        ["distill", "--student", tmp_path / "k", "--teacher", hf_bert_dir, "--data", data, "--out", tmp_path / "s", "--steps", 1,
         "--batch-size", 4],
        ["compare", tmp_path / "s", hf_bert_dir, "--data", data],
        ["finetune", tmp_path / "s", "--data", data, "--out", tmp_path / "f", "--steps", 1, "--batch-size", 4],
        ["eval", tmp_path / "f", "--data", data],
    ]
    for command in commands:
        extra = labelled if command[0] in ("finetune", "eval", "distill") else fields
        code, _, err = run(capsys, *command)
        assert code == 2 and "has no 'sentence'" not in err and "(its fields: sentence, target); name the text with --text-field" in err, (command[0], err)
        if command[0] in ("finetune", "eval"):  # the text found, the labels not: the error names the columns there are
            code, _, err = run(capsys, *command, *fields)
            assert code == 2 and "has no 'label' field (its fields: sentence, target); name the class column with --label-field" in err, err
        code, _, err = run(capsys, *command, *extra)
        assert code == 0, (command[0], err)
    # with one column of text besides the label (and numbers), pela reads it and says so
    (tmp_path / "sst2.tsv").write_text("idx\tsentence\tlabel\n" + "".join(f"{i}\tw{i} w{i % 7}\t{i % 2}\n" for i in range(16)))
    code, _, err = run(capsys, "finetune", tmp_path / "s", "--data", tmp_path / "sst2.tsv", "--out", tmp_path / "f2", "--steps", 1,
                       "--batch-size", 4)
    assert code == 0 and "sst2.tsv: the text is its 'sentence' column (--text-field names another)" in err, err
    # and a Hugging Face dataset's only ClassLabel column is its class
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table({"sentence": [f"w{i} w{i % 5}" for i in range(16)], "intent": [i % 2 for i in range(16)]})
    meta = {"info": {"features": {"intent": {"names": ["greet", "travel"], "_type": "ClassLabel"}}}}
    pq.write_table(table.replace_schema_metadata({"huggingface": json.dumps(meta)}), tmp_path / "clinc.parquet")
    code, _, err = run(capsys, "eval", tmp_path / "f2", "--data", tmp_path / "clinc.parquet")
    assert code == 2 and "none of the data's classes ('greet', 'travel') is one of the 2 classes the model was trained on ('0', '1')" in err, err
    code, _, err = run(capsys, "finetune", tmp_path / "s", "--data", tmp_path / "clinc.parquet", "--out", tmp_path / "f3", "--steps", 1,
                       "--batch-size", 4)
    assert code == 0 and "clinc.parquet: the class is its 'intent' column (--label-field names another)" in err, err


def test_data_command(tmp_path, capsys):
    (tmp_path / "d.csv").write_text("text,label\nhello [bold] world,a\nbye,b\nhi,a\n")
    code, out, err = run(capsys, "data", tmp_path / "d.csv")
    assert code == 0 and "CSV" in out and "2: a (2), b (1)" in out and "hello [bold] world" in out, out + err
    code, out, _ = run(capsys, "data", tmp_path / "d.csv", "--json")
    assert code == 0 and json.loads(out)["classes"] == {"a": 2, "b": 1}
    code, _, err = run(capsys, "data", tmp_path / "missing.csv")
    assert code == 2 and err.startswith("error: dataset") and "does not exist" in err


def test_pelas_own_warnings_print_as_one_line():
    import importlib
    import os

    from pela.cli.app import _format_warning

    ours = importlib.import_module("pela.training.distill").__file__
    assert _format_warning(UserWarning("no task loss"), UserWarning, ours, 7) == "warning: no task loss\n"
    theirs = _format_warning(UserWarning("deprecated"), UserWarning, os.path.join("home", "pela", "torch", "nn.py"), 7)
    assert "UserWarning: deprecated" in theirs  # another library's warning keeps Python's form, with its origin


def test_version(capsys):
    code, out, _ = run(capsys, "--version")
    assert code == 0 and out.startswith(f"pela {pela.__version__} (torch ") and "transformers" in out and out.count("\n") == 1


def test_a_bug_keeps_its_traceback(tmp_path, monkeypatch):
    """Only user mistakes (PelaError, usage) become one line and exit 2: any other error is a bug, raised as it is."""
    import pela.cli.inspect_cmd

    (tmp_path / "t.txt").write_text("one\ntwo\n")

    def broken(ds):
        raise ValueError("a bug in pela")

    monkeypatch.setattr(pela.cli.inspect_cmd, "describe", broken)
    with pytest.raises(ValueError, match="a bug in pela"):
        main(["data", str(tmp_path / "t.txt")])
    monkeypatch.setattr(pela.cli.inspect_cmd, "describe", lambda ds: (_ for _ in ()).throw(pela.PelaError("your mistake")))
    assert main(["data", str(tmp_path / "t.txt")]) == 2


def test_no_help_text_is_swallowed_as_rich_markup():
    """Rich reads ``[default: …]`` in a help string as a markup tag and prints nothing of it."""
    import re

    import typer

    from pela.cli.app import app

    group = typer.main.get_command(app)
    helps = [(name, p.name, p.help or "") for name, cmd in group.commands.items() for p in cmd.params]
    assert len(helps) > 50
    eaten = [(c, p, h) for c, p, h in helps if re.search(r"\[[a-z/ ]+[:=]", h)]
    assert not eaten, eaten
