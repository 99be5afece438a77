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
from typing import Any, Callable, ClassVar, Iterator

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, Sampler

from pela import arch
from pela.utils.progress import progress_bar
from pela.errors import PelaError


LOWER_IS_BETTER = ("loss", "mse")  # how a metric's name ends when keep_best should minimize it, not maximize


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
    eval_every: int | None = None  # evaluate every N steps and at the end (needs an evaluator)
    keep_best: str | None = None  # end with the weights of the best evaluation by this metric (see LOWER_IS_BETTER)
    patience: int | None = None  # with keep_best: stop after this many evaluations without a better one
    EVAL_METRICS: ClassVar[tuple[str, ...]] = ()  # what a stage's evaluation reports, so keep_best may name (empty: anything)

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
                  ("eval_every", self.eval_every, lambda v: v is None or (isinstance(v, int) and v >= 1), "an integer >= 1"),
                  ("keep_best", self.keep_best, lambda v: v is None or (isinstance(v, str) and v != ""), "a metric name"),
                  ("patience", self.patience, lambda v: v is None or (isinstance(v, int) and v >= 1), "an integer >= 1"),
                  ("mixed_precision", self.mixed_precision, lambda v: v in ("auto", "no", "bf16", "fp16"), "auto, no, bf16 or fp16")]
        for name, value, ok, allowed in checks:
            if not ok(value):
                raise PelaError(f"{name} must be {allowed}, got {value!r}")
        if self.keep_best is not None and self.EVAL_METRICS and self.keep_best not in self.EVAL_METRICS:
            raise PelaError(f"keep_best must be one of {', '.join(self.EVAL_METRICS)}, got {self.keep_best!r}")
        if self.patience is not None and self.keep_best is None:
            raise PelaError("patience needs keep_best: the metric that must keep improving")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class TrainResult:
    steps: int
    seconds: float
    items_per_s: float
    history: list[dict[str, float]] = field(default_factory=list)  # the logged metrics
    evals: list[dict[str, float]] = field(default_factory=list)  # {"step": s, metric: value} of each evaluation
    best: dict[str, float] | None = None  # with keep_best: the evaluation whose weights the model ends with
    stopped_early: bool = False  # patience ran out before the planned steps (``steps`` is where it stopped)
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
    # how often to save or log, and how many processes prepare batches, do not change what is computed;
    # settings left at None are left out, so that a run's id does not change when a new setting is added
    keep = {k: v for k, v in config.to_dict().items()
            if k not in ("save_every", "log_every", "workers") and not (k in ("eval_every", "keep_best", "patience") and v is None)}
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
        run_info: dict[str, Any] | None = None, accelerator: Any = None, description: str = "training",
        evaluator: Callable[[nn.Module], dict[str, float]] | None = None) -> TrainResult:
    """Train ``model`` in place on ``data``: ``loss = Σ weights[k] · terms[k]`` from ``step_loss``.

    With ``evaluator`` (the model, in eval mode, to ``{metric: value}``), the model is evaluated at the
    end and every ``config.eval_every`` steps, on the main process, and each result is logged as
    ``eval_<metric>``. With ``config.keep_best`` it is evaluated at least once an epoch, and the model
    ends with the weights of its best evaluation by that metric, not necessarily the last; with
    ``config.patience`` too, training stops after that many evaluations without a better one.
    """
    from accelerate.utils import broadcast, set_seed

    from pela.training.checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint

    if resume and out is None:
        raise PelaError("resume needs the output directory that holds the checkpoints")
    accelerator = accelerator or make_accelerator(config)
    if not accelerator.split_batches:
        raise PelaError("the Accelerator must split batches (DataLoaderConfiguration(split_batches=True))")
    if config.batch_size % (accelerator.num_processes * config.grad_accum):
        raise PelaError(f"batch size {config.batch_size} must divide evenly over {accelerator.num_processes} processes × {config.grad_accum} accumulation steps")
    set_seed(config.seed)
    if (config.eval_every or config.keep_best) and evaluator is None:
        raise PelaError(f"{'eval_every' if config.eval_every else 'keep_best'} needs data to evaluate on")
    per_epoch = len(data) // config.batch_size
    total = config.steps or max(1, math.ceil((config.epochs or 1.0) * per_epoch))
    rid = run_id(config, {"total": total, "n": len(data), **(run_info or {})})
    eval_every = config.eval_every or (max(1, per_epoch) if config.keep_best else None)

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
    best = _Best(config.keep_best, out / "checkpoints" if out else None, rid, start, accelerator.is_main_process) if config.keep_best else None
    # a resumed run's result covers the whole run: the rows logged before its checkpoint come first
    history = [r for r in log.kept if not _is_eval(r)]
    evals = [{"step": r["step"], **{k[len("eval_"):]: v for k, v in r.items() if k.startswith("eval_")}} for r in log.kept if _is_eval(r)]
    last_eval = ""
    stopped = None  # the step where patience ran out
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
                stop = False
                if evaluator is not None and (done == total or (eval_every and done % eval_every == 0)):
                    plain = accelerator.unwrap_model(wrapped)
                    metrics = _evaluate(evaluator, plain, accelerator) if accelerator.is_main_process else {}
                    plain.train()
                    if accelerator.is_main_process:
                        row = {"step": done, **{f"eval_{k}": v for k, v in metrics.items()}}
                        evals.append({"step": done, **metrics})
                        log.write(row)
                        shown = config.keep_best or next(iter(metrics), None)
                        last_eval = f" | eval {shown} {metrics[shown]:.4g}" if shown else ""
                    if best is not None:
                        better = torch.tensor([float(accelerator.is_main_process and best.better(metrics))], device=accelerator.device)
                        if float(broadcast(better, from_process=0)[0]):
                            best.keep(done, metrics.get(config.keep_best), plain)
                        # with patience: stop once the metric has not improved for that many evaluations
                        # (every process counts the same ones, so all stop at once)
                        stop = bool(config.patience and best.step is not None and done < total
                                    and (done - best.step) // eval_every >= config.patience)
                if done % config.log_every == 0 or done == total or stop:
                    row = {"step": done, "loss": sum(weights[k] * v for k, v in sums.items()), **sums,
                           "lr": scheduler.get_last_lr()[0], "items_per_s": rate, "rss_mib": resident_mib()}
                    history.append(row)
                    log.write(row)
                advance(info=" ".join(f"{k} {v:.4g}" for k, v in sums.items()) + f" | {rate:.1f} items/s" + last_eval)
                if stop:
                    stopped = done
                    break
                if out and config.save_every and done % config.save_every == 0 and done < total:
                    accelerator.wait_for_everyone()
                    if accelerator.is_main_process:
                        save_checkpoint(out / "checkpoints", done, accelerator.unwrap_model(wrapped), optimizer, scheduler, rid)
                    accelerator.wait_for_everyone()
    finally:
        log.close()
    accelerator.wait_for_everyone()
    seconds = time.perf_counter() - began
    steps = stopped or total
    if best is not None and best.step is not None and best.step != steps:
        best.restore(model)
    model.eval()
    checksums = _rank_checksums(model, accelerator)
    if len(set(checksums)) > 1:
        raise PelaError(f"the {len(checksums)} processes ended with different models (checksums {checksums})")
    best_row = {"step": best.step, config.keep_best: best.value} if best is not None and best.step is not None else None
    return TrainResult(steps, seconds, seen / max(seconds, 1e-9), history, evals=evals, best=best_row, rank_checksums=checksums,
                       stopped_early=stopped is not None)


def _is_eval(row: dict[str, float]) -> bool:
    return any(k.startswith("eval_") for k in row)


def _evaluate(evaluator: Callable[[nn.Module], dict[str, float]], model: nn.Module, accelerator: Any) -> dict[str, float]:
    """Run the evaluator on the model in eval mode; it may draw random numbers (a DataLoader does)
    without moving the training's, so that a run gives the same model with or without evaluations."""
    devices = [accelerator.device.index or 0] if accelerator.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices), torch.no_grad():
        metrics = evaluator(model.eval())
    return {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


class _Best:
    """The best evaluation so far by one metric, with CPU copies of the weights the model had then
    (the trainable ones and the buffers: frozen weights do not change). The main process also keeps
    them in ``checkpoints/best``, so that a resumed run still knows its best."""

    def __init__(self, metric: str, root: Path | None, rid: str, start: int, write: bool):
        self.metric, self.rid, self.write = metric, rid, write
        from pela.training.checkpoint import BEST

        self.dir = root / BEST if root is not None else None
        self.step: int | None = None
        self.value: float | None = None
        self.state: dict[str, torch.Tensor] = {}
        if self.dir is not None and start > 0:
            self._read(start)

    def better(self, metrics: dict[str, float]) -> bool:
        if self.metric not in metrics:
            raise PelaError(f"cannot keep the best model by {self.metric!r}: the evaluation reports {', '.join(metrics) or 'nothing'}")
        value = metrics[self.metric]
        if self.value is None:
            return math.isfinite(value)
        return value < self.value if self.metric.endswith(LOWER_IS_BETTER) else value > self.value

    def keep(self, step: int, value: float | None, model: nn.Module) -> None:
        self.step, self.value = step, value
        self.state = {n: t.detach().to("cpu", copy=True).contiguous() for n, t in _trainable(model)}
        if self.dir is not None and self.write:
            from safetensors.torch import save_file

            from pela.models.io import atomic_dir

            with atomic_dir(self.dir, overwrite=True) as tmp:
                save_file(self.state, str(tmp / "model.safetensors"))
                (tmp / "best.json").write_text(json.dumps({"step": step, "metric": self.metric, "value": value, "run_id": self.rid}))

    def restore(self, model: nn.Module) -> None:
        current = dict(_trainable(model))
        with torch.no_grad():
            for name, saved in self.state.items():
                current[name].copy_(saved)

    def _read(self, start: int) -> None:
        """The best of a run being resumed: only its own, and only from the steps before the checkpoint
        (later ones are trained again, identically)."""
        from safetensors.torch import load_file

        try:
            info = json.loads((self.dir / "best.json").read_text())
        except (OSError, ValueError):
            return
        if info.get("run_id") == self.rid and info.get("metric") == self.metric and int(info.get("step", start + 1)) <= start:
            self.step, self.value = int(info["step"]), info["value"]
            self.state = load_file(str(self.dir / "model.safetensors"))


def _trainable(model: nn.Module) -> list[tuple[str, torch.Tensor]]:
    return [(n, p) for n, p in model.named_parameters() if p.requires_grad] + list(model.named_buffers())


def _rank_checksums(model: nn.Module, accelerator: Any) -> list[float]:
    """One float64 checksum of the student's weights per process, to prove every rank agrees."""
    with torch.no_grad():
        local = torch.stack([p.detach().double().sum() for p in model.parameters()]).sum().reshape(1).to(accelerator.device)
    return [float(x) for x in accelerator.gather(local).cpu()]


class _MetricsLog:
    """metrics.jsonl (and TensorBoard when installed); on resume, rows past the checkpoint are dropped."""

    def __init__(self, path: Path | None, start: int):
        self.file = self.tb = None
        self.kept: list[dict[str, float]] = []  # the rows of the steps before ``start``, kept
        if path is None:
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        kept = []
        if path.exists():
            kept = [line for line in path.read_text().splitlines() if line.strip() and json.loads(line).get("step", 0) <= start]
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
