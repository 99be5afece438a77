"""The training loop shared by distillation and fine-tuning, in nanoGPT's order.

`fit` owns everything that is not the loss: Accelerate (devices, mixed precision,
processes), AdamW with warm-up + cosine from transformers, gradient accumulation and clipping,
seeded batches that can restart at any step, crash-safe checkpoints, NaN detection, metrics and
the progress bar. A stage supplies ``step_loss(model, batch) -> (outputs, {term: tensor})`` and the
weight of each term.
"""

from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn
from torch.utils.data import Dataset

from pela import arch
from pela.data.loader import make_loader
from pela.errors import Interrupted, PelaError
from pela.training.accelerator import is_sharded, make_accelerator, rank_checksums, resident_mib
from pela.training.batches import EpochBatches, split_batch
from pela.training.checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint
from pela.training.config import TrainConfig, TrainResult, run_id
from pela.training.metrics_log import MetricsLog
from pela.training.periodic_evaluation import Evaluations, is_eval
from pela.training.rates import param_groups
from pela.utils.progress import progress_bar
from pela.utils.signals import deferred_interrupt

# a stage's loss: (model, batch) -> (outputs, {term: tensor})
StepLoss = Callable[[nn.Module, dict[str, torch.Tensor]], tuple[Any, dict[str, torch.Tensor]]]
Evaluator = Callable[[nn.Module], dict[str, float]]  # the model, in eval mode -> {metric: value}
Rates = list[tuple[list[nn.Parameter], float]]  # parameter groups and their multiple of the lr


def cosine_schedule(optimizer: torch.optim.Optimizer, warmup_steps: int, total_steps: int) -> Any:
    from transformers import get_cosine_schedule_with_warmup

    return get_cosine_schedule_with_warmup(optimizer, warmup_steps, total_steps)


@dataclass
class _Run:
    """One call of `fit` once Accelerate has prepared it: what every step trains with."""

    config: TrainConfig
    accelerator: Any
    wrapped: nn.Module  # the model as Accelerate wrapped it (DDP, FSDP or itself)
    optimizer: Any
    scheduler: Any
    loader: Any
    rid: str  # `run_id`: a checkpoint may only resume its own run
    start: int  # the step it starts from (after a resume, the checkpoint's)
    total: int
    out: Path | None


def fit(model: nn.Module, data: Dataset, collate_fn: Callable, config: TrainConfig,
        step_loss: StepLoss, weights: dict[str, float], *, out: Path | None = None,
        resume: bool = False, progress: bool = False, run_info: dict[str, Any] | None = None,
        accelerator: Any = None, description: str = "training",
        evaluator: Evaluator | None = None, rates: Rates | None = None) -> TrainResult:
    """Train ``model`` in place on ``data``: ``loss = Σ weights[k] · terms[k]`` from ``step_loss``.

    ``evaluator`` (the model, in eval mode, to ``{metric: value}``) runs as `Evaluations` says:
    every ``config.eval_every`` steps and at the end; with ``config.keep_best`` the model ends with
    the weights of its best evaluation, and with ``config.patience`` training may stop early.
    ``rates``: groups of parameters trained at a multiple of ``config.lr`` (`pela.training.rates`).
    """
    from accelerate.utils import set_seed

    if resume and out is None:
        raise PelaError("resume needs the output directory that holds the checkpoints")
    accelerator = accelerator or make_accelerator(config)
    _check_run(config, accelerator, resume, evaluator)
    set_seed(config.seed)
    per_epoch = len(data) // config.batch_size
    total = config.steps or max(1, math.ceil((config.epochs or 1.0) * per_epoch))
    rid = run_id(config, {"total": total, "n": len(data), **(run_info or {})})
    run = _prepare(model, data, collate_fn, config, accelerator, rates, out, resume, rid, total)
    log = MetricsLog(out / "metrics.jsonl" if out and accelerator.is_main_process else None,
                     run.start)
    evals = Evaluations(evaluator, config, total=total, per_epoch=per_epoch, log=log,
                        root=out / "checkpoints" if out else None, rid=rid, start=run.start,
                        accelerator=accelerator)
    # a resumed run's history covers the whole run
    history = [r for r in log.kept if not is_eval(r)]
    began = time.perf_counter()
    try:
        stopped, seen = _steps(run, step_loss, weights, evals, log, history, progress, description)
    finally:
        log.close()
    accelerator.wait_for_everyone()
    seconds = time.perf_counter() - began
    steps = stopped or total
    best = evals.finish(model, steps)
    model.eval()
    checksums = rank_checksums(model, accelerator)
    if len(set(checksums)) > 1:
        raise PelaError(f"the {len(checksums)} processes ended with different models "
                        f"(checksums {checksums})")
    return TrainResult(steps, seconds, seen / max(seconds, 1e-9), history, evals=evals.rows,
                       best=best, rank_checksums=checksums, stopped_early=stopped is not None)


