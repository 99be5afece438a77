"""pela.compression.recipe: one rule for the config, which the command line and the API share."""

import json

from conftest import hf_bert

import pela
from pela import LowRankConfig
from pela.cli.app import main
from pela.compression.targets import budget_of
from pela.training.shrink import stage_recipe


def test_with_data_the_ratio_becomes_the_same_parameters_allocated():
    model = hf_bert()
    assert pela.recipe(model, ratio=3, calibrated=False) == LowRankConfig(ratio=3)  # the paper's: plain SVD
    calibrated = pela.recipe(model, ratio=3, calibrated=True)
    assert calibrated.init == "whiten" and calibrated.ratio is None
    assert calibrated.param_budget == budget_of(model, LowRankConfig(ratio=3))
    assert pela.recipe(model, ratio=3, calibrated=True, uniform=True) == LowRankConfig(ratio=3, init="whiten")
    assert pela.recipe(model, rank=4, calibrated=True).rank == 4  # an explicit rank is kept as it is
    assert stage_recipe(model, 3.0) == calibrated  # pela.shrink's stages follow it too


def test_the_command_line_and_the_api_agree(hf_bert_dir, tmp_path):
    (tmp_path / "t.txt").write_text("".join(f"w{i} w{i + 1} w{i + 2}\n" for i in range(40)))
    assert main(["compress", str(hf_bert_dir), "--calib", str(tmp_path / "t.txt"), "--ratio", "3", "--config", "align=1", "--out",
                 str(tmp_path / "c")]) == 0
    recorded = json.loads((tmp_path / "c" / "pela.json").read_text())["compression"]["config"]
    expected = pela.recipe(pela.load(str(hf_bert_dir)), ratio=3, align=1, calibrated=True).to_dict()
    assert recorded == json.loads(json.dumps(expected))
