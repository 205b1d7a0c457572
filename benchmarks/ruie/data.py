"""The RUIE paper's data protocol on a KuaiSAR directory: merged cross-scenario click sequences.

`load_behaviours` reads a KuaiSAR directory (real, or written by `recgym world generate --format
kuaisar`) with `data.loaders.kuaisar.load_kuaisar` and keeps the *behaviours*: feed rows of
rec_inter.csv with ``click == 1`` and search rows of src_inter.csv with ``click_cnt > 0``, merged
by timestamp per user (paper section 3.1: "merge both scenarios by timestamp"; a search
session's items share its timestamp and keep their file order). Each behaviour carries its
scenario (0 feed, 1 search) and its reward (the paper's click 1, forward 2, follow 3, like 3;
src_inter records clicks only, so a search behaviour's reward is 1). Item ids are renumbered
densely (0..n_items-1) over the sorted original ids of the items of item_features.csv (the
catalogue: every item is a candidate of the full ranking) and any other item the interaction
files name; a world-written directory keeps the world's ids.

Choices the paper leaves open: users with fewer than ``min_behaviours`` (3) behaviours are dropped
(leave-one-out needs a target and a prefix); ``max_users`` users are drawn at random with a
seeded generator (the paper samples 10,000); behaviours after a user's ``max_per_user``-th are
dropped (the paper's sequences are length 20; longer histories only add training rows).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from recgym.agents.ruie import PAPER_REWARD
from recgym.data.schema import DataError

REQUIRED_FILES: dict[str, tuple[str, ...]] = {
    "rec_inter.csv": ("user_id", "item_id", "timestamp", "click", "like", "follow", "forward"),
    "src_inter.csv": ("user_id", "item_id", "search_session_timestamp", "click_cnt"),
}
"""The files and columns the protocol reads (the loader checks their types)."""


@dataclass
class Behaviours:
    """Per-user merged behaviour sequences (oldest first) and their catalogue."""

    items: list[np.ndarray]
    """Per user, int64 dense item ids."""
    scenario: list[np.ndarray]
    """Per user, int64 scenario of each behaviour (0 feed, 1 search)."""
    reward: list[np.ndarray]
    """Per user, int64 reward of each behaviour."""
    timestamp: list[np.ndarray]
    """Per user, int64 epoch ms."""
    users: np.ndarray
    """(U,) original user ids."""
    item_ids: np.ndarray
    """(n_items,) original item id of each dense id."""

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    def summary(self) -> dict[str, float]:
        lengths = np.array([len(s) for s in self.items])
        scen = np.concatenate(self.scenario) if self.scenario else np.zeros(0)
        return {
            "users": len(self.items),
            "items": self.n_items,
            "behaviours": int(lengths.sum()),
            "mean_length": float(lengths.mean()) if len(lengths) else 0.0,
            "search_share": float(scen.mean()) if len(scen) else 0.0,
        }


def check_directory(directory: str | Path) -> Path:
    """Both interaction files present with the protocol's columns, else one `DataError` naming
    the file and the missing column (the loader itself accepts a directory with one file)."""
    directory = Path(directory)
    if not directory.is_dir():
        raise DataError("not a KuaiSAR directory", file=directory)
    for name, columns in REQUIRED_FILES.items():
        path = directory / name
        if not path.is_file():
            raise DataError(f"missing KuaiSAR file {name} (RUIE needs both scenarios)", file=path)
        header = pd.read_csv(path, nrows=0).columns
        missing = [c for c in columns if c not in header]
        if missing:
            raise DataError(f"missing column in {name}", file=path, column=missing[0])
    return directory


def load_behaviours(
    directory: str | Path,
    *,
    min_behaviours: int = 3,
    max_users: int | None = None,
    max_per_user: int | None = None,
    seed: int = 0,
    cache: bool = False,
) -> Behaviours:
    """The merged behaviour sequences of a KuaiSAR directory (module docstring)."""
    from recgym.data.loaders.kuaisar import load_kuaisar

    directory = check_directory(directory)
    dataset = load_kuaisar(directory, cache=cache)
    inter = dataset.interactions
    is_search = (inter["scenario"] == "search").to_numpy()
    click = np.where(
        is_search,
        inter["click_cnt"].fillna(0).to_numpy(np.int64) > 0,
        inter["click"].fillna(0).to_numpy(np.int64) > 0,
    )
    reward = np.zeros(len(inter), dtype=np.int64)
    for name, weight in PAPER_REWARD.items():
        reward += int(weight) * inter[name].fillna(0).to_numpy(np.int64)
    reward = np.where(is_search, 1, reward)
    order_in_file = np.arange(len(inter))
    frame = pd.DataFrame(
        {
            "user": inter["user_id"].to_numpy(np.int64),
            "item": inter["item_id"].to_numpy(np.int64),
            "ts": inter["timestamp"].to_numpy(np.int64),
            "scenario": is_search.astype(np.int64),
            "reward": reward,
            "row": order_in_file,
        }
    )
    catalogue = dataset.items["item_id"].to_numpy(np.int64)
    item_ids = np.unique(np.concatenate([catalogue, frame["item"].to_numpy()]))
    frame = frame[click].sort_values(["user", "ts", "row"], kind="stable")
    frame["item"] = np.searchsorted(item_ids, frame["item"].to_numpy())
    if max_per_user is not None:
        frame = frame[frame.groupby("user").cumcount(ascending=False) < max_per_user]
    counts = frame.groupby("user").size()
    users = counts.index.to_numpy()[counts.to_numpy() >= min_behaviours]
    if max_users is not None and len(users) > max_users:
        users = np.sort(np.random.default_rng(seed).choice(users, max_users, replace=False))
    frame = frame[frame["user"].isin(users)]
    if frame.empty:
        raise DataError(f"no user has {min_behaviours} clicked behaviours", file=directory)
    cuts = np.flatnonzero(np.diff(frame["user"].to_numpy())) + 1

    def split(column: str) -> list[np.ndarray]:
        return np.split(frame[column].to_numpy(np.int64), cuts)

    return Behaviours(
        items=split("item"),
        scenario=split("scenario"),
        reward=split("reward"),
        timestamp=split("ts"),
        users=np.unique(frame["user"].to_numpy()),
        item_ids=item_ids,
    )


__all__ = ["REQUIRED_FILES", "Behaviours", "check_directory", "load_behaviours"]
