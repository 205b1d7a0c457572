"""RLIV-UA bench evaluation: one agent and seed on each backend, one row per metric."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

from recgym.benchmarks.engine import StageContext, StageResult
from recgym.benchmarks.rliv_ua.spec import ENV_ID, ID_SPACE, RLIV_VARIANTS
from recgym.benchmarks.rliv_ua.stages import env_kwargs, logs_dir, train_stage
from recgym.envs.contract import UA_COUNTER_COLUMNS, candidate_columns


def load_policy(agent: str, seed: int, backend: str, deps: dict[str, StageResult]) -> Any:
    """The trained slate policy of `agent` for `seed` (from its training stage in `deps`), as
    `envs.evaluation` plays it; an RLIV-UA variant's model is the one in `backend`'s ids."""
    if agent == "random":
        from recgym.agents.baselines import RandomPolicy

        return RandomPolicy(seed=seed)
    if agent == "longest_first":
        from recgym.agents.references import LongestFirst

        return LongestFirst()
    if agent == "duration_diversity":
        from recgym.agents.references import DurationDiversity

        return DurationDiversity()
    stage = train_stage(agent, seed, ID_SPACE[backend] if agent in RLIV_VARIANTS else None)
    path = deps[stage].dir / "model.pt"
    if agent in ("click_ranker", "myopic_watch_ranker"):
        from recgym.agents.baselines import RankingModel
        from recgym.agents.references import rankers_from_model

        click, watch = rankers_from_model(RankingModel.load(path))
        return click if agent == "click_ranker" else watch
    if agent == "ranking_model":
        from recgym.agents.deepfm import DeepFMRanker

        return DeepFMRanker.load(path)
    if agent in ("cql", "td3"):
        from recgym.agents.continuous import LinearScorePolicy

        return LinearScorePolicy.load(path)
    if agent == "rlur":
        from recgym.agents.rlur import RLURPolicy

        return RLURPolicy.load(path)
    if agent == "dqn":
        from recgym.agents.baselines import QSlatePolicy
        from recgym.agents.dqn import load_dqn

        algo, _ = load_dqn(path)
        return QSlatePolicy(algo)
    if agent in RLIV_VARIANTS:
        from recgym.agents.rliv_ua import LIVSlatePolicy, load_rliv_ua

        return LIVSlatePolicy(load_rliv_ua(path))
    raise ValueError(f"unknown agent {agent!r}")


class GiftCounter(gym.Wrapper):
    """Counts the gifts of each session from the step infos (``responses["gift"]``), so the
    sessions are played by `envs.evaluation.run_sessions` unchanged; ``has_gifts`` says whether
    the backend ever reported the behaviour (a learned simulator of KuaiRand never does).
    Also counts the candidate rows served with any non-zero UA counter (the train/serve shift
    of issue 14 point 4: compare with the ASA samples' share)."""

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        self.sessions: list[float] = []
        self.has_gifts = False
        self.rows = self.nonzero_rows = 0

    def _count(self, obs: Any) -> None:
        counters = candidate_columns(obs, UA_COUNTER_COLUMNS)[np.asarray(obs["mask"], bool)]
        self.rows += len(counters)
        self.nonzero_rows += int((counters > 0).any(1).sum())

    def reset(self, **kwargs: Any) -> Any:
        self.sessions.append(0.0)
        obs, info = self.env.reset(**kwargs)
        self._count(obs)
        return obs, info

    def step(self, action: Any) -> Any:
        obs, reward, terminated, truncated, info = self.env.step(action)
        if not (terminated or truncated):
            self._count(obs)
        gift = info["responses"].get("gift")
        if gift is not None:
            self.has_gifts = True
            self.sessions[-1] += float(np.sum(gift))
        return obs, reward, terminated, truncated, info


def play(policy: Any, env: gym.Env, episodes: int, seed: int) -> tuple[dict[str, float], float]:
    """`envs.evaluation.METRICS` of one seed, plus ``gifts`` per session where the backend has
    gifts, and the share of served candidate rows with a non-zero UA counter. The first reset
    is seeded, the following sessions continue from it."""
    from recgym.envs.evaluation import run_sessions, seed_metrics

    counter = GiftCounter(env)
    if hasattr(policy, "reset"):
        policy.reset(seed)
    metrics = seed_metrics(run_sessions(policy, counter, episodes, seed))
    if counter.has_gifts:
        metrics["gifts"] = float(np.mean(counter.sessions))
    return metrics, counter.nonzero_rows / max(counter.rows, 1)


def evaluate_stage(ctx: StageContext) -> dict[str, Any]:
    """One agent and seed on each backend of the config: the seed's sessions on fresh envs reset
    with that seed (every agent meets the same users in the same order); the oracle steps the
    very world it reads (its own copy of the post-log world)."""
    from recgym.envs import make_env

    cfg = ctx.config
    agent, seed = cfg["agent"], cfg["seed"]
    shares: dict[str, float] = {}
    for backend in cfg["backends"]:
        if agent == "oracle":
            from recgym.agents.references import PatienceOracle
            from recgym.simulators.world_state import load_world

            world = load_world(logs_dir(ctx.deps["logs"]))
            policy: Any = PatienceOracle(world, None, cfg["env"]["slate_size"], seed)
            env = policy.make_env(ENV_ID, **cfg["env"])
        else:
            policy = load_policy(agent, seed, backend, ctx.deps)
            env = make_env(ENV_ID, **env_kwargs(backend, ctx.deps, cfg["env"]))
        try:
            metrics, shares[backend] = play(policy, env, cfg["episodes"], seed)
        finally:
            env.close()
        ctx.write_rows(
            ctx.row(
                env=ENV_ID,
                agent=agent,
                backend=backend,
                seed=seed,
                metric=name,
                value=value,
                episodes=cfg["episodes"],
                world=cfg["world"],
            )
            for name, value in metrics.items()
        )
        ctx.say(
            f"[{ctx.name}] {backend}: {metrics['session_length']:.2f} requests, "
            f"{metrics['watch_time_s']:.0f} s"
        )
    return {"nonzero_counter_share": shares}


__all__ = ["GiftCounter", "evaluate_stage", "load_policy", "play"]
