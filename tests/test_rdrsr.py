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


# --------------------------------------------------------------------------- the model
def _model(**kw):
    import torch

    from recgym.agents.rdrsr import RDRSR
    from recgym.agents.seeding import seeded_global_rngs

    torch.set_num_threads(1)
    with seeded_global_rngs(0):
        return RDRSR(30, dim=16, max_len=6, n_negatives=9, **kw)


SEQ = np.array([[-1, -1, 3, 4, 5, 6], [1, 2, 3, 4, 5, 6], [-1, -1, -1, -1, -1, 7]])


@pytest.mark.parametrize("dynamic", [True, False])
def test_rdrsr_scores_losses_and_allocations(dynamic: bool) -> None:
    import torch

    m = _model(k=3, dynamic=dynamic).eval()
    scores = m.score(SEQ)
    assert scores.shape == (3, 30) and torch.isfinite(scores).all()
    cand = np.array([[0, 1], [2, 3], [4, 5]])
    np.testing.assert_allclose(
        m.score(SEQ, cand).detach(), scores.detach()[np.arange(3)[:, None], cand], rtol=1e-5
    )
    acts, h = m.allocations(SEQ)
    assert acts.shape == (3, 6) and (acts[SEQ < 0] == -1).all()
    assert ((acts[SEQ >= 0] >= 0) & (acts[SEQ >= 0] < np.repeat(h, 6)[SEQ.ravel() >= 0])).all()
    assert ((h >= 1) & (h <= 3)).all()
    if not dynamic:  # RDRSR-F: the DID is off, the interest number is k
        assert (h == 3).all()
    m.train()
    parts = m.loss_parts(SEQ, np.array([7, 8, 9]))
    assert torch.isfinite(parts["loss"]) and set(parts) >= {"ce", "rl", "reward", "n_interests"}
    parts["loss"].backward()
    assert m.policy[0].weight.grad is not None and m.item_emb.weight.grad.abs().sum() > 0


def test_rdrsr_similarity_policy_opens_interests_in_order_and_scores_consistently() -> None:
    import torch

    m = _model(k=3, similarity_policy=True).eval()
    acts, h = m.allocations(SEQ)
    for row, n in zip(acts, h, strict=True):
        used = row[row >= 0]
        assert used[0] == 0  # the first item opens interest 0
        # an interest opens only after every lower one: first uses appear as 0, 1, 2, ...
        _, first = np.unique(used, return_index=True)
        np.testing.assert_array_equal(used[np.sort(first)], np.arange(len(first)))
        assert used.max() < n
    cand = np.array([[0, 1], [2, 3], [4, 5]])
    np.testing.assert_allclose(
        m.score(SEQ, cand).detach(), m.score(SEQ).detach()[np.arange(3)[:, None], cand], rtol=1e-5
    )
    m.train()
    parts = m.loss_parts(SEQ, np.array([7, 8, 9]))
    parts["loss"].backward()
    assert torch.isfinite(parts["loss"]) and m.new_threshold.grad is not None


def test_rdrsr_ignores_extra_left_padding() -> None:
    m = _model(k=4).eval()
    wide = np.concatenate([np.full((3, 4), -1), SEQ], 1)
    m.max_len = 10  # positions are counted from the newest item, so width does not matter
    m.pos_emb = type(m.pos_emb)(10, 16)
    np.testing.assert_allclose(m.score(SEQ).detach(), m.score(wide).detach(), rtol=1e-4, atol=1e-5)
    np.testing.assert_array_equal(m.allocations(SEQ)[0], m.allocations(wide)[0][:, 4:])


def test_rdrsr_bad_input_is_a_clear_error() -> None:
    m = _model()
    with pytest.raises(ValueError, match="item ids must lie"):
        m.score(np.array([[1, 99]]))
    with pytest.raises(ValueError, match="target"):
        m.loss(SEQ, np.array([1, 2]))
    with pytest.raises(ValueError, match="k and n_negatives"):
        _model(k=0)


