"""KuaiSAR logs seen as the KuaiRand-schema log the learned simulator fits (`build_log_table`).

`kuairand_view(dataset)` turns a loaded KuaiSAR `Dataset` (`data.loaders.kuaisar`: rec_inter.csv
and src_inter.csv rows in one table with a ``scenario`` column) into a `Dataset` whose
interactions, users and items carry the column names `simulators.learned.table.build_log_table`
reads. Every interaction row is kept, in the loader's order (rec rows, then search rows), so
``len(view.interactions) == len(dataset.interactions)``.

Interactions (KuaiRand name <- KuaiSAR source):

- ``timestamp`` <- rec ``timestamp`` / search ``search_session_timestamp`` (the loader's; the
  items of a search session share it and keep their file order when sorted);
- ``tab`` <- `data.writers.REC_TAB` for rec rows, `SEARCH_TAB` for search rows (the response
  model's scenario input, as on world-written KuaiRand logs); ``scenario`` 0 rec / 1 search;
- ``is_click`` <- rec ``click``; search ``click_cnt > 0``;
- ``is_like``, ``is_follow``, ``is_forward`` <- rec ``like``, ``follow``, ``forward``; 0 on
  search rows (src_inter.csv records clicks only);
- ``is_comment``, ``is_hate`` <- 0 on every row: KuaiSAR has neither column, so the simulator's
  comment and hate heads learn "never" (`simulators.protocol` still lists the behaviours);
- ``is_rand`` <- False: KuaiSAR does not mark uniformly random exposures;
- ``duration_ms`` <- rec ``duration_ms`` when > 0; otherwise (every search row, and rec rows
  without it) the item's duration: the median of its rec rows' ``duration_ms``, else the median
  over items (the rule of `table._build_catalogue`, which gets the same values through the
  items' ``video_duration``);
- ``play_time_ms`` <- rec ``playing_time`` when present. **Search rows have no play time** (nor
  do rec rows where ``playing_time`` is empty): it is *imputed* by a seeded hot-deck draw from
  the same user's rec rows of the same click state (a clicked search row gets the play time of
  a random clicked feed row of that user, an unclicked one that of a random unclicked feed
  row), from all users' rec rows of that click state when the user has none, clipped to the
  row's duration. ``watch_imputed`` marks these rows. Choice: the response model fits its
  watch-ratio histogram on every row (the table has no per-row mask for the watch loss), so
  leaving unknown play times at 0 would teach it that searched videos are never watched; the
  draw keeps each user's feed watching instead, i.e. assumes a user watches what they click in
  search like what they click in the feed. Measured on the tiny test world (120 users, seed
  11, 4 days; its KuaiRand-schema replay has the true search play times): clicked search rows
  imputed 21.4 s mean play (true 25.3 s), long views 52% (true 56%), unclicked 2.2 s (true
  2.1 s); drawing the watch *ratio* instead gave 56 s, since a complete view of a short feed
  video then becomes a complete view of a long search video;
- ``long_view`` <- KuaiRand's rule on the (logged or imputed) play time:
  play_time_ms >= min(duration_ms, 18 s) (`simulators.world.LONG_VIEW_MS`).

Users (`simulators.features.user_feature_matrix` reads KuaiRand's columns): ``onehot_feat1`` and
``onehot_feat2`` keep their names (clipped to KuaiRand's cardinalities there);
``user_active_degree`` <- ``rec_active_level`` (4 full_active, 3 high_active, 2 middle_active,
else UNKNOWN; KuaiSAR's levels are not documented, so this order is a choice);
``search_active_level`` has no slot in the response model's user vector and is not used.
Users without a feature row get zero features (the loader lists the ids seen).

Items: ``author_id`` (KuaiSAR's 0 is padding -> unknown author); ``tag`` = "top,leaf" with top
the ``first_level_category_id`` and leaf the deepest non-zero of the second/third/fourth level
ids (0 is padding; an item with a first level only has it as its leaf, one with none an
unknown category); ``video_duration`` as above.

Limits: `build_log_table` forms requests from ``request_size`` consecutive rows of a session;
world-written search sessions show 6 items (one request), real ones vary, which shifts the
request-level history features of the rows that follow.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

from recgym.data.schema import DataError, Dataset
from recgym.data.writers import REC_TAB, SEARCH_TAB
from recgym.simulators.world import LONG_VIEW_MS

REQUIRED_FILES: tuple[str, ...] = ("rec_inter.csv", "src_inter.csv", "item_features.csv")
"""Files a simulator needs: both scenarios' logs, and the items' authors and categories."""
REQUIRED_COLUMNS: dict[str, tuple[str, ...]] = {
    "rec_inter.csv": (
        "user_id",
        "item_id",
        "timestamp",
        "playing_time",
        "duration_ms",
        "click",
        "like",
        "follow",
        "forward",
    ),  # fmt: skip
    "src_inter.csv": ("user_id", "item_id", "search_session_timestamp", "click_cnt"),
    "item_features.csv": ("item_id",),
}
"""The columns the mapping reads (the loader checks their types)."""
ACTIVITY_FROM_LEVEL = {4: "full_active", 3: "high_active", 2: "middle_active"}
"""KuaiSAR rec_active_level -> KuaiRand user_active_degree (others: UNKNOWN)."""


def is_kuaisar_dir(directory: str | Path) -> bool:
    """Whether `directory` holds a KuaiSAR interaction file (rec_inter.csv or src_inter.csv)."""
    d = Path(directory)
    return d.is_dir() and any((d / n).is_file() for n in ("rec_inter.csv", "src_inter.csv"))


def check_kuaisar_dir(directory: str | Path) -> Path:
    """Every `REQUIRED_FILES` file present with its `REQUIRED_COLUMNS`, else one `DataError`
    naming the file and the column (the loader itself accepts a directory with one of the two
    interaction files, and feature files without categories)."""
    directory = Path(directory)
    if not directory.is_dir():
        raise DataError("not a KuaiSAR directory", file=directory)
    for name in REQUIRED_FILES:
        path = directory / name
        if not path.is_file():
            raise DataError(
                f"missing KuaiSAR file {name} (a simulator needs both scenarios' logs and the "
                "items' features)",
                file=path,
            )
        header = pd.read_csv(path, nrows=0).columns
        missing = [c for c in REQUIRED_COLUMNS[name] if c not in header]
        if missing:
            raise DataError(f"missing column in {name}", file=path, column=missing[0])
    return directory


def kuairand_view(dataset: Dataset, seed: int = 0) -> Dataset:
    """The KuaiSAR `dataset` with KuaiRand's column names (module docstring); `seed` seeds the
    hot-deck imputation of unknown play times. Raises `DataError` if a column is missing."""
    if dataset.format != "kuaisar":
        raise ValueError(f"kuairand_view needs a KuaiSAR dataset, got {dataset.format!r}")
    inter = dataset.interactions
    if "scenario" not in inter:
        raise DataError("the loaded KuaiSAR table has no 'scenario' column", file=dataset.source)
    search = (inter["scenario"] == "search").to_numpy()
    for name, scenario_rows in (("rec_inter.csv", ~search), ("src_inter.csv", search)):
        if not scenario_rows.any():
            continue
        for col in REQUIRED_COLUMNS[name]:
            col = "timestamp" if col == "search_session_timestamp" else col
            if col not in inter:
                raise DataError(f"missing column in {name}", file=dataset.source / name, column=col)

    def num(name: str) -> np.ndarray:
        return pd.to_numeric(inter[name], errors="coerce").to_numpy(np.float64, na_value=np.nan)

    user = inter["user_id"].to_numpy(np.int64)
    item = inter["item_id"].to_numpy(np.int64)
    click = np.where(search, num("click_cnt") > 0, num("click") > 0)
    flags = {
        f"is_{b}": np.where(search, 0, np.nan_to_num(num(b)) > 0).astype(np.int8)
        for b in ("like", "follow", "forward")
    }
    logged_dur = np.where(search, np.nan, num("duration_ms"))
    catalogue = np.union1d(item, dataset.items["item_id"].to_numpy(np.int64))
    item_ids, duration = item_durations(item, logged_dur, catalogue=catalogue)
    row_duration = np.where(logged_dur > 0, logged_dur, duration[np.searchsorted(item_ids, item)])
    play = np.maximum(np.where(search, np.nan, num("playing_time")), 0.0)
    imputed = ~np.isfinite(play)
    drawn = hot_deck(user, click, play, imputed, np.random.default_rng(seed))
    play_ms = np.where(imputed, np.minimum(drawn, row_duration), play)
    frame = pd.DataFrame(
        {
            "user_id": user,
            "item_id": item,
            "timestamp": inter["timestamp"].to_numpy(np.int64),
            "scenario": search.astype(np.int8),
            "tab": np.where(search, SEARCH_TAB, REC_TAB).astype(np.int64),
            "is_click": click.astype(np.int8),
            **flags,
            "is_comment": np.zeros(len(inter), dtype=np.int8),
            "is_hate": np.zeros(len(inter), dtype=np.int8),
            "is_rand": np.zeros(len(inter), dtype=np.int8),
            "long_view": (play_ms >= np.minimum(row_duration, LONG_VIEW_MS)).astype(np.int8),
            "play_time_ms": play_ms.astype(np.int64),
            "duration_ms": np.round(row_duration).astype(np.int64),
            "watch_imputed": imputed,
        }
    )
    return replace(
        dataset,
        interactions=frame,
        users=kuairand_users(dataset.users),
        items=kuairand_items(dataset.items, item_ids, duration),
    )


def item_durations(
    item: np.ndarray, logged: np.ndarray, catalogue: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(item ids, duration ms): each item's median logged duration (> 0), else the median over
    the items that have one (10 s when none has), for the sorted ids of `catalogue` (default:
    the items in `item`)."""
    ids = np.unique(item) if catalogue is None else np.asarray(catalogue, dtype=np.int64)
    ok = np.isfinite(logged) & (logged > 0)
    per_item = pd.Series(logged[ok]).groupby(item[ok]).median()
    out = np.full(len(ids), np.nan)
    pos = np.searchsorted(ids, per_item.index.to_numpy(np.int64))
    out[pos] = per_item.to_numpy()
    known = np.isfinite(out)
    return ids, np.where(known, out, float(np.median(out[known])) if known.any() else 10_000.0)


