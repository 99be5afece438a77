"""pela.training.metrics_log: metrics.jsonl, whose rows past a resumed checkpoint are dropped."""

import json

from pela.training.metrics_log import MetricsLog


def test_a_resumed_run_keeps_the_rows_before_its_checkpoint(tmp_path):
    path = tmp_path / "metrics.jsonl"
    log = MetricsLog(path, start=0)
    for step in (10, 20, 30):
        log.write({"step": step, "loss": 1.0 / step})
    log.close()
    resumed = MetricsLog(path, start=20)  # the run is continued from its checkpoint at step 20
    assert [r["step"] for r in resumed.kept] == [10, 20]
    resumed.write({"step": 30, "loss": 0.5})
    resumed.close()
    assert [json.loads(line)["step"] for line in path.read_text().splitlines()] == [10, 20, 30]
