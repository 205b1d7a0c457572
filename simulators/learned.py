"""The learned user simulator: a multi-behaviour response model and a leave model fitted to logs.

A `LearnedSimulator` satisfies `simulators.protocol.UserModel`, so an env runs on it exactly as on
the ground-truth world. It is fitted from any KuaiRand-schema log (`recgym.data.load`):

- `build_log_table` sorts the log per user in time, cuts sessions (a gap longer than
  `session_gap_minutes` between consecutive exposures of a user starts a new one), builds the
  catalogue, computes every causal feature both models need (vectorised over the whole log) and
  splits sessions into training, held-out users and held-out days.
- `ResponseModel` (an `nn.Module`) predicts, for one user and one item, the click, and for each
  click state the long view, like, follow, comment, forward and hate and the watch-ratio
  distribution (inputs and loss in its docstring).
- `LeaveModel` is a discrete-time hazard: the probability that an exposure is the session's last,
  given the session so far (`leave_features`). A request of K items ends the session with
  probability ``1 - prod_k (1 - h_k)``.

A *request* is `request_size` consecutive exposures of a session counted from its start (KuaiRand
logs carry no request ids; in the synthetic world's logs this recovers the real requests exactly,
because each request writes `slate_size` = 6 consecutive rows). Every user-history input is
taken as of the start of the row's request, so the simulator, which answers a whole slate at
once, sees exactly the inputs training saw.
"""

from __future__ import annotations

import copy
import functools
import json
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn
from torch.nn import functional as F

from recgym.data.writers import REC_TAB, SEARCH_TAB
from recgym.simulators.features import user_feature_matrix
from recgym.simulators.protocol import BEHAVIOURS, SEARCH, Catalogue, StepResult

FORMAT_VERSION = 1
LONG_VIEW_MS = 18_000  # KuaiRand: long view = whole video if it is <= 18 s, else >= 18 s played
BROWSE_MS = 1_000  # time per exposure spent browsing, added to watch time in `elapsed_ms`
CONDITIONAL = ("long_view", "like", "follow", "comment", "forward", "hate")
LOG_FLAGS = {  # behaviour -> raw KuaiRand log column
    "click": "is_click",
    "long_view": "long_view",
    "like": "is_like",
    "follow": "is_follow",
    "comment": "is_comment",
    "forward": "is_forward",
    "hate": "is_hate",
}
# Per-exposure session signals the leave model accumulates (order matters: see `leave_features`).
SIGNALS = ("click", "long_view", "watch_ratio", "like", "hate", "quick_skip", "repeat", "fatigue")
LEAVE_CLIP = 0.005  # leave features are clipped to their [0.5 %, 99.5 %] training quantiles
QUICK_SKIP_RATIO = 0.3  # a click watched for less than this share of the video is a quick skip
AFFINITY_DIM = 15  # see `affinity_features`
CONTEXT_DIM = 4  # see `_context`
SPLITS = {"train": 0, "users": 1, "days": 2, "both": 3}
CHECKPOINT_FILES = ("model.pt", "config.json", "fidelity.json")


class CheckpointError(RuntimeError):
    """A simulator checkpoint is missing, unreadable, or inconsistent with its own config."""


@dataclass(kw_only=True)
class SimulatorConfig:
    """How a learned simulator is built and fitted; saved as config.json beside the weights."""

    history_len: int = 20
    """Clicked (and skipped) items the response model pools per user; `history` returns clicks."""
    request_size: int = 6
    """Exposures per request in logs without request ids (a session is cut into runs of this)."""
    recent_window: int = 12
    """Previous exposures of the session searched for a repeat of the item's category."""
    fatigue_window: int = 48
    """Exposures before the request that count towards category fatigue."""
    fatigue_decay: float = 0.95
    """Per-exposure decay of category fatigue (0.95: an exposure 14 items back counts half)."""
    session_gap_minutes: float = 30.0
    """A gap longer than this between consecutive exposures of a user starts a new session."""
    embedding_dim: int = 32
    """Size of the item, leaf-category and top-category embeddings (and of pooled histories)."""
    author_dim: int = 16
    """Size of the author embedding."""
    tab_dim: int = 4
    """Size of the tab (scenario) embedding."""
    hidden: tuple[int, ...] = (256, 128)
    """Hidden layer sizes of the response model's MLP."""
    ratio_bins: int = 20
    """Equal-width watch-ratio bins on [0, 1); one more class holds complete plays (ratio = 1)."""
    user_embedding: bool = True
    """Give every user with training exposures an id embedding (others share the unknown row)."""
    user_dropout: float = 0.2
    """Share of training rows whose user id is replaced by 'unknown' (trains it for new users)."""
    min_item_count: int = 3
    """Items with fewer training exposures share the 'unknown item' embedding row."""
    unknown_dropout: float = 0.02
    """Share of training rows whose item and author ids are replaced by 'unknown' (trains it)."""
    epochs: int = 4
    """Passes over the training rows for the response model."""
    random_oversample: int = 4
    """Times each uniformly random exposure (is_rand = 1) appears per epoch. Logged feeds show
    what the logging policy liked, so a model fitted on them alone overrates the click rate of
    items that policy would not pick. Held-out random exposures, predicted vs observed click
    rate: 7-day world logs, none 0.48 vs 0.32; default world logs (`recgym world generate`),
    x4 0.38 vs 0.34 at click AUC 0.751 (as without), x8 0.36 vs 0.34 at AUC 0.744. 1: none."""
    batch_size: int = 2048
    """Rows per gradient step of the response model."""
    lr: float = 2e-3
    """Adam learning rate of the response model."""
    weight_decay: float = 1e-6
    """Adam L2 penalty of the response model."""
    leave_hidden: tuple[int, ...] = (64, 32)
    """Hidden layer sizes of the leave (hazard) model's MLP."""
    leave_steps: int = 1000
    """Gradient steps of the leave model (whatever the data size: small logs need many passes)."""
    leave_batch_size: int = 4096
    """Rows per gradient step of the leave model."""
    leave_lr: float = 3e-3
    """Adam learning rate of the leave model."""
    leave_weight_decay: float = 1e-4
    """Adam L2 penalty of the leave model."""
    heldout_user_share: float = 0.1
    """Share of logged users whose sessions are all held out for validation."""
    heldout_days: int = 2
    """Sessions starting on the last this-many logged dates are held out for validation."""
    seed: int = 0
    """Seed of the split, the weight initialisation and the batch order."""
    torch_threads: int = 1
    """Torch intra-op threads while fitting (restored afterwards)."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SimulatorConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown SimulatorConfig fields: {', '.join(unknown)}")
        values = dict(data)
        for name in ("hidden", "leave_hidden"):
            if name in values:
                values[name] = tuple(int(v) for v in values[name])
        return cls(**values)


# ============================================================================ user state
@dataclass(kw_only=True)
class PairCounts:
    """Sparse per-(user, author) counts: exposures, clicks, long views and follows.

    Stored as sorted keys ``user * n_authors + author`` with a (M, 4) float32 row each, so a
    population of many users and authors costs memory only for pairs that ever met. Pairs met
    for the first time go to a small sorted side table that is merged into the main one when
    it outgrows ``max(1024, M / 16)`` rows: inserting into the main arrays on every step would
    copy all M rows each time (the cost that dominated a single-user env step).
    """

    n_authors: int
    keys: np.ndarray  # (M,) int64, sorted, unique
    values: np.ndarray  # (M, 4) float32
    new_keys: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    new_values: np.ndarray = field(default_factory=lambda: np.zeros((0, 4), dtype=np.float32))

    @classmethod
    def from_pairs(cls, n_authors: int, keys: np.ndarray, values: np.ndarray) -> PairCounts:
        """Sum `values` (Q, 4) over duplicate `keys` (Q,) into a table."""
        uniq, inverse = np.unique(np.asarray(keys, dtype=np.int64), return_inverse=True)
        sums = np.zeros((len(uniq), 4), dtype=np.float64)
        np.add.at(sums, inverse.ravel(), values)
        return cls(n_authors=n_authors, keys=uniq, values=sums.astype(np.float32))

    def compact(self) -> PairCounts:
        """Merge the side table into the main arrays (in place); returns self."""
        if len(self.new_keys):
            keys = np.concatenate([self.keys, self.new_keys])
            order = np.argsort(keys, kind="stable")
            self.keys = keys[order]
            self.values = np.concatenate([self.values, self.new_values])[order]
            self.new_keys = self.new_keys[:0]
            self.new_values = self.new_values[:0]
        return self

    def copy(self) -> PairCounts:
        self.compact()
        return PairCounts(
            n_authors=self.n_authors, keys=self.keys.copy(), values=self.values.copy()
        )

    def take(self, users: np.ndarray) -> PairCounts:
        """The pairs of `users`, re-keyed so that users[i] becomes user i."""
        self.compact()
        users = np.asarray(users, dtype=np.int64)
        lo = np.searchsorted(self.keys, users * self.n_authors)
        hi = np.searchsorted(self.keys, (users + 1) * self.n_authors)
        slot, idx = _expand_ranges(lo, hi)
        return PairCounts(
            n_authors=self.n_authors,
            keys=slot * self.n_authors + self.keys[idx] % self.n_authors,
            values=self.values[idx].copy(),
        )

    def lookup(self, users: np.ndarray, authors: np.ndarray) -> np.ndarray:
        """(B,) users and (B, K) authors -> (B, K, 4) counts (zeros for pairs never met)."""
        q = users[:, None] * self.n_authors + authors
        out = np.zeros(q.shape + (4,), dtype=np.float32)
        for keys, values in ((self.keys, self.values), (self.new_keys, self.new_values)):
            idx, found = _find(keys, q)
            out[found] = values[idx[found]]  # a pair lives in exactly one of the two tables
        return out

    def add(self, users: np.ndarray, authors: np.ndarray, x: np.ndarray) -> None:
        """Add `x` (B, K, 4) to the pairs (users[b], authors[b, k]); new pairs are inserted."""
        new = PairCounts.from_pairs(
            self.n_authors, (users[:, None] * self.n_authors + authors).ravel(), x.reshape(-1, 4)
        )
        keys, values = new.keys, new.values
        for table_keys, table_values in (
            (self.keys, self.values),
            (self.new_keys, self.new_values),
        ):
            idx, found = _find(table_keys, keys)
            table_values[idx[found]] += values[found]
            keys, values = keys[~found], values[~found]
        if len(keys):
            idx = np.searchsorted(self.new_keys, keys)
            self.new_keys = np.insert(self.new_keys, idx, keys)
            self.new_values = np.insert(self.new_values, idx, values, axis=0)
            if len(self.new_keys) > max(1024, len(self.keys) // 16):
                self.compact()


def _find(keys: np.ndarray, q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Positions of `q` in the sorted unique `keys` and whether each is present."""
    if len(keys) == 0:
        return np.zeros(q.shape, dtype=np.int64), np.zeros(q.shape, dtype=bool)
    idx = np.minimum(np.searchsorted(keys, q), len(keys) - 1)
    return idx, keys[idx] == q


