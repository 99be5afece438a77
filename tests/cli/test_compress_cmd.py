"""`pela compress` and `pela bench`: tables, JSON, calibration, and the mistakes refused."""

import json
import os
import platform
import re

import pytest
import torch
from conftest import TIMM_VIT, run_cli

import pela

pytestmark = pytest.mark.slow  # whole commands on real (tiny) models


@pytest.fixture
def vit_dir(tmp_path):
    """A dense tiny ViT saved as a pela directory, so the CLI can load it offline."""
    model = pela.load("timm:vit_tiny_patch16_224", random_init=True, **TIMM_VIT)
    return pela.save_pretrained(model, tmp_path / "dense")




def test_compress_json(vit_dir, tmp_path, capsys):
    code, out, err = run_cli(capsys, "compress", vit_dir, "--out", tmp_path / "k2", "--ratio", 2, "--config", "align=1", "--json")
    assert code == 0, err
    report = json.loads(out)
    assert report["params_after"] < report["params_before"] and report["seconds"] >= 0
    qkv = next(layer for layer in report["layers"] if layer["name"] == "blocks.0.attn.qkv")
    assert qkv["rank"] == 32 * 96 // (2 * 128) and qkv["in_features"] == 32 and 0 < qkv["rel_error"] < 1
    loaded = pela.load(tmp_path / "k2")
    assert loaded.get_submodule("blocks.0.attn.qkv").rank == qkv["rank"]


def test_compress_table_and_bench(vit_dir, tmp_path, capsys):
    code, out, _ = run_cli(capsys, "compress", vit_dir, "--out", tmp_path / "k2", "--rank", 8)
    assert code == 0 and "factorized" in out
    code, out, _ = run_cli(capsys, "bench", tmp_path / "k2", "--vs", vit_dir, "--batch-size", 1, "--config", "iters=1", "--config", "rounds=1")
    table = out[:out.index("throughput ratio")]
    assert code == 0 and "…" not in table  # long directory names are folded, never cut to a shared prefix
    assert table.count("MiB") == 2 and re.search(r"peak\s+memory\s+ratio\s+0\.\d\d×", out)  # peak memory on a CPU too
    code, out, err = run_cli(capsys, "bench", tmp_path / "k2", "--vs", vit_dir, "--batch-size", 2, "--config", "iters=1", "--config", "rounds=1", "--json")
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
    (["--config", "energy=1.5"], "energy must be"),
    (["--exclude", "no_such_layer"], "exclude pattern 'no_such_layer' matches no linear layer"),
    (["--include", "("], "not a valid regular expression"),
    (["--ratio", "2", "--rank", "4"], "only one of"),
    (["--config", "speedup=1"], "speedup must be a finite number > 1"),
])
def test_compress_user_errors(vit_dir, tmp_path, capsys, args, fragment):
    code, out, err = run_cli(capsys, "compress", vit_dir, "--out", tmp_path / "o", *args)
    assert code == 2
    assert err.startswith("error: ") and err.count("\n") == 1 and fragment in err
    assert not (tmp_path / "o").exists()


def test_a_speed_target_out_of_reach_is_refused_from_this_devices_timings(vit_dir, tmp_path, capsys):
    code, out, err = run_cli(capsys, "compress", vit_dir, "--out", tmp_path / "o", "--config", "speedup=50")
    last = err.strip().splitlines()[-1]  # after the progress of the timings
    assert code == 2 and re.fullmatch(r"error: a 50× speed-up is out of reach on this device: .* predicted "
                                      r"\d+\.\d\d× faster .*", last)
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
        (["bench", "timm:vit_tiny_patch16_224", "--config", "random_init=true", "--batch-size", "0"], "--batch-size must be >= 1"),
        (["bench", "timm:vit_tiny_patch16_224", "--config", "random_init=true", "--config", "rounds=0"], "rounds must be >= 1, got 0"),
        (["bench", "timm:vit_tiny_patch16_224", "--config", "random_init=true", "--seq-len", "0"], "--seq-len must be >= 1, got 0"),
        (["bench", "timm:vit_tiny_patch16_224", "--config", "random_init=true", "--config", "iters=-1"], "iters must be >= 1, got -1"),
        (["bench", "timm:vit_tiny_patch16_224", "--config", "random_init=true", "--config", "compile_mode=fastest"], "compile_mode must be one of"),
    ]
    for args, fragment in cases:
        code, _, err = run_cli(capsys, *args)
        assert code == 2 and err.startswith("error: ") and err.count("\n") == 1 and fragment in err, (args, err)
    assert not (tmp_path / "o").exists()