def test_rdrsr_trains_with_the_shared_fit_and_ranks_like_every_model() -> None:
    from recgym.agents.sequence import SequenceData, TrainConfig, fit, leave_one_out, rank_targets

    rng = np.random.default_rng(0)
    seqs = [rng.integers(0, 30, 12) for _ in range(20)]
    split = leave_one_out(seqs, max_len=6)
    m = _model(k=3)
    hist = fit(m, split.train, split.valid, TrainConfig(epochs=2, batch_size=64), seed=0)
    assert len(hist["loss"]) == 2 and np.isfinite(hist["loss"]).all()
    ranks = rank_targets(m, split.test)
    assert ranks.shape == (20,) and (ranks >= 0).all()
    assert isinstance(split.train, SequenceData)


def test_rdrsr_policy_acts_in_the_env_from_observations() -> None:
    from recgym.agents.rdrsr import RDRSR, RDRSRAllocationPolicy
    from recgym.agents.seeding import seeded_global_rngs
    from recgym.envs.interest_allocation import InterestAllocationEnv

    env = InterestAllocationEnv(
        world_config={"n_users": 60, "n_items": 300, "n_authors": 30}, k=4, length=6
    )
    with seeded_global_rngs(0):
        model = RDRSR(300, dim=16, max_len=6, k=4)
    policy = RDRSRAllocationPolicy(model)
    obs, _ = env.reset(seed=0)
    expected, _ = model.allocations(obs["sequence"][None])
    done = False
    while not done:
        a = policy.act(obs)
        assert 0 <= a < 4
        obs, _, done, _, info = env.step(a)
    np.testing.assert_array_equal(info["assignment"], expected[0])


# --------------------------------------------------------------------------- learning on the world
LEARN_WORLD = {"n_users": 300, "n_items": 600, "n_authors": 40}


@pytest.fixture(scope="module")
def trained_on_the_world():
    """RDRSR (the paper's settings, k = 4, d = 32) trained 3 epochs on 300 world users' 30
    clicks; evaluated on the same users' next 10 clicks + 1 (a fresh draw of the world)."""
    import torch

    from recgym.agents.rdrsr import RDRSR
    from recgym.agents.seeding import seeded_global_rngs
    from recgym.agents.sequence import SequenceData, TrainConfig, fit
    from recgym.envs.interest_allocation import world_sequences

    torch.set_num_threads(1)
    train_seqs = world_sequences(30, world_config=LEARN_WORLD, seed=0)
    train = SequenceData.from_user_sequences(train_seqs.user_sequences(), 10, min_len=2)
    with seeded_global_rngs(0):
        untrained = RDRSR(train_seqs.n_items, dim=32, max_len=10, k=4)
        model = RDRSR(train_seqs.n_items, dim=32, max_len=10, k=4)
    model.load_state_dict(untrained.state_dict())
    fit(model, train, None, TrainConfig(epochs=3, batch_size=256, lr=3e-3), seed=0)
    test = world_sequences(11, world_config=LEARN_WORLD, seed=1)
    return model.eval(), untrained.eval(), test


def _paired_interval(diff: np.ndarray) -> tuple[float, float]:
    from recgym.envs.evaluation import t_interval

    _, low, high = t_interval(diff.tolist(), 0.95)
    return low, high


@pytest.mark.learning
def test_rdrsr_learns_to_rank_the_worlds_next_click(trained_on_the_world) -> None:
    """Trained vs its own initial weights, the next click ranked among 99 other items (paired
    by user, the same negatives): NDCG@10 rises with a paired interval above 0."""
    from recgym.envs.interest_allocation import sample_other_items

    model, untrained, test = trained_on_the_world
    seq = test.items.reshape(-1, 11)
    negs = sample_other_items(seq[:, -1], 99, test.n_items, np.random.default_rng(0))
    cand = np.concatenate([seq[:, -1:], negs], 1)

    def ndcg(m) -> np.ndarray:
        s = m.score(seq[:, :-1], cand).detach().numpy()
        rank = (s[:, 1:] >= s[:, :1]).sum(1)
        return np.where(rank < 10, 1 / np.log2(rank + 2), 0.0)

    low, _ = _paired_interval(ndcg(model) - ndcg(untrained))
    assert low > 0


