"""`recgym bench rdrsr` (benchmarks/rdrsr): a tiny end-to-end run, protocol pieces, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from recgym.benchmarks.rdrsr import RDRSRBenchConfig, run, stages
from recgym.benchmarks.rdrsr.spec import SHARED_DATA

TINY = {
    "seeds": (0, 1),
    "epochs": 1,
    "dim": 8,
    "train_rows_per_user": 2,
    "world_users": 40,
    "world_items": 200,
    "world_clicks": 12,
}


def test_tiny_world_run_writes_both_protocols_truth_metrics_and_claims(tmp_path: Path) -> None:
    cfg = RDRSRBenchConfig(
        out=str(tmp_path / "out"),
        dataset="world",
        models=("gru4rec", "mcprn", "rdrsr", "rdrsr-f3"),
        **TINY,
    )
    result = run(cfg, progress=False)
    out = Path(cfg.out)
    rows = [json.loads(x) for x in (out / "rows.jsonl").read_text().splitlines()]
    backends = {r["backend"] for r in rows}
    assert backends == {"world, 99 negatives", "world, full catalogue", "world, true interests"}
    ranking = [r for r in rows if r["backend"] != "world, true interests"]
    assert {r["metric"] for r in ranking} == {"hr@10", "ndcg@10", "hr@50", "ndcg@50"}
    assert {(r["agent"], r["seed"]) for r in ranking} == {
        (a, s) for a in ("gru4rec", "mcprn", "rdrsr", "rdrsr-f3") for s in (0, 1)
    }
    truth = {r["agent"] for r in rows if r["backend"] == "world, true interests"}
    assert truth == {"mcprn", "rdrsr", "rdrsr-f3", "random", "single"}  # GRU4Rec allocates nothing
    assert all(0.0 <= r["value"] <= 1.0 for r in ranking)
    single = [
        r["value"] for r in rows if r["agent"] == "single" and r["metric"] == "allocation_nmi"
    ]
    assert single == [0.0, 0.0]
    md = (out / "results.md").read_text()
    assert "world, true interests" in md and "Claims (paired by seed)" in md
    assert any(v.claim.b == "random" for v in result["verdicts"])
    pngs = {p.name for p in out.glob("*.png")}
    assert pngs == {
        f"{m}_{p}.png" for m in ("hr10", "ndcg10") for p in ("99-negatives", "full-catalogue")
    } | {"allocation_ari.png"}
    assert all((out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for name in pngs)
    # a second run reuses every stage
    run(cfg, progress=False)
    log = [json.loads(x) for x in (out / "stage_log.jsonl").read_text().splitlines()]
    assert {x["action"] for x in log[-len(stages(cfg.preset())) :]} == {"reused"}


def test_evaluation_negatives_are_never_the_target_or_seen_and_are_paired() -> None:
    from recgym.benchmarks.rdrsr.stages import negatives_for, split_of
    from recgym.data.sequences import SequenceSet

    rng = np.random.default_rng(0)
    seqs = SequenceSet.from_lists([rng.integers(0, 150, 40) for _ in range(30)], n_items=150)
    test = split_of(seqs, 10).test
    neg = negatives_for(test, 150, 99, seed=3)
    assert neg.shape == (30, 99)
    for row, seen, target in zip(neg, test.seen_lists(), test.target, strict=True):
        assert target not in row and not set(row.tolist()) & set(seen.tolist())
        assert len(set(row.tolist())) == 99
    np.testing.assert_array_equal(neg, negatives_for(test, 150, 99, seed=3))
    assert not np.array_equal(neg, negatives_for(test, 150, 99, seed=4))


def test_recent_rows_keeps_each_users_newest_prefixes() -> None:
    from recgym.agents.sequence import SequenceData
    from recgym.benchmarks.rdrsr.stages import recent_rows

    user = np.array([0, 0, 0, 1, 2, 2])
    data = SequenceData(np.zeros((6, 2), np.int64), np.arange(6), user=user)
    assert recent_rows(data, 2).target.tolist() == [1, 2, 3, 4, 5]
    assert recent_rows(data, 1).target.tolist() == [2, 3, 5]
    assert recent_rows(data, 0).target.tolist() == list(range(6))


@pytest.mark.skipif(not (SHARED_DATA / "ml-100k").is_dir(), reason="needs ../shared/data")
def test_data_dir_in_its_original_format(tmp_path: Path) -> None:
    cfg = RDRSRBenchConfig(
        out=str(tmp_path / "ml"),
        data=str(SHARED_DATA / "ml-100k"),
        dataset="ml-100k",
        models=("gru4rec",),
        **{**TINY, "seeds": (0,)},
    )
    run(cfg, progress=False)
    md = (tmp_path / "ml" / "results.md").read_text()
    assert "801 users, 1,108 items" in md and "k_core" in md and "Table 2, ml-100k" in md


def test_bad_options_are_clear_errors() -> None:
    with pytest.raises(ValueError, match="--dataset must be one of"):
        RDRSRBenchConfig(dataset="netflix")
    with pytest.raises(ValueError, match="--data DIR needs --dataset"):
        RDRSRBenchConfig(data="/somewhere")
    with pytest.raises(ValueError, match="unknown models"):
        RDRSRBenchConfig(models=("gru4rec", "transformer-xl"))
