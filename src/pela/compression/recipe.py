"""pela's recipe: the one rule that turns a size and whether there is calibration data into a
`LowRankConfig`, which `pela compress`, `pela shrink`, `pela.shrink` and the demo all follow.

- Without calibration data: the config as asked, factors from each weight's SVD (the paper's).
- With it: factors that minimize each layer's output error on the data (``init="whiten"``, unless
  another init is named), and a per-layer ratio (or rank) turned into the same number of parameters,
  allocated across layers where measured sensitivity says they matter (``param_budget``,
  `pela.compression.targets.budget_of`): the model comes out the same size, closer to the original.
  ``uniform=True`` keeps one ratio for every layer (``pela compress --config uniform_ranks=true``).

`pela.compress` itself does exactly what its config says; this is how pela chooses that config.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from pela.compression.config import LowRankConfig
from pela.compression.targets import budget_of


def recipe(
    model: nn.Module, *, calibrated: bool, uniform: bool = False, **settings: Any
) -> LowRankConfig:
    """The `LowRankConfig` pela's recipe gives ``model``: ``settings`` are `LowRankConfig`'s fields
    (``ratio=2`` where no size is given); ``calibrated``: whether calibration data will be given.

    >>> config = recipe(model, ratio=2, calibrated=True)  # doctest: +SKIP
    >>> calibration = pela.calibrate(model, data, config)  # doctest: +SKIP
    >>> pela.compress(model, config, calibration=calibration)  # doctest: +SKIP
    """
    init = settings.pop("init", None) or ("whiten" if calibrated else "svd")
    config = LowRankConfig(init=init, **settings)
    if not calibrated or uniform or config.resolved_mode()[0] != "ratio":
        return config
    return LowRankConfig(
        **{**config.to_dict(), "ratio": None, "param_budget": budget_of(model, config)}
    )
