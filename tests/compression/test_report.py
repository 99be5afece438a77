"""The report of a compression: rows per linear layer, totals that add up, a table."""

import json

import pela


def test_the_totals_add_up_and_the_report_reads_back_as_json(mlp):
    dense = sum(p.numel() for p in mlp.parameters())
    report = pela.compress(mlp, pela.LowRankConfig(ratio=2, align=1))
    assert report.params_before == dense == report.params_after + report.linear_params_before - report.linear_params_after
    assert report.params_after == sum(p.numel() for p in mlp.parameters())
    assert {r.status for r in report.layers} <= {"factorized", "dense"}
    assert all(r.reason for r in report.layers if r.status == "dense")
    back = json.loads(json.dumps(report.to_dict()))
    assert len(back["layers"]) == len(report.layers) and "spectra" not in back
    table = str(report)
    assert table.count("\n| ") == len(report.layers) and report.summary() in table
