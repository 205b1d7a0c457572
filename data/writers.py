"""Write logged exposures in the exact file names and columns of KuaiRand and KuaiSAR.

The input is the exposure table produced by `simulators.logs.simulate_logs` (one row per shown
item: user_id, item_id, timestamp in epoch ms, session/request ids, scenario 0=rec/1=search,
query_category, is_rand, the behaviours and stay times), plus the user and item tables in
KuaiRand's feature schemas. Only pandas is used here: `data` imports nothing else of ours.

Choices where the real datasets leave room:
- KuaiRand `tab`: recommendation requests are written as tab 1, search requests as tab 4
  (KuaiRand does not document its tab codes; 1 is its most frequent value).
- KuaiRand `hourmin` is written as HH00 (the real logs round to the hour), `date` as YYYYMMDD,
  both in Beijing time.
- KuaiRand standard logs are split in blocks of 14 days named after their first and last day
  (the real files are 4_08_to_4_21 and 4_22_to_5_08); random exposures go to one log_random file.
- KuaiSAR `src_inter.csv` holds every item shown in a search session with click_cnt 0 or 1;
  one search request is one search session. `keyword` is the query category's token followed by
  one noise token. `search` in rec_inter is 1 when the user's next request in the same session is
  a search; `search_item_related` when that search's query category is the item's category.
- Gifts: neither dataset has a gift column. With ``gifts=True`` (what `recgym world generate`
  uses) KuaiRand-schema logs get one extra column ``is_gift`` (0/1, last), so gift-aware
  learners (RLIV-UA's gift tower and assistance net) can train on world logs; the KuaiRand
  loader reads it when present and says so. The default writes KuaiRand's exact columns.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

KUAIRAND_LOG_COLUMNS = (
    "user_id",
    "video_id",
    "date",
    "hourmin",
    "time_ms",
    "is_click",
    "is_like",
    "is_follow",
    "is_comment",
    "is_forward",
    "is_hate",
    "long_view",
    "play_time_ms",
    "duration_ms",
    "profile_stay_time",
    "comment_stay_time",
    "is_profile_enter",
    "is_rand",
    "tab",
)
GIFT_COLUMN = "is_gift"
"""The optional gift column of KuaiRand-schema logs (not in KuaiRand itself)."""
REC_TAB, SEARCH_TAB = 1, 4
BEIJING = pd.Timedelta(hours=8)
KEYWORD_TOKEN_BASE = 1000


def write_kuairand(
    logs: pd.DataFrame,
    users: pd.DataFrame,
    items: pd.DataFrame,
    out: str | Path,
    variant: str = "pure",
    gifts: bool = False,
) -> list[Path]:
    """Write log_standard_*, log_random_*, user_features_* and video_features_basic_* to `out`;
    `gifts` appends the optional ``is_gift`` column (from the exposures' ``gift``)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    local = pd.to_datetime(logs["timestamp"].to_numpy(), unit="ms") + BEIJING
    frame = pd.DataFrame(
        {
            "user_id": logs["user_id"].to_numpy(),
            "video_id": logs["item_id"].to_numpy(),
            "date": local.strftime("%Y%m%d").astype(np.int64),
            "hourmin": local.hour.to_numpy() * 100,
            "time_ms": logs["timestamp"].to_numpy(),
            "is_click": logs["click"].to_numpy(),
            "is_like": logs["like"].to_numpy(),
            "is_follow": logs["follow"].to_numpy(),
            "is_comment": logs["comment"].to_numpy(),
            "is_forward": logs["forward"].to_numpy(),
            "is_hate": logs["hate"].to_numpy(),
            "long_view": logs["long_view"].to_numpy(),
            "play_time_ms": logs["watch_ms"].to_numpy(),
            "duration_ms": logs["duration_ms"].to_numpy(),
            "profile_stay_time": logs["profile_stay_time"].to_numpy(),
            "comment_stay_time": logs["comment_stay_time"].to_numpy(),
            "is_profile_enter": logs["is_profile_enter"].to_numpy(),
            "is_rand": logs["is_rand"].to_numpy(),
            "tab": np.where(logs["scenario"].to_numpy() == 1, SEARCH_TAB, REC_TAB),
        }
    )
    if gifts:  # not a KuaiRand column: recgym's optional extra (module docstring)
        frame[GIFT_COLUMN] = logs["gift"].to_numpy().astype(np.int8)
    written: list[Path] = []
    days = (local.normalize() - local.normalize().min()).days.to_numpy() if len(local) else []
    standard = frame["is_rand"].to_numpy() == 0
    block = np.asarray(days) // 14
    for b in np.unique(block[standard]) if len(frame) else []:
        part = frame[standard & (block == b)]
        path = out / f"log_standard_{_span(part['date'])}_{variant}.csv"
        _write_csv(part, path)
        written.append(path)
    random_rows = frame[~standard] if len(frame) else frame
    if len(random_rows):
        path = out / f"log_random_{_span(random_rows['date'])}_{variant}.csv"
        _write_csv(random_rows, path)
        written.append(path)
    for table, name in ((users, "user_features"), (items, "video_features_basic")):
        path = out / f"{name}_{variant}.csv"
        _write_csv(table, path)
        written.append(path)
    return written


def write_kuaisar(
    logs: pd.DataFrame,
    users: pd.DataFrame,
    items: pd.DataFrame,
    out: str | Path,
    *,
    n_top_categories: int,
    follows: pd.DataFrame | None = None,
    seed: int = 0,
) -> list[Path]:
    """Write rec_inter, src_inter, user_features, item_features, social_network.csv to `out`.

    `users`/`items` are the KuaiRand-schema tables of the same world; they are mapped to
    KuaiSAR's columns here. `follows` (user_id, user_follow_id) fills social_network.csv.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    logs = logs.sort_values(["user_id", "timestamp", "position"], kind="stable", ignore_index=True)
    scenario = logs["scenario"].to_numpy()
    ts = logs["timestamp"].to_numpy()
    human = (pd.to_datetime(ts, unit="ms") + BEIJING).strftime("%Y-%m-%d %H:%M:%S")

    # per request: is the next request of the same session a search, and on which category?
    req = logs.groupby("request_id", sort=False).agg(
        session_id=("session_id", "first"),
        timestamp=("timestamp", "first"),
        scenario=("scenario", "first"),
        query=("query_category", "first"),
    )
    req = req.sort_values(["session_id", "timestamp"], kind="stable")
    same_session = req["session_id"].shift(-1) == req["session_id"]
    req["next_search"] = same_session & (req["scenario"].shift(-1) == 1)
    req["next_query"] = np.where(req["next_search"], req["query"].shift(-1).fillna(-1), -1)
    next_search = req["next_search"].reindex(logs["request_id"]).to_numpy()
    next_query = req["next_query"].reindex(logs["request_id"]).to_numpy()
    leaf = _leaf_category(items)
    item_leaf = leaf[logs["item_id"].to_numpy()]

    rec = scenario == 0
    rec_inter = pd.DataFrame(
        {
            "user_id": logs["user_id"].to_numpy()[rec],
            "item_id": logs["item_id"].to_numpy()[rec],
            "playing_time": logs["watch_ms"].to_numpy()[rec].astype(np.float64),
            "duration_ms": logs["duration_ms"].to_numpy()[rec].astype(np.float64),
            "time": human[rec],
            "timestamp": ts[rec].astype(np.float64),
            "click": logs["click"].to_numpy()[rec],
            "forward": logs["forward"].to_numpy()[rec],
            "like": logs["like"].to_numpy()[rec],
            "follow": logs["follow"].to_numpy()[rec],
            "search": next_search[rec].astype(np.int64),
            # query categories are leaf indices; tags offset leaves by the number of top categories
            "search_item_related": (next_search & (next_query + n_top_categories == item_leaf))[
                rec
            ].astype(np.int64),
        }
    )
    src = ~rec
    query = logs["query_category"].to_numpy()[src]
    request = logs["request_id"].to_numpy()[src]
    # one search session per search request; ids are dense, in (user, time) order
    session_ids = pd.factorize(request, sort=False)[0] + 1
    noise = rng.integers(0, KEYWORD_TOKEN_BASE, int(session_ids.max(initial=0)) + 1)[session_ids]
    session_ts = pd.Series(ts[src]).groupby(session_ids).transform("min").to_numpy()
    src_inter = pd.DataFrame(
        {
            "user_id": logs["user_id"].to_numpy()[src],
            "search_session_id": session_ids,
            "search_session_time": (pd.to_datetime(session_ts, unit="ms") + BEIJING).strftime(
                "%Y-%m-%d %H:%M:%S"
            ),
            "search_session_timestamp": session_ts.astype(np.float64),
            "keyword": [
                f"[{KEYWORD_TOKEN_BASE + q}, {t}]" for q, t in zip(query, noise, strict=True)
            ],
            "search_source": "USER_INPUT",
            "item_id": logs["item_id"].to_numpy()[src],
            "click_cnt": logs["click"].to_numpy()[src].astype(np.int64),
            "item_type": "VIDEO",
        }
    )
    user_features = _kuaisar_users(users, logs)
    item_features = _kuaisar_items(items, leaf, n_top_categories)
    social = follows if follows is not None else pd.DataFrame(columns=["user_id", "user_follow_id"])
    written = []
    for frame, name in (
        (rec_inter, "rec_inter.csv"),
        (src_inter, "src_inter.csv"),
        (user_features, "user_features.csv"),
        (item_features, "item_features.csv"),
        (social, "social_network.csv"),
    ):
        _write_csv(frame, out / name)
        written.append(out / name)
    return written


def _leaf_category(items: pd.DataFrame) -> np.ndarray:
    """Leaf category per item id from KuaiRand's `tag` ("top,leaf"; a lone tag is its own leaf)."""
    leaf = items["tag"].astype(str).str.split(",").str[-1]
    values = pd.to_numeric(leaf, errors="coerce").fillna(-1).astype(np.int64).to_numpy()
    out = np.full(int(items["video_id"].max()) + 1, -1, dtype=np.int64)
    out[items["video_id"].to_numpy()] = values
    return out


def _kuaisar_users(users: pd.DataFrame, logs: pd.DataFrame) -> pd.DataFrame:
    """Activity levels from the logged number of active days per service (1..4, like KuaiSAR)."""
    day = (logs["timestamp"].to_numpy() + BEIJING.value // 1_000_000) // 86_400_000
    frame = pd.DataFrame(
        {"user_id": logs["user_id"].to_numpy(), "day": day, "s": logs["scenario"].to_numpy()}
    )
    active = frame.drop_duplicates().groupby(["user_id", "s"]).size().unstack(fill_value=0)
    active = active.reindex(index=users["user_id"], columns=[0, 1], fill_value=0)
    n_days = max(1, int(np.ptp(day)) + 1) if len(day) else 1

    def level(x: np.ndarray) -> np.ndarray:
        return np.ceil(4 * x / n_days).clip(0, 4).astype(np.int64)

    return pd.DataFrame(
        {
            "user_id": users["user_id"].to_numpy(),
            "search_active_level": level(active[1].to_numpy()),
            "rec_active_level": level(active[0].to_numpy()),
            "onehot_feat1": users["onehot_feat6"].to_numpy() % 3,
            "onehot_feat2": users["onehot_feat1"].to_numpy() % 8,
        }
    )


def _kuaisar_items(items: pd.DataFrame, leaf: np.ndarray, n_top: int) -> pd.DataFrame:
    top = items["tag"].astype(str).str.split(",").str[0].astype(np.int64).to_numpy()
    second = leaf[items["video_id"].to_numpy()]
    n = len(items)
    empty_id = np.zeros(n, dtype=np.int64)
    return pd.DataFrame(
        {
            "item_id": items["video_id"].to_numpy(),
            "caption": [f"[{a}, {b}]" for a, b in zip(top, second, strict=True)],
            "author_id": items["author_id"].to_numpy() + 1,  # 0 is KuaiSAR's padding id
            "item_type": items["video_type"].to_numpy(),
            "upload_time": items["upload_dt"].to_numpy(),
            "upload_type": items["upload_type"].to_numpy(),
            "first_level_category_id": top + 1,
            "first_level_category_name": [f"类别{t}" for t in top],
            "first_level_category_name_en": [f"Topic {t}" for t in top],
            "second_level_category_id": second + 1,
            "second_level_category_name": [f"子类{s - n_top}" for s in second],
            "second_level_category_name_en": [f"Subtopic {s - n_top}" for s in second],
            "third_level_category_id": empty_id,
            "third_level_category_name": "空",
            "third_level_category_name_en": "empty",
            "fourth_level_category_id": empty_id,
            "fourth_level_category_name": "空",
            "fourth_level_category_name_en": "empty",
        }
    )


def _span(dates: pd.Series) -> str:
    """'4_08_to_4_21' from YYYYMMDD ints (month unpadded, day zero-padded, as KuaiRand names)."""
    lo, hi = int(dates.min()), int(dates.max())
    return f"{lo // 100 % 100}_{lo % 100:02d}_to_{hi // 100 % 100}_{hi % 100:02d}"


def _write_csv(frame: pd.DataFrame, path: Path) -> None:
    """Write atomically (temp file + rename) so an interrupted run leaves no half-written file."""
    tmp = path.with_name(path.name + ".tmp")
    frame.to_csv(tmp, index=False, lineterminator="\n")
    tmp.replace(path)
