"""IQL (agents/iql.py): the expectile loss, the advantage weights, and offline learning."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from tianshou.data import Batch, ReplayBuffer

from recgym.agents.iql import IQLConfig, awr_weights, expectile_loss, train_iql


def test_expectile_loss_weights_the_two_signs_asymmetrically() -> None:
    diff = torch.tensor([2.0, -1.0])
    # 0.7 * 4 and 0.3 * 1, averaged
    assert expectile_loss(diff, 0.7).item() == pytest.approx((0.7 * 4 + 0.3 * 1) / 2)
    assert expectile_loss(diff, 0.5).item() == pytest.approx(0.5 * (4 + 1) / 2)
    # the minimiser of E[L2_tau(x - v)] over v is the tau-expectile: above the mean for tau > .5
    x = torch.tensor([0.0, 0.0, 0.0, 10.0])
    v = torch.zeros((), requires_grad=True)
    opt = torch.optim.SGD([v], lr=0.2)
    for _ in range(300):
        opt.zero_grad()
        expectile_loss(x - v, 0.9).backward()
        opt.step()
    # tau-expectile e solves 0.9 * (10 - e) = 0.1 * 3 * e  ->  e = 9 / 1.2 = 7.5
    assert v.item() == pytest.approx(7.5, abs=1e-3)


def test_advantage_weights_are_exponential_and_clipped() -> None:
    adv = torch.tensor([-1.0, 0.0, 1.0, 10.0])
    w = awr_weights(adv, beta=2.0, max_weight=100.0)
    np.testing.assert_allclose(w[:3].numpy(), np.exp([-2.0, 0.0, 2.0]), rtol=1e-6)
    assert w[3].item() == 100.0


@pytest.mark.learning
def test_iql_improves_on_the_behaviour_policy_of_an_offline_bandit() -> None:
    """One-step contextual bandit: reward -(a - target(s))^2 with target(s) = 0.6 * sign(s);
    the behaviour acts uniformly, so imitation gets ~0 reward-weighted, IQL must do better."""
    rng = np.random.default_rng(0)
    n = 4000
    obs = rng.normal(size=(n, 2)).astype(np.float32)
    act = rng.uniform(-1, 1, size=(n, 1)).astype(np.float32)
    target = 0.6 * np.sign(obs[:, :1])
    rew = -((act - target) ** 2).sum(1).astype(np.float32)
    buf = ReplayBuffer(n, random_seed=0)
    buf.set_batch(
        Batch(obs=obs, act=act, rew=rew, terminated=np.ones(n, bool), truncated=np.zeros(n, bool),
              done=np.ones(n, bool), obs_next=obs)
    )  # fmt: skip
    buf._size = n
    algo, stats = train_iql(buf, IQLConfig(gradient_steps=300, batch_size=128, beta=5.0, lr=3e-3))
    test = rng.normal(size=(500, 2)).astype(np.float32)
    learned = algo.policy.act_array(test)
    err_iql = ((learned - 0.6 * np.sign(test[:, :1])) ** 2).mean()
    err_behaviour = ((rng.uniform(-1, 1, (500, 1)) - 0.6 * np.sign(test[:, :1])) ** 2).mean()
    assert err_iql < 0.25 * err_behaviour, (err_iql, err_behaviour, stats)
