"""MovieLens 100K (u.data, u.user, u.item)."""

from __future__ import annotations

import pyarrow.compute as pc

from ..schema import (
    MOVIELENS_ITEMS,
    MOVIELENS_RATINGS,
    MOVIELENS_USERS,
    DataError,
    Dataset,
    LoadReport,
)
from .arrow import _id_table, _keys_first
from .cache import _Plan, _run, _Tables
from .detect import _directory
from .reading import PathLike, _read_csv


def load_movielens(
    path: PathLike, *, cache: bool = True, cache_dir: PathLike | None = None
) -> Dataset:
    """MovieLens-100k from a directory holding u.data (+ u.user, u.item).

    Interactions: user_id, item_id, timestamp (u.data's unix seconds x 1000), rating (int8, 1..5),
    every rating kept (see preprocess.implicit_feedback). `users` is u.user, `items` u.item
    (latin-1; genre flags as genre_<name> int8; release dates as datetime).
    """
    directory = _directory(path)
    ratings = directory / "u.data"
    if not ratings.is_file():
        raise DataError("no MovieLens ratings file (u.data)", file=directory)
    user_file, item_file = directory / "u.user", directory / "u.item"
    inputs = [p for p in (ratings, user_file, item_file) if p.is_file()]

    def build(report: LoadReport) -> _Tables:
        inter = _read_csv(ratings, MOVIELENS_RATINGS, role="interactions", report=report)
        ms = pc.multiply(inter.column("timestamp"), 1000)
        inter = inter.set_column(inter.schema.get_field_index("timestamp"), "timestamp", ms)
        inter = _keys_first(inter)
        if user_file.is_file():
            users = _read_csv(user_file, MOVIELENS_USERS, role="users", report=report)
        else:
            users = _id_table("user_id", inter.column("user_id"))
            report.notes.append(f"u.user not found: users are the {users.num_rows:,} ids seen")
        if item_file.is_file():
            items = _read_csv(item_file, MOVIELENS_ITEMS, role="items", report=report)
        else:
            items = _id_table("item_id", inter.column("item_id"))
            report.notes.append(f"u.item not found: items are the {items.num_rows:,} ids seen")
        return _Tables(inter, users, items)

    return _run(_Plan("ml-100k", directory, inputs, build), cache=cache, cache_dir=cache_dir)
