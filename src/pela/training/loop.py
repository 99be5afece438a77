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


def cosine_schedule(optimizer: torch.optim.Optimizer, warmup_steps: int, total_steps: int) -> Any:
    from transformers import get_cosine_schedule_with_warmup

    return get_cosine_schedule_with_warmup(optimizer, warmup_steps, total_steps)


def fit(model: nn.Module, data: Dataset, collate_fn: Callable, config: TrainConfig,
        step_loss: Callable[[nn.Module, dict[str, torch.Tensor]], tuple[Any, dict[str, torch.Tensor]]],
        weights: dict[str, float], *, out: Path | None = None, resume: bool = False, progress: bool = False,
        run_info: dict[str, Any] | None = None, accelerator: Any = None, description: str = "training",
        evaluator: Callable[[nn.Module], dict[str, float]] | None = None, rates: list[tuple[list[nn.Parameter], float]] | None = None) -> TrainResult:
    """Train ``model`` in place on ``data``: ``loss = Σ weights[k] · terms[k]`` from ``step_loss``.

    ``evaluator`` (the model, in eval mode, to ``{metric: value}``) runs as `Evaluations` says: every
    ``config.eval_every`` steps and at the end; with ``config.keep_best`` the model ends with the
    weights of its best evaluation, and with ``config.patience`` training may stop early. ``rates``:
    groups of parameters trained at a multiple of ``config.lr`` (`pela.training.rates`).
    """
    from accelerate.utils import set_seed

    if resume and out is None:
        raise PelaError("resume needs the output directory that holds the checkpoints")
    accelerator = accelerator or make_accelerator(config)
    _check_processes(config, accelerator)
    if is_sharded(accelerator) and (config.save_every or resume or config.keep_best):
        raise PelaError("under FSDP pela does not write checkpoints or keep the best evaluation yet: run without "
                        "save_every, --resume and --keep-best, or without FSDP")
    set_seed(config.seed)
    if (config.eval_every or config.keep_best) and evaluator is None:
        raise PelaError(f"{'eval_every' if config.eval_every else 'keep_best'} needs data to evaluate on")
    per_epoch = len(data) // config.batch_size
    total = config.steps or max(1, math.ceil((config.epochs or 1.0) * per_epoch))
    rid = run_id(config, {"total": total, "n": len(data), **(run_info or {})})

    model.train().to(accelerator.device)
    trained = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(param_groups(trained, config.lr, rates), lr=config.lr, weight_decay=config.weight_decay)
    scheduler = cosine_schedule(optimizer, int(config.warmup * total), total)
    start = _resume(out, model, optimizer, scheduler, rid) if resume else 0
    lengths = getattr(data, "lengths", None) if config.group_by_length else None
    sampler = EpochBatches(len(data), config.batch_size, config.seed, start, total, list(lengths) if lengths is not None else None)
    loader = make_loader(data, collate_fn, config.workers, batch_sampler=sampler)
    wrapped, optimizer, loader, scheduler = accelerator.prepare(model, optimizer, loader, scheduler)
    log = MetricsLog(out / "metrics.jsonl" if out and accelerator.is_main_process else None, start)
    evals = Evaluations(evaluator, config, total=total, per_epoch=per_epoch, log=log, root=out / "checkpoints" if out else None,
                        rid=rid, start=start, accelerator=accelerator)
    history = [r for r in log.kept if not is_eval(r)]  # a resumed run's history covers the whole run
    stopped = None  # the step where patience ran out
    began, seen = time.perf_counter(), 0
    single = accelerator.num_processes == 1  # several processes would each see Ctrl-C at another step
    try:
        with (deferred_interrupt(single) as interrupted,
              progress_bar(progress and accelerator.is_main_process, total, description) as advance):
            advance(start)
            for step, batch in zip(range(start, total), loader):
                torch.manual_seed(config.seed * 1_000_003 + step)  # dropout masks depend on the step alone: resume is exact
                sums = _optimizer_step(wrapped, batch, step_loss, weights, config, accelerator, optimizer, scheduler, step, out)
                seen += config.batch_size
                rate = seen / (time.perf_counter() - began)
                done = step + 1
                stop = evals.after_step(done, wrapped)
                if done % config.log_every == 0 or done == total or stop:
                    row = {"step": done, "loss": sum(weights[k] * v for k, v in sums.items()), **sums,
                           "lr": scheduler.get_last_lr()[0], "items_per_s": rate, "rss_mib": resident_mib()}
                    history.append(row)
                    log.write(row)
                advance(info=" ".join(f"{k} {v:.4g}" for k, v in sums.items()) + f" | {rate:.1f} items/s" + evals.shown)
                if stop:
                    stopped = done
                    break
                if done < total:
                    _between_steps(out, done, total, config, interrupted(), accelerator, (wrapped, optimizer, scheduler), rid)
    finally:
        log.close()
    accelerator.wait_for_everyone()
    seconds = time.perf_counter() - began
    steps = stopped or total
    best = evals.finish(model, steps)
    model.eval()
    checksums = rank_checksums(model, accelerator)
    if len(set(checksums)) > 1:
        raise PelaError(f"the {len(checksums)} processes ended with different models (checksums {checksums})")
    return TrainResult(steps, seconds, seen / max(seconds, 1e-9), history, evals=evals.rows, best=best, rank_checksums=checksums,
                       stopped_early=stopped is not None)


def _check_processes(config: TrainConfig, accelerator: Any) -> None:
    if not accelerator.split_batches:
        raise PelaError("the Accelerator must split batches (DataLoaderConfiguration(split_batches=True))")
    if config.batch_size % (accelerator.num_processes * config.grad_accum):
        raise PelaError(f"batch size {config.batch_size} must divide evenly over {accelerator.num_processes} processes × "
                        f"{config.grad_accum} accumulation steps")


def _resume(out: Path, model: nn.Module, optimizer: Any, scheduler: Any, rid: str) -> int:
    """Load the run's last checkpoint; the step it was written at."""
    ckpt = latest_checkpoint(out / "checkpoints")
    if ckpt is None:
        raise PelaError(f"no checkpoint to resume from in {out}")
    return load_checkpoint(ckpt, model, optimizer, scheduler, rid)


def _optimizer_step(wrapped: nn.Module, batch: dict[str, torch.Tensor], step_loss: Callable, weights: dict[str, float],
                    config: TrainConfig, accelerator: Any, optimizer: Any, scheduler: Any, step: int, out: Path | None) -> dict[str, float]:
    """One optimizer step over ``config.grad_accum`` micro-batches; each loss term's mean."""
    micro = split_batch(batch, config.grad_accum)
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
    return sums


def _between_steps(out: Path | None, done: int, total: int, config: TrainConfig, halt: bool, accelerator: Any,
                   state: tuple[nn.Module, Any, Any], rid: str) -> None:
    """A checkpoint when one is due, and on Ctrl-C (``halt``): then the run stops, with that step saved."""
    if out and (halt or config.save_every and done % config.save_every == 0):
        _checkpoint(out, done, accelerator, *state, rid)
    if halt:
        raise Interrupted(f"interrupted at step {done} of {total}" + (", which is saved" if out else ""))


def _checkpoint(out: Path, done: int, accelerator: Any, wrapped: nn.Module, optimizer: Any, scheduler: Any, rid: str) -> None:
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        save_checkpoint(out / "checkpoints", done, accelerator.unwrap_model(wrapped), optimizer, scheduler, rid)
    accelerator.wait_for_everyone()
