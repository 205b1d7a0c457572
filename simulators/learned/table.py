"""The log table: a KuaiRand-schema log sorted, sessionised, split and featurised for fitting."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from recgym.data.writers import REC_TAB
from recgym.simulators.features import user_feature_matrix
from recgym.simulators.protocol import Catalogue

from .config import SimulatorConfig
from .state import PairCounts, UserState, expand_ranges

LOG_FLAGS = {  # behaviour -> raw KuaiRand log column
    "click": "is_click",
    "long_view": "long_view",
    "like": "is_like",
    "follow": "is_follow",
    "comment": "is_comment",
    "forward": "is_forward",
    "hate": "is_hate",
}

SPLITS = {"train": 0, "users": 1, "days": 2, "both": 3}


@dataclass(kw_only=True)
class LogTable:
    """A log sorted by (user, time) with the catalogue and every feature both models train on.

    Users and items are dense indices (0..n-1); `user_ids`/`item_ids` map them back to raw ids.
    Per-row user-history inputs (`clicked`, `skipped`, `affinity`) are as of the start of the
    row's request.
    """

    config: SimulatorConfig
    catalogue: Catalogue
    user_ids: np.ndarray  # (U,) raw user id of each dense user
    item_ids: np.ndarray  # (I,) raw item id of each catalogue item
    user_x: np.ndarray  # (U, F) float32 `user_feature_matrix`
    user: np.ndarray  # (N,) int64 dense user
    item: np.ndarray  # (N,) int64 catalogue item
    timestamp: np.ndarray  # (N,) int64 epoch ms
    tab: np.ndarray  # (N,) int64 raw tab code
    session: np.ndarray  # (N,) int64 session index, sessions in (user, time) order
    position: np.ndarray  # (N,) int64 exposure index within its session
    session_start: np.ndarray  # (S,) first row of each session
    session_length: np.ndarray  # (S,) exposures per session
    split: np.ndarray  # (S,) int8 SPLITS code of each session
    labels: dict[str, np.ndarray]  # behaviour -> (N,) int8, for click and CONDITIONAL
    ratio: np.ndarray  # (N,) float32 play_time / duration clipped to [0, 1]
    is_random: np.ndarray  # (N,) bool KuaiRand's is_rand: a uniformly random exposure
    complete: np.ndarray  # (N,) bool play_time >= duration
    duration_ms: np.ndarray  # (N,) int64 logged duration (catalogue's when missing)
    play_ms: np.ndarray  # (N,) int64 logged play time, clipped to [0, duration]
    clicked: np.ndarray  # (N, H) int32 clicked items before the request, newest last, -1 pad
    skipped: np.ndarray  # (N, H) int32 exposed-not-clicked items before the request
    affinity: np.ndarray  # (N, 10) float32 counts before the request, see `affinity_features`
    recency: np.ndarray  # (N, 2) float32 repeat and fatigue of the item's category, `_recency`
    train_item_count: np.ndarray  # (I,) training exposures per item
    train_author_count: np.ndarray  # (A,)
    train_category_count: np.ndarray  # (C,)
    train_top_count: np.ndarray  # (T,)
    train_tabs: np.ndarray  # sorted raw tab codes seen in training

    def exposure_inputs(self, rows: np.ndarray) -> dict[str, np.ndarray]:
        """The logged inputs of exposures `rows` (user, histories, item, affinity, tab, position,
        recency, is_random), as `LearnedSimulator._inputs` takes them (training and
        `predict_rows` both read them here)."""
        names = ("user", "clicked", "skipped", "item", "affinity", "tab", "position", "recency",
                 "is_random")  # fmt: skip
        return {name: getattr(self, name)[rows] for name in names}

    @property
    def n_rows(self) -> int:
        return len(self.user)

    def row_split(self) -> np.ndarray:
        """(N,) SPLITS code of each row (its session's)."""
        return self.split[self.session]

    def rows(self, *splits: str) -> np.ndarray:
        """Row indices of the sessions in the named splits ("train", "users", "days", "both")."""
        return np.flatnonzero(np.isin(self.row_split(), [SPLITS[s] for s in splits]))

    def sessions(self, *splits: str) -> np.ndarray:
        """Session indices in the named splits."""
        return np.flatnonzero(np.isin(self.split, [SPLITS[s] for s in splits]))

    def state_before(self, rows: np.ndarray) -> UserState:
        """Each row's user's `UserState` just before the row (rows should start a request).

        Slot i of the result belongs to `user[rows[i]]`; used to replay logged sessions.
        """
        rows = np.asarray(rows, dtype=np.int64)
        n_cat, n_auth = self.catalogue.n_categories, self.catalogue.n_authors
        users = self.user[rows]
        cats = self.catalogue.category[self.item]
        x = self._count_values()
        q_group = (users[:, None] * n_cat + np.arange(n_cat)).ravel()
        q_row = np.repeat(rows, n_cat)
        counts = _prefix_sums(self.user * n_cat + cats, x[:, :3], q_group, q_row)
        totals = _prefix_sums(self.user, x[:, :3], users, rows)
        # user-author pairs: query every pair the slot's user has anywhere in the log
        pair_key = self.user * n_auth + self.catalogue.author[self.item]
        known = np.unique(pair_key)
        lo = np.searchsorted(known, users * n_auth)
        hi = np.searchsorted(known, (users + 1) * n_auth)
        slot, which = expand_ranges(lo, hi)
        values = _prefix_sums(pair_key, x, known[which], rows[slot])
        keep = values[:, 0] > 0
        pairs = PairCounts.from_pairs(
            n_auth, slot[keep] * n_auth + known[which[keep]] % n_auth, values[keep]
        )
        return UserState(
            clicked=self.clicked[rows].astype(np.int64),
            skipped=self.skipped[rows].astype(np.int64),
            counts=counts.reshape(len(rows), n_cat, 3).astype(np.float32),
            totals=totals.astype(np.float32),
            pairs=pairs,
        )

    def final_state(self) -> UserState:
        """Every user's `UserState` after the whole log (the simulator's initial state)."""
        n_users, n_cat = len(self.user_ids), self.catalogue.n_categories
        h = self.config.history_len
        clicked = self.labels["click"].astype(bool)
        cats = self.catalogue.category[self.item]
        x = self._count_values()
        counts = np.zeros((n_users * n_cat, 3))
        np.add.at(counts, self.user * n_cat + cats, x[:, :3])
        totals = np.zeros((n_users, 3))
        np.add.at(totals, self.user, x[:, :3])
        n_auth = self.catalogue.n_authors
        pairs = PairCounts.from_pairs(
            n_auth, self.user * n_auth + self.catalogue.author[self.item], x
        )
        return UserState(
            clicked=_last_items(self.user, self.item, clicked, n_users, h),
            skipped=_last_items(self.user, self.item, ~clicked, n_users, h),
            counts=counts.reshape(n_users, n_cat, 3).astype(np.float32),
            totals=totals.astype(np.float32),
            pairs=pairs,
        )

    def _count_values(self) -> np.ndarray:
        """(N, 4) what the counts add per exposure: 1, click, long view, follow."""
        labels = self.labels
        return np.stack(
            [np.ones(self.n_rows), labels["click"], labels["long_view"], labels["follow"]], axis=1
        ).astype(np.float64)


def build_log_table(dataset: Any, config: SimulatorConfig | None = None) -> LogTable:
    """Sort, sessionise, split and featurise a loaded KuaiRand-schema `recgym.data.Dataset`.

    The split is by session: a random `heldout_user_share` of logged users is held out whole
    ("users"); sessions of the other users that start on one of the last `heldout_days` logged
    dates (the `date` column of the session's first row) are held out as "days"; sessions of
    held-out users on held-out days are "both". Only "train" sessions fit anything (weights,
    embedding vocabularies, popularity).
    """
    cfg = config or SimulatorConfig()
    inter = dataset.interactions
    if len(inter) == 0:
        raise ValueError("the dataset has no interactions to fit a simulator on")
    raw_user = inter["user_id"].to_numpy(np.int64)
    ts = inter["timestamp"].to_numpy(np.int64)
    order = np.lexsort((ts, raw_user))  # stable: ties keep file order
    raw_user, ts = raw_user[order], ts[order]
    raw_item = inter["item_id"].to_numpy(np.int64)[order]
    n = len(order)

    def column(name: str, default: float = 0) -> np.ndarray:
        if name not in inter:
            return np.full(n, default)
        return pd.to_numeric(inter[name], errors="coerce").fillna(default).to_numpy()[order]

    # ---- users and items as dense ids
    users_table = dataset.users.drop_duplicates("user_id")
    user_ids = np.union1d(users_table["user_id"].to_numpy(np.int64), raw_user)
    user = np.searchsorted(user_ids, raw_user)
    user_frame = users_table.set_index("user_id").reindex(user_ids)
    user_x = user_feature_matrix(user_frame.reset_index(drop=True))
    items_table = dataset.items.drop_duplicates("item_id")
    item_ids = np.union1d(items_table["item_id"].to_numpy(np.int64), raw_item)
    item = np.searchsorted(item_ids, raw_item)

    # ---- sessions
    new = np.ones(n, dtype=bool)
    new[1:] = (np.diff(user) != 0) | (np.diff(ts) > cfg.session_gap_minutes * 60_000)
    session = np.cumsum(new) - 1
    session_start = np.flatnonzero(new)
    session_length = np.diff(np.append(session_start, n))
    position = np.arange(n) - session_start[session]

    # ---- split by session
    if "date" in inter:
        date = column("date").astype(np.int64)
    else:
        local = pd.to_datetime(ts, unit="ms") + pd.Timedelta(hours=8)  # Beijing, as KuaiRand
        date = local.strftime("%Y%m%d").astype(np.int64).to_numpy()
    start_date = date[session_start]
    last_days = np.unique(start_date)[-cfg.heldout_days :] if cfg.heldout_days > 0 else []
    rng = np.random.default_rng(np.random.SeedSequence([cfg.seed, 1]))
    logged_users = np.unique(user)
    n_held = int(round(cfg.heldout_user_share * len(logged_users)))
    held_users = rng.choice(logged_users, size=n_held, replace=False)
    s_user = user[session_start]
    split = (np.isin(s_user, held_users) + 2 * np.isin(start_date, last_days)).astype(np.int8)
    is_train = (split == SPLITS["train"])[session]
    if not is_train.any():
        raise ValueError(
            "no training sessions left after holding out users and days; "
            "lower heldout_user_share / heldout_days or log more days"
        )

    # ---- catalogue
    logged_dur = column("duration_ms")
    per_item = pd.Series(logged_dur[logged_dur > 0]).groupby(item[logged_dur > 0]).median()
    logged_duration = np.full(len(item_ids), np.nan)
    logged_duration[per_item.index.to_numpy()] = per_item.to_numpy()
    train_counts = np.bincount(item[is_train], minlength=len(item_ids))
    catalogue = _build_catalogue(items_table, item_ids, logged_duration, train_counts)

    # ---- labels and watch ratio
    duration = np.where(logged_dur > 0, logged_dur, catalogue.duration_ms[item]).astype(np.int64)
    play = np.clip(column("play_time_ms"), 0, None).astype(np.int64)
    ratio = np.clip(play / np.maximum(duration, 1), 0.0, 1.0).astype(np.float32)
    labels = {b: (column(c) > 0).astype(np.int8) for b, c in LOG_FLAGS.items()}
    clicked = labels["click"].astype(bool)

    # ---- causal features, as of the start of each row's request
    req_start = np.arange(n) - position % cfg.request_size
    h = cfg.history_len
    cats = catalogue.category[item]
    counts_x = np.stack([np.ones(n), labels["click"], labels["long_view"]], axis=1)
    user_cat = user * catalogue.n_categories + cats
    user_author = user * catalogue.n_authors + catalogue.author[item]
    pair_x = np.concatenate([counts_x, labels["follow"][:, None]], axis=1)
    affinity = np.concatenate(
        [
            _prefix_sums(user_cat, counts_x, user_cat, req_start),
            _prefix_sums(user, counts_x, user, req_start),
            _prefix_sums(user_author, pair_x, user_author, req_start),
        ],
        axis=1,
    ).astype(np.float32)
    recency = logged_recency(cats, position, cfg)

    tr_item = item[is_train]
    tabs = column("tab", REC_TAB).astype(np.int64)
    return LogTable(
        config=cfg,
        catalogue=catalogue,
        user_ids=user_ids,
        item_ids=item_ids,
        user_x=user_x,
        user=user,
        item=item,
        timestamp=ts,
        tab=tabs,
        session=session,
        position=position,
        session_start=session_start,
        session_length=session_length,
        split=split,
        labels=labels,
        ratio=ratio,
        is_random=column("is_rand").astype(bool),
        complete=play >= duration,
        duration_ms=duration,
        play_ms=np.minimum(play, duration),
        clicked=_causal_items(user, item, clicked, req_start, h),
        skipped=_causal_items(user, item, ~clicked, req_start, h),
        affinity=affinity,
        recency=recency,
        train_item_count=train_counts,
        train_author_count=np.bincount(catalogue.author[tr_item], minlength=catalogue.n_authors),
        train_category_count=np.bincount(
            catalogue.category[tr_item], minlength=catalogue.n_categories
        ),
        train_top_count=np.bincount(
            catalogue.top_category[tr_item], minlength=int(catalogue.top_category.max()) + 1
        ),
        train_tabs=np.unique(tabs[is_train]),
    )


def _build_catalogue(
    items: pd.DataFrame, item_ids: np.ndarray, logged_duration: np.ndarray, counts: np.ndarray
) -> Catalogue:
    """Catalogue from the items table; items only seen in logs get an 'unknown' author/category.

    Authors are re-indexed 0..A-1 by raw id; the leaf category is the LAST id of `tag` and the
    top category the FIRST (a single tag is both), each re-indexed by numeric value, with one
    extra 'unknown' id when some item has no tag (or author). Duration is `video_duration` (ms),
    else the item's median logged `duration_ms`, else the median over items. Popularity is the
    item's share of training exposures with add-one smoothing. No author streams live.
    """
    frame = items.set_index("item_id").reindex(item_ids)
    n = len(item_ids)

    def numeric(name: str) -> pd.Series:
        if name not in frame:
            return pd.Series(np.nan, index=frame.index, dtype="Float64")
        return pd.to_numeric(frame[name], errors="coerce").astype("Float64")

    def dense(values: pd.Series) -> tuple[np.ndarray, int]:
        codes, uniques = pd.factorize(values, sort=True)
        missing = codes < 0
        codes = np.where(missing, len(uniques), codes)
        return codes.astype(np.int64), len(uniques) + int(missing.any())

    author, n_authors = dense(numeric("author_id"))
    if "tag" in frame:
        parts = frame["tag"].astype("string").str.split(",")
        leaf = pd.to_numeric(parts.str[-1].str.strip(), errors="coerce").astype("Float64")
        top = pd.to_numeric(parts.str[0].str.strip(), errors="coerce").astype("Float64")
    else:
        leaf = top = pd.Series(np.nan, index=frame.index, dtype="Float64")
    category, n_categories = dense(leaf)
    top_category, _ = dense(top)
    duration = numeric("video_duration").to_numpy(np.float64, na_value=np.nan)
    duration = np.where(np.isfinite(duration) & (duration > 0), duration, logged_duration)
    ok = np.isfinite(duration) & (duration > 0)
    duration = np.where(ok, duration, float(np.median(duration[ok])) if ok.any() else 10_000.0)
    return Catalogue(
        author=author,
        category=category,
        top_category=top_category,
        duration_ms=np.maximum(duration, 1).astype(np.int64),
        popularity=(counts + 1.0) / (counts.sum() + n),
        n_authors=n_authors,
        n_categories=n_categories,
        author_is_live=np.zeros(n_authors, dtype=bool),
    )


def _causal_items(
    user: np.ndarray, item: np.ndarray, mask: np.ndarray, req_start: np.ndarray, h: int
) -> np.ndarray:
    """(N, h) the last h items with `mask` of the row's user before the row's request; newest last.

    Rows are sorted by (user, time). With g = number of masked rows before a row, the items
    before row r's request are list entries [g[req_start[r]] - h, g[req_start[r]]) that belong
    to the same user: h vectorised gathers, no per-row loop.
    """
    g = np.concatenate([[0], np.cumsum(mask)])[:-1]  # masked rows strictly before each row
    listed = item[mask].astype(np.int32)
    first_row = np.flatnonzero(np.r_[True, np.diff(user) != 0])
    user_first = np.repeat(g[first_row], np.diff(np.append(first_row, len(user))))
    end = g[req_start]
    out = np.full((len(user), h), -1, dtype=np.int32)
    for j in range(h):
        idx = end - h + j
        ok = idx >= user_first
        out[ok, j] = listed[idx[ok]]
    return out


def _last_items(
    user: np.ndarray, item: np.ndarray, mask: np.ndarray, n_users: int, h: int
) -> np.ndarray:
    """(U, h) each user's last h items with `mask` in the whole log, newest last, -1 padded."""
    mu, mi = user[mask], item[mask]
    out = np.full((n_users, h), -1, dtype=np.int64)
    counts = np.bincount(mu, minlength=n_users)
    end = np.cumsum(counts)  # one past each user's last masked row in (mu, mi)
    for j in range(h):
        k = h - 1 - j  # k-th most recent
        has = counts > k
        out[has, j] = mi[end[has] - 1 - k]
    return out


def _prefix_sums(
    group: np.ndarray, x: np.ndarray, q_group: np.ndarray, q_row: np.ndarray
) -> np.ndarray:
    """Sums of `x` (N, m) over earlier rows of a group: for query i, rows s < q_row[i] with
    group[s] == q_group[i]. -> (Q, m) float64.

    One sort by (group, row) and two binary searches; no loop over groups.
    """
    n = len(group)
    key = group.astype(np.int64) * n + np.arange(n)
    order = np.argsort(key, kind="stable")
    sorted_key = key[order]
    cum = np.vstack([np.zeros((1, x.shape[1])), np.cumsum(x[order], axis=0)])
    qg = np.asarray(q_group, dtype=np.int64)
    upto = np.searchsorted(sorted_key, qg * n + q_row)
    first = np.searchsorted(sorted_key, qg * n)
    return cum[upto] - cum[first]


def affinity_features(counts: np.ndarray) -> np.ndarray:
    """(..., 10) counts before the request -> (..., AFFINITY_DIM) float32 features.

    counts = exposures, clicks, long views of the item's leaf category by this user (e, c, l);
    the same over all categories (E, C, L); exposures, clicks, long views and follows of the
    item's author by this user (ea, ca, la, fa). Features: log1p(e, c, l) / 4, (c + 1)/(e + 2),
    (l + 0.5)/(e + 2), c/(C + 1), e/(E + 1), log1p(E) / 8, (C + 1)/(E + 2), (L + 0.5)/(E + 2),
    log1p(ea, ca, la) / 3, (ca + 1)/(ea + 2), min(fa, 1) (the user follows the author).
    """
    e, c, l_, e_all, c_all, l_all, ea, ca, la, fa = np.moveaxis(
        np.asarray(counts, dtype=np.float32), -1, 0
    )
    parts = [
        np.log1p(e) / 4,
        np.log1p(c) / 4,
        np.log1p(l_) / 4,
        (c + 1) / (e + 2),
        (l_ + 0.5) / (e + 2),
        c / (c_all + 1),
        e / (e_all + 1),
        np.log1p(e_all) / 8,
        (c_all + 1) / (e_all + 2),
        (l_all + 0.5) / (e_all + 2),
        np.log1p(ea) / 3,
        np.log1p(ca) / 3,
        np.log1p(la) / 3,
        (ca + 1) / (ea + 2),
        np.minimum(fa, 1.0),
    ]
    return np.stack(parts, axis=-1).astype(np.float32)


def context_features(
    position: np.ndarray,
    recency: np.ndarray,
    cfg: SimulatorConfig,
    is_random: np.ndarray | float = 0.0,
) -> np.ndarray:
    """(N,), (N, 2), (N,) -> (N, CONTEXT_DIM = 5) float32 response-model context.

    log1p(position in session) / 5, position in request / request_size, repeat / recent_window,
    fatigue / 5 (see `logged_recency`), and whether the exposure is uniformly random (is_rand;
    always 0 unless `cfg.random_exposure_input`).
    """
    position = np.asarray(position, dtype=np.float32)
    recency = np.asarray(recency, dtype=np.float32)
    flag = np.broadcast_to(np.asarray(is_random, dtype=np.float32), position.shape)
    return np.stack(
        [
            np.log1p(position) / 5.0,
            (position % cfg.request_size) / cfg.request_size,
            recency[:, 0] / cfg.recent_window,
            recency[:, 1] / 5.0,
            flag * float(cfg.random_exposure_input),
        ],
        axis=1,
    ).astype(np.float32)


def logged_recency(cats: np.ndarray, position: np.ndarray, cfg: SimulatorConfig) -> np.ndarray:
    """(N, 2) float32 repeat and fatigue of each logged exposure's category, within its session.

    repeat: same-category exposures among the previous `recent_window` exposures (earlier items
    of the same request included). fatigue: sum over the `fatigue_window` exposures before the
    request's start of fatigue_decay ** (distance from the request's start) for each exposure of
    the same category. Both are loops over lags, each vectorised over the whole log.
    """
    n = len(cats)
    out = np.zeros((n, 2), dtype=np.float32)
    for lag in range(1, cfg.recent_window + 1):
        out[lag:, 0] += (cats[lag:] == cats[:-lag]) & (position[lag:] >= lag)
    slot = position % cfg.request_size
    rows = np.arange(n)
    for j in range(1, cfg.fatigue_window + 1):
        lag = slot + j
        ok = position >= lag
        src = rows[ok] - lag[ok]
        out[ok, 1] += (cfg.fatigue_decay**j) * (cats[src] == cats[ok])
    return out


def slate_recency(recent: np.ndarray, cats: np.ndarray, cfg: SimulatorConfig) -> np.ndarray:
    """(B, K, 2) repeat and fatigue of a slate's items, as `logged_recency` computes them.

    `recent` (B, W) holds the session's last W >= both windows categories (-1 padded, newest
    last), `cats` (B, K) the slate's; earlier slate items count as repeats for later ones.
    One comparison of every slate item with the whole window, then a fixed weight per
    (slate slot, window position) (`_recency_weights`).
    """
    window = np.concatenate([recent, cats], axis=1)
    same = (window[:, None, :] == cats[:, :, None]).astype(np.float64)  # (B, K, W + K)
    weights = _recency_weights(
        recent.shape[1], cats.shape[1], cfg.recent_window, cfg.fatigue_window, cfg.fatigue_decay
    )
    return np.einsum("bkp,kpc->bkc", same, weights)


@functools.lru_cache(maxsize=16)
def _recency_weights(w: int, k: int, recent: int, fatigue: int, decay: float) -> np.ndarray:
    """(K, W + K, 2): slot k's weight of window position p for repeat (0) and fatigue (1).

    Repeat counts positions 1..`recent` exposures before slot k (earlier slate slots
    included); fatigue weighs the `fatigue` exposures before the request by decay ** distance.
    """
    out = np.zeros((k, w + k, 2))
    for slot in range(k):
        for lag in range(1, recent + 1):
            if w + slot - lag >= 0:
                out[slot, w + slot - lag, 0] = 1.0
        for j in range(1, min(fatigue, w) + 1):
            out[slot, w - j, 1] = decay**j
    out.setflags(write=False)
    return out
