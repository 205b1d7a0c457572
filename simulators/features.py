"""Feature vectors computed from the KuaiRand schemas, shared by the world and learned simulators.

Both backends build user features from a user_features table (the world from its own
`user_table()`, a learned simulator from the loaded file), so an agent sees the same
observation layout whichever backend is behind the env.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

ACTIVITY_LEVELS = ("high_active", "full_active", "middle_active", "UNKNOWN")
# Cardinalities of KuaiRand-Pure's onehot_feat0..17 (counted in user_features_pure.csv).
ONEHOT_CARDINALITY = (2, 7, 50, 1471, 15, 34, 3, 118, 454, 7, 5, 5, 2, 2, 2, 2, 2, 2)
# Only the low-cardinality codes enter the dense vector; the rest would need embeddings.
_SMALL = tuple(j for j, card in enumerate(ONEHOT_CARDINALITY) if card <= 50)
USER_FEATURE_DIM = len(ACTIVITY_LEVELS) + len(_SMALL) + 4


def user_feature_matrix(users: pd.DataFrame) -> np.ndarray:
    """KuaiRand user_features rows -> (U, USER_FEATURE_DIM) float32, row i = i-th table row.

    Columns used: user_active_degree (one-hot over ACTIVITY_LEVELS; any other value, such as
    "2_14_day_new", counts as UNKNOWN), onehot_feat{j} for the low-cardinality j scaled to [0, 1]
    (missing -> 0), register_days, is_video_author, follow_user_num and fans_user_num (log-scaled).
    Missing columns read as zeros, so a partial table still yields the same layout.
    """
    n = len(users)

    def col(name: str) -> np.ndarray:
        if name not in users:
            return np.zeros(n)
        return pd.to_numeric(users[name], errors="coerce").fillna(0).to_numpy(np.float64)

    act = np.zeros((n, len(ACTIVITY_LEVELS)), dtype=np.float32)
    degree = users.get("user_active_degree", pd.Series(["UNKNOWN"] * n)).astype(str).to_numpy()
    idx = np.full(n, len(ACTIVITY_LEVELS) - 1)
    for j, level in enumerate(ACTIVITY_LEVELS[:-1]):
        idx[degree == level] = j
    act[np.arange(n), idx] = 1.0
    codes = [
        np.clip(col(f"onehot_feat{j}"), 0, ONEHOT_CARDINALITY[j] - 1) / (ONEHOT_CARDINALITY[j] - 1)
        for j in _SMALL
    ]
    extra = [
        np.log1p(np.maximum(col("register_days"), 0)) / 8.0,
        (col("is_video_author") > 0).astype(np.float64),
        np.log1p(np.maximum(col("follow_user_num"), 0)) / 7.0,
        np.log1p(np.maximum(col("fans_user_num"), 0)) / 7.0,
    ]
    return np.concatenate([act, np.stack(codes + extra, axis=1)], axis=1).astype(np.float32)
