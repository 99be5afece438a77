"""pela.shrink: calibrated compression and distillation in stages of size, as pela's recipe runs them."""

import copy
import warnings

import pytest
import torch
from conftest import Tokens, hf_bert, stack

import pela
from pela import DistillConfig, LowRankConfig, PelaError
from pela.compression.targets import budget_of
from pela.layers.lowrank import densify
from pela.training.shrink import stage_ratios, stage_recipe


def test_only_the_last_stage_checks_speed(monkeypatch):
    monkeypatch.setenv("PELA_SPEED_CHECK", "1")  # pela's default
    model = hf_bert()
    assert stage_recipe(model, 2.0).speed_check and not stage_recipe(model, 2.0, last=False).speed_check
    monkeypatch.setenv("PELA_SPEED_CHECK", "0")
    assert not stage_recipe(model, 2.0).speed_check


def test_stages_cut_the_student_in_steps_of_size_and_share_the_steps():
    assert stage_ratios(4.0, 2) == [2.0, 4.0] and stage_ratios(3.0, 1) == [3.0]
    torch.manual_seed(0)
    teacher, data = hf_bert(), Tokens(n=48, length=8)
    config = DistillConfig(steps=5, batch_size=8, lr=1e-3, seed=0)
    student, by_hand = copy.deepcopy(teacher), copy.deepcopy(teacher)  # both copied before distillation freezes the teacher
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # small calibration: damped statistics
        result = pela.shrink(student, teacher, data, 4.0, config, stages=2, align=1, collate_fn=stack, calib_samples=32, probe_samples=8)
        # the same by hand: compress at k=2, distill 2 steps, merge the factors, compress at k=4, distill 3 steps
        for k, steps in ((2.0, 2), (4.0, 3)):
            densify(by_hand)
            recipe = LowRankConfig(param_budget=budget_of(by_hand, LowRankConfig(ratio=k, align=1)), init="whiten", align=1,
                                   speed_check=False)  # the suite's default (conftest); pela's checks the last stage only
            pela.compress(by_hand, recipe, calibration=pela.calibrate(by_hand, data, recipe, collate_fn=stack, samples=32, probe_samples=8))
            pela.distill(by_hand, teacher, data, DistillConfig(steps=steps, batch_size=8, lr=1e-3, seed=0), collate_fn=stack)
    assert [d.steps for d in result.distills] == [2, 3] and len(result.reports) == 2
    assert result.reports[0].params_after > result.report.params_after
    for (name, got), (_, want) in zip(student.state_dict().items(), by_hand.state_dict().items()):
        torch.testing.assert_close(got, want, msg=lambda m, name=name: f"{name}: {m}")
    # the same size as one cut at k=4 would give
    one_cut = copy.deepcopy(teacher)
    recipe = LowRankConfig(param_budget=budget_of(one_cut, LowRankConfig(ratio=4.0, align=1)), init="whiten", align=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        report = pela.compress(one_cut, recipe, calibration=pela.calibrate(one_cut, data, recipe, collate_fn=stack, samples=32, probe_samples=8))
    assert abs(result.report.params_after - report.params_after) <= 0.02 * report.params_after
    with pytest.raises(PelaError, match="stages must be an integer >= 1"):
        pela.shrink(copy.deepcopy(teacher), teacher, data, stages=0)
    with pytest.raises(PelaError, match="1 distillation steps cannot be shared by 2 stages"):
        pela.shrink(copy.deepcopy(teacher), teacher, data, config=DistillConfig(steps=1), collate_fn=stack, calib_samples=8, probe_samples=2)
