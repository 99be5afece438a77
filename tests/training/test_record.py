"""pela.training.record: one layout of pela.json for every stage, whichever command or call made it."""

import copy
import warnings

import torch
from conftest import Tokens, hf_bert, stack

import pela
from pela import DistillConfig, FinetuneConfig
from pela.training.record import shrink_record, training_record

RUN_KEYS = {"trained_steps", "seconds", "items_per_s", "final", "stopped_early", "processes", "rank_checksums"}


def test_distill_finetune_and_shrink_record_their_runs_alike():
    from conftest import Labelled

    torch.manual_seed(0)
    teacher, data = hf_bert(), Tokens(n=32, length=8)
    student = copy.deepcopy(teacher)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        shrunk = pela.shrink(student, teacher, data, 2.0, DistillConfig(steps=4, batch_size=8), align=1, collate_fn=stack,
                             calib_samples=16, probe_samples=4)
    record = shrink_record(shrunk, 2.0, student, teacher)
    assert set(record) == {"compression", "stages", "distill"} and "layers" not in record["compression"]
    assert [s["trained_steps"] for s in record["stages"]] == [2, 2] and record["distill"]["trained_steps"] == 4
    distilled = training_record(DistillConfig(steps=2, batch_size=8), pela.distill(student, teacher, data, DistillConfig(
        steps=2, batch_size=8), collate_fn=stack), student, teacher)
    tuned, result = pela.finetune(hf_bert(), Labelled(), FinetuneConfig(steps=2, batch_size=16), collate_fn=stack)
    finetuned = training_record(FinetuneConfig(steps=2, batch_size=16), result, tuned)
    for r in (record["distill"], distilled, finetuned):
        assert RUN_KEYS <= set(r) and r["processes"] == 1 and len(r["rank_checksums"]) == 1


def test_shrink_fits_its_steps_to_a_time_budget():
    """With no steps given, pela.shrink distills one epoch, or as many steps as the minutes allow at the pace its
    first calibration measured (a tiny budget: the fewest steps the stages can share)."""
    torch.manual_seed(0)
    teacher, data = hf_bert(), Tokens(n=64, length=8)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        epoch = pela.shrink(copy.deepcopy(teacher), teacher, data, 2.0, DistillConfig(batch_size=8), align=1, collate_fn=stack,
                            calib_samples=16, probe_samples=4)
        budget = pela.shrink(copy.deepcopy(teacher), teacher, data, 2.0, DistillConfig(batch_size=8), minutes=1e-6, align=1,
                             collate_fn=stack, calib_samples=16, probe_samples=4)
    assert epoch.config.steps == 64 // 8 and sum(d.steps for d in epoch.distills) == 8
    assert budget.config.steps == 2 and [d.steps for d in budget.distills] == [1, 1]