def _allocation_vs_references(model, test) -> dict[str, tuple[float, float]]:
    """Per-window ARI of `model`'s allocation minus a uniformly random allocation over k = 4 and
    minus one interest: paired 95% intervals over the windows of 10 clicks (the model's max_len)
    with two or more true interests. A user's next 30 clicks give three windows: one window of
    10 clicks of 300 users has only 9 users with two true interests, too few to pair."""
    seq, truth = test.items.reshape(-1, 10), test.interest.reshape(-1, 10)
    ours, _ = model.allocations(seq)
    rng = np.random.default_rng(0)
    references = {"random": rng.integers(0, 4, seq.shape), "single": np.zeros_like(seq)}
    ok = truth >= 0
    windows = np.broadcast_to(np.arange(len(seq))[:, None], seq.shape)[ok]
    _, first = np.unique(windows, return_index=True)
    multi = np.array([len(np.unique(t)) > 1 for t in np.split(truth[ok], first[1:])])
    assert multi.sum() >= 30  # enough windows to pair
    score = allocation_ari(windows, truth[ok], ours[ok])[multi]
    return {
        name: _paired_interval(score - allocation_ari(windows, truth[ok], pred[ok])[multi])
        for name, pred in references.items()
    }


@pytest.fixture(scope="module")
def allocation_windows():
    """The learning world's users' next 30 clicks (a fresh draw), labelled with true interests."""
    from recgym.envs.interest_allocation import world_sequences

    return world_sequences(30, world_config=LEARN_WORLD, seed=1)


@pytest.mark.learning
@pytest.mark.xfail(
    strict=True,
    reason="measured: with the paper's settings RDRSR's allocator puts (almost) every item of a "
    "sequence in one interest, so its allocation does not beat a random one on the true "
    "interests (bench rdrsr, world, true interests); strict: passing would mean it now does",
)
def test_rdrsr_paper_allocation_beats_random_and_one_interest_on_the_true_interests(
    trained_on_the_world, allocation_windows
) -> None:
    """The paper's settings: the allocation does not beat random nor one interest."""
    model, _, _ = trained_on_the_world
    for name, (low, _) in _allocation_vs_references(model, allocation_windows).items():
        assert low > 0, name


@pytest.mark.learning
def test_rdrsr_allocation_beats_random_and_one_interest_on_the_true_interests(
    allocation_windows,
) -> None:
    """The issue's claim, with `similarity_policy` (module doc): RDRSR trained as the fixture
    above (3 epochs) allocates each window of 10 clicks closer to the world's true interests
    (per-window ARI) than a random allocation and than one interest, paired intervals above 0."""
    import torch

    from recgym.agents.rdrsr import RDRSR
    from recgym.agents.seeding import seeded_global_rngs
    from recgym.agents.sequence import SequenceData, TrainConfig, fit
    from recgym.envs.interest_allocation import world_sequences

    torch.set_num_threads(1)
    train_seqs = world_sequences(30, world_config=LEARN_WORLD, seed=0)
    train = SequenceData.from_user_sequences(train_seqs.user_sequences(), 10, min_len=2)
    with seeded_global_rngs(0):
        model = RDRSR(train_seqs.n_items, dim=32, max_len=10, k=4, similarity_policy=True)
    fit(model, train, None, TrainConfig(epochs=3, batch_size=256, lr=3e-3), seed=0)
    for name, (low, _) in _allocation_vs_references(model.eval(), allocation_windows).items():
        assert low > 0, name
