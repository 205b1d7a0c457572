"""The contract between an environment and the users behind it (ground-truth world or learned).

An env never asks *who* its users are; it asks a `UserModel` for features, history and responses.
The world (`simulators.world.World`) and the learned simulator (`simulators.learned`) both satisfy
it, so every env runs unchanged on either, and tests can inject a fake.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import numpy as np

# Every behaviour a response may carry, in a fixed order. A backend lists the subset it produces.
BEHAVIOURS: tuple[str, ...] = (
    "click",
    "long_view",
    "watch_ms",
    "like",
    "follow",
    "comment",
    "forward",
    "hate",
    "gift",
)

REC, SEARCH = 0, 1  # scenario codes


@dataclass(kw_only=True)
class Catalogue:
    """Items as arrays indexed by item id (0..n_items-1); what any backend exposes of its items."""

    author: np.ndarray  # (I,) int64 author id, 0..n_authors-1
    category: np.ndarray  # (I,) int64 leaf category, 0..n_categories-1
    top_category: np.ndarray  # (I,) int64 parent of the leaf category
    duration_ms: np.ndarray  # (I,) int64
    popularity: np.ndarray  # (I,) float64, sums to 1 (exposure prior)
    n_authors: int
    n_categories: int
    author_is_live: np.ndarray  # (A,) bool: the author streams live and can receive gifts

    @property
    def n_items(self) -> int:
        return len(self.author)

    def item_features(self, items: np.ndarray) -> np.ndarray:
        """Float32 features of `items` (shape S) -> S + (3,): log duration, popularity, live."""
        dur = np.log1p(self.duration_ms[items] / 1000.0) / 6.0
        pop = np.log(self.popularity[items] * self.n_items + 1e-9) / 5.0
        live = self.author_is_live[self.author[items]].astype(np.float64)
        return np.stack([dur, pop, live], axis=-1).astype(np.float32)


@dataclass(kw_only=True)
class StepResult:
    """What users did with one slate each: `responses[b][name]` arrays are (B, K)."""

    responses: dict[str, np.ndarray]
    left: np.ndarray  # (B,) bool: the user ended the session after this request
    elapsed_ms: np.ndarray  # (B,) int64: wall time the request took (watching plus browsing)
    info: dict[str, np.ndarray] = field(default_factory=dict)


@runtime_checkable
class UserModel(Protocol):
    """A population of users that respond to slates and may leave. Vectorised over a user batch."""

    catalogue: Catalogue
    behaviours: tuple[str, ...]
    n_users: int
    user_feature_dim: int
    history_len: int

    def user_features(self, users: np.ndarray) -> np.ndarray:
        """(B,) user ids -> (B, user_feature_dim) float32 static features."""
        ...

    def history(self, users: np.ndarray) -> np.ndarray:
        """(B,) -> (B, history_len) int64 most recent consumed items, newest last, -1 padded."""
        ...

    def begin_session(self, users: np.ndarray, rng: np.random.Generator) -> None:
        """Start a new session for `users` (after a gap since their last one)."""
        ...

    def step(
        self,
        users: np.ndarray,
        slate: np.ndarray,
        rng: np.random.Generator,
        scenario: np.ndarray | None = None,
    ) -> StepResult:
        """Show `slate` (B, K) item ids to `users` (B,); sample responses; update user state."""
        ...
