"""pela.training.distill_loss: PELA's loss terms, each there only when it has a weight and applies."""

import warnings

import pytest
import torch
import torch.nn.functional as F
from conftest import Tokens, hf_bert, pair, stack

import pela
from pela import DistillConfig
from pela.arch.blocks import find_blocks
from pela.features import BlockCapture
from pela.training.distill import check_pair
from pela.training.distill_loss import (
    DistillLoss,
    kl_divergence,
    labels_fit_head,
    weight_perturbation,
)


def test_weight_perturbation_is_zero_at_the_original_weights():
    layer = pela.LowRankLinear.from_linear(torch.nn.Linear(16, 16), rank=16)
    w = layer.weight.detach().clone()
    assert weight_perturbation([(layer, w)], epsilon=0.0) < 1e-10
    assert float(weight_perturbation([(layer, w + 0.5)], epsilon=1e-3).detach()) == pytest.approx((0.5 - 1e-3) ** 2, rel=1e-4)


def test_kl_divergence_per_real_token_with_temperature():
    torch.manual_seed(0)
    s, t = torch.randn(2, 5, 7), torch.randn(2, 5, 7)
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 0, 0, 0]])
    assert float(kl_divergence(t, t, 2.0, mask)) == pytest.approx(0.0, abs=1e-6)
    keep = mask.bool()
    p_t, log_s = F.softmax(t[keep] / 2, -1), F.log_softmax(s[keep] / 2, -1)
    expected = 4 * (p_t * (p_t.log() - log_s)).sum(-1).mean()
    assert float(kl_divergence(s, t, 2.0, mask)) == pytest.approx(float(expected), rel=1e-5)
    changed = s.clone()
    changed[1, 3:] += 100  # padding: no part of the loss
    assert float(kl_divergence(changed, t, 2.0, mask)) == pytest.approx(float(expected), rel=1e-5)


@pytest.mark.parametrize("weights, terms", [
    ({}, {"feature"}),
    ({"alpha": 0.0, "beta": 1.0}, {"logit"}),
    ({"beta": 1.0, "temperature": 2.0, "gamma": 1.0}, {"feature", "logit", "weight_reg"}),
])
def test_a_step_has_the_terms_its_weights_ask_for(weights, terms):
    student, teacher = pair(hf_bert)
    blocks = find_blocks(student)
    captures = BlockCapture(teacher, blocks), BlockCapture(student, blocks)
    loss = DistillLoss(student, teacher, DistillConfig(**weights), Tokens(), check_pair(student, teacher), captures)
    batch = stack([Tokens()[i] for i in range(4)])
    _, got = loss(student, batch)
    assert set(got) == terms and all(torch.isfinite(v) for v in got.values())
    if "feature" in terms:  # the student at full rank would match; compressed it does not
        assert float(got["feature"]) > 0
    for c in captures:
        c.remove()


def test_labels_that_do_not_index_the_head_turn_the_task_loss_off():
    model = torch.nn.Linear(2, 5)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert labels_fit_head(model, None, 5, torch.tensor([0, 4]))
    with pytest.warns(UserWarning, match="label 7 and the model's head 5 outputs"):
        assert not labels_fit_head(model, None, 5, torch.tensor([0, 7]))
    with pytest.warns(UserWarning, match="2 classes and the model's head 5"):
        assert not labels_fit_head(model, ["cat", "dog"], 5, torch.tensor([0, 1]))
