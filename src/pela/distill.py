"""Stage 2 of PELA: intermediate pre-training of the low-rank student by distillation from the teacher.

Per step (one student forward, hooks capture every block's output in that same pass):

    L = task · L_task + α · mean_l MSE(h_l^S, h_l^T) + β · MSE(z^S, z^T) + γ · mean_p (max|B_p A_p − W_p| − ε)²

The loop reads top to bottom in nanoGPT's order and runs on one process or many through
Hugging Face Accelerate (``accelerate launch -m pela distill …``); ``--batch-size`` is the global batch.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset, Sampler

from . import arch
from ._progress import progress_bar
from .errors import PelaError
from .layers import LowRankLinear



@dataclass(frozen=True)
class DistillConfig:
    """Settings of `distill`; defaults follow PELA (METHOD.md §2) where it has one.

    Give ``steps`` or ``epochs`` (default: one epoch). ``batch_size`` is the global batch per
    optimizer step, split into ``grad_accum`` micro-batches and across processes.
    """

    steps: int | None = None
    epochs: float | None = None
    batch_size: int = 32
    lr: float = 1e-4
    weight_decay: float = 0.05
    warmup: float = 0.05  # fraction of the steps spent warming up
    alpha: float = 1.0  # feature distillation
    beta: float = 0.0  # logit distillation
    task: float = 1.0  # task loss, used when batches carry labels and the model outputs class logits
    gamma: float = 0.0  # weight-perturbation regularization
    epsilon: float = 1e-3
    grad_accum: int = 1
    clip: float | None = 1.0
    seed: int = 0
    mixed_precision: str = "auto"  # auto = bf16 on a GPU, none on the CPU
    save_every: int | None = None
    log_every: int = 10
    blocks: str | None = None  # regex overriding automatic block discovery

    def __post_init__(self) -> None:
        if self.steps is not None and self.epochs is not None:
            raise PelaError("give --steps or --epochs, not both")
        checks = [("steps", self.steps, lambda v: v is None or (isinstance(v, int) and v >= 1), "an integer >= 1"),
                  ("epochs", self.epochs, lambda v: v is None or (math.isfinite(v) and v > 0), "a number > 0"),
                  ("batch_size", self.batch_size, lambda v: isinstance(v, int) and v >= 1, "an integer >= 1"),
                  ("lr", self.lr, lambda v: math.isfinite(v) and v > 0, "a number > 0"),
                  ("warmup", self.warmup, lambda v: 0 <= v < 1, "a fraction in [0, 1)"),
                  ("grad_accum", self.grad_accum, lambda v: isinstance(v, int) and 1 <= v <= self.batch_size, "an integer in [1, batch_size]"),
                  ("save_every", self.save_every, lambda v: v is None or (isinstance(v, int) and v >= 1), "an integer >= 1"),
                  ("log_every", self.log_every, lambda v: isinstance(v, int) and v >= 1, "an integer >= 1"),
                  ("mixed_precision", self.mixed_precision, lambda v: v in ("auto", "no", "bf16", "fp16"), "auto, no, bf16 or fp16")]
        for name, value, ok, allowed in checks:
            if not ok(value):
                raise PelaError(f"{name} must be {allowed}, got {value!r}")
        for name in ("alpha", "beta", "task", "gamma", "epsilon"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v >= 0):
                raise PelaError(f"{name} must be a finite number >= 0, got {v!r}")
        if self.alpha == self.beta == self.task == self.gamma == 0:
            raise PelaError("all loss weights are 0: nothing to train")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class DistillResult:
    steps: int
    seconds: float
    items_per_s: float
    history: list[dict[str, float]] = field(default_factory=list)  # the logged metrics
    rank_checksums: list[float] = field(default_factory=list)  # one per process: all equal


# ---------------------------------------------------------------- losses (pure functions)
def feature_loss(student: list[torch.Tensor], teacher: list[torch.Tensor]) -> torch.Tensor:
    """Mean over blocks of the MSE between student and teacher block outputs (all tokens)."""
    return torch.stack([F.mse_loss(s.float(), t.float()) for s, t in zip(student, teacher)]).mean()


def weight_perturbation(pairs: list[tuple[LowRankLinear, torch.Tensor]], epsilon: float) -> torch.Tensor:
    """Mean over factorized layers of ``(max|B·A − W| − ε)²``: keeps the student near the original weights."""
    terms = [((layer.b.weight @ layer.a.weight - w).abs().max() - epsilon) ** 2 for layer, w in pairs]
    return torch.stack(terms).mean()


def cosine_schedule(optimizer: torch.optim.Optimizer, warmup_steps: int, total_steps: int) -> Any:
    from transformers import get_cosine_schedule_with_warmup

    return get_cosine_schedule_with_warmup(optimizer, warmup_steps, total_steps)


# ---------------------------------------------------------------- plumbing
class EpochBatches(Sampler[list[int]]):
    """Global batches of a fresh seeded permutation each epoch, starting at any step (for resume)."""

    def __init__(self, n: int, batch_size: int, seed: int, start: int, total: int):
        if n < batch_size:
            raise PelaError(f"dataset has {n} examples, fewer than the batch size {batch_size}")
        self.n, self.batch_size, self.seed, self.start, self.total = n, batch_size, seed, start, total
        self.per_epoch = n // batch_size

    def __len__(self) -> int:
        return self.total - self.start

    def __iter__(self) -> Iterator[list[int]]:
        perm, perm_epoch = None, -1
        for step in range(self.start, self.total):
            epoch, k = divmod(step, self.per_epoch)
            if epoch != perm_epoch:
                perm, perm_epoch = torch.randperm(self.n, generator=torch.Generator().manual_seed(self.seed + epoch)), epoch
            yield perm[k * self.batch_size:(k + 1) * self.batch_size].tolist()


class BlockCapture:
    """Forward hooks that keep the output of each named block from the latest forward pass."""

    def __init__(self, model: nn.Module, names: list[str]):
        self.outputs: dict[str, torch.Tensor] = {}
        modules = dict(model.named_modules())
        self.names = names
        self.handles = [modules[n].register_forward_hook(self._hook(n)) for n in names]

    def _hook(self, name: str) -> Callable:
        def hook(module: nn.Module, args: Any, output: Any) -> None:
            self.outputs[name] = arch.block_output(output)

        return hook

    def take(self) -> list[torch.Tensor]:
        out = [self.outputs[n] for n in self.names if n in self.outputs]
        self.outputs = {}
        return out

    def remove(self) -> None:
        for h in self.handles:
            h.remove()


def check_pair(student: nn.Module, teacher: nn.Module) -> list[tuple[LowRankLinear, torch.Tensor]]:
    """Refuse a teacher/student pair of different architectures; return (student layer, teacher W) pairs."""
    if any(isinstance(m, LowRankLinear) for m in teacher.modules()):
        raise PelaError("the teacher is itself compressed; give the original dense model as --teacher")
    teacher_modules = dict(teacher.named_modules())
    pairs = []
    for name, layer in student.named_modules():
        if isinstance(layer, LowRankLinear):
            wb = arch.linear_weight(teacher_modules[name]) if name in teacher_modules else None
            if wb is None or tuple(wb[0].shape) != (layer.out_features, layer.in_features):
                raise PelaError(f"teacher and student have different architectures: teacher has no {layer.in_features}->{layer.out_features} linear layer {name!r}")
            pairs.append((layer, wb[0].detach()))
    if not pairs:
        raise PelaError("the student has no factorized layers; compress it first (pela compress)")
    dense_s = {n: tuple(p.shape) for n, p in student.named_parameters() if not any(n.startswith(k + ".") for k in _lowrank_names(student))}
    dense_t = {n: tuple(p.shape) for n, p in teacher.named_parameters()}
    wrong = [n for n, s in dense_s.items() if dense_t.get(n) != s]
    if wrong:
        raise PelaError(f"teacher and student have different architectures: parameter {wrong[0]!r} differs")
    return pairs


def _lowrank_names(model: nn.Module) -> list[str]:
    return [n for n, m in model.named_modules() if isinstance(m, LowRankLinear)]


def _split(batch: dict[str, torch.Tensor], parts: int) -> list[dict[str, torch.Tensor]]:
    if parts == 1:
        return [batch]
    chunks = {k: torch.tensor_split(v, parts) for k, v in batch.items()}
    return [{k: v[i] for k, v in chunks.items()} for i in range(parts)]


def run_id(config: DistillConfig, extra: dict[str, Any]) -> str:
    """What makes two runs the same run (a checkpoint may only resume its own run)."""
    keep = {k: v for k, v in config.to_dict().items() if k not in ("save_every", "log_every")}
    return hashlib.sha256(json.dumps({"config": keep, **extra}, sort_keys=True, default=str).encode()).hexdigest()[:16]


# ---------------------------------------------------------------- the loop
def distill(student: nn.Module, teacher: nn.Module, data: Dataset, config: DistillConfig | None = None, *,
            collate_fn: Callable | None = None, out: str | Path | None = None, resume: bool = False,
            progress: bool = False, run_info: dict[str, Any] | None = None, accelerator: Any = None) -> DistillResult:
    """Train ``student`` (in place) to match the frozen ``teacher`` on ``data``.

    Args:
        student: a model compressed by `pela.compress`.
        teacher: the original dense model; frozen here (eval mode, no gradients, never updated).
        data: a dataset of examples; ``collate_fn`` turns a list of them into a dict of model inputs
            (``"labels"`` is taken out for the task loss). Defaults to `pela.data.Collator(student)`.
        config: a `DistillConfig`.
        out: directory for checkpoints (``save_every``) and ``metrics.jsonl``; required to resume.
        resume: continue from the newest checkpoint in ``out``.
        progress: show a rich progress bar.
        run_info: extra facts identifying the run (data path, model sources) for resume checks.
    """
    from accelerate import Accelerator
    from accelerate.utils import set_seed

    from .checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint
    from .data import Collator

    config = config or DistillConfig()
    out = Path(out) if out is not None else None
    if resume and out is None:
        raise PelaError("resume needs the output directory that holds the checkpoints")
    pairs = check_pair(student, teacher)
    blocks = arch.find_blocks(student, config.blocks)
    if config.alpha > 0 and not blocks:
        raise PelaError(f"found no Transformer blocks in {type(student).__name__}; name them with --blocks REGEX")
    if accelerator is None:
        mp = config.mixed_precision if config.mixed_precision != "auto" else ("bf16" if torch.cuda.is_available() else "no")
        from accelerate.utils import DataLoaderConfiguration, DistributedDataParallelKwargs

        # parts of a model can sit out a distillation step (BERT's pooler, a head with beta=task=0)
        ddp = DistributedDataParallelKwargs(find_unused_parameters=True)
        accelerator = Accelerator(mixed_precision=mp, cpu=not torch.cuda.is_available(), kwargs_handlers=[ddp],
                                  dataloader_config=DataLoaderConfiguration(split_batches=True))  # --batch-size is global
    if not accelerator.split_batches:
        raise PelaError("the Accelerator passed to distill must split batches (DataLoaderConfiguration(split_batches=True))")
    if config.batch_size % (accelerator.num_processes * config.grad_accum):
        raise PelaError(f"batch size {config.batch_size} must divide evenly over {accelerator.num_processes} processes × {config.grad_accum} accumulation steps")
    set_seed(config.seed)
    per_epoch = len(data) // config.batch_size
    total = config.steps or max(1, math.ceil((config.epochs or 1.0) * per_epoch))
    rid = run_id(config, {"total": total, "n": len(data), **(run_info or {})})

    teacher.eval().requires_grad_(False).to(accelerator.device)
    student.train().to(accelerator.device)
    teacher_w = [(layer, w.to(accelerator.device)) for layer, w in pairs]
    optimizer = torch.optim.AdamW(student.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    scheduler = cosine_schedule(optimizer, int(config.warmup * total), total)
    start = 0
    if resume:
        ckpt = latest_checkpoint(out / "checkpoints")
        if ckpt is None:
            raise PelaError(f"no checkpoint to resume from in {out}")
        start = load_checkpoint(ckpt, student, optimizer, scheduler, rid)
    sampler = EpochBatches(len(data), config.batch_size, config.seed, start, total)
    loader = DataLoader(data, batch_sampler=sampler, collate_fn=collate_fn or Collator(student))
    t_capture, s_capture = BlockCapture(teacher, blocks), BlockCapture(student, blocks)
    model, optimizer, loader, scheduler = accelerator.prepare(student, optimizer, loader, scheduler)
    log = _MetricsLog(out / "metrics.jsonl" if out and accelerator.is_main_process else None, start)
    history: list[dict[str, float]] = []
    began, seen = time.perf_counter(), 0
    try:
        with progress_bar(progress and accelerator.is_main_process, total, "distilling") as advance:
            advance(start)
            for step, batch in zip(range(start, total), loader):
                torch.manual_seed(config.seed * 1_000_003 + step)  # dropout masks depend on the step alone: resume is exact
                micro = _split(batch, config.grad_accum)
                sums: dict[str, float] = {}
                for i, mb in enumerate(micro):
                    mb_labels = mb.pop("labels", None)
                    sync = accelerator.no_sync(model) if i < len(micro) - 1 else _nullcontext()
                    with sync, accelerator.autocast():
                        with torch.no_grad():
                            t_out = arch.main_output(arch.forward(teacher, mb))
                        t_feats = t_capture.take()
                        s_raw = arch.forward(model, mb)
                        s_out = arch.main_output(s_raw)
                        s_feats = s_capture.take()
                        terms = _loss_terms(config, s_feats, t_feats, s_out, t_out, mb_labels, teacher_w)
                        loss = sum(config_weight(config, k) * v for k, v in terms.items()) / len(micro)
                        # every output takes part (times 0) so DistributedDataParallel sees each used parameter get a gradient
                        loss = loss + 0.0 * sum(o.float().sum() for o in arch.output_tensors(s_raw) if o.requires_grad)
                        if not torch.isfinite(loss):
                            raise PelaError(f"loss became {float(loss.detach())} at step {step + 1}; stopped"
                                            + (f", the last good checkpoint is kept in {out / 'checkpoints'}" if out and config.save_every else ""))
                        accelerator.backward(loss)
                    for k, v in terms.items():
                        sums[k] = sums.get(k, 0.0) + float(v.detach()) / len(micro)
                if config.clip:
                    accelerator.clip_grad_norm_(model.parameters(), config.clip)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
                seen += config.batch_size
                rate = seen / (time.perf_counter() - began)
                done = step + 1
                if done % config.log_every == 0 or done == total:
                    row = {"step": done, "loss": sum(config_weight(config, k) * v for k, v in sums.items()),
                           **sums, "lr": scheduler.get_last_lr()[0], "items_per_s": rate}
                    history.append(row)
                    log.write(row)
                advance(info=" ".join(f"{k} {v:.4g}" for k, v in sums.items()) + f" | {rate:.1f} items/s")
                if out and config.save_every and done % config.save_every == 0 and done < total:
                    accelerator.wait_for_everyone()
                    if accelerator.is_main_process:
                        save_checkpoint(out / "checkpoints", done, accelerator.unwrap_model(model), optimizer, scheduler, rid)
                    accelerator.wait_for_everyone()
    finally:
        t_capture.remove()
        s_capture.remove()
        log.close()
    accelerator.wait_for_everyone()
    seconds = time.perf_counter() - began
    student = accelerator.unwrap_model(model)
    student.eval()
    checksums = _rank_checksums(student, accelerator)
    if len(set(checksums)) > 1:
        raise PelaError(f"the {len(checksums)} processes ended with different students (checksums {checksums})")
    return DistillResult(total, seconds, seen / max(seconds, 1e-9), history, checksums)


def partial_state() -> Any:
    """Accelerate's process state; on a machine without a GPU, processes started by torchrun use gloo."""
    from accelerate import PartialState

    return PartialState(cpu=not torch.cuda.is_available())


