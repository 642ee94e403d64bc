"""bradley_terry_loss against hand-computed numbers."""

from __future__ import annotations

import math

import pytest
import torch

from rewardkit.training import bradley_terry_loss


def nll(x: float) -> float:
    """-log σ(x), by hand."""
    return math.log(1.0 + math.exp(-x))


CHOSEN = torch.tensor([2.0, 0.0, 1.5])
REJECTED = torch.tensor([1.0, 1.0, -0.5])


def test_plain_loss():
    expected = (nll(1.0) + nll(-1.0) + nll(2.0)) / 3
    assert expected == pytest.approx((0.313262 + 1.313262 + 0.126928) / 3, abs=1e-5)
    assert bradley_terry_loss(CHOSEN, REJECTED).item() == pytest.approx(expected, abs=1e-6)


def test_equal_rewards_give_log_two():
    r = torch.zeros(4)
    assert bradley_terry_loss(r, r).item() == pytest.approx(math.log(2), abs=1e-7)


def test_margin_is_subtracted_from_the_reward_gap():
    margin = torch.tensor([0.5, 0.0, 3.0])
    expected = (nll(0.5) + nll(-1.0) + nll(-1.0)) / 3
    assert bradley_terry_loss(CHOSEN, REJECTED, margin).item() == pytest.approx(expected, abs=1e-6)
    # a zero margin changes nothing
    assert bradley_terry_loss(CHOSEN, REJECTED, torch.zeros(3)).item() == pytest.approx(
        bradley_terry_loss(CHOSEN, REJECTED).item(), abs=1e-7
    )


def test_centering_adds_mean_squared_sum():
    # (2+1)^2 = 9, (0+1)^2 = 1, (1.5-0.5)^2 = 1 -> mean 11/3
    base = (nll(1.0) + nll(-1.0) + nll(2.0)) / 3
    got = bradley_terry_loss(CHOSEN, REJECTED, center_rewards_coefficient=0.1).item()
    assert got == pytest.approx(base + 0.1 * 11 / 3, abs=1e-6)


def test_centering_off_for_none_and_zero():
    base = bradley_terry_loss(CHOSEN, REJECTED).item()
    assert bradley_terry_loss(CHOSEN, REJECTED, None, None).item() == base
    assert bradley_terry_loss(CHOSEN, REJECTED, None, 0.0).item() == base


def test_margin_and_centering_together():
    margin = torch.tensor([1.0, 1.0, 1.0])
    expected = (nll(0.0) + nll(-2.0) + nll(1.0)) / 3 + 0.5 * 11 / 3
    got = bradley_terry_loss(CHOSEN, REJECTED, margin, center_rewards_coefficient=0.5).item()
    assert got == pytest.approx(expected, abs=1e-6)


def test_gradient_pushes_chosen_up_and_rejected_down():
    chosen = torch.tensor([0.3, -0.2], requires_grad=True)
    rejected = torch.tensor([0.1, 0.4], requires_grad=True)
    bradley_terry_loss(chosen, rejected).backward()
    # d/dc of -log σ(c - r) / n = -(1 - σ(c - r)) / n
    expected = [-(1 - 1 / (1 + math.exp(-d))) / 2 for d in (0.2, -0.6)]
    assert chosen.grad.tolist() == pytest.approx(expected, abs=1e-6)
    assert rejected.grad.tolist() == pytest.approx([-g for g in expected], abs=1e-6)


def test_loss_is_stable_for_large_gaps():
    loss = bradley_terry_loss(torch.tensor([-200.0]), torch.tensor([200.0]))
    assert math.isfinite(loss.item()) and loss.item() == pytest.approx(400.0)
    assert bradley_terry_loss(torch.tensor([200.0]), torch.tensor([-200.0])).item() == pytest.approx(0.0, abs=1e-12)
