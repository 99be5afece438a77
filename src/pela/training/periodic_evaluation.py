"""Evaluations during training: when to run them, what each logs, the best one kept, and
patience."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from pela.errors import PelaError, warn
from pela.training.checkpoint import BEST
from pela.training.config import LOWER_IS_BETTER, TrainConfig
from pela.training.metrics_log import MetricsLog
from pela.utils.files import atomic_dir


def is_eval(row: dict[str, float]) -> bool:
    return any(k.startswith("eval_") for k in row)


def _evaluate(
    evaluator: Callable[[nn.Module], dict[str, float]], model: nn.Module, accelerator: Any
) -> dict[str, float]:
    """Run the evaluator on the model in eval mode; it may draw random numbers (a DataLoader does)
    without moving the training's, so that a run gives the same model with or without
    evaluations."""
    devices = [accelerator.device.index or 0] if accelerator.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices), torch.no_grad():
        metrics = evaluator(model.eval())
    return {
        k: float(v)
        for k, v in metrics.items()
        if isinstance(v, (int, float)) and not isinstance(v, bool)
    }


class _Best:
    """The best evaluation so far by one metric, with CPU copies of the weights the model had then
    (the trainable ones and the buffers: frozen weights do not change). The main process also keeps
    them in ``checkpoints/best``, so that a resumed run still knows its best."""

    def __init__(self, metric: str, root: Path | None, rid: str, start: int, write: bool):
        self.metric, self.rid, self.write = metric, rid, write

        self.dir = root / BEST if root is not None else None
        self.step: int | None = None
        self.value: float | None = None
        self.state: dict[str, torch.Tensor] = {}
        if self.dir is not None and start > 0:
            self._read(start)

    def better(self, metrics: dict[str, float]) -> bool:
        if self.metric not in metrics:
            raise PelaError(
                f"cannot keep the best model by {self.metric!r}: the evaluation reports "
                f"{', '.join(metrics) or 'nothing'}"
            )
        value = metrics[self.metric]
        if self.value is None:
            return math.isfinite(value)
        return value < self.value if self.metric.endswith(LOWER_IS_BETTER) else value > self.value

    def keep(self, step: int, value: float | None, model: nn.Module) -> None:
        self.step, self.value = step, value
        self.state = {n: t.detach().to("cpu", copy=True).contiguous() for n, t in _trainable(model)}
        if self.dir is not None and self.write:
            from safetensors.torch import save_file

            with atomic_dir(self.dir, overwrite=True) as tmp:
                save_file(self.state, str(tmp / "model.safetensors"))
                (tmp / "best.json").write_text(
                    json.dumps(
                        {"step": step, "metric": self.metric, "value": value, "run_id": self.rid}
                    )
                )

    def restore(self, model: nn.Module) -> None:
        current = dict(_trainable(model))
        with torch.no_grad():
            for name, saved in self.state.items():
                current[name].copy_(saved)

    def _read(self, start: int) -> None:
        """The best of a run being resumed: only its own, and only from the steps before the
        checkpoint (later ones are trained again, identically)."""
        from safetensors.torch import load_file

        try:
            info = json.loads((self.dir / "best.json").read_text())
        except (OSError, ValueError):
            return
        if (
            info.get("run_id") == self.rid
            and info.get("metric") == self.metric
            and int(info.get("step", start + 1)) <= start
        ):
            self.step, self.value = int(info["step"]), info["value"]
            self.state = load_file(str(self.dir / "model.safetensors"))


def _trainable(model: nn.Module) -> list[tuple[str, torch.Tensor]]:
    return [(n, p) for n, p in model.named_parameters() if p.requires_grad] + list(
        model.named_buffers()
    )


class Evaluations:
    """Every evaluation of one run: when they are due, their rows in the log, the best kept,
    patience.

    With ``evaluator`` (the model, in eval mode, to ``{metric: value}``), the model is evaluated at
    the end and every ``config.eval_every`` steps, on every process, and the main one logs each
    result as
    ``eval_<metric>``. With ``config.keep_best`` it is evaluated at least once an epoch, and
    `finish` gives the model the weights of its best evaluation by that metric; with
    ``config.patience`` too, `after_step` says to stop after that many evaluations without a better
    one.
    """

    def __init__(
        self,
        evaluator: Callable[[nn.Module], dict[str, float]] | None,
        config: TrainConfig,
        *,
        total: int,
        per_epoch: int,
        log: MetricsLog,
        root: Path | None,
        rid: str,
        start: int,
        accelerator: Any,
    ):
        if (config.eval_every or config.keep_best) and evaluator is None:
            raise PelaError(
                f"{'eval_every' if config.eval_every else 'keep_best'} needs data to evaluate on"
            )
        self.evaluator, self.config, self.total, self.log, self.accelerator = (
            evaluator,
            config,
            total,
            log,
            accelerator,
        )
        self.every = config.eval_every or (max(1, per_epoch) if config.keep_best else None)
        main = accelerator.is_main_process
        self.best = _Best(config.keep_best, root, rid, start, main) if config.keep_best else None
        # a resumed run's result covers the whole run: the rows logged before its checkpoint come
        # first
        self.rows = [
            {
                "step": r["step"],
                **{k[len("eval_") :]: v for k, v in r.items() if k.startswith("eval_")},
            }
            for r in log.kept
            if is_eval(r)
        ]
        self.shown = ""  # the last evaluation, for the progress bar

    def after_step(self, done: int, wrapped: nn.Module) -> bool:
        """Evaluate if due after step ``done``; True when patience has run out (on every process
        alike)."""
        if self.evaluator is None or not (
            done == self.total or (self.every and done % self.every == 0)
        ):
            return False
        accelerator, main = self.accelerator, self.accelerator.is_main_process
        plain = accelerator.unwrap_model(wrapped)
        # every process evaluates: a model sharded by FSDP runs only on all of them at once, and a
        # language
        # model's perplexity splits its windows over them; the main process's figures are the ones
        # logged
        try:
            metrics = _evaluate(self.evaluator, plain, accelerator)
        # an evaluation is an extra, unless it picks the model
        except Exception as e:  # noqa: BLE001
            if self.best is not None:
                raise
            warn(
                f"evaluations skipped from step {done} on, training goes on: {type(e).__name__}: "
                f"{e}"
            )
            self.evaluator = None
            return False
        finally:
            plain.train()
        if main:
            self.rows.append({"step": done, **metrics})
            self.log.write({"step": done, **{f"eval_{k}": v for k, v in metrics.items()}})
            name = self.config.keep_best or next(iter(metrics), None)
            self.shown = f" | eval {name} {metrics[name]:.4g}" if name else ""
        if self.best is None:
            return False
        from accelerate.utils import broadcast

        better = torch.tensor(
            [float(main and self.best.better(metrics))], device=accelerator.device
        )
        if float(broadcast(better, from_process=0)[0]):  # the main process decides for all
            self.best.keep(done, metrics.get(self.config.keep_best), plain)
        # every process counts the same evaluations, so all stop at once
        patience, best_step = self.config.patience, self.best.step
        return bool(
            patience
            and best_step is not None
            and done < self.total
            and (done - best_step) // self.every >= patience
        )

    def finish(self, model: nn.Module, steps: int) -> dict[str, float] | None:
        """Give ``model`` the best evaluation's weights (with keep_best), and return that
        evaluation."""
        if self.best is None or self.best.step is None:
            return None
        if self.best.step != steps:
            self.best.restore(model)
        return {"step": self.best.step, self.config.keep_best: self.best.value}