def test_existing_output_refused(vit_dir, tmp_path, capsys):
    (tmp_path / "o").mkdir()
    (tmp_path / "o" / "keep.txt").write_text("precious")
    code, _, err = run_cli(capsys, "compress", vit_dir, "--out", tmp_path / "o")
    assert code == 2 and "--overwrite" in err
    assert (tmp_path / "o" / "keep.txt").read_text() == "precious"


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
    for name, flags in (("a", []), ("b", ["--config", "calib_batch_size=3"])):
        code, _, err = run_cli(capsys, "compress", hf_bert_dir, "--out", tmp_path / name, "--calib", calib, "--ratio", 2, "--config", "sequential=true",
                           "--config", "align=1", *flags)
        assert code == 0, err
    assert sizes == [16, 3]
    a, b = pela.load(tmp_path / "a"), pela.load(tmp_path / "b")
    assert max(float((x - y).abs().max() / x.abs().max().clamp_min(1e-12))
               for x, y in zip(a.state_dict().values(), b.state_dict().values()) if x.is_floating_point()) < 1e-3


def test_compress_whiten_with_budget_and_plot(hf_bert_dir, tmp_path, capsys):
    calib = tmp_path / "calib.txt"
    calib.write_text("".join(f"w{i} w{i + 1} w{i + 2} w{(i * 7) % 95}\n" for i in range(60)))
    code, out, err = run_cli(capsys, "compress", hf_bert_dir, "--out", tmp_path / "b", "--calib", calib, "--config", "calib_samples=40",
                         "--param-budget", 0.5, "--config", "align=1", "--plot", tmp_path / "plots" / "ranks.png", "--json")
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
    code, out, err = run_cli(capsys, "compress", hf_bert_dir, "--out", tmp_path / "b", "--calib", calib, "--ratio", 3, "--config", "align=1", "--json")
    assert code == 0, err
    report = json.loads(out)
    budget = budget_of(pela.load(str(hf_bert_dir)), pela.LowRankConfig(ratio=3, align=1))
    assert report["config"]["init"] == "whiten" and report["config"]["ratio"] is None and report["config"]["param_budget"] == budget
    code, out, err = run_cli(capsys, "compress", hf_bert_dir, "--out", tmp_path / "u", "--calib", calib, "--ratio", 3, "--config", "align=1",
                         "--config", "uniform_ranks=true", "--json")
    uniform = json.loads(out)
    assert code == 0 and uniform["config"]["ratio"] == 3 and uniform["config"]["param_budget"] is None
    assert abs(report["params_after"] - uniform["params_after"]) < 0.02 * uniform["params_after"]  # the same size
    code, out, err = run_cli(capsys, "compress", hf_bert_dir, "--out", tmp_path / "s", "--calib", calib, "--ratio", 3, "--config", "align=1",
                         "--config", "sequential=true", "--json")
    sequential = json.loads(out)
    assert code == 0 and sequential["config"]["sequential"] is True and sequential["params_after"] == report["params_after"]
    assert [r["rank"] for r in sequential["layers"]] == [r["rank"] for r in report["layers"]]  # the same ranks, other factors


@pytest.mark.parametrize("args, fragment", [
    (["--param-budget", "0.5"], "--param-budget needs calibration data: add --calib"),
    (["--config", "init=whiten"], "init=whiten needs calibration data"),
    (["--config", "init=qr"], "init must be one of svd, whiten"),
    (["--param-budget", "1.2", "--calib", "CALIB"], "param_budget must be a fraction in (0, 1)"),
    (["--ratio", "2", "--config", "init=svd", "--calib", "CALIB"], "--calib is used by init=whiten, --param-budget and speedup"),
    (["--calib", "CALIB", "--config", "calib_samples=0"], "calib_samples must be >= 1"),
    (["--calib", "CALIB", "--config", "calib_batch_size=0"], "calib_batch_size must be >= 1"),
    (["--calib", "MISSING"], "does not exist"),
    (["--config", "sequential=true"], "sequential fits each layer on calibration inputs: add --calib"),
    (["--ratio", "2", "--plot", "ranks.txt"], "must end in .png"),
])
def test_calibration_user_errors(hf_bert_dir, tmp_path, capsys, args, fragment):
    calib = tmp_path / "calib.txt"
    calib.write_text("w1 w2\n")
    args = [str(calib) if a == "CALIB" else str(tmp_path / "missing.txt") if a == "MISSING" else a for a in args]
    code, out, err = run_cli(capsys, "compress", hf_bert_dir, "--out", tmp_path / "o", *args)
    assert code == 2, err
    assert err.startswith("error: ") and err.count("\n") == 1 and fragment in err, err
    assert not (tmp_path / "o").exists()