def _rank_checksums(model: nn.Module, accelerator: Any) -> list[float]:
    """One float64 checksum of the student's weights per process, to prove every rank agrees."""
    with torch.no_grad():
        local = torch.stack([p.detach().double().sum() for p in model.parameters()]).sum().reshape(1).to(accelerator.device)
    return [float(x) for x in accelerator.gather(local).cpu()]


class _nullcontext:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: Any) -> None:
        return None


def config_weight(config: DistillConfig, term: str) -> float:
    return {"feature": config.alpha, "logit": config.beta, "task": config.task, "weight_reg": config.gamma}[term]


def _loss_terms(config: DistillConfig, s_feats: list[torch.Tensor], t_feats: list[torch.Tensor], s_out: torch.Tensor,
                t_out: torch.Tensor, labels: torch.Tensor | None, teacher_w: list) -> dict[str, torch.Tensor]:
    terms: dict[str, torch.Tensor] = {}
    if config.alpha > 0:
        if len(s_feats) != len(t_feats) or any(s.shape != t.shape for s, t in zip(s_feats, t_feats)):
            raise PelaError("teacher and student blocks produce different shapes: different architectures?")
        terms["feature"] = feature_loss(s_feats, t_feats)
    if config.beta > 0:
        terms["logit"] = F.mse_loss(s_out.float(), t_out.float())
    if config.task > 0 and labels is not None and s_out.dim() == 2 and labels.dim() == 1:
        terms["task"] = F.cross_entropy(s_out.float(), labels)
    if config.gamma > 0:
        terms["weight_reg"] = weight_perturbation(teacher_w, config.epsilon)
    return terms


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
