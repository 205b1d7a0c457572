"""The fixed panel of policies `recgym bench fidelity` ranks on the world and on the simulator:
reference policies, the supervised rankers, DQN, and controlled degradations of the rankers
(noise, reversal, one item per category) whose true order is partly known in advance."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

PANEL = (
    "random",
    "click ranker",
    "myopic watch ranker",
    "longest-first",
    "duration+diversity",
    "DQN (trained on the simulator)",
    "click ranker + noise 0.5",
    "click ranker + noise 2",
    "watch ranker + diversity",
    "anti-click ranker",
    "shortest-first",
)
"""The fixed panel whose rankings are compared; all act on observations only."""


class NoisyRanker:
    """A ranker's values standardised over the candidates plus Gaussian noise of sd `noise`.

    A controlled degradation: with noise 0.5 the order mostly survives, with 2 it is mostly
    lost, so the panel holds policies whose true order is known in advance.
    """

    reads_hidden_state = False

    def __init__(self, base: Any, noise: float, seed: int = 0, action_space: Any = None) -> None:
        self.base, self.noise, self.action_space = base, float(noise), action_space
        self.rng = np.random.default_rng(seed)

    def reset(self, seed: int) -> None:
        self.rng = np.random.default_rng([seed, 17])

    def act(self, obs: Mapping[str, Any]) -> Any:
        from recgym.envs.contract import action_from_values

        v = np.asarray(self.base.values(obs), dtype=np.float64)
        v = (v - v.mean()) / max(float(v.std()), 1e-12)
        v = v + self.noise * self.rng.standard_normal(v.shape)
        return action_from_values(v, self.action_space, obs["mask"])


class Reversed:
    """The base policy's values negated: shows what it would rank last (an anti-ranker)."""

    reads_hidden_state = False

    def __init__(self, base: Any, action_space: Any = None) -> None:
        self.base, self.action_space = base, action_space

    def values(self, obs: Mapping[str, Any]) -> np.ndarray:
        return -np.asarray(self.base.values(obs), dtype=np.float64)

    def act(self, obs: Mapping[str, Any]) -> Any:
        from recgym.envs.contract import action_from_values

        return action_from_values(self.values(obs), self.action_space, obs["mask"])


class OnePerCategory(Reversed):
    """The base policy's order with at most one candidate per category until all are used.

    Each category's best candidate first (in the base order), then the rest in the base order;
    `agents.references.DurationDiversity` is this over duration.
    """

    def values(self, obs: Mapping[str, Any]) -> np.ndarray:
        base = np.asarray(self.base.values(obs), dtype=np.float64)
        n = len(base)
        category = np.asarray(obs["category_id"], dtype=np.int64).reshape(n)
        base = np.where(np.asarray(obs["mask"]).reshape(n) > 0, base, -np.inf)
        order = np.argsort(-base, kind="stable")
        _, first = np.unique(category[order], return_index=True)
        leads = np.zeros(n, dtype=bool)
        leads[first] = True
        final = order[np.lexsort((np.arange(n), ~leads))]
        values = np.empty(n, dtype=np.float64)
        values[final] = -np.arange(n, dtype=np.float64)
        return values


def build_panel(rankers: tuple[Any, Any], dqn: Any, seed: int = 0) -> dict[str, Any]:
    """The `PANEL` policies (scores action space), from the fitted (click, watch) rankers and a
    trained DQN Q-network policy (`QSlatePolicy`)."""
    from recgym.agents.baselines import RandomPolicy
    from recgym.agents.references import DurationDiversity, LongestFirst

    click, watch = rankers
    panel = {
        "random": RandomPolicy(seed=seed),
        "click ranker": click,
        "myopic watch ranker": watch,
        "longest-first": LongestFirst(),
        "duration+diversity": DurationDiversity(),
        "DQN (trained on the simulator)": dqn,
        "click ranker + noise 0.5": NoisyRanker(click, 0.5, seed),
        "click ranker + noise 2": NoisyRanker(click, 2.0, seed),
        "watch ranker + diversity": OnePerCategory(watch),
        "anti-click ranker": Reversed(click),
        "shortest-first": Reversed(LongestFirst()),
    }
    assert tuple(panel) == PANEL
    return panel
