"""The metric registry: leave-one-out HR/NDCG and weighted GAUC against hand-computed answers."""

from __future__ import annotations

import math

import numpy as np
import pytest

from recgym.benchmarks.metrics import (
    REGISTRY,
    SESSION_METRICS,
    leave_one_out_ranks,
    metric,
    ranking_metrics,
    session_metrics,
    weighted_gauc,
)

SCORES = np.array(
    [
        [0.1, 0.9, 0.5, 0.7, 0.3],  # target 2 (0.5); item 1 was interacted -> only 0.7 above
        [0.2, 0.2, 0.8, 0.1, 0.2],  # target 0 (0.2); ties 1 and 4 count against it + 0.8 -> 3
    ]
)
TARGET = np.array([2, 0])
INTERACTED = np.array([[False, True, False, False, False], [False] * 5])


def test_leave_one_out_ranks_by_hand() -> None:
    assert leave_one_out_ranks(SCORES, TARGET, INTERACTED).tolist() == [1, 3]
    # without the history, user 0's interacted item 1 (0.9) competes too
    assert leave_one_out_ranks(SCORES, TARGET).tolist() == [2, 3]
    # the target's own history flag is ignored
    own = INTERACTED.copy()
    own[0, 2] = True
    assert leave_one_out_ranks(SCORES, TARGET, own).tolist() == [1, 3]


def test_hr_and_ndcg_by_hand() -> None:
    m = ranking_metrics(SCORES, TARGET, INTERACTED, ks=(1, 2, 5))
    assert m["hr@1"] == 0.0 and m["hr@2"] == 0.5 and m["hr@5"] == 1.0
    assert m["ndcg@1"] == 0.0
    assert m["ndcg@2"] == pytest.approx((1 / math.log2(3)) / 2)
    assert m["ndcg@5"] == pytest.approx((1 / math.log2(3) + 1 / math.log2(5)) / 2)


def test_constant_scorer_gets_the_worst_rank() -> None:
    ranks = leave_one_out_ranks(np.zeros((3, 50)), np.array([0, 10, 49]))
    assert ranks.tolist() == [49, 49, 49]


def test_ranking_input_errors() -> None:
    with pytest.raises(ValueError, match="target item ids"):
        leave_one_out_ranks(SCORES, np.array([0, 5]))
    with pytest.raises(ValueError, match="integer"):
        leave_one_out_ranks(SCORES, np.array([0.0, 1.0]))
    with pytest.raises(ValueError, match="NaN"):
        leave_one_out_ranks(np.full((2, 5), np.nan), TARGET)
    with pytest.raises(ValueError, match="interacted"):
        leave_one_out_ranks(SCORES, TARGET, np.zeros((2, 4), bool))


def test_weighted_gauc_by_hand() -> None:
    # user 1: pos (0.9, w2), (0.3, w1); neg (0.5, w1), (0.1, w3)
    #   correct pairs 2*1 + 2*3 + 1*3 = 11 of 3*4 = 12; weight 7
    # user 2: pos (0.4, w1); neg (0.4, w1) tie -> 1/2, (0.2, w2) -> 2: 2.5 of 3; weight 4
    # user 3: positives only -> no AUC, left out
    user = np.array([1, 1, 1, 1, 2, 2, 2, 3, 3])
    label = np.array([1, 0, 1, 0, 1, 0, 0, 1, 1])
    score = np.array([0.9, 0.5, 0.3, 0.1, 0.4, 0.4, 0.2, 0.5, 0.6])
    weight = np.array([2, 1, 1, 3, 1, 1, 2, 1, 1], dtype=float)
    expected = (7 * 11 / 12 + 4 * 2.5 / 3) / 11
    assert weighted_gauc(user, label, score, weight) == pytest.approx(expected)
    # the order of the rows does not matter
    perm = np.random.default_rng(0).permutation(len(user))
    got = weighted_gauc(user[perm], label[perm], score[perm], weight[perm])
    assert got == pytest.approx(expected)


