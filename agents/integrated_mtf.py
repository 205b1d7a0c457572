"""IntegratedRL-MTF (Liu et al. 2024, arXiv 2404.17589) and the progressive training mode.

IntegratedRL-MTF is the per-request learner of `agents.enhanced_state_mtf` (``per_item=False``):
one fusion vector per request from the user-level state (user features, context with the
flush num, history summary), the same exploration-aware constraints (the bound penalty of
each user's exploration bounds around mu_bp, in the actor loss and in the TD target) and
the same critic ensemble. It is the Enhanced-State paper's baseline (Tables 3 and 4).

**Progressive training mode (PTM)**, `progressive`: K rounds of (explore around the current
baseline with mu_bp(s) + U(lower_b, upper_b) -> train offline on everything explored so far,
continuing the learner -> the learned policy becomes the baseline of the next round). Round
0's baseline is the fixed fusion. The paper uses five rounds of a day each; the rounds' sizes
here are arguments. Without PTM (``rounds=1``) the learner sees one exploration dataset.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

import numpy as np

from recgym.agents import enhanced_state_mtf as es_mtf
from recgym.agents.mtf_data import Exploration, FixedFusion, UserBounds, collect_transitions
from recgym.envs.mtf import MTFCore


def integrated_config(**kwargs: Any) -> es_mtf.MTFRLConfig:
    """`MTFRLConfig` of IntegratedRL-MTF: per request (other fields as given)."""
    return es_mtf.MTFRLConfig(per_item=False, **kwargs)


def progressive(
    core: MTFCore,
    config: es_mtf.MTFRLConfig,
    bounds: UserBounds,
    *,
    rounds: int,
    episodes_per_round: int,
    seed: int,
    initial: Any = None,
    on_round: Callable[[int, Any], None] | None = None,
) -> tuple[es_mtf.EnhancedStateMTF, dict[str, np.ndarray]]:
    """PTM (module doc): `rounds` rounds of `episodes_per_round` episodes per slot of
    exploration in `core`, ``config.gradient_steps`` per round. Returns the final learner and
    all transitions. Round r explores with seed ``seed * 1000 + r`` (fresh users each round)."""
    if rounds < 1:
        raise ValueError(f"rounds must be at least 1, got {rounds}")
    baseline = initial if initial is not None else FixedFusion()
    data: dict[str, np.ndarray] | None = None
    algo = None
    for r in range(rounds):
        explorer = Exploration(baseline, bounds, seed=seed * 1000 + r)
        tr = collect_transitions(core, explorer, episodes_per_round, seed=seed * 1000 + r)
        data = tr if data is None else {k: np.concatenate([data[k], tr[k]]) for k in tr}
        cfg = replace(config, seed=config.seed * 1000 + r)
        if algo is not None:
            algo.config = cfg
        algo, _ = es_mtf.train(data, cfg, algo)
        baseline = algo.policy
        if on_round is not None:
            on_round(r, algo)
    assert algo is not None and data is not None
    return algo, data


__all__ = ["integrated_config", "progressive"]