def _check_run(config: TrainConfig, accelerator: Any, resume: bool,
               evaluator: Evaluator | None) -> None:
    if not accelerator.split_batches:
        raise PelaError("the Accelerator must split batches "
                        "(DataLoaderConfiguration(split_batches=True))")
    if config.batch_size % (accelerator.num_processes * config.grad_accum):
        raise PelaError(f"batch size {config.batch_size} must divide evenly over "
                        f"{accelerator.num_processes} processes × {config.grad_accum} "
                        "accumulation steps")
    if is_sharded(accelerator) and (config.save_every or resume or config.keep_best):
        raise PelaError("under FSDP pela does not write checkpoints or keep the best evaluation "
                        "yet: run without save_every, --resume and --keep-best, or without FSDP")
    if (config.eval_every or config.keep_best) and evaluator is None:
        raise PelaError(f"{'eval_every' if config.eval_every else 'keep_best'} needs data to "
                        "evaluate on")


def _prepare(model: nn.Module, data: Dataset, collate_fn: Callable, config: TrainConfig,
             accelerator: Any, rates: Rates | None, out: Path | None, resume: bool, rid: str,
             total: int) -> _Run:
    """The optimizer, schedule and batches, restored from the last checkpoint on ``resume``."""
    model.train().to(accelerator.device)
    trained = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(param_groups(trained, config.lr, rates), lr=config.lr,
                                  weight_decay=config.weight_decay)
    scheduler = cosine_schedule(optimizer, int(config.warmup * total), total)
    start = _resume(out, model, optimizer, scheduler, rid) if resume else 0
    lengths = getattr(data, "lengths", None) if config.group_by_length else None
    sampler = EpochBatches(len(data), config.batch_size, config.seed, start, total,
                           list(lengths) if lengths is not None else None)
    loader = make_loader(data, collate_fn, config.workers, batch_sampler=sampler)
    wrapped, optimizer, loader, scheduler = accelerator.prepare(model, optimizer, loader, scheduler)
    return _Run(config, accelerator, wrapped, optimizer, scheduler, loader, rid, start, total, out)


def _resume(out: Path, model: nn.Module, optimizer: Any, scheduler: Any, rid: str) -> int:
    """Load the run's last checkpoint; the step it was written at."""
    ckpt = latest_checkpoint(out / "checkpoints")
    if ckpt is None:
        raise PelaError(f"no checkpoint to resume from in {out}")
    return load_checkpoint(ckpt, model, optimizer, scheduler, rid)


