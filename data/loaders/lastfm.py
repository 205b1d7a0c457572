"""Last.fm hetrec2011-2k: tag assignments (with timestamps), listening counts, friends, tags."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa

from ..schema import (
    LASTFM_ARTISTS,
    LASTFM_TAGGED,
    LASTFM_TAGGED_TIMESTAMPS,
    LASTFM_TAGS,
    LASTFM_USER_ARTISTS,
    LASTFM_USER_FRIENDS,
    DataError,
    Dataset,
    LoadReport,
)
from .arrow import _id_table, _keys_first, _rename
from .cache import _Plan, _run, _Tables
from .columns import _Bad, _first_true
from .detect import _directory
from .reading import PathLike, _read_csv

_LASTFM_TZ = "Europe/Madrid"


def _lastfm_timestamp(batch: pa.RecordBatch) -> pa.RecordBatch:
    """Add `timestamp`: local midnight in Madrid of day/month/year, in epoch ms.

    This reproduces user_taggedartists-timestamps.dat, whose readme example maps
    1/4/2009 to 1238536800000 (= 2009-04-01 00:00 CEST).
    """
    day, month, year = (
        batch.column(n).to_numpy().astype(np.int64) for n in ("day", "month", "year")
    )
    dates = pd.to_datetime(
        pd.DataFrame({"year": year, "month": month, "day": day}), errors="coerce"
    )
    bad = _first_true(dates.isna().to_numpy())
    if bad is not None:
        column = "month" if not 1 <= month[bad] <= 12 else "year" if year[bad] < 1 else "day"
        raise _Bad(bad, column, f"not a date: day={day[bad]} month={month[bad]} year={year[bad]}")
    local = dates.dt.tz_localize(
        _LASTFM_TZ, ambiguous=np.zeros(len(dates), bool), nonexistent="shift_forward"
    )
    ms = (
        local.dt.tz_convert("UTC")
        .dt.tz_localize(None)
        .to_numpy(dtype="datetime64[ms]")
        .astype(np.int64)
    )
    return batch.append_column("timestamp", pa.array(ms))


def load_lastfm(
    path: PathLike, *, cache: bool = True, cache_dir: PathLike | None = None
) -> Dataset:
    """Last.fm hetrec2011-2k from a directory of its .dat files (tab-separated, with header).

    Interactions are the tag assignments: every row of user_taggedartists-timestamps.dat when
    present (its ms timestamps), else of user_taggedartists.dat with `timestamp` = local midnight
    (Europe/Madrid) of day/month/year, which is how the -timestamps file encodes them.
    userID -> user_id, artistID -> item_id; tagID (and day/month/year) kept. `items` is
    artists.dat (id -> item_id); `users` are the ids seen (the format has no user file).
    `extra`: "user_artists" (listening counts, `weight`), "user_friends", "tags".
    """
    directory = _directory(path)
    tagged_ts = directory / "user_taggedartists-timestamps.dat"
    tagged = directory / "user_taggedartists.dat"
    source = tagged_ts if tagged_ts.is_file() else tagged
    if not source.is_file():
        raise DataError(
            "no Last.fm tagging file (user_taggedartists.dat or user_taggedartists-timestamps.dat)",
            file=directory,
        )
    optional = {
        name: directory / name
        for name in ("user_artists.dat", "user_friends.dat", "artists.dat", "tags.dat")
        if (directory / name).is_file()
    }
    ids = {"userID": "user_id", "artistID": "item_id"}

    def build(report: LoadReport) -> _Tables:
        if source is tagged_ts:
            inter = _read_csv(source, LASTFM_TAGGED_TIMESTAMPS, role="interactions", report=report)
            if tagged.is_file():
                report.notes.append(f"{tagged.name} not used: {tagged_ts.name} has the same rows")
        else:
            inter = _read_csv(
                source, LASTFM_TAGGED, role="interactions", report=report, hook=_lastfm_timestamp
            )
        inter = _keys_first(_rename(inter, ids))
        extra = {}
        for name, spec, key in (
            ("user_artists.dat", LASTFM_USER_ARTISTS, "user_artists"),
            ("user_friends.dat", LASTFM_USER_FRIENDS, "user_friends"),
            ("tags.dat", LASTFM_TAGS, "tags"),
        ):
            if name in optional:
                extra[key] = _rename(_read_csv(optional[name], spec, role=key, report=report), ids)
        if "artists.dat" in optional:
            items = _read_csv(optional["artists.dat"], LASTFM_ARTISTS, role="items", report=report)
            items = _rename(items, {"id": "item_id"})
        else:
            items = _id_table("item_id", inter.column("item_id"))
            report.notes.append(f"artists.dat not found: items are the {items.num_rows:,} ids seen")
        user_cols = [inter.column("user_id")]
        if "user_artists" in extra:
            user_cols.append(extra["user_artists"].column("user_id"))
        users = _id_table("user_id", *user_cols)
        report.notes.append(
            f"users are the {users.num_rows:,} ids seen in the tagging and listening files "
            "(Last.fm has no user file)"
        )
        return _Tables(inter, users, items, extra)

    inputs = [source, *optional.values()]
    return _run(_Plan("lastfm", directory, inputs, build), cache=cache, cache_dir=cache_dir)
