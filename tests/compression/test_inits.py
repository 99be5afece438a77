"""The registry of initializations: a registered one is a valid LowRankConfig(init=...)."""

import pytest
import torch

import pela
from pela.compression.inits import INITS, NEEDS_CALIBRATION, register_init
from pela.linalg import svd_spectrum


@pytest.fixture
def halved():
    @register_init("halved_test")
    def halve(weight, stats):
        return svd_spectrum(weight / 2)

    yield "halved_test"
    INITS.pop("halved_test"), NEEDS_CALIBRATION.discard("halved_test")


def test_a_registered_init_compresses(halved, mlp):
    import copy

    assert halved not in NEEDS_CALIBRATION
    plain = copy.deepcopy(mlp)
    pela.compress(plain, pela.LowRankConfig(init="svd", ratio=2, align=1))
    report = pela.compress(mlp, pela.LowRankConfig(init=halved, ratio=2, align=1))
    assert report.factorized
    got, svd = mlp[0], plain[0]
    assert torch.allclose(got.b.weight @ got.a.weight, svd.b.weight @ svd.a.weight / 2, atol=1e-5)


def test_an_unknown_init_is_refused():
    with pytest.raises(Exception, match="init"):
        pela.LowRankConfig(init="no_such_init")
