"""RDRSR (`agents/rdrsr.py`) and the allocation-vs-truth metrics (`benchmarks.metrics`)."""

from __future__ import annotations

import numpy as np
import pytest

from recgym.benchmarks.metrics import allocation_ari, allocation_nmi, metric


# --------------------------------------------------------------------------- NMI / ARI
def test_allocation_metrics_by_hand() -> None:
    # user 0: truth {a, a, b, b}, allocation {x, x, y, y} -> perfect up to renaming
    # user 1: truth {a, a, b, b}, allocation {x, y, x, y} -> independent: NMI 0
    # user 2: truth {a, a, a}, allocation {x, x, y} -> one true cluster: NMI 0
    group = np.array([0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2])
    true = np.array([5, 5, 7, 7, 5, 5, 7, 7, 5, 5, 5])
    pred = np.array([1, 1, 0, 0, 1, 0, 1, 0, 3, 3, 4])
    np.testing.assert_allclose(allocation_nmi(group, true, pred), [1.0, 0.0, 0.0], atol=1e-12)
    # user 1: sum C(n_ij, 2) = 0, a = b = 2, E = 4 / 6, ARI = (0 - 2/3) / (2 - 2/3) = -0.5
    np.testing.assert_allclose(allocation_ari(group, true, pred), [1.0, -0.5, 0.0], atol=1e-12)
    # user 3: truth {a, a, b}, allocation {x, y, y}: I = H(T) + H(P) - H(T, P), H(T) = H(P)
    h = -(2 / 3) * np.log(2 / 3) - (1 / 3) * np.log(1 / 3)
    mi = 2 * h - np.log(3)
    got = allocation_nmi(np.zeros(3), np.array([0, 0, 1]), np.array([0, 1, 1]))
    assert got[0] == pytest.approx(mi / h)
    assert metric("allocation_nmi").high == 1.0 and metric("allocation_ari").low == -1.0
    with pytest.raises(ValueError, match="one entry per item"):
        allocation_nmi(np.zeros(3), np.zeros(2), np.zeros(3))


def test_allocation_metrics_match_the_pairwise_definitions_on_random_data() -> None:
    rng = np.random.default_rng(0)
    group = rng.integers(0, 20, 400)
    true = rng.integers(0, 4, 400)
    pred = np.where(rng.random(400) < 0.6, true, rng.integers(0, 3, 400))
    nmi, ari = allocation_nmi(group, true, pred), allocation_ari(group, true, pred)
    for i, u in enumerate(np.unique(group)):
        t, p = true[group == u], pred[group == u]
        same_t = t[:, None] == t[None, :]
        same_p = p[:, None] == p[None, :]
        iu = np.triu_indices(len(t), 1)
        s, a, b = (same_t & same_p)[iu].sum(), same_t[iu].sum(), same_p[iu].sum()
        e = a * b / len(iu[0])
        assert ari[i] == pytest.approx((s - e) / ((a + b) / 2 - e))
        joint = np.histogram2d(t, p, bins=[np.arange(5), np.arange(5)])[0] / len(t)
        pt, pp = joint.sum(1), joint.sum(0)
        nz = joint > 0
        mi = (joint[nz] * np.log(joint[nz] / np.outer(pt, pp)[nz])).sum()
        ent = [-(x[x > 0] * np.log(x[x > 0])).sum() for x in (pt, pp)]
        assert nmi[i] == pytest.approx(mi / np.mean(ent))
