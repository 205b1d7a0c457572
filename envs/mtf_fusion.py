"""MTFSession-v0's fusion and reward: the layout of its candidate rows, the product-form fusion
of the MTL's predictions an action parameterises, and the paper's per-item reward (Formula 2).

Pure functions and constants, shared by the env (`envs.mtf`) and the MTF agents and data
(`agents.mtf_data`, `agents.enhanced_state_mtf`, ...); `envs.mtf` re-exports every name.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from recgym.envs.contract import CANDIDATE_FEATURES, SESSION_FEATURES

FUSED: tuple[str, ...] = ("p_valid", "watch_score", "p_like", "p_forward", "p_follow")
"""The five MTL predictions the fusion combines, in action order (powers 0-4, biases 5-9)."""
ACTION_DIM = 2 * len(FUSED)
"""A fusion vector: ``[power_1..power_5, bias_1..bias_5]`` (the paper's 10 dimensions)."""
MTL_COLUMNS: tuple[str, ...] = (
    "mtl_p_click",
    "mtl_p_valid",
    "mtl_watch_score",
    "mtl_p_like",
    "mtl_p_forward",
    "mtl_p_follow",
)
"""The MTL's predictions as candidate columns (watch as ``watch_s / (watch_s + WATCH_REF_S)``)."""
MTF_CANDIDATE_FEATURES: tuple[str, ...] = (*CANDIDATE_FEATURES, *MTL_COLUMNS)
"""Per-candidate columns of MTFSession-v0: Session-v0's 7, then the MTL's 6."""
MTF_CONTEXT_FEATURES: tuple[str, ...] = (
    *SESSION_FEATURES,
    "last_valid_rate",
    "session_log1p_watch_min",
    "session_valid_per_item",
)
"""``"context"``: step_fraction is the paper's flush num (request index / max_steps); the last
two are the session's behaviour so far (the paper's "user history behavior sequence" within
the session): log1p of the minutes watched and the valid consumptions per item shown."""
HISTORY_FEATURES: tuple[str, ...] = (
    "mean_log_duration",
    "mean_log_popularity",
    "top1_category_share",
    "top2_category_share",
    "top3_category_share",
    "distinct_category_share",
)
"""``"history"``: a summary of the behaviour sequence (the user's last consumed items)."""
WATCH_REF_S = 30.0
"""Watch seconds at which the fused watch score is 0.5."""
POWER_RANGE = (0.0, 2.0)
"""Powers an action's [-1, 1] maps to, linearly (0 = the middle, power 1)."""
BIAS_RANGE = (0.01, 1.0)
"""Biases an action's [-1, 1] maps to, linearly."""
DEFAULT_REWARD_WEIGHTS: dict[str, float] = {
    "watch_s": 0.02,
    "valid": 1.0,
    "like": 2.0,
    "forward": 3.0,
    "follow": 5.0,
}
"""Formula 2's w_i. The paper gives no values; ours make 50 s of watching worth one valid
consumption and rarer interactions worth more, so valid consumption (UVC) leads."""


def product_fusion(values: np.ndarray, power: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """The production form ``prod_i (p_i + bias_i) ** power_i`` as its logarithm (same order).

    The paper's Formula 1 is not in our text; this product form is the one used in production
    MTF (and by IntegratedRL-MTF's authors' description of powers and biases). (..., 5) each ->
    (...,) log scores.
    """
    return (power * np.log(values + bias)).sum(axis=-1)


def action_to_fusion(
    action: np.ndarray,
    power_range: tuple[float, float] = POWER_RANGE,
    bias_range: tuple[float, float] = BIAS_RANGE,
) -> tuple[np.ndarray, np.ndarray]:
    """(..., 10) actions in [-1, 1] -> (powers, biases), each (..., 5), mapped linearly.
    Array-likes become float64 arrays; a torch tensor stays one (the MTF learners
    differentiate through this map)."""
    if not hasattr(action, "detach"):
        action = np.asarray(action, dtype=np.float64)
    u = (action + 1.0) / 2.0
    k = len(FUSED)
    power = power_range[0] + u[..., :k] * (power_range[1] - power_range[0])
    bias = bias_range[0] + u[..., k:] * (bias_range[1] - bias_range[0])
    return power, bias


def fused_values(candidates: np.ndarray) -> np.ndarray:
    """(..., N, F) MTFSession-v0 candidate rows -> (..., N, 5) the `FUSED` predictions."""
    cols = [MTF_CANDIDATE_FEATURES.index(f"mtl_{name}") for name in FUSED]
    return np.asarray(candidates, dtype=np.float64)[..., cols]


def item_rewards(responses: Mapping[str, np.ndarray], weights: Mapping[str, float]) -> np.ndarray:
    """Formula 2 per shown item: ``sum_i w_i v_i`` over watch seconds, valid consumption (watch
    > 10 s), like, forward and follow. (B, l) responses -> (B, l) float64."""
    watch_s = np.asarray(responses["watch_ms"], dtype=np.float64) / 1000.0
    values = {"watch_s": watch_s, "valid": (watch_s > 10.0).astype(np.float64)}
    for name in ("like", "forward", "follow"):
        values[name] = np.asarray(responses.get(name, np.zeros_like(watch_s)), dtype=np.float64)
    return sum(float(w) * values[b] for b, w in weights.items())


__all__ = [
    "ACTION_DIM",
    "BIAS_RANGE",
    "DEFAULT_REWARD_WEIGHTS",
    "FUSED",
    "HISTORY_FEATURES",
    "MTF_CANDIDATE_FEATURES",
    "MTF_CONTEXT_FEATURES",
    "MTL_COLUMNS",
    "POWER_RANGE",
    "WATCH_REF_S",
    "action_to_fusion",
    "fused_values",
    "item_rewards",
    "product_fusion",
]
