"""Distillation step throughput: pela's loop (one student forward per step) vs the released loop (two).

The released PELA training loop runs the student forward twice per step, once for the task loss and
once for the block features, and back-propagates through both. This script re-implements that step
faithfully and times it against `pela.distill` on the same model, data, batch and precision,
interleaving the two so the machine's noise hits both alike.

    .venv/bin/python -m benchmarks.distill_throughput [--model vit_small_patch16_224] [--batch-size 32] [--device cpu]
"""

from __future__ import annotations

import argparse
import statistics
import time

import timm
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

import pela
from benchmarks._results import report
from pela import DistillConfig, LowRankConfig
from pela.arch.blocks import find_blocks
from pela.features import BlockCapture, feature_loss


class RandomImages(Dataset):
    def __init__(self, n: int, size: int, classes: int = 1000):
        g = torch.Generator().manual_seed(0)
        self.x = torch.randn(n, 3, size, size, generator=g)
        self.y = torch.randint(0, classes, (n,), generator=g)

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> dict:
        return {"pixel_values": self.x[i], "labels": self.y[i]}


def stack(examples):
    return {k: torch.stack([e[k] for e in examples]) for k in examples[0]}


def released_steps(student, teacher, data, steps, batch_size, device, dtype) -> float:
    """The release's step: teacher forward, student forward for the task loss, again for features."""
    blocks = find_blocks(student)
    t_cap, s_cap = BlockCapture(teacher, blocks), BlockCapture(student, blocks)
    opt = torch.optim.AdamW(student.parameters(), lr=1e-4, weight_decay=0.05)
    student.train(), teacher.eval().requires_grad_(False)
    batches = [stack([data[i] for i in range(k * batch_size, (k + 1) * batch_size)]) for k in range(steps)]
    start = time.perf_counter()
    for b in batches:
        x, y = b["pixel_values"].to(device), b["labels"].to(device)
        with torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32):
            with torch.no_grad():
                teacher(x)
            t_feats = t_cap.take()
            task = F.cross_entropy(student(x).float(), y)  # forward 1
            s_cap.take()
            student(x)  # forward 2, for the features
            loss = task + feature_loss(s_cap.take(), t_feats)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(student.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
    if device.type == "cuda":
        torch.cuda.synchronize()
    t_cap.remove(), s_cap.remove()
    return steps * batch_size / (time.perf_counter() - start)


def pela_steps(student, teacher, data, steps, batch_size, device, dtype) -> float:
    mp = "no" if dtype == torch.float32 else "bf16"
    result = pela.distill(student, teacher, data, DistillConfig(steps=steps, batch_size=batch_size, mixed_precision=mp, warmup=0.0),
                          collate_fn=stack)
    return result.items_per_s


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--model", default="vit_small_patch16_224")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    args = p.parse_args()
    device, dtype = torch.device(args.device), {"float32": torch.float32, "bfloat16": torch.bfloat16}[args.dtype]
    torch.manual_seed(0)
    teacher = timm.create_model(args.model, pretrained=False).to(device)
    student = timm.create_model(args.model, pretrained=False)
    student.load_state_dict(teacher.state_dict())
    pela.compress(student, LowRankConfig(ratio=2))
    student.to(device)
    size = teacher.pretrained_cfg["input_size"][-1]
    data = RandomImages(args.steps * args.batch_size, size)
    released_steps(student, teacher, data, 1, args.batch_size, device, dtype)  # warm-up
    rates = {"released": [], "pela": []}
    for _ in range(args.rounds):
        rates["released"].append(released_steps(student, teacher, data, args.steps, args.batch_size, device, dtype))
        rates["pela"].append(pela_steps(student, teacher, data, args.steps, args.batch_size, device, dtype))
    med = {k: statistics.median(v) for k, v in rates.items()}
    result = {"model": args.model, "device": str(device), "dtype": args.dtype, "batch_size": args.batch_size,
              "released_items_per_s": round(med["released"], 2), "pela_items_per_s": round(med["pela"], 2),
              "speedup": round(med["pela"] / med["released"], 2), "rounds": rates}
    report(f"distill_throughput_{device.type}", result)


if __name__ == "__main__":
    main()
