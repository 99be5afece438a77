"""Accelerate's process state and Accelerator, as every stage uses them."""

from __future__ import annotations

import os
import sys
import warnings
from typing import Any

import torch
from torch import nn

from pela.training.config import TrainConfig


def resident_mib() -> float:
    """This process's resident memory now (Linux ``/proc``; elsewhere its peak), logged to catch leaks in long runs."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        import resource

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak / 2**20 if sys.platform == "darwin" else peak / 2**10


def partial_state() -> Any:
    """Accelerate's process state; on a machine without a GPU, processes started by torchrun use gloo."""
    from accelerate import PartialState

    return PartialState(cpu=not torch.cuda.is_available())


def make_accelerator(config: TrainConfig) -> Any:
    """An Accelerator that splits each global batch over the processes."""
    from accelerate import Accelerator
    from accelerate.utils import DataLoaderConfiguration, DistributedDataParallelKwargs

    partial_state()  # on CPU-only machines, join torchrun's processes with gloo
    if not torch.cuda.is_available() and os.environ.get("ACCELERATE_USE_FSDP", "").lower() == "true":
        warnings.warn("FSDP was asked for (accelerate launch --use_fsdp), but Accelerate shards models on accelerators only "
                      "(GPU, XPU, NPU, ...): on the CPU every process holds the whole model, as under DDP", stacklevel=2)
    mp = config.mixed_precision if config.mixed_precision != "auto" else ("bf16" if torch.cuda.is_available() else "no")
    # parts of a model can sit out a step (BERT's pooler, a head no loss reads)
    ddp = DistributedDataParallelKwargs(find_unused_parameters=True)
    return Accelerator(mixed_precision=mp, cpu=not torch.cuda.is_available(), kwargs_handlers=[ddp],
                       dataloader_config=DataLoaderConfiguration(split_batches=True))


def rank_checksums(model: nn.Module, accelerator: Any) -> list[float]:
    """One float64 checksum of the student's weights per process, to prove every rank agrees."""
    with torch.no_grad():
        local = torch.stack([p.detach().double().sum() for p in model.parameters()]).sum().reshape(1).to(accelerator.device)
    return [float(x) for x in accelerator.gather(local).cpu()]
