"""Foursquare check-ins (TSMC2014 raw files or the derived CSVs)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..schema import FOURSQUARE_DERIVED, FOURSQUARE_TSMC, DataError, Dataset, LoadReport
from .arrow import _id_table, _keys_first, _rename
from .cache import _Plan, _run, _Tables
from .detect import _FOURSQUARE_FILE, _resolve
from .reading import PathLike, _read_csv


def _per_user_ordinal(users: np.ndarray) -> np.ndarray:
    """0, 1, 2, ... within each user, in row order (vectorised)."""
    n = len(users)
    order = np.argsort(users, kind="stable")
    sorted_users = users[order]
    starts = np.r_[True, sorted_users[1:] != sorted_users[:-1]] if n else np.array([], bool)
    group_start = np.maximum.accumulate(np.where(starts, np.arange(n), 0)) if n else starts
    ordinal = np.empty(n, dtype=np.int64)
    ordinal[order] = np.arange(n) - group_start
    return ordinal


def _first_rows(table: pa.Table, key: str, columns: list[str]) -> pa.Table:
    """One row per distinct `key` (its first occurrence), sorted by key."""
    _, first = np.unique(table.column(key).to_numpy(), return_index=True)
    return table.take(pa.array(first)).select(columns)


def load_foursquare(
    path: PathLike, *, cache: bool = True, cache_dir: PathLike | None = None
) -> Dataset:
    """Foursquare check-ins: the raw TSMC2014 file or the derived foursquare_<city>.csv table.

    Raw `dataset_TSMC2014_<CITY>.txt` (tab-separated, no header): userId -> user_id; venueId
    (a hex string) -> item_id, numbered in order of first appearance; utcTimestamp -> timestamp
    (epoch ms); venueId, venueCategoryId, venueCategory, latitude, longitude and timezoneOffset
    kept. `items`: one row per venue (first occurrence).

    Derived `foursquare_<city>.csv` (tid,label,lat,lon,day,hour,poi,category,price,rating,weather):
    label -> user_id, poi -> item_id. It has no absolute time, so `timestamp` is a per-user
    ordinal (0, 1, ... in file order, which is chronological) and `timestamp_kind` is "ordinal".
    `items`: item_id, category, price, rating (constant per poi; first occurrence kept).
    Both: `users` are the ids seen (no user file). price/rating -999 mean unknown.
    """
    p = _resolve(path)
    if p.is_dir():
        files = sorted(f for f in p.iterdir() if f.is_file() and _FOURSQUARE_FILE.match(f.name))
        if len(files) != 1:
            what = (
                "no Foursquare file"
                if not files
                else f"several Foursquare files ({', '.join(f.name for f in files)}); pass one"
            )
            raise DataError(
                f"{what} (dataset_TSMC2014_<CITY>.txt or foursquare_<city>.csv)", file=p
            )
        file = files[0]
    else:
        file = p
    raw = file.suffix == ".txt"

    def build(report: LoadReport) -> _Tables:
        if raw:
            t = _read_csv(file, FOURSQUARE_TSMC, role="interactions", report=report)
            venue = pc.dictionary_encode(t.column("venueId")).combine_chunks()
            item_id = pc.cast(venue.indices, pa.int64())
            t = t.append_column("item_id", item_id)
            inter = _keys_first(_rename(t, {"userId": "user_id", "utcTimestamp": "timestamp"}))
            items = _first_rows(
                inter,
                "item_id",
                ["item_id", "venueId", "venueCategoryId", "venueCategory", "latitude", "longitude"],
            )
            kind = "epoch_ms"
        else:
            t = _read_csv(file, FOURSQUARE_DERIVED, role="interactions", report=report)
            t = _rename(t, {"label": "user_id", "poi": "item_id"})
            ordinal = _per_user_ordinal(t.column("user_id").to_numpy())
            t = t.append_column("timestamp", pa.array(ordinal))
            inter = _keys_first(t)
            items = _first_rows(inter, "item_id", ["item_id", "category", "price", "rating"])
            kind = "ordinal"
            report.notes.append(
                "no absolute time in this file: timestamp is each user's 0-based row position "
                "in file order (chronological)"
            )
        users = _id_table("user_id", inter.column("user_id"))
        report.notes.append(f"users are the {users.num_rows:,} ids seen (no user file)")
        return _Tables(inter, users, items, timestamp_kind=kind)

    plan = _Plan("foursquare", p, [file], build, variant="tsmc2014" if raw else "derived")
    return _run(plan, cache=cache, cache_dir=cache_dir)
