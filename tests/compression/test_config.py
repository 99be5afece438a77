import math

import pytest

from pela import LowRankConfig, PelaError


@pytest.mark.parametrize("kwargs, fragment", [
    (dict(ratio=1), "ratio must be"),
    (dict(ratio=0.5), "ratio must be"),
    (dict(ratio=math.nan), "ratio must be"),
    (dict(ratio="2"), "ratio must be"),
    (dict(rank=0), "rank must be"),
    (dict(rank=2.5), "rank must be"),
    (dict(energy=0), "energy must be"),
    (dict(energy=1.5), "energy must be"),
    (dict(ratio=2, rank=8), "only one of"),
    (dict(speedup=1), "speedup must be"),
    (dict(speedup=math.inf), "speedup must be"),
    (dict(param_budget=0.5, speedup=1.5), "only one of"),
    (dict(align=0), "align must be"),
    (dict(exclude=["("]), "not a valid regular expression"),
    (dict(include=["[a"]), "not a valid regular expression"),
    (dict(init="magic"), "init must be one of"),
    (dict(sensitivity="guess"), "sensitivity must be one of"),
])
def test_invalid_config_names_the_field(kwargs, fragment):
    with pytest.raises(PelaError, match=fragment):
        LowRankConfig(**kwargs)


def test_defaults_and_round_trip():
    cfg = LowRankConfig(exclude=["head"], include="blocks")
    assert cfg.resolved_mode() == ("ratio", 2)
    assert cfg.include == ("blocks",) and cfg.exclude == ("head",)
    assert LowRankConfig.from_dict(cfg.to_dict()) == cfg


def test_unknown_keys_warn_not_fail():
    with pytest.warns(UserWarning, match="unknown"):
        cfg = LowRankConfig.from_dict({"ratio": 3, "future_option": 1})
    assert cfg.ratio == 3