def _steps(run: _Run, step_loss: StepLoss, weights: dict[str, float], evals: Evaluations,
           log: MetricsLog, history: list[dict[str, float]], progress: bool,
           description: str) -> tuple[int | None, int]:
    """Train from ``run.start`` to ``run.total``: the step where patience ran out (None if it did
    not) and the items seen."""
    config, accelerator = run.config, run.accelerator
    began, seen = time.perf_counter(), 0
    # several processes would each see Ctrl-C at another step
    single = accelerator.num_processes == 1
    shown = progress and accelerator.is_main_process
    with (deferred_interrupt(single) as interrupted,
          progress_bar(shown, run.total, description) as advance):
        advance(run.start)
        for step, batch in zip(range(run.start, run.total), run.loader):
            # dropout masks depend on the step alone: resume is exact
            torch.manual_seed(config.seed * 1_000_003 + step)
            sums = _optimizer_step(run, batch, step_loss, weights, step)
            seen += config.batch_size
            rate = seen / (time.perf_counter() - began)
            done = step + 1
            stop = evals.after_step(done, run.wrapped)
            if done % config.log_every == 0 or done == run.total or stop:
                row = {"step": done, "loss": sum(weights[k] * v for k, v in sums.items()), **sums,
                       "lr": run.scheduler.get_last_lr()[0], "items_per_s": rate,
                       "rss_mib": resident_mib()}
                history.append(row)
                log.write(row)
            terms = " ".join(f"{k} {v:.4g}" for k, v in sums.items())
            advance(info=f"{terms} | {rate:.1f} items/s{evals.shown}")
            if stop:
                return done, seen
            if done < run.total:
                _between_steps(run, done, interrupted())
    return None, seen


def _optimizer_step(run: _Run, batch: dict[str, torch.Tensor], step_loss: StepLoss,
                    weights: dict[str, float], step: int) -> dict[str, float]:
    """One optimizer step over ``config.grad_accum`` micro-batches; each loss term's mean."""
    accelerator = run.accelerator
    micro = split_batch(batch, run.config.grad_accum)
    sums: dict[str, float] = {}
    for i, mb in enumerate(micro):
        last = i == len(micro) - 1
        sync = contextlib.nullcontext() if last else accelerator.no_sync(run.wrapped)
        with sync, accelerator.autocast():
            outputs, terms = step_loss(run.wrapped, mb)
            loss = sum(weights[k] * v for k, v in terms.items()) / len(micro)
            # every output takes part (times 0) so DistributedDataParallel sees each used
            # parameter get a gradient
            used = arch.output_tensors(outputs)
            loss = loss + 0.0 * sum(o.float().sum() for o in used if o.requires_grad)
            _check_finite(run, loss, step)
            accelerator.backward(loss)
        for k, v in terms.items():
            sums[k] = sums.get(k, 0.0) + float(v.detach()) / len(micro)
    if run.config.clip:
        accelerator.clip_grad_norm_(run.wrapped.parameters(), run.config.clip)
    run.optimizer.step()
    run.scheduler.step()
    run.optimizer.zero_grad(set_to_none=True)
    return sums


def _check_finite(run: _Run, loss: torch.Tensor, step: int) -> None:
    if torch.isfinite(loss):
        return
    kept = ""
    if run.out and run.config.save_every:
        kept = f", the last good checkpoint is kept in {run.out / 'checkpoints'}"
    raise PelaError(f"loss became {float(loss.detach())} at step {step + 1}; stopped{kept}")


def _between_steps(run: _Run, done: int, halt: bool) -> None:
    """A checkpoint when one is due, and on Ctrl-C (``halt``): then the run stops, with that step
    saved."""
    every = run.config.save_every
    if run.out and (halt or every and done % every == 0):
        _checkpoint(run, done)
    if halt:
        saved = ", which is saved" if run.out else ""
        raise Interrupted(f"interrupted at step {done} of {run.total}{saved}")


def _checkpoint(run: _Run, done: int) -> None:
    accelerator = run.accelerator
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        save_checkpoint(run.out / "checkpoints", done, accelerator.unwrap_model(run.wrapped),
                        run.optimizer, run.scheduler, run.rid)
    accelerator.wait_for_everyone()
