"""The training loop shared by distillation and fine-tuning, in nanoGPT's order.

One function, `fit`, owns everything that is not the loss: Accelerate (devices, mixed precision,
processes), AdamW with warm-up + cosine from transformers, gradient accumulation and clipping,
seeded batches that can restart at any step, crash-safe checkpoints, NaN detection, metrics and
the progress bar. A stage supplies ``step_loss(model, batch) -> (outputs, {term: tensor})`` and the
weight of each term.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import math
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, Sampler

from . import arch
from ._progress import progress_bar
from .errors import PelaError


@dataclass(frozen=True)
class TrainConfig:
    """Settings every training stage shares. Give ``steps`` or ``epochs`` (default: one epoch).

    ``batch_size`` is the global batch per optimizer step, split into ``grad_accum`` micro-batches
    and evenly across processes, so results do not depend on how many processes run.
    """

    steps: int | None = None
    epochs: float | None = None
    batch_size: int = 32
    lr: float = 1e-4
    weight_decay: float = 0.05
    warmup: float = 0.05  # fraction of the steps spent warming up
    grad_accum: int = 1
    clip: float | None = 1.0
    seed: int = 0
    mixed_precision: str = "auto"  # auto = bf16 on a GPU, none on the CPU
    save_every: int | None = None
    log_every: int = 10
    group_by_length: bool = False  # batch texts of similar length together (less padding), if the data knows lengths
    workers: int = 0  # DataLoader processes that prepare batches while the model trains (0 = in the main process)

    def __post_init__(self) -> None:
        if self.steps is not None and self.epochs is not None:
            raise PelaError("give --steps or --epochs, not both")
        checks = [("steps", self.steps, lambda v: v is None or (isinstance(v, int) and v >= 1), "an integer >= 1"),
                  ("epochs", self.epochs, lambda v: v is None or (math.isfinite(v) and v > 0), "a number > 0"),
                  ("batch_size", self.batch_size, lambda v: isinstance(v, int) and v >= 1, "an integer >= 1"),
                  ("lr", self.lr, lambda v: math.isfinite(v) and v > 0, "a number > 0"),
                  ("weight_decay", self.weight_decay, lambda v: math.isfinite(v) and v >= 0, "a number >= 0"),
                  ("warmup", self.warmup, lambda v: 0 <= v < 1, "a fraction in [0, 1)"),
                  ("grad_accum", self.grad_accum, lambda v: isinstance(v, int) and 1 <= v <= self.batch_size, "an integer in [1, batch_size]"),
                  ("save_every", self.save_every, lambda v: v is None or (isinstance(v, int) and v >= 1), "an integer >= 1"),
                  ("log_every", self.log_every, lambda v: isinstance(v, int) and v >= 1, "an integer >= 1"),
                  ("workers", self.workers, lambda v: isinstance(v, int) and v >= 0, "an integer >= 0"),
                  ("mixed_precision", self.mixed_precision, lambda v: v in ("auto", "no", "bf16", "fp16"), "auto, no, bf16 or fp16")]
        for name, value, ok, allowed in checks:
            if not ok(value):
                raise PelaError(f"{name} must be {allowed}, got {value!r}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class TrainResult:
    steps: int
    seconds: float
    items_per_s: float
    history: list[dict[str, float]] = field(default_factory=list)  # the logged metrics
    rank_checksums: list[float] = field(default_factory=list)  # one per process: all equal


def cosine_schedule(optimizer: torch.optim.Optimizer, warmup_steps: int, total_steps: int) -> Any:
    from transformers import get_cosine_schedule_with_warmup

    return get_cosine_schedule_with_warmup(optimizer, warmup_steps, total_steps)


class EpochBatches(Sampler[list[int]]):
    """Global batches of a fresh seeded permutation each epoch, starting at any step (for resume)."""

    def __init__(self, n: int, batch_size: int, seed: int, start: int, total: int, lengths: list[int] | None = None):
        if n < batch_size:
            raise PelaError(f"dataset has {n} examples, fewer than the batch size {batch_size}")
        self.n, self.batch_size, self.seed, self.start, self.total = n, batch_size, seed, start, total
        self.per_epoch = n // batch_size
        self.lengths = lengths

    def _permutation(self, epoch: int) -> torch.Tensor:
        g = torch.Generator().manual_seed(self.seed + epoch)
        if self.lengths is None:
            return torch.randperm(self.n, generator=g)
        from transformers.trainer_pt_utils import LengthGroupedSampler

        return torch.tensor(list(LengthGroupedSampler(self.batch_size, lengths=self.lengths, generator=g)))

    def __len__(self) -> int:
        return self.total - self.start

    def __iter__(self) -> Iterator[list[int]]:
        perm, perm_epoch = None, -1
        for step in range(self.start, self.total):
            epoch, k = divmod(step, self.per_epoch)
            if epoch != perm_epoch:
                perm, perm_epoch = self._permutation(epoch), epoch
            yield perm[k * self.batch_size:(k + 1) * self.batch_size].tolist()


def _split(batch: dict[str, torch.Tensor], parts: int) -> list[dict[str, torch.Tensor]]:
    if parts == 1:
        return [batch]
    chunks = {k: torch.tensor_split(v, parts) for k, v in batch.items()}
    return [{k: v[i] for k, v in chunks.items()} for i in range(parts)]


def run_id(config: TrainConfig, extra: dict[str, Any]) -> str:
    """What makes two runs the same run (a checkpoint may only resume its own run)."""
    # how often to save or log, and how many processes prepare batches, do not change what is computed
    keep = {k: v for k, v in config.to_dict().items() if k not in ("save_every", "log_every", "workers")}
    return hashlib.sha256(json.dumps({"config": keep, **extra}, sort_keys=True, default=str).encode()).hexdigest()[:16]


def make_loader(data: Dataset, collate_fn: Callable, workers: int = 0, **kwargs: Any) -> DataLoader:
    """A DataLoader whose batches are prepared by ``workers`` processes (0 = in this one).

    Batches depend only on the examples (preprocessing is not random), so results are the same for
    any number of workers; workers only overlap tokenizing and image decoding with the model's work.
    """
    if workers < 0:
        raise PelaError(f"workers must be an integer >= 0, got {workers!r}")
    if workers:
        # the tokenizer's own thread pool and forked workers deadlock; a worker is its parallelism
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    return DataLoader(data, collate_fn=collate_fn, num_workers=workers, persistent_workers=workers > 0,
                      pin_memory=workers > 0 and torch.cuda.is_available(), **kwargs)


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
    mp = config.mixed_precision if config.mixed_precision != "auto" else ("bf16" if torch.cuda.is_available() else "no")
    # parts of a model can sit out a step (BERT's pooler, a head no loss reads)
    ddp = DistributedDataParallelKwargs(find_unused_parameters=True)
    return Accelerator(mixed_precision=mp, cpu=not torch.cuda.is_available(), kwargs_handlers=[ddp],
                       dataloader_config=DataLoaderConfiguration(split_batches=True))


def fit(model: nn.Module, data: Dataset, collate_fn: Callable, config: TrainConfig,
        step_loss: Callable[[nn.Module, dict[str, torch.Tensor]], tuple[Any, dict[str, torch.Tensor]]],
        weights: dict[str, float], *, out: Path | None = None, resume: bool = False, progress: bool = False,
        run_info: dict[str, Any] | None = None, accelerator: Any = None, description: str = "training") -> TrainResult:
    """Train ``model`` in place on ``data``: ``loss = Σ weights[k] · terms[k]`` from ``step_loss``."""
    from accelerate.utils import set_seed

    from .checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint

    if resume and out is None:
        raise PelaError("resume needs the output directory that holds the checkpoints")
    accelerator = accelerator or make_accelerator(config)
    if not accelerator.split_batches:
        raise PelaError("the Accelerator must split batches (DataLoaderConfiguration(split_batches=True))")
    if config.batch_size % (accelerator.num_processes * config.grad_accum):
        raise PelaError(f"batch size {config.batch_size} must divide evenly over {accelerator.num_processes} processes × {config.grad_accum} accumulation steps")
    set_seed(config.seed)
    per_epoch = len(data) // config.batch_size
    total = config.steps or max(1, math.ceil((config.epochs or 1.0) * per_epoch))
    rid = run_id(config, {"total": total, "n": len(data), **(run_info or {})})

    model.train().to(accelerator.device)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=config.lr, weight_decay=config.weight_decay)
    scheduler = cosine_schedule(optimizer, int(config.warmup * total), total)
    start = 0
    if resume:
        ckpt = latest_checkpoint(out / "checkpoints")
        if ckpt is None:
            raise PelaError(f"no checkpoint to resume from in {out}")
        start = load_checkpoint(ckpt, model, optimizer, scheduler, rid)
    lengths = getattr(data, "lengths", None) if config.group_by_length else None
    sampler = EpochBatches(len(data), config.batch_size, config.seed, start, total, list(lengths) if lengths is not None else None)
    loader = make_loader(data, collate_fn, config.workers, batch_sampler=sampler)
    wrapped, optimizer, loader, scheduler = accelerator.prepare(model, optimizer, loader, scheduler)
    log = _MetricsLog(out / "metrics.jsonl" if out and accelerator.is_main_process else None, start)
    history: list[dict[str, float]] = []
    began, seen = time.perf_counter(), 0
    try:
        with progress_bar(progress and accelerator.is_main_process, total, description) as advance:
            advance(start)
            for step, batch in zip(range(start, total), loader):
                torch.manual_seed(config.seed * 1_000_003 + step)  # dropout masks depend on the step alone: resume is exact
                micro = _split(batch, config.grad_accum)
                sums: dict[str, float] = {}
                for i, mb in enumerate(micro):
                    sync = accelerator.no_sync(wrapped) if i < len(micro) - 1 else contextlib.nullcontext()
                    with sync, accelerator.autocast():
                        outputs, terms = step_loss(wrapped, mb)
                        loss = sum(weights[k] * v for k, v in terms.items()) / len(micro)
                        # every output takes part (times 0) so DistributedDataParallel sees each used parameter get a gradient
                        loss = loss + 0.0 * sum(o.float().sum() for o in arch.output_tensors(outputs) if o.requires_grad)
                        if not torch.isfinite(loss):
                            raise PelaError(f"loss became {float(loss.detach())} at step {step + 1}; stopped"
                                            + (f", the last good checkpoint is kept in {out / 'checkpoints'}" if out and config.save_every else ""))
                        accelerator.backward(loss)
                    for k, v in terms.items():
                        sums[k] = sums.get(k, 0.0) + float(v.detach()) / len(micro)
                if config.clip:
                    accelerator.clip_grad_norm_(wrapped.parameters(), config.clip)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
                seen += config.batch_size
                rate = seen / (time.perf_counter() - began)
                done = step + 1
                if done % config.log_every == 0 or done == total:
                    row = {"step": done, "loss": sum(weights[k] * v for k, v in sums.items()), **sums,
                           "lr": scheduler.get_last_lr()[0], "items_per_s": rate, "rss_mib": resident_mib()}
                    history.append(row)
                    log.write(row)
                advance(info=" ".join(f"{k} {v:.4g}" for k, v in sums.items()) + f" | {rate:.1f} items/s")
                if out and config.save_every and done % config.save_every == 0 and done < total:
                    accelerator.wait_for_everyone()
                    if accelerator.is_main_process:
                        save_checkpoint(out / "checkpoints", done, accelerator.unwrap_model(wrapped), optimizer, scheduler, rid)
                    accelerator.wait_for_everyone()
    finally:
        log.close()
    accelerator.wait_for_everyone()
    seconds = time.perf_counter() - began
    model.eval()
    checksums = _rank_checksums(model, accelerator)
    if len(set(checksums)) > 1:
        raise PelaError(f"the {len(checksums)} processes ended with different models (checksums {checksums})")
    return TrainResult(total, seconds, seen / max(seconds, 1e-9), history, checksums)


def _rank_checksums(model: nn.Module, accelerator: Any) -> list[float]:
    """One float64 checksum of the student's weights per process, to prove every rank agrees."""
    with torch.no_grad():
        local = torch.stack([p.detach().double().sum() for p in model.parameters()]).sum().reshape(1).to(accelerator.device)
    return [float(x) for x in accelerator.gather(local).cpu()]


class _MetricsLog:
    """metrics.jsonl (and TensorBoard when installed); on resume, rows past the checkpoint are dropped."""

    def __init__(self, path: Path | None, start: int):
        self.file = self.tb = None
        if path is None:
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        kept = []
        if path.exists():
            kept = [line for line in path.read_text().splitlines() if line.strip() and json.loads(line).get("step", 0) <= start]
        path.write_text("".join(line + "\n" for line in kept))
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
