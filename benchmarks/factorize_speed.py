"""Factorization speed: pela.compress vs the released PELA procedure, side by side, same ranks.

The release factorizes each layer with numpy's SVD (full matrices, float32) on the CPU, one layer at
a time. This script times that and `pela.compress` on the same random-init ViT-B/16, checks that
every pela layer's relative error is within 1e-4 of the Eckart–Young optimum (float64 SVD), and
prints a JSON summary (also written to benchmarks/results/factorize_speed.json).

With ``--device cuda`` the model lives on the GPU and only `pela.compress` is timed (the release has
no GPU path), cold (the first call, which pays cuSOLVER's set-up) and warm (a second model), and the
result goes to factorize_speed_cuda.json.

    .venv/bin/python -m benchmarks.factorize_speed [--model vit_base_patch16_224] [--ratio 2] [--device cuda]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import timm
import torch

import pela
from benchmarks._results import report
from pela import LowRankConfig
from pela.compression.report import CompressionReport


def released_factorize(model: torch.nn.Module, ranks: dict[str, int]) -> None:
    """A faithful re-implementation of the release: numpy full SVD per layer, sqrt split, module swap."""
    modules = dict(model.named_modules())
    for name, rank in ranks.items():
        linear = modules[name]
        w = linear.weight.detach().numpy()
        u, s, vt = np.linalg.svd(w, full_matrices=True)
        root = np.sqrt(s[:rank])
        a = torch.from_numpy(root[:, None] * vt[:rank])
        b = torch.from_numpy(u[:, :rank] * root[None, :])
        new = pela.LowRankLinear.from_factors(a, b, linear.bias)
        parent, _, attr = name.rpartition(".")
        setattr(modules[parent] if parent else model, attr, new)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--model", default="vit_base_patch16_224")
    p.add_argument("--ratio", type=float, default=2)
    p.add_argument("--device", default="cpu", help="cpu (side by side with the release) or cuda (pela alone)")
    args = p.parse_args()
    dev = torch.device(args.device)
    torch.manual_seed(0)
    ours = timm.create_model(args.model, pretrained=False).to(dev)
    originals = {n: m.weight.detach().double().clone() for n, m in ours.named_modules() if isinstance(m, torch.nn.Linear)}

    def timed_compress(model: torch.nn.Module) -> tuple[CompressionReport, float]:
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        start = time.perf_counter()
        rep = pela.compress(model, LowRankConfig(ratio=args.ratio))
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        return rep, time.perf_counter() - start

    if dev.type == "cuda":
        second = timm.create_model(args.model, pretrained=False).to(dev)
        compression, cold_s = timed_compress(ours)
        _, pela_s = timed_compress(second)
        extra = {"device": torch.cuda.get_device_name(dev), "cold_seconds": round(cold_s, 3), "warm_seconds": round(pela_s, 3)}
    else:
        theirs = timm.create_model(args.model, pretrained=False)
        theirs.load_state_dict(ours.state_dict())
        compression, pela_s = timed_compress(ours)
        start = time.perf_counter()
        released_factorize(theirs, {r.name: r.rank for r in compression.factorized})
        released_s = time.perf_counter() - start
        extra = {"pela_seconds": round(pela_s, 3), "released_seconds": round(released_s, 3), "speedup": round(released_s / pela_s, 2)}

    worst = 0.0
    for r in compression.factorized:
        s = torch.linalg.svdvals(originals[r.name])
        optimum = float(torch.sqrt((s[r.rank:] ** 2).sum() / (s**2).sum()))
        w = originals[r.name].float()
        layer = dict(ours.named_modules())[r.name]
        achieved = float(torch.linalg.matrix_norm(w - layer.weight.detach()) / torch.linalg.matrix_norm(w))
        worst = max(worst, achieved - optimum)
    result = {"model": args.model, "ratio": args.ratio, "layers": len(compression.factorized),
              "threads": torch.get_num_threads(), **extra, "worst_error_above_optimum": worst}
    report("factorize_speed" if dev.type == "cpu" else "factorize_speed_cuda", result)


if __name__ == "__main__":
    main()
