"""Reference policies every table carries: random, the supervised rankers, two rules, the oracles.

A number for a trained agent means little alone; beside these it says what was learned:

- ``random``: uniform scores (`baselines.RandomPolicy`), the floor;
- ``click ranker``: `baselines.RankingModel` ranking by predicted click, what a click-trained
  production ranker does;
- ``myopic watch ranker``: the *same* fitted model ranking by predicted immediate watch time
  (watch ratio x duration): the baseline a long-term claim ("RL beats myopic") must beat, since
  it already maximises each request's watch time and only ignores what a request does to the
  rest of the session;
- ``longest-first`` and ``duration+diversity``: observation-only rules; if either is close to a
  trained agent, the agent learned a single-feature shortcut, not the users;
- ``oracle``: `PatienceOracle`, the world's truth-reading patience keeper, an upper reference
  (`ClickOracle` is its click-greedy counterpart).

All act on one Dict observation (`envs.contract`): ``act(obs) -> action``, their action space
fixed at construction (None or a Box: per-candidate scores; Discrete(N): one candidate index).
The oracles are the only policies that read state beyond the observation, and say so with
``reads_hidden_state = True``: they take the user id and candidate ids from the observation and
everything else from the world they were built with, which must be the very object the env
steps (build the env with `TruthOracle.make_env`, in this process: a SubprocVectorEnv worker's
copy of the world is out of their reach).
"""

from __future__ import annotations

import copy
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from recgym.envs.contract import (
    Obs,
    action_from_values,
    candidate_columns,
    user_id,
    with_action_space,
)
from recgym.simulators import oracle as truth_rules
from recgym.simulators.world import World

REFERENCE_NAMES = (
    "random",
    "click ranker",
    "myopic watch ranker",
    "longest-first",
    "duration+diversity",
    "oracle (reads hidden state)",
)
"""The names `reference_panel` gives its policies, in table order."""


def _mask(obs: Obs, n: int) -> np.ndarray:
    mask = obs.get("mask") if hasattr(obs, "get") else None
    return np.ones(n, dtype=bool) if mask is None else np.asarray(mask).reshape(n) > 0


# --------------------------------------------------------------------------- rules
class LongestFirst:
    """Shows the longest candidates first (the observation's ``log_duration`` column).

    What it is for: the single-feature shortcut check. Expected watch time grows with duration
    in any world where people do not skip long videos at once, so a world (or a simulator) where
    this rule rivals trained agents rewards duration, not recommendation; on a KuaiRand-like
    world it should land near random on watch time.
    """

    reads_hidden_state = False

    def __init__(self, action_space: gym.Space | None = None) -> None:
        self.action_space = action_space

    def values(self, obs: Obs) -> np.ndarray:
        """(N,) the ranking value per candidate: its log duration."""
        return np.asarray(candidate_columns(obs, "log_duration"), dtype=np.float64)

    def act(self, obs: Obs) -> np.ndarray | int:
        values = self.values(obs)
        return action_from_values(values, self.action_space, _mask(obs, len(values)))


class DurationDiversity(LongestFirst):
    """Longest first, at most one candidate per ``category_id`` until every category is used.

    The order is: the longest candidate of each category (longest first), then the rest by
    duration; so a slate of K holds K distinct categories whenever the candidates span K.
    What it is for: the strongest simple rule on a world whose users tire of repetition (an
    observation-only "duration + one item per category" reached DQN's watch time on the old
    world); an RL agent that cannot beat it has learned nothing a rule could not state. With a
    Discrete action (one item per request) it is `LongestFirst`.
    """

    def values(self, obs: Obs) -> np.ndarray:
        duration = super().values(obs)
        n = len(duration)
        category = np.asarray(obs["category_id"], dtype=np.int64).reshape(n)
        duration = np.where(_mask(obs, n), duration, -np.inf)  # invalid ones lead no category
        by_duration = np.argsort(-duration, kind="stable")
        _, first = np.unique(category[by_duration], return_index=True)
        leads = np.zeros(n, dtype=bool)
        leads[first] = True  # positions in `by_duration` of each category's longest
        final = by_duration[np.lexsort((np.arange(n), ~leads))]
        values = np.empty(n, dtype=np.float64)
        values[final] = -np.arange(n, dtype=np.float64)
        return values


