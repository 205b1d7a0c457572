"""The bench's stages: a dataset's sequences, one model trained and ranked, allocation references.

Every stage is a plain function of a `benchmarks.engine.StageContext`; its config is a small dict
(everything that changes its result), so the engine reruns exactly what a change reaches.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from recgym.agents.rdrsr import RDRSR
from recgym.agents.seeding import seeded_global_rngs
from recgym.agents.sequence import (
    SequenceData,
    Split,
    TrainConfig,
    evaluate,
    fit,
    leave_one_out,
    make_model,
    sample_negatives,
)
from recgym.benchmarks.engine import StageContext
from recgym.benchmarks.metrics import allocation_ari, allocation_nmi
from recgym.data.sequences import SequenceSet

SEQUENCES = "sequences.npz"
TRUTH_BACKEND = "world, true interests"


# --------------------------------------------------------------------------- sequences
def save_sequences(seqs: SequenceSet, path: Path) -> None:
    """`seqs` as one compressed npz (items, offsets, ids, optional interest)."""
    arrays = {
        "items": seqs.items,
        "offsets": seqs.offsets,
        "user_ids": seqs.user_ids,
        "item_ids": seqs.item_ids,
    }
    if seqs.interest is not None:
        arrays["interest"] = seqs.interest
    np.savez_compressed(path, **arrays)


def load_sequences(path: Path, name: str) -> SequenceSet:
    """What `save_sequences` wrote."""
    with np.load(path) as z:
        return SequenceSet(
            name=name,
            items=z["items"],
            offsets=z["offsets"],
            user_ids=z["user_ids"],
            item_ids=z["item_ids"],
            interest=z["interest"] if "interest" in z else None,
        )


def sequences_stage(ctx: StageContext) -> dict[str, Any]:
    """A dataset's click sequences (the paper's preprocessing) or the world's (with truth)."""
    cfg = ctx.config
    if cfg["dataset"] == "world":
        from recgym.envs.interest_allocation import world_sequences

        world = {
            "n_users": cfg["world_users"],
            "n_items": cfg["world_items"],
            "n_authors": max(10, cfg["world_items"] // 15),
        }
        seqs = world_sequences(cfg["world_clicks"], world_config=world, seed=0)
        if not cfg["repeats"]:
            seqs = seqs.first_clicks()
        steps = seqs.steps
    else:
        from recgym.data.loaders import load
        from recgym.data.sequences import paper_sequences

        seqs = paper_sequences(load(cfg["path"], cache=False), repeats=cfg["repeats"])
        steps = seqs.steps
    save_sequences(seqs, ctx.dir / SEQUENCES)
    labelled = None if seqs.interest is None else float((seqs.interest >= 0).mean())
    return {
        "users": seqs.n_users,
        "items": seqs.n_items,
        "clicks": len(seqs.items),
        "steps": steps,
        "labelled_share": labelled,
    }


# --------------------------------------------------------------------------- helpers
def _sequences_dir(ctx: StageContext) -> Path:
    """The directory of the one sequences stage this stage depends on."""
    (name,) = [d for d in ctx.deps if d.startswith("sequences-")]
    return ctx.deps[name].dir


def build_model(name: str, n_items: int, cfg: dict[str, Any], seed: int) -> torch.nn.Module:
    """The bench model `name` (spec.LABELS) with its weights drawn from `seed`."""
    dim, max_len = cfg["dim"], cfg["max_len"]
    if name.startswith("rdrsr"):
        k = 3 if name in ("rdrsr-3", "rdrsr-f3") else cfg["k"]
        with seeded_global_rngs(seed):
            return RDRSR(
                n_items,
                dim=dim,
                max_len=max_len,
                k=k,
                dynamic=name != "rdrsr-f3",
                n_negatives=cfg["n_negatives"],
            )
    kw = {"n_interests": 3} if name == "mcprn" else {}
    return make_model(name, n_items, dim=dim, max_len=max_len, seed=seed, **kw)


def recent_rows(data: SequenceData, per_user: int) -> SequenceData:
    """Each user's `per_user` most recent training rows (rows are grouped by user, oldest
    first); all rows when `per_user` <= 0."""
    if per_user <= 0:
        return data
    n = len(data)
    ends = np.flatnonzero(np.r_[data.user[1:] != data.user[:-1], True])
    own_end = ends[np.searchsorted(ends, np.arange(n))]  # each row's user's last row
    return data.subset(own_end - np.arange(n) < per_user)


def split_of(seqs: SequenceSet, max_len: int) -> Split:
    """Leave-one-out (last test, second-to-last validation), true interests aligned if any."""
    aligned = None
    if seqs.interest is not None:
        aligned = {"interest": np.split(seqs.interest, seqs.offsets[1:-1])}
    return leave_one_out(seqs.user_sequences(), max_len, aligned=aligned)


def negatives_for(test: SequenceData, n_items: int, n: int, seed: int) -> np.ndarray:
    """The evaluation negatives of `seed`: the same for every model (paired), never the target
    nor an item the user has seen (`agents.sequence.sample_negatives`)."""
    return sample_negatives(np.random.default_rng([seed, 99]), test, n_items, n)


def allocation_rows(
    ctx: StageContext, agent: str, seed: int, test: SequenceData, pred: np.ndarray
) -> list[dict]:
    """NMI and ARI of an allocation of the test prefixes vs the true interests: per user over
    the labelled clicks, averaged over the users with at least two true interests among them
    (with one, every allocation scores the same)."""
    truth = test.context["interest"]
    ok = (truth >= 0) & (test.seq >= 0)
    users = np.broadcast_to(np.arange(len(truth))[:, None], truth.shape)[ok]
    true, guess = truth[ok], np.asarray(pred)[ok]
    ids, first = np.unique(users, return_index=True)
    n_true = np.array([len(np.unique(t)) for t in np.split(true, first[1:])])
    multi = n_true > 1
    rows = []
    for name, values in (
        ("allocation_nmi", allocation_nmi(users, true, guess)),
        ("allocation_ari", allocation_ari(users, true, guess)),
    ):
        value = float(values[multi].mean()) if multi.any() else float("nan")
        rows.append(
            ctx.row(
                env="world",
                agent=agent,
                backend=TRUTH_BACKEND,
                seed=seed,
                metric=name,
                value=value,
                users=int(multi.sum()),
            )
        )
    return rows


def model_allocation(model: torch.nn.Module, seq: np.ndarray) -> np.ndarray | None:
    """(N, L) interest of each item of `seq` under the model, or None if it has no allocation:
    RDRSR's allocator, MCPRN's most weighted purpose channel."""
    if isinstance(model, RDRSR):
        return model.allocations(seq)[0]
    if hasattr(model, "purpose_weights"):
        with torch.no_grad():
            vectors = model.item_vectors(torch.as_tensor(np.maximum(seq, 0)))
            w = model.purpose_weights(vectors)
        return np.where(seq >= 0, w.argmax(-1).cpu().numpy(), -1)
    return None


# --------------------------------------------------------------------------- stages
def train_stage(ctx: StageContext) -> dict[str, Any]:
    """Train one model with one seed on one dataset; rank the test targets both ways (and, on
    the world, score its allocation against the true interests)."""
    torch.set_num_threads(1)
    cfg = ctx.config
    name, seed, dataset = cfg["model"], cfg["seed"], cfg["dataset"]
    seqs = load_sequences(_sequences_dir(ctx) / SEQUENCES, dataset)
    split = split_of(seqs, cfg["max_len"])
    train = recent_rows(split.train, cfg["train_rows_per_user"])
    model = build_model(name, seqs.n_items, cfg, seed)
    config = TrainConfig(
        epochs=cfg["epochs"],
        batch_size=cfg["batch_size"],
        lr=cfg["lr"],
        patience=cfg["patience"],
        device=cfg["device"],
    )
    history = fit(model, train, split.valid if cfg["validate"] else None, config, seed=seed)
    negatives = negatives_for(split.test, seqs.n_items, cfg["n_negatives"], seed)
    rows = []
    for protocol, negs in (("99 negatives", negatives), ("full catalogue", None)):
        scores = evaluate(model, split.test, ks=(10, 50), negatives=negs)
        backend = f"{dataset}, {protocol}"
        rows += [
            ctx.row(env=dataset, agent=name, backend=backend, seed=seed, metric=m, value=v)
            for m, v in scores.items()
        ]
    if seqs.interest is not None:
        pred = model_allocation(model, split.test.seq)
        if pred is not None:
            rows += allocation_rows(ctx, name, seed, split.test, pred)
    ctx.write_rows(rows)
    return {
        "train_rows": len(train),
        "best_epoch": history["best_epoch"],
        "epochs_run": len(history["loss"]),
        "final_loss": history["loss"][-1],
    }


def references_stage(ctx: StageContext) -> dict[str, Any]:
    """The allocation references on the world: a uniformly random allocation over k interests
    (drawn from the seed) and every item in one interest."""
    cfg = ctx.config
    seed = cfg["seed"]
    seqs = load_sequences(_sequences_dir(ctx) / SEQUENCES, "world")
    test = split_of(seqs, cfg["max_len"]).test
    rng = np.random.default_rng([seed, 7])
    random = np.where(test.seq >= 0, rng.integers(0, cfg["k"], test.seq.shape), -1)
    single = np.where(test.seq >= 0, 0, -1)
    rows = allocation_rows(ctx, "random", seed, test, random)
    rows += allocation_rows(ctx, "single", seed, test, single)
    ctx.write_rows(rows)
    return {"users": int(len(test))}
