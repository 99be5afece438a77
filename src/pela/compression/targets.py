"""Which layers get factorized: one function decides, with a reason for every layer left dense."""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch
from torch import nn

from pela import arch
from pela.compression.config import LowRankConfig
from pela.compression.ranks import choose_rank
from pela.errors import PelaError
from pela.layers.lowrank import LowRankLinear


@dataclass
class Candidate:
    name: str
    module: nn.Module | None  # None once block-by-block compression has let the dense layer go
    parent: nn.Module | None
    weight: torch.Tensor  # out × in, a view of the module's parameter
    bias: torch.Tensor | None
    skip_reason: str | None = None  # None: will be factorized


def linear_layers(model: nn.Module) -> list[Candidate]:
    """Every linear-like layer of ``model``, in module order, with its parent."""
    found: list[Candidate] = []

    def walk(module: nn.Module, prefix: str) -> None:
        for child_name, child in module.named_children():
            name = f"{prefix}{child_name}"
            wb = arch.linear_weight(child)
            if wb is not None:
                found.append(Candidate(name, child, module, wb[0], wb[1]))
            else:
                walk(child, name + ".")

    walk(model, "")
    return found


def _names_preview(names: list[str], limit: int = 12) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f", … ({len(names)} in all)" if len(names) > limit else "")


def select(model: nn.Module, config: LowRankConfig) -> list[Candidate]:
    """Linear layers of ``model`` with ``skip_reason`` set on those that stay dense.

    Raises `PelaError` if the model is already compressed, has no linear layers, or an
    include/exclude pattern matches no linear layer (quoting the pattern and the layer names).
    """
    if any(isinstance(m, LowRankLinear) for m in model.modules()):
        raise PelaError(
            "model is already compressed (it contains LowRankLinear layers); compress the original "
            "instead"
        )
    layers = linear_layers(model)
    if not layers:
        raise PelaError(f"{type(model).__name__} has no nn.Linear layers to factorize")
    names = [c.name for c in layers]
    for field_name, patterns in (("include", config.include), ("exclude", config.exclude or ())):
        for p in patterns:
            if not any(re.search(p, n) for n in names):
                raise PelaError(
                    f"{field_name} pattern {p!r} matches no linear layer; available: "
                    f"{_names_preview(names)}"
                )

    for c in layers:
        out_f, in_f = c.weight.shape
        included = any(re.search(p, c.name) for p in config.include)
        user_excluded = next((p for p in (config.exclude or ()) if re.search(p, c.name)), None)
        if config.include and not included:
            c.skip_reason = "not matched by include"
        elif user_excluded is not None:
            c.skip_reason = f"excluded by {user_excluded!r}"
        elif (
            config.exclude is None
            and not included
            and (reason := arch.default_exclusion_reason(c.name))
        ):
            c.skip_reason = f"default exclusion: {reason}"
        elif (reason := arch.structural_skip(c.name, c.module, c.parent)) is not None:
            c.skip_reason = reason
        elif min(out_f, in_f) < config.min_features:
            c.skip_reason = f"fewer than {config.min_features} features"
    return layers


def budget_of(model: nn.Module, config: LowRankConfig) -> float:
    """The ``param_budget`` that keeps the parameters ``config``'s per-layer ratio would: the
    fraction of the weights of the layers it factorizes that their factors take. Allocation spends
    the same budget where measured sensitivity says it matters, so the model comes out the same
    size."""
    if config.resolved_mode()[0] not in ("ratio", "rank"):
        raise PelaError(
            f"a parameter budget matches a ratio or a rank, not {config.resolved_mode()[0]}"
        )
    kept = total = 0
    for c in select(model, config):
        if c.skip_reason is None:
            n_out, n_in = c.weight.shape
            # ratio and rank need no spectrum
            rank, reason = choose_rank(n_out, n_in, torch.ones(1), config)
            if reason is None:
                kept, total = kept + rank * (n_in + n_out), total + n_in * n_out
    if not total:
        raise PelaError(
            f"{config.resolved_mode()[0]}={config.resolved_mode()[1]} factorizes no layer of this "
            "model"
        )
    return kept / total
