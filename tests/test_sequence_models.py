"""The in-house sequence models (`agents/sequence`): padding, data splits, evaluation, training."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from recgym.agents.seeding import seeded_global_rngs
from recgym.agents.sequence import (
    MODELS,
    NextItNetEncoder,
    Popularity,
    SequenceData,
    TrainConfig,
    evaluate,
    fit,
    leave_one_out,
    make_model,
    pad_sequences,
    rank_targets,
    sample_negatives,
)

N_ITEMS, DIM, MAX_LEN = 30, 8, 6
TRAINABLE = [name for name, cls in MODELS.items() if cls.trainable]


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny models run fastest on one thread (and the test machine is shared)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def tiny(name: str, seed: int = 0) -> torch.nn.Module:
    return make_model(name, N_ITEMS, dim=DIM, max_len=MAX_LEN, seed=seed)


def narrow_batch() -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Four histories of 3, 0, 1 and 4 items (width 4) with scenario ids."""
    seq = pad_sequences([np.array([0, 1, 2]), np.array([], int), [5], np.array([7, 8, 9, 10])], 4)
    ctx = {"scenario": np.where(seq >= 0, seq % 2, -1), "target_scenario": np.array([0, 1, 1, 0])}
    return seq, ctx


def widen(seq: np.ndarray, ctx: dict[str, np.ndarray], extra: int) -> tuple[np.ndarray, dict]:
    pad = np.full((len(seq), extra), -1)
    return np.concatenate([pad, seq], 1), {
        "scenario": np.concatenate([pad, ctx["scenario"]], 1),
        "target_scenario": ctx["target_scenario"],
    }


# --------------------------------------------------------------------------- padding
def test_pad_sequences_keeps_newest_left_padded() -> None:
    out = pad_sequences([np.array([1, 2, 3]), np.array([], int), np.arange(7)], 4)
    assert out.dtype == np.int64
    np.testing.assert_array_equal(out, [[-1, 1, 2, 3], [-1, -1, -1, -1], [3, 4, 5, 6]])
    with pytest.raises(ValueError, match="sequence 1 holds a negative"):
        pad_sequences([np.array([1]), np.array([2, -1])], 3)
    with pytest.raises(ValueError, match="max_len"):
        pad_sequences([np.array([1])], 0)