# --------------------------------------------------------------------------- rankers
def fit_rankers(
    dataset: Any,
    action_space: gym.Space | None = None,
    config: Any = None,
    progress: bool = False,
) -> tuple[Any, Any]:
    """The click ranker and the myopic watch-time ranker, from one `RankingModel` fit on logs.

    `RankingModel` learns P(click) and the expected watch ratio of an exposure with one shared
    network; ``target="click"`` ranks by the first, ``target="watch"`` by ratio x duration
    (the expected *immediate* watch time of showing the item: the ratio is fitted over all
    exposures, clicked or not). Fitting once and viewing it two ways makes the two rankers
    differ only in what they rank by. `config`: a `RankerConfig` (default: its defaults).
    """
    from recgym.agents.baselines import RankingModel

    click = RankingModel(config, target="click")
    click.fit(dataset, progress=progress)
    return rankers_from_model(click, action_space)


def rankers_from_model(model: Any, action_space: gym.Space | None = None) -> tuple[Any, Any]:
    """(click ranker, myopic watch ranker) sharing `model`'s fitted network (no copy of weights)."""
    click = copy.copy(model)
    click.target = "click"
    watch = copy.copy(model)
    watch.target = "watch"
    return with_action_space(click, action_space), with_action_space(watch, action_space)


# --------------------------------------------------------------------------- oracles
class TruthOracle:
    """A `simulators.oracle` rule over the world's truth, as an ``act(obs)`` policy.

    Reads the user id (``obs["user_id"]``) and the candidates' ids (``obs["item_id"]``, valid
    where ``obs["mask"]``) from the observation, and the user's true response probabilities
    and state from `world`, which must be the object the env steps: use `make_env`. Checks
    that the observation's categories are `world`'s (a different world raises ValueError).
    `slate_size` is how many items the rule picks (the env's slate size); they get the top
    scores in the rule's order, the other candidates keep their order below them.
    """

    reads_hidden_state = True
    rule: truth_rules.SlatePolicy

    def __init__(
        self,
        world: World,
        action_space: gym.Space | None = None,
        slate_size: int = 6,
        seed: int = 0,
    ) -> None:
        if not isinstance(world, World):
            raise TypeError(
                f"{type(self).__name__} reads the ground-truth world's state; got "
                f"{type(world).__name__} (a learned simulator has no truth to read)"
            )
        self.world = world
        self.action_space = action_space
        self.slate_size = int(slate_size)
        self.rng = np.random.default_rng(seed)
        self._start = world.snapshot()

    def reset(self, seed: int) -> None:
        """Restart the rule's generator (the rules here are deterministic; kept for symmetry)."""
        self.rng = np.random.default_rng(seed)

    def make_env(self, env_id: str = "recgym/Session-v0", **env_kwargs: Any) -> gym.Env:
        """An env on this oracle's world, restarted from the state the oracle was built with.

        Each call restores the world first, so envs made one after another (e.g. one per
        evaluation seed) all start from the same user state, as envs built with ``world_dir``
        do. Only the oracle's own world backs the env: `env_kwargs` may not name another.
        """
        clash = {"backend", "world_dir", "world_config", "checkpoint"} & set(env_kwargs)
        if clash:
            raise ValueError(f"make_env uses the oracle's world; do not pass {sorted(clash)}")
        from recgym.envs import make_env

        self.world.restore(self._start)
        return make_env(env_id, backend=self.world, **env_kwargs)

    def act(self, obs: Obs) -> np.ndarray | int:
        items = np.asarray(obs["item_id"], dtype=np.int64).reshape(-1)
        n = len(items)
        valid = np.flatnonzero(_mask(obs, n))
        if len(valid) == 0:
            raise ValueError(f"{type(self).__name__}: the observation has no valid candidate")
        cat = self.world.catalogue
        categories = np.asarray(obs["category_id"], dtype=np.int64).reshape(-1)
        if items[valid].max() >= cat.n_items or not np.array_equal(
            cat.category[items[valid]], categories[valid]
        ):
            raise ValueError(
                f"{type(self).__name__}: the observation's candidates are not items of the "
                "oracle's world (ids or categories differ); build the env with oracle.make_env"
            )
        discrete = isinstance(self.action_space, spaces.Discrete)
        k = 1 if discrete else min(self.slate_size, len(valid))
        user = np.array([int(user_id(obs))], dtype=np.int64)
        chosen = self.rule(self.world, user, items[valid][None, :], k, self.rng)[0]
        # each chosen item's position among the valid candidates (first one if ids repeat)
        pos = valid[np.argmax(items[valid][None, :] == chosen[:, None], axis=1)]
        values = np.zeros(n, dtype=np.float64)
        values[pos] = k - np.arange(k, dtype=np.float64)
        return action_from_values(values, self.action_space, _mask(obs, n))


