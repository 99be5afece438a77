"""Finding a model's Transformer blocks, whose outputs feature distillation matches."""

from __future__ import annotations

import re

from torch import nn

from pela.arch.registry import linear_weight
from pela.errors import PelaError


def _count_linear(module: nn.Module) -> int:
    return sum(linear_weight(m) is not None for m in module.modules())


def find_blocks(model: nn.Module, pattern: str | None = None) -> list[str]:
    """Names of the Transformer blocks of ``model``, whose outputs feature distillation matches.

    Without ``pattern``: the children of every innermost `nn.ModuleList`/`nn.Sequential` whose
    children are all of one class holding at least two linear layers. That finds timm ``blocks``,
    Swin's ``layers.i.blocks`` inside stages, HF ``encoder.layer(s)``, and each tower of CLIP.
    With ``pattern``: every module whose name matches it (``re.search``).
    """
    if pattern is not None:
        try:
            names = [n for n, _ in model.named_modules() if n and re.search(pattern, n)]
        except re.error as e:
            raise PelaError(
                f"blocks pattern {pattern!r} is not a valid regular expression: {e}"
            ) from None
        if not names:
            raise PelaError(f"blocks pattern {pattern!r} matches no module")
        return names
    lists = []
    for name, m in model.named_modules():
        if isinstance(m, (nn.ModuleList, nn.Sequential)):
            kids = list(m.children())
            if (
                kids
                and len({type(k) for k in kids}) == 1
                and linear_weight(kids[0]) is None
                and _count_linear(kids[0]) >= 2
            ):
                lists.append(name)
    inner = [
        c for c in lists if not any(o != c and o.startswith(c + "." if c else "") for o in lists)
    ]
    return [
        f"{c}.{k}" if c else k for c in inner for k, _ in model.get_submodule(c).named_children()
    ]
