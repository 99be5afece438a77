"""metrics.jsonl (and TensorBoard when installed), resumable."""

from __future__ import annotations

import json
from pathlib import Path


class MetricsLog:
    """metrics.jsonl (and TensorBoard when installed); on resume, rows past the checkpoint are
    dropped."""

    def __init__(self, path: Path | None, start: int):
        self.file = self.tb = None
        self.kept: list[dict[str, float]] = []  # the rows of the steps before ``start``, kept
        if path is None:
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        kept = []
        if path.exists():
            kept = [
                line
                for line in path.read_text().splitlines()
                if line.strip() and json.loads(line).get("step", 0) <= start
            ]
        path.write_text("".join(line + "\n" for line in kept))
        self.kept = [json.loads(line) for line in kept]
        self.file = open(path, "a")
        try:
            from torch.utils.tensorboard import SummaryWriter

            self.tb = SummaryWriter(str(path.parent / "tensorboard"))
        except Exception:  # tensorboard is optional
            self.tb = None

    def write(self, row: dict[str, float]) -> None:
        if self.file:
            self.file.write(json.dumps(row) + "\n")
            self.file.flush()
        if self.tb:
            for k, v in row.items():
                if k != "step":
                    self.tb.add_scalar(k, v, row["step"])

    def close(self) -> None:
        if self.file:
            self.file.close()
        if self.tb:
            self.tb.close()