class PatienceOracle(TruthOracle):
    """The full-truth patience keeper (`simulators.oracle.patience_keeper`).

    What it is for: the ceiling of the table. It ranks by true expected watch time per unit of
    patience spent (clickbait, repetition and time drain patience), so it shows how much
    session length and watch time a recommender that knew the users could get; the gap to it
    is the headroom left. Reads hidden state (``reads_hidden_state = True``).
    """

    rule = staticmethod(truth_rules.patience_keeper)


class ClickOracle(TruthOracle):
    """Top-k by the true click probability (`simulators.oracle.greedy_click`).

    What it is for: what a perfect click model converges to; beside the click ranker it
    separates "the ranker estimates clicks badly" from "ranking by clicks is the wrong goal".
    Reads hidden state (``reads_hidden_state = True``).
    """

    rule = staticmethod(truth_rules.greedy_click)


# --------------------------------------------------------------------------- the panel
def reference_panel(
    action_space: gym.Space | None = None,
    *,
    rankers: tuple[Any, Any] | None = None,
    dataset: Any = None,
    world: World | None = None,
    slate_size: int = 6,
    seed: int = 0,
    ranker_config: Any = None,
) -> dict[str, Any]:
    """The reference policies of a table, by `REFERENCE_NAMES`, acting in `action_space`.

    The rankers are `rankers` (a fitted (click, watch) pair, e.g. `fit_rankers`), or fitted on
    `dataset` (logs); one of the two is required. The oracle comes only with `world` (the
    ground-truth world the env steps, see `TruthOracle.make_env`); without it (a learned
    simulator backend, or real logs) the panel has no oracle row.
    """
    from recgym.agents.baselines import RandomPolicy

    if rankers is None:
        if dataset is None:
            raise ValueError("reference_panel needs rankers=(click, watch) or dataset= to fit them")
        rankers = fit_rankers(dataset, action_space, ranker_config)
    click, watch = (with_action_space(r, action_space) for r in rankers)
    panel: dict[str, Any] = {
        "random": with_action_space(RandomPolicy(seed=seed), action_space),
        "click ranker": click,
        "myopic watch ranker": watch,
        "longest-first": LongestFirst(action_space),
        "duration+diversity": DurationDiversity(action_space),
    }
    if world is not None:
        panel[REFERENCE_NAMES[-1]] = PatienceOracle(world, action_space, slate_size, seed)
    return panel


__all__ = [
    "REFERENCE_NAMES",
    "ClickOracle",
    "DurationDiversity",
    "LongestFirst",
    "PatienceOracle",
    "TruthOracle",
    "fit_rankers",
    "rankers_from_model",
    "reference_panel",
]
