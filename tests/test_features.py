"""pela.features: block capture and the token-masked losses."""

import pytest
import torch

import pela
from pela.features import feature_loss


def test_losses_are_pure_and_zero_at_identity():
    x = torch.randn(2, 3, 4)
    assert feature_loss([x, x], [x, x]) == 0


def test_the_relative_feature_loss_is_each_real_tokens_error_over_the_teachers_feature():
    torch.manual_seed(0)
    t = torch.randn(2, 4, 8)
    t[0, 0] *= 1000  # one token with massive activations
    s = t * (1 + 0.1 * torch.randn(2, 4, 8))  # every token 10% off
    mask = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0]])
    keep = mask.bool()
    per_token = (s - t)[keep].pow(2).sum(-1) / t[keep].pow(2).sum(-1)
    assert float(feature_loss([s], [t], mask, "relative")) == pytest.approx(float(per_token.mean()), rel=1e-5)
    # scaling a block (a deep block's larger residual stream) changes nothing; the token of massive activations is
    # almost all of plain MSE, and one token of six in the relative loss
    assert float(feature_loss([10 * s], [10 * t], mask, "relative")) == pytest.approx(float(per_token.mean()), rel=1e-5)
    fixed = s.clone()
    fixed[0, 0] = t[0, 0]
    for kind, share in (("mse", 0.999), ("relative", 0.1)):
        assert float(feature_loss([fixed], [t], mask, kind)) < (1 - share) * float(feature_loss([s], [t], mask, kind))
    changed = s.clone()
    changed[1, 2:] += 100  # padding: no part of the loss
    assert float(feature_loss([changed], [t], mask, "relative")) == pytest.approx(float(per_token.mean()), rel=1e-5)
    with pytest.raises(pela.PelaError, match="feature_loss must be one of relative, mse"):
        pela.DistillConfig(feature_loss="cosine")
