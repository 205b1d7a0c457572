"""Construction of a ground-truth world: its catalogue, its users and their initial state.

`World` (simulators/world.py) calls `build_catalogue` and `build_users` once, with seeded
generators of its own; everything here runs only at construction. `RealMarginals` holds the
real KuaiRand-Pure columns a world may bootstrap; `UserState` and `Truth` are the containers
`World` steps and reads.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from recgym.simulators.features import ACTIVITY_LEVELS, ONEHOT_CARDINALITY
from recgym.simulators.protocol import Catalogue

if TYPE_CHECKING:
    from recgym.simulators.world import World, WorldConfig


@dataclass(kw_only=True)
class UserState:
    """Everything about users that changes over time; copied whole by `World.snapshot`."""

    latent: np.ndarray  # (U, d) taste, drifts between sessions
    interest: np.ndarray  # (U, C) float32 strength in [0, 1]; 0 = not an interest
    search_interest: np.ndarray  # (U, C) float32 what the user searches for
    search_share: np.ndarray  # (U,) probability a request is a search
    unmet: np.ndarray  # (U,) float32 feed requests since the search intent was last met
    patience: np.ndarray  # (U,)
    fatigue: np.ndarray  # (U, C) float32 recent exposure per category
    history: np.ndarray  # (U, H) int64 consumed items, newest last, -1 padded
    bond: np.ndarray  # (U, A) float32 satisfying contacts with each author
    follows: np.ndarray  # (U, A) bool
    clock_ms: np.ndarray  # (U,) int64 the user's current time
    session_steps: np.ndarray  # (U,) int64 requests so far in the current session


@dataclass(kw_only=True)
class Truth:
    """Static ground truth about users and items (never changes after construction)."""

    item_latent: np.ndarray  # (I, d)
    item_quality: np.ndarray  # (I,)
    item_clickbait: np.ndarray  # (I,) in [0, 1]
    item_log_popularity: np.ndarray  # (I,) standardised log popularity
    author_home: np.ndarray  # (A,) the author's main leaf category
    user_activity: np.ndarray  # (U,) index into ACTIVITY_LEVELS
    user_base_patience: np.ndarray  # (U,)
    user_onehot: np.ndarray  # (U, 18) int64 codes of onehot_feat0..17 (-1: missing)
    user_register_days: np.ndarray  # (U,) int64
    user_is_author: np.ndarray  # (U,) bool
    user_follow_num: np.ndarray  # (U,) int64
    user_fans_num: np.ndarray  # (U,) int64
    user_friend_num: np.ndarray  # (U,) int64
    user_hour: np.ndarray  # (U,) preferred hour of the first session of the day
    user_sessions_per_day: np.ndarray  # (U,)
    category_parent: np.ndarray  # (C,) top category of each leaf


def validate(cfg: WorldConfig) -> None:
    for name in ("n_users", "n_items", "n_authors", "n_top_categories", "leaves_per_top"):
        if getattr(cfg, name) < 1:
            raise ValueError(f"WorldConfig.{name} must be >= 1, got {getattr(cfg, name)}")
    if cfg.latent_dim < 1 or cfg.history_len < 1:
        raise ValueError("WorldConfig.latent_dim and history_len must be >= 1")
    if not 0.0 <= cfg.live_author_share <= 1.0:
        raise ValueError(
            f"WorldConfig.live_author_share must lie in [0, 1], got {cfg.live_author_share}"
        )
    if cfg.n_items > 50_000_000 or cfg.n_users > 50_000_000:
        raise ValueError("WorldConfig sizes above 50 million users or items are not supported")
    n_cat = cfg.n_top_categories * cfg.leaves_per_top
    if cfg.n_items < n_cat:
        raise ValueError(f"WorldConfig.n_items ({cfg.n_items}) must be >= the {n_cat} categories")


@dataclass(kw_only=True)
class _ItemTruth:
    latent: np.ndarray
    quality: np.ndarray
    clickbait: np.ndarray
    log_popularity: np.ndarray
    author_home: np.ndarray
    category_parent: np.ndarray
    centroids: np.ndarray = field(repr=False)


@dataclass(kw_only=True)
class RealMarginals:
    """Columns of real KuaiRand-Pure feature files that a world bootstraps (`real_features`)."""

    users: pd.DataFrame  # user_features_pure.csv rows (the columns `user_table` writes)
    durations_ms: np.ndarray  # positive video_duration values
    items_per_author: np.ndarray  # videos per author_id

    USER_COLUMNS = (
        "user_active_degree",
        "is_video_author",
        "follow_user_num",
        "fans_user_num",
        "friend_user_num",
        "register_days",
        *(f"onehot_feat{j}" for j in range(len(ONEHOT_CARDINALITY))),
    )

    @classmethod
    def load(cls, directory: str | Path) -> RealMarginals:
        """Read the two files with the loaders' schemas (`recgym.data.read_table`): a missing
        file, column or bad value raises `DataError` naming file, column and line."""
        from recgym.data import DataError, read_table
        from recgym.data.schema import KUAIRAND_USER_FEATURES, KUAIRAND_VIDEO_BASIC

        directory = Path(directory)
        users = read_table(directory / "user_features_pure.csv", KUAIRAND_USER_FEATURES)
        videos = read_table(directory / "video_features_basic_pure.csv", KUAIRAND_VIDEO_BASIC)
        users = users[list(cls.USER_COLUMNS)].copy()
        for column in cls.USER_COLUMNS[1:]:  # KuaiRand leaves some onehot codes empty: -1
            users[column] = users[column].fillna(-1).astype(np.int64)
        duration = videos["video_duration"].to_numpy(np.float64, na_value=np.nan)
        duration = duration[np.isfinite(duration) & (duration > 0)]
        if len(users) == 0 or len(duration) == 0:
            raise DataError("no usable user rows or video durations", file=directory)
        counts = videos["author_id"].value_counts().to_numpy()
        return cls(users=users, durations_ms=duration, items_per_author=counts)


def build_catalogue(
    cfg: WorldConfig, rng: np.random.Generator, real: RealMarginals | None = None
) -> tuple[Catalogue, _ItemTruth]:
    n_cat = cfg.n_top_categories * cfg.leaves_per_top
    parent = np.repeat(np.arange(cfg.n_top_categories), cfg.leaves_per_top)
    top_centroid = rng.normal(0, 1, (cfg.n_top_categories, cfg.latent_dim))
    centroids = top_centroid[parent] + 0.6 * rng.normal(0, 1, (n_cat, cfg.latent_dim))
    # authors: Zipf productivity, a home category, a style, a clickbait habit, a quality level
    productivity = 1.0 / np.arange(1, cfg.n_authors + 1) ** 1.1
    productivity = rng.permutation(productivity / productivity.sum())
    author_home = rng.integers(0, n_cat, cfg.n_authors)
    author_style = 0.5 * rng.normal(0, 1, (cfg.n_authors, cfg.latent_dim))
    author_baity = rng.random(cfg.n_authors) < 0.25
    author_quality = rng.normal(0, 0.5, cfg.n_authors)
    author_live = rng.random(cfg.n_authors) < cfg.live_author_share
    if real is not None:  # its own stream, so the synthetic draws below stay as they are
        real_rng = np.random.default_rng([cfg.seed, 1])
        counts = real_rng.choice(real.items_per_author, size=cfg.n_authors).astype(np.float64)
        productivity = counts / counts.sum()

    author = rng.choice(cfg.n_authors, size=cfg.n_items, p=productivity)
    off_home = rng.random(cfg.n_items) < 0.2
    category = np.where(off_home, rng.integers(0, n_cat, cfg.n_items), author_home[author])
    latent = (
        centroids[category]
        + author_style[author]
        + 0.5 * rng.normal(0, 1, (cfg.n_items, cfg.latent_dim))
    )
    latent /= np.linalg.norm(latent, axis=1, keepdims=True) / np.sqrt(cfg.latent_dim) * 2.0
    is_bait = rng.random(cfg.n_items) < np.where(author_baity[author], 0.7, 0.1)
    clickbait = np.where(
        is_bait, rng.uniform(0.5, 1.0, cfg.n_items), rng.uniform(0.0, 0.2, cfg.n_items)
    )
    quality = author_quality[author] + rng.normal(0, 1, cfg.n_items) - 0.5 * clickbait
    # KuaiRand-Pure's videos: median 81 s, quartiles 32 s / 148 s, a long tail up to 10 minutes
    duration = np.clip(np.exp(rng.normal(np.log(82_000), 1.15, cfg.n_items)), 3_000, 600_000)
    if real is not None:
        duration = real_rng.choice(real.durations_ms, size=cfg.n_items)
    log_pop = rng.normal(0, 1, cfg.n_items) + 0.8 * clickbait + 0.3 * quality
    log_pop_z = (log_pop - log_pop.mean()) / log_pop.std()
    popularity = np.exp(log_pop)
    catalogue = Catalogue(
        author=author.astype(np.int64),
        category=category.astype(np.int64),
        top_category=parent[category].astype(np.int64),
        duration_ms=duration.astype(np.int64),
        popularity=popularity / popularity.sum(),
        n_authors=cfg.n_authors,
        n_categories=n_cat,
        author_is_live=author_live,
    )
    truth = _ItemTruth(
        latent=latent,
        quality=quality,
        clickbait=clickbait,
        log_popularity=log_pop_z,
        author_home=author_home,
        category_parent=parent,
        centroids=centroids,
    )
    return catalogue, truth


def build_users(
    cfg: WorldConfig,
    catalogue: Catalogue,
    items: _ItemTruth,
    rng: np.random.Generator,
    real: RealMarginals | None = None,
) -> tuple[Truth, UserState]:
    n, n_cat = cfg.n_users, catalogue.n_categories
    activity = rng.choice(len(ACTIVITY_LEVELS), size=n, p=[0.25, 0.5, 0.2, 0.05])
    rows = None
    if real is not None:  # whole real rows, from a stream of their own
        pick = np.random.default_rng([cfg.seed, 2]).integers(0, len(real.users), n)
        rows = real.users.iloc[pick].reset_index(drop=True)
        level = {name: j for j, name in enumerate(ACTIVITY_LEVELS)}
        activity = np.array(
            [level.get(str(v), level["UNKNOWN"]) for v in rows["user_active_degree"]]
        )
    base_patience = np.array([0.95, 0.85, 0.75, 0.7])[activity] + rng.normal(0, 0.05, n)
    sessions_per_day = np.array([2.0, 1.4, 0.8, 0.4])[activity]
    # interests: 1..5 active categories, drawn with a skewed category popularity
    cat_pop = rng.dirichlet(np.full(n_cat, 0.8))
    n_int = 1 + rng.binomial(4, 0.35, n)
    interest = np.zeros((n, n_cat), dtype=np.float32)
    keys = rng.random((n, n_cat)) ** (1.0 / cat_pop)  # weighted sampling without replacement
    order = np.argsort(-keys, axis=1)
    strength = rng.uniform(0.4, 1.0, (n, n_cat)).astype(np.float32)
    chosen = np.arange(n_cat)[None, :] < n_int[:, None]
    np.put_along_axis(interest, order, np.where(chosen, strength, 0.0), axis=1)
    search_interest = np.zeros_like(interest)
    s_cat = rng.choice(n_cat, size=n, p=cat_pop)
    search_interest[np.arange(n), s_cat] = rng.uniform(0.5, 1.0, n)
    # latent taste: the interest-weighted mix of category centroids, plus individual noise
    w = interest / interest.sum(axis=1, keepdims=True)
    latent = w @ items.centroids + 0.7 * rng.normal(0, 1, (n, cfg.latent_dim))
    latent /= np.linalg.norm(latent, axis=1, keepdims=True) / np.sqrt(cfg.latent_dim) * 1.0
    # static features in KuaiRand's columns; a few are informative, as in the real data
    onehot = np.stack([rng.integers(0, card, n) for card in ONEHOT_CARDINALITY], axis=1)
    top_interest = items.category_parent[np.argmax(interest, axis=1)]
    onehot[:, 1] = np.minimum(top_interest, ONEHOT_CARDINALITY[1] - 1)
    onehot[:, 2] = np.argmax(interest, axis=1) % ONEHOT_CARDINALITY[2]
    onehot[:, 4] = np.minimum(n_int * 3 + rng.integers(0, 3, n), ONEHOT_CARDINALITY[4] - 1)
    onehot[:, 0] = (activity <= 1).astype(np.int64)
    is_author = rng.random(n) < 0.8
    register_days = rng.integers(10, 2500, n)
    follow_num = rng.geometric(0.004, n) - 1
    fans_num = rng.geometric(0.01, n) - 1
    friend_num = rng.geometric(0.03, n) - 1
    if rows is not None:
        onehot = np.stack(
            [rows[f"onehot_feat{j}"].to_numpy() for j in range(len(ONEHOT_CARDINALITY))], axis=1
        )
        is_author = rows["is_video_author"].to_numpy() > 0
        register_days = rows["register_days"].to_numpy()
        follow_num = rows["follow_user_num"].to_numpy()
        fans_num = rows["fans_user_num"].to_numpy()
        friend_num = rows["friend_user_num"].to_numpy()
    truth = Truth(
        item_latent=items.latent,
        item_quality=items.quality,
        item_clickbait=items.clickbait,
        item_log_popularity=items.log_popularity,
        author_home=items.author_home,
        user_activity=activity,
        user_base_patience=base_patience,
        user_onehot=onehot.astype(np.int64),
        user_register_days=register_days,
        user_is_author=is_author,
        user_follow_num=follow_num,
        user_fans_num=fans_num,
        user_friend_num=friend_num,
        user_hour=np.clip(rng.normal(19.0, 3.0, n), 6.0, 23.0),
        user_sessions_per_day=sessions_per_day,
        category_parent=items.category_parent,
    )
    start = np.full(n, epoch_ms("2022-04-08"), dtype=np.int64)
    state = UserState(
        latent=latent,
        interest=interest,
        search_interest=search_interest,
        search_share=rng.beta(2.0, 6.0, n),
        unmet=np.zeros(n, dtype=np.float32),
        patience=base_patience.copy(),
        fatigue=np.zeros((n, n_cat), dtype=np.float32),
        history=np.full((n, cfg.history_len), -1, dtype=np.int64),
        bond=np.zeros((n, cfg.n_authors), dtype=np.float32),
        follows=np.zeros((n, cfg.n_authors), dtype=bool),
        clock_ms=start,
        session_steps=np.zeros(n, dtype=np.int64),
    )
    return truth, state


def epoch_ms(date: str) -> int:
    """Midnight of `date` in Beijing time (UTC+8, KuaiRand's local time) as epoch ms."""
    return int((pd.Timestamp(date) - pd.Timedelta(hours=8)).value // 1_000_000)


# KuaiRand's *_range vocabularies: (lowest value of each bucket after the first, labels).
RANGE_BUCKETS = {
    "follow_user_num": (
        [1, 11, 51, 101, 151, 251, 501],
        ["0", "(0,10]", "(10,50]", "(50,100]", "(100,150]", "(150,250]", "(250,500]", "500+"],
    ),
    "fans_user_num": (
        [1, 10, 100, 1000, 5000, 10_000, 100_000, 1_000_000],
        [
            "0",
            "[1,10)",
            "[10,100)",
            "[100,1k)",
            "[1k,5k)",
            "[5k,1w)",
            "[1w,10w)",
            "[10w,100w)",
            "[100w,1000w)",
        ],
    ),
    "friend_user_num": (
        [1, 5, 30, 60, 120, 250],
        ["0", "[1,5)", "[5,30)", "[30,60)", "[60,120)", "[120,250)", "250+"],
    ),
    "register_days": (
        [15, 31, 61, 91, 181, 366, 731],
        ["8-14", "15-30", "31-60", "61-90", "91-180", "181-365", "366-730", "730+"],
    ),
}


def bucket(values: np.ndarray, column: str) -> np.ndarray:
    """KuaiRand's label for `values` of `column` (e.g. follow_user_num 12 -> "(10,50]")."""
    lows, labels = RANGE_BUCKETS[column]
    return np.asarray(labels, dtype=object)[np.searchsorted(lows, values, side="right")]


# --------------------------------------------------------------------------- log tables
def user_table(world: World) -> pd.DataFrame:
    """Users in KuaiRand's user_features schema (column for column)."""
    t = world.truth
    df = pd.DataFrame(
        {
            "user_id": np.arange(world.n_users),
            "user_active_degree": np.asarray(ACTIVITY_LEVELS)[t.user_activity],
            "is_lowactive_period": np.zeros(world.n_users, dtype=np.int64),
            "is_live_streamer": np.where(t.user_is_author & (t.user_activity == 0), 1, -124),
            "is_video_author": t.user_is_author.astype(np.int64),
            "follow_user_num": t.user_follow_num,
            "follow_user_num_range": bucket(t.user_follow_num, "follow_user_num"),
            "fans_user_num": t.user_fans_num,
            "fans_user_num_range": bucket(t.user_fans_num, "fans_user_num"),
            "friend_user_num": t.user_friend_num,
            "friend_user_num_range": bucket(t.user_friend_num, "friend_user_num"),
            "register_days": t.user_register_days,
            "register_days_range": bucket(t.user_register_days, "register_days"),
        }
    )
    for j in range(len(ONEHOT_CARDINALITY)):
        codes = t.user_onehot[:, j]  # -1: missing, as real KuaiRand rows may have it
        df[f"onehot_feat{j}"] = np.where(codes < 0, np.nan, codes) if (codes < 0).any() else codes
    return df


def item_table(world: World, start_date: str = "2022-04-08") -> pd.DataFrame:
    """Items in KuaiRand's video_features_basic schema; `tag` is "top,leaf" category ids.

    Leaf category ids are offset by the number of top categories so the two never collide.
    """
    c, t = world.catalogue, world.truth
    rng = np.random.default_rng(np.random.SeedSequence(world.config.seed).spawn(3)[2])
    n = c.n_items
    upload = pd.Timestamp(start_date) - pd.to_timedelta(rng.integers(1, 30, n), unit="D")
    wide = rng.random(n) < 0.25
    n_top = world.config.n_top_categories
    return pd.DataFrame(
        {
            "video_id": np.arange(n),
            "author_id": c.author,
            "video_type": np.where(t.item_clickbait > 0.9, "AD", "NORMAL"),
            "upload_dt": upload.strftime("%Y-%m-%d"),
            "upload_type": rng.choice(["LongImport", "Web", "ShortImport", "Kmovie"], n),
            "visible_status": np.zeros(n),
            "video_duration": c.duration_ms.astype(np.float64),
            "server_width": np.where(wide, 1280.0, 720.0),
            "server_height": np.where(wide, 720.0, 1280.0),
            "music_id": rng.integers(10**9, 10**10, n),
            "music_type": np.full(n, 9.0),
            "tag": [f"{a},{b}" for a, b in zip(c.top_category, c.category + n_top, strict=True)],
        }
    )