@pytest.mark.parametrize("name", list(MODELS))
def test_left_padding_does_not_change_scores(name: str) -> None:
    """Extra -1 columns on the left (up to max_len) leave every score unchanged."""
    model = tiny(name).eval()
    seq, ctx = narrow_batch()
    base = model.score(seq, context=ctx)
    for extra in (1, MAX_LEN - 4):
        wide, wctx = widen(seq, ctx, extra)
        torch.testing.assert_close(model.score(wide, context=wctx), base, atol=1e-5, rtol=1e-5)
    # wider than max_len: only the newest max_len columns are read
    wide, wctx = widen(seq, ctx, MAX_LEN + 3)
    torch.testing.assert_close(model.score(wide, context=wctx), base, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", TRAINABLE)
def test_item_zero_is_a_real_item(name: str) -> None:
    """Id 0 is an item (shifted to 1 inside), not padding: a history of [0] differs from []."""
    model = tiny(name).eval()
    seq = pad_sequences([np.array([0]), np.array([], int), np.array([3, 0])], MAX_LEN)
    s = model.score(seq)
    assert not torch.allclose(s[0], s[1])
    # candidate 0 scores as column 0 of the full catalogue
    cand = torch.tensor([[0, 5], [0, 5], [0, 5]])
    torch.testing.assert_close(model.score(seq, cand), s[:, [0, 5]], atol=1e-5, rtol=1e-5)


def test_bad_ids_raise() -> None:
    model = tiny("sasrec")
    with pytest.raises(ValueError, match=r"\[0, 30\)"):
        model.score(np.array([[-1, 30]]))
    with pytest.raises(ValueError, match="padding"):
        model.score(np.array([[-2, 3]]))
    with pytest.raises(ValueError, match="target"):
        model.loss(np.array([[1, 2]]), np.array([30]))
    seq, ctx = narrow_batch()
    ctx["target_scenario"] = np.array([0, 1, 2, 0])
    with pytest.raises(ValueError, match="scenario ids"):
        tiny("star").score(seq, context=ctx)
    ctx["target_scenario"] = np.array([0, 1])
    with pytest.raises(ValueError, match=r"context\['target_scenario'\] has 2 rows"):
        tiny("din").score(seq, context=ctx)
    with pytest.raises(ValueError, match="unknown sequence model"):
        make_model("gru", N_ITEMS)


# --------------------------------------------------------------------------- every model
@pytest.mark.parametrize("name", list(MODELS))
def test_shapes(name: str) -> None:
    model = tiny(name).eval()
    seq, ctx = narrow_batch()
    k = model.n_interests
    state = model.user_state(seq, ctx)
    assert state.shape == ((4, model.dim) if k == 1 else (4, k, model.dim))
    assert model.item_vectors().shape == (N_ITEMS, model.dim)
    assert model.item_vectors(torch.tensor([[1, 2, 3]])).shape == (1, 3, model.dim)
    full = model.score(seq, context=ctx)
    assert full.shape == (4, N_ITEMS) and torch.isfinite(full).all()
    cand = torch.tensor([[1, 2], [3, 4], [5, 6], [7, 29]])
    assert model.score(seq, cand, ctx).shape == (4, 2)


def training_batch() -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    rng = np.random.default_rng(3)
    seqs = [rng.integers(0, N_ITEMS, rng.integers(1, 9)) for _ in range(16)]
    seq = pad_sequences(seqs, MAX_LEN)
    target = rng.integers(0, N_ITEMS, 16)
    ctx = {
        "scenario": np.where(seq >= 0, rng.integers(0, 2, seq.shape), -1),
        "target_scenario": rng.integers(0, 2, 16),
    }
    return seq, target, ctx


@pytest.mark.parametrize("name", TRAINABLE)
def test_one_step_reduces_loss_and_reaches_item_embeddings(name: str) -> None:
    model = tiny(name).train()
    seq, target, ctx = training_batch()

    def loss() -> torch.Tensor:
        with seeded_global_rngs(7):  # the same dropout, cloze masks and negatives each time
            return model.loss(seq, target, ctx)

    before = loss()
    assert before.dim() == 0 and torch.isfinite(before)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    before.backward()
    grad = model.item_emb.weight.grad
    assert grad is not None and grad[torch.as_tensor(target) + 1].abs().sum() > 0
    opt.step()
    assert loss().item() < before.item()


@pytest.mark.parametrize("name", TRAINABLE)
def test_same_seed_same_initial_scores(name: str) -> None:
    seq, ctx = narrow_batch()
    state = torch.random.get_rng_state()
    a, b, c = tiny(name, 0).eval(), tiny(name, 0).eval(), tiny(name, 1).eval()
    assert torch.equal(torch.random.get_rng_state(), state)  # the caller's generator untouched
    torch.testing.assert_close(a.score(seq, context=ctx), b.score(seq, context=ctx))
    assert not torch.allclose(a.score(seq, context=ctx), c.score(seq, context=ctx))


@pytest.mark.parametrize("name", [n for n, cls in MODELS.items() if cls.uses_context])
def test_scenario_context_reaches_the_score(name: str) -> None:
    """DIN, STAR and PEPNet read the request's scenario and the history's scenarios."""
    model = tiny(name).eval()
    seq, ctx = narrow_batch()
    base = model.score(seq, context=ctx)
    flipped = dict(ctx, target_scenario=1 - ctx["target_scenario"])
    assert not torch.allclose(model.score(seq, context=flipped), base)
    history = dict(ctx, scenario=np.where(seq >= 0, 1 - ctx["scenario"], -1))
    assert not torch.allclose(model.score(seq, context=history), base)
    # fit passes each batch's context rows along
    data = SequenceData(seq[[0, 3]], np.array([3, 11]), {k: v[[0, 3]] for k, v in ctx.items()})
    history = fit(model, data, config=TrainConfig(epochs=2, batch_size=1), seed=0)
    assert len(history["loss"]) == 2 and np.isfinite(history["loss"]).all()


def test_nextitnet_encoder() -> None:
    with seeded_global_rngs(0):
        enc = NextItNetEncoder(N_ITEMS, DIM, MAX_LEN, dilations=(1, 2))
    seq, _ = narrow_batch()
    out = enc(seq)
    assert out.shape == (4, 4, DIM)
    assert torch.all(out[torch.as_tensor(seq) < 0] == 0)  # zero at padding
    extra = torch.randn(4, 4, DIM, generator=torch.Generator().manual_seed(0))
    assert not torch.allclose(enc(seq, extra), out)
    torch.testing.assert_close(enc(widen(seq, narrow_batch()[1], 2)[0])[:, 2:], out)


# --------------------------------------------------------------------------- data
def test_from_user_sequences_by_hand() -> None:
    data = SequenceData.from_user_sequences(
        [np.array([1, 2, 3, 4]), np.array([0, 5])],
        max_len=3,
        min_len=2,
        aligned={"scenario": [np.array([0, 1, 0, 1]), np.array([1, 1])]},
    )
    np.testing.assert_array_equal(data.seq, [[-1, -1, 1], [-1, 1, 2], [1, 2, 3], [-1, -1, 0]])
    np.testing.assert_array_equal(data.target, [2, 3, 4, 5])
    np.testing.assert_array_equal(data.user, [0, 0, 0, 1])
    np.testing.assert_array_equal(
        data.context["scenario"], [[-1, -1, 0], [-1, 0, 1], [0, 1, 0], [-1, -1, 1]]
    )
    np.testing.assert_array_equal(data.context["target_scenario"], [1, 0, 1, 1])
    empty_prefix = SequenceData.from_user_sequences([np.array([4, 5])], max_len=2, min_len=1)
    np.testing.assert_array_equal(empty_prefix.seq, [[-1, -1], [-1, 4]])
    with pytest.raises(ValueError, match=r"aligned\['scenario'\]\[1\] has 1 entries"):
        SequenceData.from_user_sequences(
            [np.array([1, 2]), np.array([3, 4])], 2, aligned={"scenario": [[0, 0], [1]]}
        )


def test_leave_one_out_by_hand() -> None:
    split = leave_one_out([np.array([1, 2, 3, 4, 5]), np.array([0, 5, 6])], max_len=3)
    np.testing.assert_array_equal(split.train.seq, [[-1, -1, 1], [-1, 1, 2]])
    np.testing.assert_array_equal(split.train.target, [2, 3])
    np.testing.assert_array_equal(split.valid.seq, [[1, 2, 3], [-1, -1, 0]])
    np.testing.assert_array_equal(split.valid.target, [4, 5])
    np.testing.assert_array_equal(split.test.seq, [[2, 3, 4], [-1, 0, 5]])
    np.testing.assert_array_equal(split.test.target, [5, 6])
    # seen = every earlier item, not only the max_len kept in seq
    np.testing.assert_array_equal(split.test.seen[0], [1, 2, 3, 4])
    np.testing.assert_array_equal(split.test.user, [0, 1])
    no_valid = leave_one_out([np.array([1, 2, 3])], max_len=3, validation=False)
    assert no_valid.valid is None
    np.testing.assert_array_equal(no_valid.train.target, [2, 3][:1])
    np.testing.assert_array_equal(no_valid.test.seq, [[-1, 1, 2]])
    with pytest.raises(ValueError, match="sequence 1 has 2 items; needs >= 3"):
        leave_one_out([np.array([1, 2, 3]), np.array([1, 2])], max_len=3)


# --------------------------------------------------------------------------- evaluation
def popularity(counts: list[float]) -> Popularity:
    model = Popularity(len(counts))
    model.counts.copy_(torch.tensor(counts))
    return model


def test_rank_targets_by_hand() -> None:
    """Items scored 5, 3, 8, 1, 0, 3; row 0's target 1 (score 3), seen {2}; row 1's target 4."""
    model = popularity([5, 3, 8, 1, 0, 3])
    data = SequenceData(np.array([[-1, 2], [-1, -1]]), np.array([1, 4]))
    # row 0: item 0 (5) and item 5 (3, a tie counts against) rank above; item 2 is seen
    np.testing.assert_array_equal(rank_targets(model, data), [2, 5])
    np.testing.assert_array_equal(rank_targets(model, data, exclude_seen=False), [3, 5])
    data.seen = [np.array([2, 0]), np.array([], int)]  # seen wider than seq
    np.testing.assert_array_equal(rank_targets(model, data), [1, 5])
    np.testing.assert_array_equal(
        rank_targets(model, data, negatives=np.array([[3, 4], [3, 0]])), [0, 2]
    )
    with pytest.raises(ValueError, match="row 1 contain its target"):
        rank_targets(model, data, negatives=np.array([[3, 4], [4, 0]]))
    report = evaluate(model, data, ks=(2,))
    assert report == {"hr@2": 0.5, "ndcg@2": pytest.approx(0.5 / np.log2(3))}


def test_sample_negatives_excludes_target_and_seen() -> None:
    rng = np.random.default_rng(0)
    n_items = 200
    seqs = [rng.choice(n_items, rng.integers(3, 60), replace=False) for _ in range(50)]
    split = leave_one_out(seqs, max_len=10)
    neg = sample_negatives(np.random.default_rng(1), split.test, n_items, n=99)
    assert neg.shape == (50, 99)
    for row, seen, target in zip(neg, split.test.seen, split.test.target, strict=True):
        assert len(np.unique(row)) == 99
        assert target not in row and not np.isin(row, seen).any()
    again = sample_negatives(np.random.default_rng(1), split.test, n_items, n=99)
    np.testing.assert_array_equal(neg, again)
    crowded = SequenceData(np.array([[0, 1, 2]]), np.array([3]))
    with pytest.raises(ValueError, match="row 0 has 1 items"):
        sample_negatives(rng, crowded, n_items=5, n=2)


# --------------------------------------------------------------------------- training
def successor_sequences(n_items: int, n_users: int, seed: int) -> list[np.ndarray]:
    """Each user walks i -> i + 1 (mod n_items) from a random start."""
    rng = np.random.default_rng(seed)
    starts = rng.integers(0, n_items, n_users)
    lengths = rng.integers(6, 16, n_users)
    return [(s + np.arange(n)) % n_items for s, n in zip(starts, lengths, strict=True)]


def test_fit_history_and_reproducible() -> None:
    split = leave_one_out(successor_sequences(N_ITEMS, 40, 0), MAX_LEN)
    config = TrainConfig(epochs=3, batch_size=64, lr=1e-2, patience=1)
    a, b = tiny("gru4rec"), tiny("gru4rec")
    ha, hb = (
        fit(a, split.train, split.valid, config, seed=3),
        fit(b, split.train, split.valid, config, seed=3),
    )
    assert set(ha) >= {"loss", "valid_ndcg@10", "valid_epoch", "best_epoch", "stopped_early"}
    assert ha["loss"] == hb["loss"] and len(ha["loss"]) <= 3
    for pa, pb in zip(a.parameters(), b.parameters(), strict=True):
        assert torch.equal(pa, pb)
    pop = Popularity(N_ITEMS)
    fit(pop, split.train)
    assert pop.counts.sum() == (split.train.seq >= 0).sum() + len(split.train)
    with pytest.raises(ValueError, match="empty"):
        fit(tiny("gru4rec"), split.train.subset(np.zeros(len(split.train), bool)))


@pytest.mark.learning
@pytest.mark.parametrize("name", ["gru4rec", "sasrec"])
def test_learns_successor_rule(name: str) -> None:
    """On i -> i + 1 sequences, HR@10 on held-out last items far above popularity's."""
    n_items = 60
    split = leave_one_out(successor_sequences(n_items, 150, 1), max_len=8)
    pop = Popularity(n_items)
    fit(pop, split.train)
    model = make_model(name, n_items, dim=32, max_len=8, seed=0)
    config = TrainConfig(epochs=8, batch_size=64, lr=1e-2, patience=1)
    fit(model, split.train, split.valid, config, seed=0)
    hr_model = evaluate(model, split.test)["hr@10"]
    hr_pop = evaluate(pop, split.test)["hr@10"]
    assert hr_pop < 0.4
    assert hr_model > 0.9 and hr_model > hr_pop + 0.5
