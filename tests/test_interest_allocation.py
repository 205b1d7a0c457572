"""Click sequences (`data.sequences`), world true interests, `recgym/InterestAllocation-v0`."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from recgym.data.schema import DataError
from recgym.data.sequences import PAPER_CORE, SequenceSet, from_dataset, paper_sequences

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
SMALL_WORLD = {"n_users": 60, "n_items": 300, "n_authors": 30}


# --------------------------------------------------------------------------- sequences
def test_sequence_set_from_lists_and_windows() -> None:
    s = SequenceSet.from_lists(
        [[0, 1, 2, 3], [4, 4, 2]], n_items=5, interest=[[0, 0, 1, 1], [2, 2, 1]]
    )
    assert s.n_users == 2 and s.n_items == 5 and s.lengths.tolist() == [4, 3]
    items, interest = s.window(np.array([3, 3]), 4)
    assert items.tolist() == [[-1, 0, 1, 2], [-1, 4, 4, 2]]
    assert interest.tolist() == [[-1, 0, 0, 1], [-1, 2, 2, 1]]
    assert [x.tolist() for x in s.user_sequences()] == [[0, 1, 2, 3], [4, 4, 2]]
    assert s.popularity(upto=np.array([2, 1])).tolist() == [1, 1, 0, 0, 1]


def test_sequence_errors_name_the_user_and_item() -> None:
    with pytest.raises(
        ValueError, match="user 1's sequence has 2 clicks, fewer than the minimum 3"
    ):
        SequenceSet.from_lists([[0, 1, 2], [1, 2]], n_items=3)
    with pytest.raises(ValueError, match="unknown item id 7 in user 1's sequence"):
        SequenceSet.from_lists([[0, 1, 2], [1, 7, 2]], n_items=3)


def _toy_dataset(rows: list[tuple[int, int, int]]):
    from recgym.data.schema import Dataset, LoadReport

    inter = pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp"]).astype("int64")
    return Dataset(
        format="lastfm",
        source=Path("toy"),
        interactions=inter,
        users=pd.DataFrame({"user_id": inter["user_id"].unique()}),
        items=pd.DataFrame({"item_id": inter["item_id"].unique()}),
        report=LoadReport(),
    )


def test_paper_preprocessing_on_a_toy_log_reports_every_step() -> None:
    # user 9 clicks items 1..5 once each at t = 1..5, with a duplicate tag row at t = 3;
    # user 8 clicks item 1 once: the 5-core drops it and (then) nothing else
    rows = [(9, i, i) for i in range(1, 6)] + [(9, 3, 3), (8, 1, 0)]
    rows += [(u, i, 10 + u) for u in range(10, 14) for i in range(1, 6)]
    s = paper_sequences(_toy_dataset(rows))
    assert PAPER_CORE["lastfm"] == 5
    steps = {st["step"]: st for st in s.steps}
    assert list(steps) == ["implicit_feedback", "dedup", "sort_by_time", "k_core"]
    assert steps["dedup"]["removed"] == 1 and steps["k_core"]["removed"] == 1
    assert 8 not in s.user_ids.tolist() and s.n_users == 5
    assert s.item_ids.tolist() == [1, 2, 3, 4, 5]
    assert s.sequence(int(np.flatnonzero(s.user_ids == 9)[0])).tolist() == [0, 1, 2, 3, 4]


def test_empty_after_k_core_and_short_sequences_are_clear_errors() -> None:
    with pytest.raises(DataError, match="no interactions survive the 5-core"):
        paper_sequences(_toy_dataset([(1, 1, 1), (1, 2, 2), (2, 1, 3)]))
    ds = _toy_dataset([(1, 1, 1), (1, 2, 2), (2, 1, 3)])
    with pytest.raises(ValueError, match="fewer than the minimum 3"):
        from_dataset(ds)
    with pytest.raises(DataError, match="no interactions left"):
        from_dataset(dataclasses.replace(ds, interactions=ds.interactions.iloc[:0]))


@pytest.mark.skipif(not SHARED.is_dir(), reason="needs ../shared/data")
@pytest.mark.parametrize(
    "folder,users,items", [("ml-100k", 801, 1108), ("foursquare-nyc", 159, 863)]
)
def test_paper_preprocessing_on_the_shared_subsets(folder: str, users: int, items: int) -> None:
    from recgym.data.loaders import load

    s = paper_sequences(load(SHARED / folder, cache=False))
    assert (s.n_users, s.n_items) == (users, items)
    assert s.lengths.min() >= 10 and np.bincount(s.items).min() >= 10
    assert s.steps[-1]["step"] == "k_core" and s.steps[-1]["removed"] > 0