@dataclass(kw_only=True)
class UserState:
    """What the response model knows about each user besides static features (all (U, ...)).

    `counts[u, c]` are the user's exposures, clicks and long views of leaf category c so far;
    `totals[u]` the same over all categories; `pairs` the user-author counts. Nothing decays.
    """

    clicked: np.ndarray  # (U, H) int64 last clicked items, newest last, -1 padded
    skipped: np.ndarray  # (U, H) int64 last exposed but not clicked items, newest last
    counts: np.ndarray  # (U, C, 3) float32
    totals: np.ndarray  # (U, 3) float32
    pairs: PairCounts

    def copy(self) -> UserState:
        return UserState(
            clicked=self.clicked.copy(),
            skipped=self.skipped.copy(),
            counts=self.counts.copy(),
            totals=self.totals.copy(),
            pairs=self.pairs.copy(),
        )

    def take(self, users: np.ndarray) -> UserState:
        """The state of `users` as a new population: row i is a copy of users[i]."""
        return UserState(
            clicked=self.clicked[users],
            skipped=self.skipped[users],
            counts=self.counts[users],
            totals=self.totals[users],
            pairs=self.pairs.take(users),
        )


@dataclass(kw_only=True)
class _SessionState:
    """Per-user state of the current session (what the leave and context features need)."""

    count: np.ndarray  # (U,) exposures so far
    sums: np.ndarray  # (U, len(SIGNALS)) float64 sums of SIGNALS
    recent: np.ndarray  # (U, W) int64 categories of the last W exposures, newest last, -1 pad

    @classmethod
    def empty(cls, n: int, window: int) -> _SessionState:
        return cls(
            count=np.zeros(n, dtype=np.int64),
            sums=np.zeros((n, len(SIGNALS))),
            recent=np.full((n, window), -1, dtype=np.int64),
        )


# ============================================================================ the log table
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
        slot, which = _expand_ranges(lo, hi)
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
    recency = _logged_recency(cats, position, cfg)

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


