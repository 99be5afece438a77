"""Long-run stability: 2,000 distillation steps on a tiny model; resident memory barely moves after warm-up."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import hf_bert

import pela
from pela import DistillConfig, LowRankConfig

pytestmark = pytest.mark.slow  # 2,000 training steps

STEPS = 2000


class Texts(torch.utils.data.Dataset):
    def __len__(self):
        return 256

    def __getitem__(self, i):
        return {"input_ids": torch.arange(i % 7 + 5, i % 7 + 17) % 100}


def collate(examples):
    ids = torch.stack([e["input_ids"] for e in examples])
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids)}


@pytest.fixture
def one_thread():
    """Tiny matrices gain nothing from threads, and lose much to contention with other processes."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_resident_memory_is_flat_over_2000_steps(tmp_path, one_thread):
    torch.manual_seed(0)
    teacher = hf_bert()
    student = hf_bert()
    student.load_state_dict(teacher.state_dict())
    pela.compress(student, LowRankConfig(ratio=4, align=1))
    config = DistillConfig(steps=STEPS, batch_size=8, lr=1e-3, log_every=50, save_every=500)
    result = pela.distill(student, teacher, Texts(), config, collate_fn=collate, out=tmp_path / "run")
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    rss = {r["step"]: r["rss_mib"] for r in rows}
    assert result.steps == STEPS and set(rss) >= {200, STEPS}
    growth = rss[STEPS] / rss[200] - 1
    print(f"resident memory: step 200 {rss[200]:.1f} MiB, step {STEPS} {rss[STEPS]:.1f} MiB, growth {growth:+.2%}")
    assert growth < 0.05, rss
