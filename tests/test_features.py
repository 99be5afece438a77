"""pela.features: block capture and the token-masked losses."""

import pytest
import torch

import pela
from pela.features import feature_loss
from pela.training.distill import weight_perturbation


def test_losses_are_pure_and_zero_at_identity():
    x = torch.randn(2, 3, 4)
    assert feature_loss([x, x], [x, x]) == 0
    layer = pela.LowRankLinear.from_linear(torch.nn.Linear(16, 16), rank=16)
    w = layer.weight.detach().clone()
    assert weight_perturbation([(layer, w)], epsilon=0.0) < 1e-10
    assert float(weight_perturbation([(layer, w + 0.5)], epsilon=1e-3).detach()) == pytest.approx((0.5 - 1e-3) ** 2, rel=1e-4)