def _expand_ranges(lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For ranges [lo[i], hi[i]): (i repeated per element, the elements), concatenated."""
    size = hi - lo
    owner = np.repeat(np.arange(len(lo)), size)
    offset = np.arange(len(owner)) - np.repeat(np.cumsum(size) - size, size)
    return owner, lo[owner] + offset


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


# ============================================================================ models
class ResponseModel(nn.Module):
    """Multi-behaviour response model: one user, one item -> click and click-conditional heads.

    Inputs per exposure, all as of the start of its request:
    - the user's static features (`user_feature_matrix`);
    - two pooled histories, of the last `history_len` clicked items and of the last
      `history_len` exposed-but-not-clicked ones: the mean of item + leaf-category embeddings,
      log1p of their number, the elementwise product of the mean with the target item's vector,
      and the mean and max of the target's (scaled) dot product with each history item;
    - the item: id, author, leaf and top-category embeddings and `Catalogue.item_features`;
    - the user's affinity to the item's category (`affinity_features`: counts of exposures,
      clicks and long views, in the category and overall);
    - the request's tab embedding (scenario) and the session context (log1p position in session
      / 5, position in request / request_size, same-category exposures among the session's last
      `recent_window` / recent_window).
    Row 0 of every embedding is the shared 'unknown' row (unseen item, author, category, tab).

    Outputs (`split_outputs`): the click logit; for each of CONDITIONAL (long_view, like, follow,
    comment, forward, hate) one logit given no click and one given click; and for each click state
    logits over `ratio_bins` equal-width bins of the watch ratio play_time/duration on [0, 1)
    plus a last class for complete plays. The ratio is clipped to [0, 1]: replays (play_time
    beyond the duration) count as complete plays.

    Loss (`loss`): BCE of the click + for each conditional behaviour the BCE of the head of the
    row's logged click state + the cross-entropy of the ratio class under the row's click state;
    every term is a mean over rows, summed with weight 1.
    """

    def __init__(
        self,
        *,
        n_items: int,
        n_authors: int,
        n_categories: int,
        n_tops: int,
        n_tabs: int,
        n_users: int,
        user_dim: int,
        config: SimulatorConfig,
    ) -> None:
        super().__init__()
        d = config.embedding_dim
        self.user = nn.Embedding(n_users, d)
        self.scale = 1.0 / math.sqrt(d)
        self.n_ratio = config.ratio_bins + 1
        self.item = nn.Embedding(n_items, d)
        self.author = nn.Embedding(n_authors, config.author_dim)
        self.category = nn.Embedding(n_categories, d)
        self.top = nn.Embedding(n_tops, d)
        self.tab = nn.Embedding(n_tabs, config.tab_dim)
        for emb in (self.user, self.item, self.author, self.category, self.top, self.tab):
            nn.init.normal_(emb.weight, std=0.05)
        history_dim = 2 * (2 * d + 3)
        in_dim = (
            user_dim
            + 2 * d
            + 1
            + history_dim
            + 3 * d
            + config.author_dim
            + 3
            + AFFINITY_DIM
            + config.tab_dim
            + CONTEXT_DIM
        )
        layers: list[nn.Module] = []
        for width in config.hidden:
            layers += [nn.Linear(in_dim, width), nn.ReLU()]
            in_dim = width
        self.mlp = nn.Sequential(*layers)
        n_out = 1 + 2 * len(CONDITIONAL) + 2 * self.n_ratio
        self.head = nn.Linear(in_dim, n_out)
        # "wide" per-item and per-author offsets of every output logit, starting at zero
        self.item_bias = nn.Embedding(n_items, n_out)
        self.author_bias = nn.Embedding(n_authors, n_out)
        nn.init.zeros_(self.item_bias.weight)
        nn.init.zeros_(self.author_bias.weight)

    def _pool(
        self, item_rows: torch.Tensor, category_rows: torch.Tensor, target: torch.Tensor
    ) -> torch.Tensor:
        """History (G, H) rows (negative = padding) and targets (G, M, d) -> (G, M, 2d + 3)."""
        mask = (item_rows >= 0).float()
        emb = self.item(item_rows.clamp(min=0)) + self.category(category_rows)
        emb = emb * mask.unsqueeze(-1)
        n = mask.sum(-1, keepdim=True)  # (G, 1)
        mean = emb.sum(-2) / n.clamp(min=1.0)  # (G, d)
        sims = torch.einsum("gmd,ghd->gmh", target, emb) * self.scale  # (G, M, H)
        sim_mean = sims.sum(-1) / n.clamp(min=1.0)
        sim_max = sims.masked_fill(mask.unsqueeze(1) == 0, -1e4).amax(-1)
        sim_max = torch.where(n > 0, sim_max, torch.zeros_like(sim_max))
        m = target.shape[1]
        return torch.cat(
            [
                mean.unsqueeze(1).expand(-1, m, -1),
                torch.log1p(n).unsqueeze(1).expand(-1, m, -1),
                mean.unsqueeze(1) * target,
                sim_mean.unsqueeze(-1),
                sim_max.unsqueeze(-1),
            ],
            dim=-1,
        )

    def forward(
        self,
        user_row: torch.Tensor,
        user_x: torch.Tensor,
        clicked: tuple[torch.Tensor, torch.Tensor],
        skipped: tuple[torch.Tensor, torch.Tensor],
        item_row: torch.Tensor,
        author_row: torch.Tensor,
        category_row: torch.Tensor,
        top_row: torch.Tensor,
        item_x: torch.Tensor,
        affinity: torch.Tensor,
        tab_row: torch.Tensor,
        context: torch.Tensor,
    ) -> torch.Tensor:
        """N = G * M exposures of G users (M consecutive rows per user) -> (N, n_outputs) logits.

        `clicked` and `skipped` are (item rows, category rows), each (G, H), item rows -1 padded;
        every other input is (N, ...).
        """
        g = clicked[0].shape[0]
        item_emb, cat_emb = self.item(item_row), self.category(category_row)
        target = (item_emb + cat_emb).view(g, -1, item_emb.shape[-1])
        n = len(item_row)
        user_emb = self.user(user_row)
        flat_target = target.reshape(n, -1)
        x = torch.cat(
            [
                user_x,
                user_emb,
                user_emb * flat_target,
                (user_emb * flat_target).sum(-1, keepdim=True) * self.scale,
                self._pool(*clicked, target).reshape(n, -1),
                self._pool(*skipped, target).reshape(n, -1),
                item_emb,
                cat_emb,
                self.top(top_row),
                self.author(author_row),
                item_x,
                affinity,
                self.tab(tab_row),
                context,
            ],
            dim=-1,
        )
        return self.head(self.mlp(x)) + self.item_bias(item_row) + self.author_bias(author_row)

    def split_outputs(self, out: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """-> click logit (N,), conditional logits (N, 6, 2) [no click, click], ratio (N, 2, R)."""
        n_c = len(CONDITIONAL)
        click = out[:, 0]
        cond = out[:, 1 : 1 + 2 * n_c].reshape(-1, n_c, 2)
        ratio = out[:, 1 + 2 * n_c :].reshape(-1, 2, self.n_ratio)
        return click, cond, ratio

    def loss(
        self,
        out: torch.Tensor,
        click: torch.Tensor,
        conditional: torch.Tensor,
        ratio_class: torch.Tensor,
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """Multi-task loss (see the class docstring); `conditional` is (N, 6) float labels."""
        click_logit, cond, ratio = self.split_outputs(out)
        state = click.long()
        rows = torch.arange(len(out))
        l_click = F.binary_cross_entropy_with_logits(click_logit, click)
        picked = cond[rows, :, state]  # (N, 6): the head of the logged click state
        l_cond = F.binary_cross_entropy_with_logits(picked, conditional, reduction="none").mean(0)
        l_ratio = F.cross_entropy(ratio[rows, state], ratio_class)
        total = l_click + l_cond.sum() + l_ratio
        stats = {"click": l_click.item(), "ratio": l_ratio.item()}
        stats.update(dict(zip(CONDITIONAL, l_cond.tolist(), strict=True)))
        return total, stats


def leave_features(
    signals: np.ndarray,
    cumulative: np.ndarray,
    count: np.ndarray,
    slot: np.ndarray,
    user_x: np.ndarray,
    request_size: int,
) -> np.ndarray:
    """The leave model's input for exposures (any leading shape S) -> S + (D,) float32.

    `signals` (S + (8,)) are this exposure's SIGNALS: click, long_view, watch ratio, like, hate,
    quick skip (a click watched < 30 % of the video), repeat (same-category exposures among the
    session's previous `recent_window`, divided by it) and fatigue / 5 (`_logged_recency`).
    `cumulative` (S + (8,)) are their sums over
    the session up to and including this exposure, `count` the exposures so far including it and
    `slot` the exposure's index within its request. The features are: the signals, their sums / 20
    and log1p(sums) / 4, their running means, count / 100 and log1p(count) / 5, slot /
    request_size, whether the exposure closes a request, and the user's static features.
    """
    count = count[..., None].astype(np.float32)
    slot = slot[..., None].astype(np.float32)
    parts = [
        signals,
        cumulative / 20.0,
        np.log1p(cumulative) / 4.0,
        cumulative / count,
        count / 100.0,
        np.log1p(count) / 5.0,
        slot / request_size,
        slot == request_size - 1,
        user_x,
    ]
    return np.concatenate([np.asarray(p, dtype=np.float32) for p in parts], axis=-1)


class LeaveModel(nn.Module):
    """Discrete-time session hazard h = P(this exposure is the session's last | session so far).

    An MLP on `leave_features`, each clipped to its training range (the LEAVE_CLIP and
    1 - LEAVE_CLIP quantiles of the training rows) and then standardised; the bounds, means and
    stds are buffers, so they travel with the state dict. The clipping keeps a simulated session
    that outlives every logged one at the hazard of the longest logged sessions instead of
    letting the MLP extrapolate (it learned a falling hazard from the few survivors).
    Loss: BCE against label 1 on the last exposure of every training session, 0 elsewhere; after
    training the output bias is shifted so that the hazards sum to the number of training
    sessions (as an exactly converged logistic fit does).
    """

    def __init__(self, n_features: int, config: SimulatorConfig) -> None:
        super().__init__()
        self.register_buffer("low", torch.full((n_features,), -torch.inf))
        self.register_buffer("high", torch.full((n_features,), torch.inf))
        self.register_buffer("mean", torch.zeros(n_features))
        self.register_buffer("std", torch.ones(n_features))
        layers: list[nn.Module] = []
        width = n_features
        for h in config.leave_hidden:
            layers += [nn.Linear(width, h), nn.ReLU()]
            width = h
        layers.append(nn.Linear(width, 1))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, D) features -> (N,) hazard logits."""
        x = torch.maximum(torch.minimum(x, self.high), self.low)
        return self.net((x - self.mean) / self.std).squeeze(-1)


# ============================================================================ the simulator
@dataclass(kw_only=True)
class _Vocab:
    """Embedding rows (0 = unknown) of users and catalogue ids, and the tabs seen in training."""

    user_row: np.ndarray  # (U,)
    item_row: np.ndarray  # (I,)
    author_row: np.ndarray  # (A,)
    category_row: np.ndarray  # (C,)
    top_row: np.ndarray  # (T,)
    tabs: np.ndarray  # sorted raw tab codes; tab row = 1 + index, 0 = unseen tab

    @staticmethod
    def rows(counts: np.ndarray, minimum: int = 1) -> np.ndarray:
        known = counts >= minimum
        return np.where(known, np.cumsum(known), 0).astype(np.int64)

    def tab_rows(self, tab: np.ndarray) -> np.ndarray:
        tab = np.asarray(tab, dtype=np.int64)
        if len(self.tabs) == 0:
            return np.zeros(tab.shape, dtype=np.int64)
        idx = np.clip(np.searchsorted(self.tabs, tab), 0, len(self.tabs) - 1)
        return np.where(self.tabs[idx] == tab, idx + 1, 0).astype(np.int64)

    def sizes(self) -> dict[str, int]:
        return {
            "n_users": int(self.user_row.max(initial=0)) + 1,
            "n_items": int(self.item_row.max(initial=0)) + 1,
            "n_authors": int(self.author_row.max(initial=0)) + 1,
            "n_categories": int(self.category_row.max(initial=0)) + 1,
            "n_tops": int(self.top_row.max(initial=0)) + 1,
            "n_tabs": len(self.tabs) + 1,
        }


class LearnedSimulator:
    """Users learned from logs; satisfies `simulators.protocol.UserModel`.

    `step` for users (B,) and slate (B, K): the response model gives, per item, the click
    probability and click-conditional probabilities of the other behaviours and of the watch
    ratio, all from the user's state at the start of the request. Sampling uses numpy draws from
    the caller's generator only (torch samples nothing):

    1. click ~ Bernoulli(p_click);
    2. long_view ~ Bernoulli(p_long_view | click state);
    3. the watch ratio is drawn from the predicted ratio histogram of that click state restricted
       to the part consistent with the drawn long_view (ratio >= t or < t, with t = min(duration,
       18 s) / duration; uniform within a bin); watch_ms = ratio * duration, and long_view is
       then recomputed from watch_ms by KuaiRand's rule, so the two always agree;
    4. like, follow, comment, forward and hate ~ Bernoulli(p | click state), independently;
    5. per exposure the hazard h_k of the leave model (on the sampled responses); the user leaves
       after the request with probability 1 - prod_k (1 - h_k).

    Then the items join the user's clicked or skipped history, the category counts grow and the
    session state advances. `elapsed_ms` is the summed watch time plus `BROWSE_MS` per exposure.
    `scenario` maps to the KuaiRand tab the synthetic logs use (REC -> tab 1, SEARCH -> tab 4);
    a tab never seen in training uses the 'unknown' tab row. Users in one call must be distinct.
    The initial state of every user is their state at the end of the log it was fitted on.
    """

    behaviours: tuple[str, ...] = tuple(b for b in BEHAVIOURS if b != "gift")

    def __init__(
        self,
        *,
        config: SimulatorConfig,
        catalogue: Catalogue,
        user_x: np.ndarray,
        user_ids: np.ndarray,
        item_ids: np.ndarray,
        initial_state: UserState,
        vocab: _Vocab,
        response: ResponseModel,
        leave: LeaveModel,
        fidelity: dict | None = None,
    ) -> None:
        self.config = config
        self.catalogue = catalogue
        self.user_ids = user_ids
        self.item_ids = item_ids
        self.vocab = vocab
        self.response = response.eval()
        self.leave = leave.eval()
        self.fidelity = fidelity or {}
        self.history_len = config.history_len
        self._user_x = np.ascontiguousarray(user_x, dtype=np.float32)
        self.n_users = len(self._user_x)
        self.user_feature_dim = self._user_x.shape[1]
        self._initial = initial_state
        self._user_row = vocab.user_row
        self._item_x = catalogue.item_features(np.arange(catalogue.n_items))
        self._tensors()
        self.reset_state()

    def _tensors(self) -> None:
        """Lookup tables as torch tensors (catalogue id -> embedding row, item features)."""
        cat, v = self.catalogue, self.vocab
        # index -1 (history padding) reads the appended last entry (row 0); it is masked anyway
        self._t_item_row = torch.from_numpy(np.append(v.item_row, 0))
        self._t_cat_row = torch.from_numpy(np.append(v.category_row[cat.category], 0))
        self._t_author_row = torch.from_numpy(v.author_row[cat.author])
        self._t_top_row = torch.from_numpy(v.top_row[cat.top_category])
        self._t_item_x = torch.from_numpy(self._item_x)
        self._t_user_x = torch.from_numpy(self._user_x)
        self._t_user_row = torch.from_numpy(self._user_row)

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        for key in [k for k in state if k.startswith("_t_")]:
            del state[key]
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._tensors()

    # ----------------------------------------------------------------- state
    def reset_state(self) -> None:
        """Every user back to their state at the end of the log; no session in progress."""
        self.state = self._initial.copy()
        window = max(self.config.recent_window, self.config.fatigue_window)
        self._session = _SessionState.empty(self.n_users, window)

    def for_sessions(self, users: np.ndarray, state: UserState | None = None) -> LearnedSimulator:
        """A simulator sharing this one's models whose user i is a copy of `users[i]`.

        Slot i starts from row i of `state` (e.g. `LogTable.state_before`; default: the users'
        current state). Fidelity replays use it to run many logged sessions, several of the
        same user, side by side.
        """
        twin = copy.copy(self)
        twin._user_x = self._user_x[users]
        twin._t_user_x = torch.from_numpy(twin._user_x)
        twin._user_row = self._user_row[users]
        twin._t_user_row = torch.from_numpy(twin._user_row)
        twin.n_users = len(users)
        twin.user_ids = self.user_ids[users]
        twin._initial = self.state.take(users) if state is None else state
        twin.reset_state()
        return twin

    # ----------------------------------------------------------------- UserModel protocol
    def user_features(self, users: np.ndarray) -> np.ndarray:
        return self._user_x[users]

    def history(self, users: np.ndarray) -> np.ndarray:
        return self.state.clicked[users]

    def begin_session(self, users: np.ndarray, rng: np.random.Generator) -> None:
        """Reset the session state (position, running sums, recent categories); history stays."""
        users = np.asarray(users, dtype=np.int64)
        s = self._session
        s.count[users] = 0
        s.sums[users] = 0.0
        s.recent[users] = -1

    def step(
        self,
        users: np.ndarray,
        slate: np.ndarray,
        rng: np.random.Generator,
        scenario: np.ndarray | None = None,
    ) -> StepResult:
        users = np.asarray(users, dtype=np.int64)
        slate = np.asarray(slate, dtype=np.int64)
        b, k = slate.shape
        ctx = self._slate_context(users, slate)
        pred = self._predict_slate(users, slate, ctx, scenario)
        p_click = pred["p_click"].reshape(b, k)
        cond = pred["conditional"].reshape(b, k, len(CONDITIONAL), 2)
        ratio_p = pred["ratio"].reshape(b, k, 2, -1)
        duration = self.catalogue.duration_ms[slate]

        u = rng.random((3 + len(CONDITIONAL), b, k))
        click = u[0] < p_click
        state = click.astype(np.int64)
        p_cond = np.take_along_axis(cond, state[..., None, None], axis=-1)[..., 0]  # (B, K, 6)
        hist = np.take_along_axis(ratio_p, state[..., None, None], axis=2)[:, :, 0]  # (B, K, R)
        watch_ms = _sample_watch(hist, u[1] < p_cond[..., 0], duration, u[2], u[3])
        long_view = watch_ms >= np.minimum(duration, LONG_VIEW_MS)
        responses = {"click": click, "long_view": long_view, "watch_ms": watch_ms}
        for j, name in enumerate(CONDITIONAL[1:], start=1):
            responses[name] = u[3 + j] < p_cond[..., j]

        hazard = self._advance(users, slate, responses, ctx)
        p_leave = 1.0 - np.prod(1.0 - hazard, axis=1)
        left = rng.random(b) < p_leave
        elapsed = watch_ms.sum(axis=1) + BROWSE_MS * k
        return StepResult(
            responses=responses,
            left=left,
            elapsed_ms=elapsed.astype(np.int64),
            info={
                "p_leave": p_leave,
                "p_click": p_click,
                "hazard": hazard,
                "expected_watch_ms": pred["expected_ratio"].reshape(b, k) * duration,
            },
        )

    def observe(
        self,
        users: np.ndarray,
        slate: np.ndarray,
        responses: dict[str, np.ndarray],
        scenario: np.ndarray | None = None,
    ) -> dict[str, np.ndarray]:
        """Advance `users` as if they had answered `slate` with `responses` (e.g. logged ones).

        `responses` needs (B, K) click, long_view, watch_ms, like, follow and hate. Returns what
        the models predicted before seeing them (`expected_responses`' keys) plus the hazard
        (B, K) and p_leave (B,) given them. Nothing is sampled. Fidelity checks and tests use it
        to replay logs through exactly the code path `step` uses.
        """
        users = np.asarray(users, dtype=np.int64)
        slate = np.asarray(slate, dtype=np.int64)
        ctx = self._slate_context(users, slate)
        out = self._unconditional(self._predict_slate(users, slate, ctx, scenario), slate)
        out["hazard"] = self._advance(users, slate, responses, ctx)
        out["p_leave"] = 1.0 - np.prod(1.0 - out["hazard"], axis=1)
        return out

    def _slate_context(self, users: np.ndarray, slate: np.ndarray) -> dict[str, np.ndarray]:
        """Session context of a slate: categories, positions and (repeat, fatigue)."""
        s = self._session
        cats = self.catalogue.category[slate]
        position = s.count[users][:, None] + np.arange(slate.shape[1])
        recency = _slate_recency(s.recent[users], cats, self.config)
        return {"cats": cats, "position": position, "recency": recency}

    def _advance(
        self,
        users: np.ndarray,
        slate: np.ndarray,
        responses: dict[str, np.ndarray],
        ctx: dict[str, np.ndarray],
    ) -> np.ndarray:
        """Hazard (B, K) of each exposure given the responses; then update every user state."""
        cfg, s = self.config, self._session
        b, k = slate.shape
        click = np.asarray(responses["click"], dtype=bool)
        long_view = np.asarray(responses["long_view"], dtype=bool)
        ratio = np.clip(
            responses["watch_ms"] / np.maximum(self.catalogue.duration_ms[slate], 1), 0, 1
        )
        signals = _signals(
            click, long_view, ratio, responses["like"], responses["hate"], ctx["recency"], cfg
        )
        cumulative = s.sums[users][:, None, :] + np.cumsum(signals, axis=1)
        user_x = np.broadcast_to(self._user_x[users][:, None, :], (b, k, self.user_feature_dim))
        position = ctx["position"]
        x = leave_features(
            signals, cumulative, position + 1, position % cfg.request_size, user_x, cfg.request_size
        )
        hazard = self._hazard(x.reshape(b * k, -1)).reshape(b, k)
        s.count[users] += k
        s.sums[users] = cumulative[:, -1]
        s.recent[users] = np.concatenate([s.recent[users], ctx["cats"]], axis=1)[
            :, -s.recent.shape[1] :
        ]
        follow = np.asarray(responses["follow"], dtype=bool)
        self._record(users, slate, ctx["cats"], click, long_view, follow)
        return hazard

    # ----------------------------------------------------------------- predictions
    def expected_responses(
        self, users: np.ndarray, slate: np.ndarray, scenario: np.ndarray | None = None
    ) -> dict[str, np.ndarray]:
        """Predicted probabilities for `slate` (B, K) at the users' current state (no change).

        Returns unconditional `click`, `long_view`, `like`, `follow`, `comment`, `forward`, `hate`
        (p = p_click * p(.|click) + (1 - p_click) * p(.|no click)) and `watch_ms` (expected).
        """
        users = np.asarray(users, dtype=np.int64)
        slate = np.asarray(slate, dtype=np.int64)
        ctx = self._slate_context(users, slate)
        return self._unconditional(self._predict_slate(users, slate, ctx, scenario), slate)

    def _unconditional(self, pred: dict[str, np.ndarray], slate: np.ndarray) -> dict:
        shape = slate.shape
        out = {"click": pred["p_click"].reshape(shape)}
        for name in CONDITIONAL:
            out[name] = pred[f"p_{name}"].reshape(shape)
        out["watch_ms"] = pred["expected_ratio"].reshape(shape) * self.catalogue.duration_ms[slate]
        return out

    def _predict_slate(
        self,
        users: np.ndarray,
        slate: np.ndarray,
        ctx: dict[str, np.ndarray],
        scenario: np.ndarray | None,
    ) -> dict[str, np.ndarray]:
        b, k = slate.shape
        cats = ctx["cats"]
        st = self.state
        tab = np.full(b, REC_TAB, dtype=np.int64)
        if scenario is not None:
            tab = np.where(np.asarray(scenario) == SEARCH, SEARCH_TAB, REC_TAB)
        counts = np.concatenate(
            [
                st.counts[users[:, None], cats],
                np.broadcast_to(st.totals[users][:, None, :], (b, k, 3)),
                st.pairs.lookup(users, self.catalogue.author[slate]),
            ],
            axis=-1,
        )
        return self._predict(
            user=np.repeat(users, k),
            clicked=st.clicked[users],
            skipped=st.skipped[users],
            item=slate.ravel(),
            affinity=counts.reshape(b * k, -1),
            tab=np.repeat(tab, k),
            position=ctx["position"].ravel(),
            recency=ctx["recency"].reshape(b * k, 2),
        )

    def predict_rows(self, table: LogTable, rows: np.ndarray, batch: int = 16384) -> dict:
        """Predictions for logged exposures `rows` of `table`, from their logged inputs.

        Returns unconditional probabilities `p_click`, `p_long_view`, ..., `p_hate` and
        `expected_ratio`, `expected_watch_ms`, each (len(rows),) float64.
        """
        keys = ["p_click"] + [f"p_{b}" for b in CONDITIONAL] + ["expected_ratio"]
        out = {key: np.empty(len(rows), dtype=np.float64) for key in keys}
        for lo in range(0, len(rows), batch):
            r = rows[lo : lo + batch]
            pred = self._predict(
                user=table.user[r],
                clicked=table.clicked[r],
                skipped=table.skipped[r],
                item=table.item[r],
                affinity=table.affinity[r],
                tab=table.tab[r],
                position=table.position[r],
                recency=table.recency[r],
            )
            for key in keys:
                out[key][lo : lo + len(r)] = pred[key]
        out["expected_watch_ms"] = out["expected_ratio"] * table.duration_ms[rows]
        return out

    def _inputs(
        self,
        *,
        user: np.ndarray | torch.Tensor,
        clicked: np.ndarray | torch.Tensor,
        skipped: np.ndarray | torch.Tensor,
        item: np.ndarray | torch.Tensor,
        affinity: np.ndarray,
        tab: np.ndarray,
        position: np.ndarray,
        recency: np.ndarray,
    ) -> dict[str, Any]:
        """Model inputs for N exposures; histories have one row per user group (N / G rows each)."""

        def long(a: np.ndarray | torch.Tensor) -> torch.Tensor:
            if isinstance(a, torch.Tensor):
                return a.long()
            return torch.from_numpy(np.ascontiguousarray(a, dtype=np.int64))

        t_user, t_item = long(user), long(item)
        t_clicked, t_skipped = long(clicked), long(skipped)
        return {
            "user_row": self._t_user_row[t_user],
            "user_x": self._t_user_x[t_user],
            "clicked": (
                self._t_item_row[t_clicked].masked_fill(t_clicked < 0, -1),
                self._t_cat_row[t_clicked],
            ),
            "skipped": (
                self._t_item_row[t_skipped].masked_fill(t_skipped < 0, -1),
                self._t_cat_row[t_skipped],
            ),
            "item_row": self._t_item_row[t_item],
            "author_row": self._t_author_row[t_item],
            "category_row": self._t_cat_row[t_item],
            "top_row": self._t_top_row[t_item],
            "item_x": self._t_item_x[t_item],
            "affinity": torch.from_numpy(affinity_features(affinity)),
            "tab_row": torch.from_numpy(self.vocab.tab_rows(tab)),
            "context": torch.from_numpy(_context(position, recency, self.config)),
        }

    def _predict(self, **arrays: Any) -> dict[str, np.ndarray]:
        """Response probabilities for N exposures (arguments as `_inputs`)."""
        with torch.inference_mode():
            out = self.response(**self._inputs(**arrays))
            click, cond, ratio = self.response.split_outputs(out)
            p_click = torch.sigmoid(click).double().numpy()
            p_cond = torch.sigmoid(cond).double().numpy()  # (N, 6, 2)
            p_ratio = torch.softmax(ratio.double(), dim=-1).numpy()  # (N, 2, R)
        mean_ratio = p_ratio @ _ratio_values(p_ratio.shape[-1])  # (N, 2)
        result = {
            "p_click": p_click,
            "conditional": p_cond,
            "ratio": p_ratio,
            "expected_ratio": p_click * mean_ratio[:, 1] + (1 - p_click) * mean_ratio[:, 0],
        }
        for j, name in enumerate(CONDITIONAL):
            result[f"p_{name}"] = p_click * p_cond[:, j, 1] + (1 - p_click) * p_cond[:, j, 0]
        return result

    def _hazard(self, x: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return torch.sigmoid(self.leave(torch.from_numpy(x)).double()).numpy()

    def _record(
        self,
        users: np.ndarray,
        slate: np.ndarray,
        cats: np.ndarray,
        click: np.ndarray,
        long_view: np.ndarray,
        follow: np.ndarray,
    ) -> None:
        """Add a request's exposures to the users' histories, category and author counts."""
        st = self.state
        st.clicked[users] = _push(st.clicked[users], np.where(click, slate, -1))
        st.skipped[users] = _push(st.skipped[users], np.where(click, -1, slate))
        x = np.stack([np.ones(click.shape), click, long_view], axis=-1).astype(np.float32)
        n_cat = self.catalogue.n_categories
        flat = st.counts.reshape(-1, 3)  # a view: counts of user u, category c at u * C + c
        np.add.at(flat, (users[:, None] * n_cat + cats).ravel(), x.reshape(-1, 3))
        st.totals[users] += x.sum(axis=1)
        pair_x = np.concatenate([x, follow[..., None]], axis=-1).astype(np.float32)
        st.pairs.add(users, self.catalogue.author[slate], pair_x)

    # ----------------------------------------------------------------- fitting
    @classmethod
    def fit(cls, table: LogTable, progress: bool = False) -> LearnedSimulator:
        """Fit the response and leave models on the training sessions of `table`.

        Uses `config.torch_threads` threads and seeds torch's weight initialisation and batch
        order from `config.seed` (a local generator; the global torch seed is left alone, and the
        previous thread count is restored).
        """
        cfg = table.config
        threads = torch.get_num_threads()
        torch.set_num_threads(cfg.torch_threads)
        try:
            gen = torch.Generator().manual_seed(cfg.seed)
            train_users = np.bincount(
                table.user[table.rows("train")], minlength=len(table.user_ids)
            )
            vocab = _Vocab(
                user_row=_Vocab.rows(train_users * cfg.user_embedding),
                item_row=_Vocab.rows(table.train_item_count, cfg.min_item_count),
                author_row=_Vocab.rows(table.train_author_count),
                category_row=_Vocab.rows(table.train_category_count),
                top_row=_Vocab.rows(table.train_top_count),
                tabs=table.train_tabs,
            )
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(cfg.seed)
                response = ResponseModel(
                    **vocab.sizes(), user_dim=table.user_x.shape[1], config=cfg
                )
                leave = LeaveModel(_leave_dim(table.user_x.shape[1]), cfg)
            sim = cls(
                config=cfg,
                catalogue=table.catalogue,
                user_x=table.user_x,
                user_ids=table.user_ids,
                item_ids=table.item_ids,
                initial_state=table.final_state(),
                vocab=vocab,
                response=response,
                leave=leave,
            )
            rows = table.rows("train")
            sim._fit_response(table, rows, gen, progress)
            sim._fit_leave(table, rows, gen, progress)
        finally:
            torch.set_num_threads(threads)
        sim.response.eval()
        sim.leave.eval()
        return sim

    def _fit_response(
        self, table: LogTable, rows: np.ndarray, gen: torch.Generator, progress: bool
    ) -> None:
        cfg = self.config
        model = self.response.train()
        opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        extra = np.repeat(rows[table.is_random[rows]], max(cfg.random_oversample - 1, 0))
        rows = np.concatenate([rows, extra])
        schedule = _cosine(opt, cfg.epochs * math.ceil(len(rows) / cfg.batch_size))
        n_bins = cfg.ratio_bins
        ratio_class = np.where(
            table.complete, n_bins, np.minimum((table.ratio * n_bins).astype(np.int64), n_bins - 1)
        )
        clicked = torch.from_numpy(table.clicked)
        skipped = torch.from_numpy(table.skipped)
        labels = {
            "click": torch.from_numpy(table.labels["click"].astype(np.float32)),
            "cond": torch.from_numpy(
                np.stack([table.labels[b] for b in CONDITIONAL], axis=1).astype(np.float32)
            ),
            "ratio": torch.from_numpy(ratio_class),
        }
        n_batches = math.ceil(len(rows) / cfg.batch_size)
        bar = _bar(cfg.epochs * n_batches, "response model", progress)
        for epoch in range(cfg.epochs):
            perm = rows[torch.randperm(len(rows), generator=gen).numpy()]
            for i in range(n_batches):
                r = perm[i * cfg.batch_size : (i + 1) * cfg.batch_size]
                t_r = torch.from_numpy(r)
                inputs = self._inputs(
                    user=table.user[r],
                    clicked=clicked[t_r],
                    skipped=skipped[t_r],
                    item=table.item[r],
                    affinity=table.affinity[r],
                    tab=table.tab[r],
                    position=table.position[r],
                    recency=table.recency[r],
                )
                if cfg.unknown_dropout > 0:
                    drop = torch.rand(len(r), generator=gen) < cfg.unknown_dropout
                    inputs["item_row"] = inputs["item_row"].masked_fill(drop, 0)
                    inputs["author_row"] = inputs["author_row"].masked_fill(drop, 0)
                if cfg.user_dropout > 0:
                    drop = torch.rand(len(r), generator=gen) < cfg.user_dropout
                    inputs["user_row"] = inputs["user_row"].masked_fill(drop, 0)
                out = model(**inputs)
                loss, stats = model.loss(
                    out, labels["click"][t_r], labels["cond"][t_r], labels["ratio"][t_r]
                )
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                schedule.step()
                bar.update(1)
                if i % 50 == 0:
                    bar.set_postfix(epoch=epoch, loss=f"{loss.item():.3f}", click=stats["click"])
        bar.close()
        model.eval()

    def _fit_leave(
        self, table: LogTable, rows: np.ndarray, gen: torch.Generator, progress: bool
    ) -> None:
        cfg = self.config
        x = logged_leave_features(table, rows)
        label = (table.position[rows] == table.session_length[table.session[rows]] - 1).astype(
            np.float32
        )
        model = self.leave.train()
        low, high = np.quantile(x, [LEAVE_CLIP, 1 - LEAVE_CLIP], axis=0)
        model.low.copy_(torch.from_numpy(low.astype(np.float32)))
        model.high.copy_(torch.from_numpy(high.astype(np.float32)))
        clipped = np.clip(x, low, high)
        model.mean.copy_(torch.from_numpy(clipped.mean(axis=0)))
        model.std.copy_(torch.from_numpy(np.maximum(clipped.std(axis=0), 1e-3)))
        opt = torch.optim.Adam(
            model.parameters(), lr=cfg.leave_lr, weight_decay=cfg.leave_weight_decay
        )
        t_x, t_y = torch.from_numpy(x), torch.from_numpy(label)
        batch = min(cfg.leave_batch_size, len(rows))
        schedule = _cosine(opt, cfg.leave_steps)
        bar = _bar(cfg.leave_steps, "leave model", progress)
        perm, used = torch.randperm(len(rows), generator=gen), 0
        for i in range(cfg.leave_steps):
            if used + batch > len(rows):  # a new pass over the rows
                perm, used = torch.randperm(len(rows), generator=gen), 0
            r = perm[used : used + batch]
            used += batch
            loss = F.binary_cross_entropy_with_logits(model(t_x[r]), t_y[r])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            schedule.step()
            bar.update(1)
            if i % 50 == 0:
                bar.set_postfix(loss=f"{loss.item():.4f}")
        bar.close()
        model.eval()
        # shift the output bias so that expected session ends equal observed ones on the
        # training rows (what an exactly converged logistic fit satisfies): Newton steps
        with torch.no_grad():
            logits = torch.cat([model(t_x[i : i + 65536]) for i in range(0, len(t_x), 65536)])
            shift = torch.zeros((), dtype=torch.float64)
            for _ in range(20):
                p = torch.sigmoid(logits.double() + shift)
                step = (t_y.double().sum() - p.sum()) / (p * (1 - p)).sum().clamp(min=1e-9)
                shift += step
                if abs(step) < 1e-6:
                    break
            model.net[-1].bias += shift.float()

    # ----------------------------------------------------------------- checkpoints
    def save(self, path: str | Path) -> Path:
        """Write `path`/model.pt (weights and lookup arrays), config.json and fidelity.json."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        cat, st = self.catalogue, self._initial
        arrays = {
            "author": cat.author,
            "category": cat.category,
            "top_category": cat.top_category,
            "duration_ms": cat.duration_ms,
            "popularity": cat.popularity,
            "author_is_live": cat.author_is_live,
            "user_x": self._user_x,
            "user_ids": self.user_ids,
            "item_ids": self.item_ids,
            "clicked": st.clicked,
            "skipped": st.skipped,
            "counts": st.counts,
            "totals": st.totals,
            "pair_keys": st.pairs.compact().keys,
            "pair_values": st.pairs.values,
            "user_row": self.vocab.user_row,
            "item_row": self.vocab.item_row,
            "author_row": self.vocab.author_row,
            "category_row": self.vocab.category_row,
            "top_row": self.vocab.top_row,
            "tabs": self.vocab.tabs,
        }
        payload = {
            "response": self.response.state_dict(),
            "leave": self.leave.state_dict(),
            "arrays": {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in arrays.items()},
        }
        _atomic(path / "model.pt", lambda p: torch.save(payload, p))
        meta = {
            "format_version": FORMAT_VERSION,
            "config": self.config.to_dict(),
            "sizes": self._sizes(),
        }
        _atomic(path / "config.json", lambda p: p.write_text(json.dumps(meta, indent=2)))
        report = json.dumps(self.fidelity, indent=2, default=_json_default)
        _atomic(path / "fidelity.json", lambda p: p.write_text(report))
        return path

    def _sizes(self) -> dict[str, int]:
        return {
            "n_users": self.n_users,
            "n_items": self.catalogue.n_items,
            "n_authors": self.catalogue.n_authors,
            "n_categories": self.catalogue.n_categories,
            "user_feature_dim": self.user_feature_dim,
            **{f"vocab_{k}": v for k, v in self.vocab.sizes().items()},
        }

    @classmethod
    def load(cls, path: str | Path) -> LearnedSimulator:
        """Read a checkpoint directory written by `save`; any problem raises `CheckpointError`."""
        path = Path(path)
        if not path.is_dir():
            raise CheckpointError(f"{path}: no simulator checkpoint here (directory not found)")
        for name in CHECKPOINT_FILES:
            if not (path / name).is_file():
                raise CheckpointError(f"{path / name}: file of the simulator checkpoint is missing")
        try:
            meta = json.loads((path / "config.json").read_text())
            version = meta["format_version"]
            config = SimulatorConfig.from_dict(meta["config"])
            sizes = {k: int(v) for k, v in meta["sizes"].items()}
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise CheckpointError(f"{path / 'config.json'}: unreadable config ({exc})") from exc
        if version != FORMAT_VERSION:
            raise CheckpointError(
                f"{path / 'config.json'}: checkpoint format {version}, this recgym reads "
                f"{FORMAT_VERSION}"
            )
        try:
            fidelity = json.loads((path / "fidelity.json").read_text())
        except ValueError as exc:
            raise CheckpointError(f"{path / 'fidelity.json'}: unreadable ({exc})") from exc
        try:
            payload = torch.load(path / "model.pt", map_location="cpu", weights_only=True)
            arrays = {k: v.numpy() for k, v in payload["arrays"].items()}
            response_state, leave_state = payload["response"], payload["leave"]
        except Exception as exc:  # torch raises many types for a damaged file
            raise CheckpointError(
                f"{path / 'model.pt'}: unreadable weights ({_first_line(exc)})"
            ) from exc
        mismatch = f"{path}: config.json does not match the weights in model.pt"
        try:
            vocab = _Vocab(
                user_row=arrays["user_row"],
                item_row=arrays["item_row"],
                author_row=arrays["author_row"],
                category_row=arrays["category_row"],
                top_row=arrays["top_row"],
                tabs=arrays["tabs"],
            )
            response = ResponseModel(
                **{k: sizes[f"vocab_{k}"] for k in vocab.sizes()},
                user_dim=sizes["user_feature_dim"],
                config=config,
            )
            response.load_state_dict(response_state)
            leave = LeaveModel(_leave_dim(sizes["user_feature_dim"]), config)
            leave.load_state_dict(leave_state)
            sim = cls(
                config=config,
                catalogue=Catalogue(
                    author=arrays["author"],
                    category=arrays["category"],
                    top_category=arrays["top_category"],
                    duration_ms=arrays["duration_ms"],
                    popularity=arrays["popularity"],
                    n_authors=sizes["n_authors"],
                    n_categories=sizes["n_categories"],
                    author_is_live=arrays["author_is_live"],
                ),
                user_x=arrays["user_x"],
                user_ids=arrays["user_ids"],
                item_ids=arrays["item_ids"],
                initial_state=UserState(
                    clicked=arrays["clicked"],
                    skipped=arrays["skipped"],
                    counts=arrays["counts"],
                    totals=arrays["totals"],
                    pairs=PairCounts(
                        n_authors=sizes["n_authors"],
                        keys=arrays["pair_keys"],
                        values=arrays["pair_values"],
                    ),
                ),
                vocab=vocab,
                response=response,
                leave=leave,
                fidelity=fidelity,
            )
        except (KeyError, RuntimeError, ValueError, IndexError, TypeError) as exc:
            raise CheckpointError(f"{mismatch} ({_first_line(exc)})") from exc
        actual = sim._sizes()
        wrong = [
            f"{k}: config {v}, weights {actual.get(k)}"
            for k, v in sizes.items()
            if actual.get(k) != v
        ]
        st = sim._initial
        if st.clicked.shape[1] != config.history_len:
            wrong.append(f"history_len: config {config.history_len}, weights {st.clicked.shape[1]}")
        if st.counts.shape != (sim.n_users, sim.catalogue.n_categories, 3):
            wrong.append("category counts have the wrong shape")
        if wrong:
            raise CheckpointError(f"{mismatch} ({'; '.join(wrong)})")
        return sim


# ============================================================================ helpers
def _leave_dim(user_dim: int) -> int:
    return 4 * len(SIGNALS) + 4 + user_dim


def _context(position: np.ndarray, recency: np.ndarray, cfg: SimulatorConfig) -> np.ndarray:
    """(N,), (N, 2) -> (N, 4) float32 response-model context.

    log1p(position in session) / 5, position in request / request_size, repeat / recent_window,
    fatigue / 5 (see `_logged_recency`).
    """
    position = np.asarray(position, dtype=np.float32)
    recency = np.asarray(recency, dtype=np.float32)
    return np.stack(
        [
            np.log1p(position) / 5.0,
            (position % cfg.request_size) / cfg.request_size,
            recency[:, 0] / cfg.recent_window,
            recency[:, 1] / 5.0,
        ],
        axis=1,
    ).astype(np.float32)


def _logged_recency(cats: np.ndarray, position: np.ndarray, cfg: SimulatorConfig) -> np.ndarray:
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


def _slate_recency(recent: np.ndarray, cats: np.ndarray, cfg: SimulatorConfig) -> np.ndarray:
    """(B, K, 2) repeat and fatigue of a slate's items, as `_logged_recency` computes them.

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


def _push(history: np.ndarray, new: np.ndarray) -> np.ndarray:
    """Append each row's `new` items (-1 = none) to `history`, keeping order and length."""
    merged = np.concatenate([history, new], axis=1)
    order = np.argsort(merged >= 0, axis=1, kind="stable")
    return np.take_along_axis(merged, order, axis=1)[:, -history.shape[1] :]


def _signals(
    click: np.ndarray,
    long_view: np.ndarray,
    ratio: np.ndarray,
    like: np.ndarray,
    hate: np.ndarray,
    recency: np.ndarray,
    cfg: SimulatorConfig,
) -> np.ndarray:
    """Stack SIGNALS on a last axis (float64)."""
    click = np.asarray(click, dtype=bool)
    quick = click & (np.asarray(ratio) < QUICK_SKIP_RATIO)
    repeat = recency[..., 0] / cfg.recent_window
    fatigue = recency[..., 1] / 5.0
    parts = (click, long_view, ratio, like, hate, quick, repeat, fatigue)
    return np.stack([np.asarray(p, dtype=np.float64) for p in parts], axis=-1)


def logged_leave_features(table: LogTable, rows: np.ndarray | None = None) -> np.ndarray:
    """`leave_features` of logged exposures (all rows, or `rows`), from the logged responses.

    Session sums are cumulative sums along the (user, time)-sorted log minus the sum before the
    session's first row: vectorised, no loop over sessions.
    """
    cfg = table.config
    signals = _signals(
        table.labels["click"],
        table.labels["long_view"],
        table.ratio,
        table.labels["like"],
        table.labels["hate"],
        table.recency,
        cfg,
    )
    total = np.cumsum(signals, axis=0)
    before = np.vstack([np.zeros((1, signals.shape[1])), total])[table.session_start]
    cumulative = total - before[table.session]
    rows = np.arange(table.n_rows) if rows is None else rows
    position = table.position[rows]
    return leave_features(
        signals[rows],
        cumulative[rows],
        position + 1,
        position % cfg.request_size,
        table.user_x[table.user[rows]],
        cfg.request_size,
    )


def _ratio_values(n_classes: int) -> np.ndarray:
    """Representative ratio of each class: bin midpoints, then 1.0 for complete plays."""
    n_bins = n_classes - 1
    return np.append((np.arange(n_bins) + 0.5) / n_bins, 1.0)


def _sample_watch(
    hist: np.ndarray,
    long_view: np.ndarray,
    duration: np.ndarray,
    u_class: np.ndarray,
    u_within: np.ndarray,
) -> np.ndarray:
    """Watch ms drawn from ratio histograms `hist` (B, K, R) restricted to agree with long_view.

    The long-view threshold ratio is t = min(duration, 18 s) / duration. A long view keeps the
    parts of the bins at or above t (and the complete-play class); otherwise the parts below t.
    A class is drawn in proportion to the kept mass (uniform over the kept interval if the
    histogram puts no mass there), then a ratio uniformly within the kept part of its bin.
    Rounding is down below t and up at or above it, so KuaiRand's rule on the result agrees.
    """
    n_bins = hist.shape[-1] - 1
    lo = np.arange(n_bins) / n_bins
    hi = lo + 1.0 / n_bins
    t = (np.minimum(duration, LONG_VIEW_MS) / np.maximum(duration, 1))[..., None]
    lv = long_view[..., None]
    start = np.where(lv, np.maximum(lo, t), lo)  # kept interval [start, end) of each bin
    end = np.where(lv, hi, np.minimum(hi, t))
    width = np.clip(end - start, 0.0, None)
    complete = lv.astype(np.float64)  # the complete-play class is always a long view
    mass = np.concatenate([hist[..., :n_bins] * width * n_bins, hist[..., n_bins:] * complete], -1)
    mass = mass + 1e-9 * np.concatenate([width, complete], -1)
    cdf = np.cumsum(mass, axis=-1)
    pick = np.minimum((cdf < u_class[..., None] * cdf[..., -1:]).sum(axis=-1), n_bins)
    j = np.minimum(pick, n_bins - 1)[..., None]
    ratio = (
        np.take_along_axis(start, j, -1)[..., 0]
        + u_within * np.take_along_axis(width, j, -1)[..., 0]
    )
    ratio = np.where(pick == n_bins, 1.0, ratio)
    raw = ratio * duration
    watch = np.where(ratio >= t[..., 0], np.ceil(raw), np.floor(raw))
    return np.minimum(watch, duration).astype(np.int64)


def _cosine(opt: torch.optim.Optimizer, n_steps: int) -> torch.optim.lr_scheduler.LambdaLR:
    """Cosine decay of the learning rate from its initial value to 0 over `n_steps`."""
    return torch.optim.lr_scheduler.LambdaLR(
        opt, lambda step: 0.5 * (1 + math.cos(math.pi * min(step / max(n_steps, 1), 1.0)))
    )


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _atomic(path: Path, write: Callable[[Path], Any]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    write(tmp)
    tmp.replace(path)


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


class _NoBar:
    def update(self, n: int) -> None:
        pass

    def set_postfix(self, **kwargs: Any) -> None:
        pass

    def close(self) -> None:
        pass


def _bar(total: int, desc: str, enabled: bool) -> Any:
    if not enabled:
        return _NoBar()
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="batch")


__all__ = [
    "CheckpointError",
    "LearnedSimulator",
    "LeaveModel",
    "LogTable",
    "ResponseModel",
    "SimulatorConfig",
    "UserState",
    "affinity_features",
    "build_log_table",
    "leave_features",
    "logged_leave_features",
]
