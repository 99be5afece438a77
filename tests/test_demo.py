"""`pela demo`: the whole pipeline on the real offline MiniLM and WordNet, on a slice smaller
than --quick's (the command itself runs in `make demo`)."""

import json

import pytest
from PIL import Image
from rich.console import Console

from pela.cli.app import main
from pela.demo import DemoSettings, run_demo

TINY = DemoSettings(train=64, test=32, distill_steps=4, batch_size=16, calib_samples=32, max_length=32)


@pytest.mark.slow
def test_a_small_demo_writes_the_report(tmp_path):
    run_demo(tmp_path / "demo", settings=TINY, console=Console(quiet=True))
    report = json.loads((tmp_path / "demo" / "report.json").read_text())
    assert report["ratio"] == 2.0
    names = [r["name"] for r in report["rows"]]
    assert names == ["teacher", "pela", "paper", "no_distill", "random_init"]  # pela's recipe first, the paper's beside it
    for row in report["rows"]:
        assert {"name", "params_total", "params_linear", "accuracy", "delta", "finetune_seconds"} <= set(row)
        assert 0 <= row["accuracy"] <= 1
    by = {r["name"]: r for r in report["rows"]}
    assert by["teacher"]["delta"] == 0
    assert by["pela"]["params_linear"] < 0.6 * by["teacher"]["params_linear"]
    # pela's recipe allocates ranks across layers at the size of the paper's ratio: the same size, to within a rank step
    assert abs(by["pela"]["params_linear"] - by["paper"]["params_linear"]) < 0.01 * by["paper"]["params_linear"]
    assert report["compression"]["config"]["init"] == "whiten" and report["paper_compression"]["config"]["init"] == "svd"
    assert by["random_init"]["params_total"] == by["teacher"]["params_total"]
    md = (tmp_path / "demo" / "report.md").read_text()
    assert md.startswith("| model |") and md.count("\n| ") == 5  # header, then 5 rows
    with Image.open(tmp_path / "demo" / "report.png") as im:
        assert im.size[0] > 500


def test_the_command_refuses_a_bad_ratio_before_any_work(tmp_path, capsys):
    assert main(["demo", "--quick", "--ratio", "0.5", "--out", str(tmp_path / "demo")]) == 2
    assert "ratio" in capsys.readouterr().err and not (tmp_path / "demo").exists()