def hot_deck(
    user: np.ndarray,
    click: np.ndarray,
    values: np.ndarray,
    unknown: np.ndarray,
    rng: np.random.Generator,
) -> np.ndarray:
    """`values` with every `unknown` row replaced by the value of a random known row of the same
    user and click state, else of any user with that click state, else 0 (module docstring).

    Vectorised: the known rows sorted by (click, user); each unknown row draws a uniform
    offset into its group's block (two binary searches), no loop over users."""
    out = np.where(unknown, np.nan, np.asarray(values, dtype=np.float64))
    todo = np.flatnonzero(unknown)
    if len(todo) == 0:
        return out
    n_users = int(user.max()) + 1
    key = click.astype(np.int64) * n_users + user
    known = np.flatnonzero(~unknown)
    order = known[np.argsort(key[known], kind="stable")]
    donor_key, donor = key[order], out[order]

    def draw(rows: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> None:
        has = hi > lo
        pick = lo + np.floor(rng.random(len(rows)) * (hi - lo)).astype(np.int64)
        out[rows[has]] = donor[pick[has]]

    draw(
        todo, np.searchsorted(donor_key, key[todo]), np.searchsorted(donor_key, key[todo], "right")
    )
    rest = todo[np.isnan(out[todo])]  # users without a known row of that click state
    state = click[rest].astype(np.int64)
    draw(
        rest,
        np.searchsorted(donor_key, state * n_users),
        np.searchsorted(donor_key, (state + 1) * n_users),
    )
    return np.nan_to_num(out, nan=0.0)


def kuairand_users(users: pd.DataFrame) -> pd.DataFrame:
    """KuaiSAR user features -> the KuaiRand columns `user_feature_matrix` reads."""
    out = pd.DataFrame({"user_id": users["user_id"].to_numpy(np.int64)})
    if "rec_active_level" in users:
        level = pd.to_numeric(users["rec_active_level"], errors="coerce").fillna(0).astype(int)
        out["user_active_degree"] = level.map(ACTIVITY_FROM_LEVEL).fillna("UNKNOWN").to_numpy()
    for name in ("onehot_feat1", "onehot_feat2"):
        if name in users:
            out[name] = pd.to_numeric(users[name], errors="coerce").fillna(0).to_numpy()
    return out


def kuairand_items(items: pd.DataFrame, item_ids: np.ndarray, duration: np.ndarray) -> pd.DataFrame:
    """KuaiSAR item features -> item_id, author_id, tag ("top,leaf"), video_duration, for every
    id of `item_ids` (items only seen in the logs get an unknown author and category)."""
    frame = items.drop_duplicates("item_id").set_index("item_id").reindex(item_ids)

    def level(name: str) -> pd.Series:
        if name not in frame:
            return pd.Series(pd.NA, index=frame.index, dtype="Int64")
        v = pd.to_numeric(frame[name], errors="coerce").astype("Int64")
        return v.where(v > 0)  # 0 is KuaiSAR's padding

    top = level("first_level_category_id")
    leaf = top
    for name in ("second", "third", "fourth"):
        leaf = level(f"{name}_level_category_id").fillna(leaf)
    top = top.fillna(leaf)
    tag = top.astype("string") + "," + leaf.astype("string")
    return pd.DataFrame(
        {
            "item_id": item_ids,
            "author_id": level("author_id").to_numpy(),
            "tag": tag.to_numpy(),
            "video_duration": duration,
        }
    )


__all__ = [
    "ACTIVITY_FROM_LEVEL",
    "REQUIRED_COLUMNS",
    "REQUIRED_FILES",
    "check_kuaisar_dir",
    "hot_deck",
    "is_kuaisar_dir",
    "item_durations",
    "kuairand_items",
    "kuairand_users",
    "kuairand_view",
]
