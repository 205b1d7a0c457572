"""Training every agent of `recgym bench mtf` on one exploration dataset (one backend, one seed)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np

from recgym.benchmarks.mtf.runner import ENHANCED


def train_all(
    core: Any,
    d0: dict[str, np.ndarray],
    bounds: Any,
    cfg: dict[str, Any],
    say: Callable[[str], None] = print,
) -> tuple[dict[str, Any], dict[str, float]]:
    """Train the Table-1 agents on D0 (the exploration dataset around mu_bp), IntegratedRL-MTF
    and Enhanced-State RL-MTF with PTM (their own exploration rounds in `core`, the same total
    exploration and gradient budget), ES online in `core`; plus the reference policies.

    Choices the papers leave open: the per-request learners get ``batch_size`` requests per
    step, Enhanced-State ``enhanced_batch`` requests (each l shown + k unshown sub-states);
    every offline learner takes ``gradient_steps`` steps (PTM: spread over its rounds, each
    round continuing the last); ES's budget is ``es_generations``; everything is seeded by
    the stage's seed.
    """
    from recgym.agents import enhanced_state_mtf as esm
    from recgym.agents.es import ESConfig, train_es
    from recgym.agents.integrated_mtf import integrated_config, progressive
    from recgym.agents.iql import IQLConfig, train_iql
    from recgym.agents.mtf_baselines import BaselineConfig, train_baseline
    from recgym.agents.mtf_data import (
        FixedFusion,
        MyopicFusion,
        RandomFusion,
        StateFusion,
        flat_buffer,
    )

    seed, steps, device = int(cfg["seed"]), int(cfg["gradient_steps"]), str(cfg["device"])
    rounds = int(cfg["ptm_rounds"])
    per_round_steps = max(steps // rounds, 1)
    per_round_episodes = max(-(-int(cfg["explore_episodes"]) // rounds), 1)
    timings: dict[str, float] = {}
    policies: dict[str, Any] = {}

    def timed(name: str, fn: Callable[[], Any]) -> Any:
        start = time.perf_counter()
        say(f"  training {name}")
        out = fn()
        timings[name] = round(time.perf_counter() - start, 2)
        return out

    batch = int(cfg["batch_size"])
    base = BaselineConfig(gradient_steps=steps, batch_size=batch, seed=seed, device=device)
    policies["ES"] = timed(
        "ES", lambda: train_es(core, ESConfig(generations=int(cfg["es_generations"]), seed=seed))
    )[0]
    for name, key in (("DDPG", "ddpg"), ("CQL+SAC", "cql_sac"), ("BatchRL-MTF (BCQ)", "bcq")):
        policies[name] = timed(name, lambda key=key: train_baseline(key, d0, base))[0]
    iql_cfg = IQLConfig(gradient_steps=steps, batch_size=batch, seed=seed, device=device)
    iql = timed("IQL", lambda: train_iql(flat_buffer(d0, seed), iql_cfg))[0]
    policies["IQL"] = StateFusion(iql.policy.act_array)
    integrated = integrated_config(gradient_steps=steps, batch_size=batch, seed=seed, device=device)
    policies["IntegratedRL-MTF w/o PTM"] = timed(
        "IntegratedRL-MTF w/o PTM", lambda: esm.train(d0, integrated)[0].policy
    )
    ptm = dict(rounds=rounds, episodes_per_round=per_round_episodes, seed=10 * seed + 7)
    policies["IntegratedRL-MTF"] = timed(
        "IntegratedRL-MTF",
        lambda: progressive(
            core, esm.MTFRLConfig(**{**vars(integrated), "gradient_steps": per_round_steps}),
            bounds, **ptm,
        )[0].policy,
    )  # fmt: skip
    enhanced = esm.MTFRLConfig(
        per_item=True,
        gradient_steps=per_round_steps,
        batch_size=int(cfg["enhanced_batch"]),
        seed=seed,
        device=device,
    )
    policies[ENHANCED] = timed(
        ENHANCED, lambda: progressive(core, enhanced, bounds, **ptm)[0].policy
    )
    policies["fixed fusion (mu_bp)"] = FixedFusion()
    policies["myopic (MTL reward)"] = MyopicFusion(core, seed=seed)
    policies["random fusion"] = RandomFusion(seed=seed)
    return policies, timings


__all__ = ["train_all"]