def test_weighted_gauc_matches_pairwise_definition_on_random_data() -> None:
    rng = np.random.default_rng(1)
    n = 400
    user = rng.integers(0, 12, n)
    label = rng.integers(0, 2, n)
    score = rng.integers(0, 6, n) / 5.0  # many ties
    weight = rng.uniform(1.0, 3.0, n)
    num = den = 0.0
    for u in np.unique(user):  # the definition, pair by pair (test only)
        i = user == u
        p, q = np.flatnonzero(i & (label == 1)), np.flatnonzero(i & (label == 0))
        if not len(p) or not len(q):
            continue
        pair_w = weight[p][:, None] * weight[q][None, :]
        wins = (score[p][:, None] > score[q][None, :]) + 0.5 * (
            score[p][:, None] == score[q][None, :]
        )
        num += weight[i].sum() * (pair_w * wins).sum() / pair_w.sum()
        den += weight[i].sum()
    assert weighted_gauc(user, label, score, weight) == pytest.approx(num / den)


def test_weighted_gauc_is_scikit_learns_weighted_auc_per_user_averaged() -> None:
    """Per user, scikit-learn's ROC AUC with the weights as sample weights; averaged with the
    user's total weight (users with one class only are skipped)."""
    metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(7)
    n = 600
    user = rng.integers(0, 20, n)
    label = (rng.random(n) < 0.4).astype(np.int64)
    score = np.round(rng.random(n) + 0.3 * label, 2)  # some ties
    weight = rng.uniform(1.0, 4.0, n)
    aucs, totals = [], []
    for u in np.unique(user):
        i = user == u
        if label[i].min() == label[i].max():
            continue
        aucs.append(metrics.roc_auc_score(label[i], score[i], sample_weight=weight[i]))
        totals.append(weight[i].sum())
    assert weighted_gauc(user, label, score, weight) == pytest.approx(
        np.average(aucs, weights=totals)
    )


def test_weighted_gauc_extremes_and_errors() -> None:
    user, label = np.array([0, 0, 0, 0]), np.array([1, 1, 0, 0])
    w = np.ones(4)
    assert weighted_gauc(user, label, np.array([4.0, 3, 2, 1]), w) == 1.0
    assert weighted_gauc(user, label, np.array([1.0, 2, 3, 4]), w) == 0.0
    assert weighted_gauc(user, label, np.zeros(4), w) == 0.5
    assert math.isnan(weighted_gauc(user, np.ones(4, int), np.zeros(4), w))
    with pytest.raises(ValueError, match="weight"):
        weighted_gauc(user, label, np.zeros(4), np.array([1.0, 0.0, 1.0, 1.0]))
    with pytest.raises(ValueError, match="label"):
        weighted_gauc(user, np.array([0, 2, 1, 0]), np.zeros(4), w)
    with pytest.raises(ValueError, match="shape"):
        weighted_gauc(user, label[:3], np.zeros(4), w)


def test_registry_names_and_ranges() -> None:
    assert set(SESSION_METRICS) <= set(REGISTRY)
    assert {"hr@10", "ndcg@10", "ndcg@20", "hr@50", "weighted_gauc"} <= set(REGISTRY)
    assert metric("ctr").clip(-0.2) == 0.0 and metric("ctr").clip(1.5) == 1.0
    assert metric("follows").clip(-1.0) == 0.0 and metric("watch_time_s").clip(1e6) == 1e6
    assert metric("ndcg@7").high == 1.0  # any K
    with pytest.raises(KeyError, match="unknown metric"):
        metric("watchtime")


def test_session_metrics_reuse_the_evaluation_definitions() -> None:
    step = {"responses": {"click": np.array([1, 0]), "watch_ms": np.array([12_000.0, 3_000.0])},
            "categories": np.array([4, 5])}  # fmt: skip
    last = {"responses": {"click": np.array([0, 0]), "watch_ms": np.array([0.0, 0.0])},
            "categories": np.array([4, 4])}  # fmt: skip
    m = session_metrics([[step, last], [step]])
    assert m["session_length"] == 1.5
    assert m["watch_time_s"] == pytest.approx(15.0)  # (15 + 15) / 2
    assert m["ctr"] == pytest.approx(2 / 6)
    assert m["valid_consumption"] == 1.0 and m["diversity"] == 2.0
