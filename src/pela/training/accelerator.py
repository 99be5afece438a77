"""Accelerate's process state and Accelerator, as every stage uses them."""

from __future__ import annotations

import gc
import os
import sys
from typing import Any

import torch
from torch import nn

from pela.errors import PelaError
from pela.training.config import TrainConfig
from pela.utils.processes import partial_state


def resident_mib() -> float:
    """This process's resident memory now (Linux ``/proc``; elsewhere its peak), logged to catch
    leaks in long runs."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        import resource

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak / 2**20 if sys.platform == "darwin" else peak / 2**10


def make_accelerator(config: TrainConfig) -> Any:
    """An Accelerator that splits each global batch over the processes."""
    from accelerate import Accelerator
    from accelerate.utils import DataLoaderConfiguration, DistributedDataParallelKwargs

    state = partial_state()  # on CPU-only machines, join torchrun's processes with gloo
    mp = (
        config.mixed_precision
        if config.mixed_precision != "auto"
        else ("bf16" if torch.cuda.is_available() else "no")
    )
    # parts of a model can sit out a step (BERT's pooler, a head no loss reads)
    ddp = DistributedDataParallelKwargs(find_unused_parameters=True)
    accelerator = Accelerator(
        mixed_precision=mp,
        cpu=not torch.cuda.is_available(),
        kwargs_handlers=[ddp],
        dataloader_config=DataLoaderConfiguration(split_batches=True),
    )
    if not torch.cuda.is_available() and fsdp_requested() and state.num_processes > 1:
        _fsdp_on_cpu(accelerator)
    return accelerator


def leave_process_group() -> None:
    """Leave the process group torchrun or ``accelerate launch`` joined, if any, before Python
    exits.

    Without it gloo's worker threads are torn down with the interpreter and a process can abort
    (SIGABRT, "terminate called without an active exception") after its work is done. The barrier
    lets no rank leave while another still has collectives in flight (an FSDP run aborted about
    once in 15 without it), and collecting drops the last references to the group's work.
    """
    dist = sys.modules.get("torch.distributed")
    if dist is not None and dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
        gc.collect()


def fsdp_requested() -> bool:
    """Whether the launch asked for FSDP (``accelerate launch --use_fsdp`` sets
    ``ACCELERATE_USE_FSDP``)."""
    return os.environ.get("ACCELERATE_USE_FSDP", "").lower() == "true"


def _fsdp_on_cpu(accelerator: Any) -> None:
    """Turn on FSDP for CPU processes (gloo), as ``accelerate launch --use_fsdp`` asked.

    Accelerate turns FSDP on for accelerators only; its FSDP2 path (torch's ``fully_shard``) runs
    unchanged on CPU processes, so pela sets the shared state it would have set. FSDP1 needs CUDA.
    """
    from accelerate.utils import DistributedType, FullyShardedDataParallelPlugin

    # the launch's settings (FSDP_* environment variables)
    plugin = FullyShardedDataParallelPlugin()
    if plugin.fsdp_version != 2:
        raise PelaError(
            "FSDP on the CPU needs FSDP2: launch with --fsdp_version 2 (fsdp_version: 2 in the "
            "accelerate config)"
        )
    accelerator.state.distributed_type, accelerator.state.fsdp_plugin = DistributedType.FSDP, plugin


def is_sharded(accelerator: Any) -> bool:
    """Whether ``accelerator`` trains under FSDP."""
    from accelerate.utils import DistributedType

    return accelerator.distributed_type == DistributedType.FSDP


def shard_frozen(model: nn.Module, accelerator: Any) -> nn.Module:
    """Under FSDP2, shard (in place) a model that only runs forward, as Accelerate shards the
    trained one.

    Accelerate's ``prepare`` takes one model with its optimizer under FSDP2; a frozen teacher has no
    optimizer, so it goes through the same preparation alone. Under FSDP1 it stays whole on each
    process.
    """
    if is_sharded(accelerator) and accelerator.state.fsdp_plugin.fsdp_version == 2:
        from accelerate.utils.fsdp_utils import fsdp2_prepare_model

        return fsdp2_prepare_model(accelerator, model)
    return model


def rank_checksums(model: nn.Module, accelerator: Any) -> list[float]:
    """One float64 checksum of the student's weights per process, to prove every rank agrees.

    A weight sharded by FSDP (a DTensor) counts whole: its shards' sums are added up over the
    processes."""

    def total(p: torch.Tensor) -> torch.Tensor:
        s = p.detach().double().sum()
        return s.full_tensor() if hasattr(s, "full_tensor") else s

    with torch.no_grad():
        local = (
            torch.stack([total(p) for p in model.parameters()])
            .sum()
            .reshape(1)
            .to(accelerator.device)
        )
    return [float(x) for x in accelerator.gather(local).cpu()]
