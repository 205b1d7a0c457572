"""The SCRI-MDP contract (RLIV-UA paper, Sec. 2-3.1): user-author state layout, tasks, ASA.

Everything that produces or consumes user-author (UA) transitions agrees on this file: the env
`recgym/UserAuthor-v0` (`envs.user_author`), Adjacent State Approximation over logs
(`data.asa`), RLIV-UA (`agents.rliv_ua`) and the baselines on that env.

It lives in `simulators` (it was `envs.scri`) because it needs only numpy and the
`simulators.protocol.Catalogue`, and every room that uses it is at or downstream of
`simulators`: `data.asa` importing it from `envs` made the cycle data.asa -> envs (package
`__init__`) -> envs.user_author -> data.asa. `tests/test_imports.py` keeps it gone.

State (Eq. 3): ``s_ua = (f_u, f_a, f_ua)``
- ``f_u``: the backend's static user features (`UserModel.user_features`);
- ``f_a``: AUTHOR_FEATURES of the author, static, computed from the catalogue
  (`author_features`);
- ``f_ua``: UA_COUNTERS, the raw (not log-transformed) interaction counts between the user
  and the author so far. Networks apply ``log1p`` themselves.

Flat layout of one state vector (float32): ``[f_u | f_a | f_ua]`` of length
``user_dim + len(AUTHOR_FEATURES) + len(UA_COUNTERS)`` (`state_dim`, `split_state`).

Rewards: TASKS, one per LIV tower, from the responses to one shown item (`task_rewards`):
click (0/1), watch_time (seconds watched), follow (0/1), gift (0/1). A backend without gifts
(a learned simulator: KuaiRand has no gift signal) has no gift task: `tasks_for(behaviours)`.

ASA (Eq. 4), `asa_next_counters`: the next state of the same UA pair is approximated from the
current counters and the current rewards alone: each count counter whose behaviour was > 0
grows by 1; `watch_s`, the one counter in seconds, grows by the seconds watched (a count of
seconds, so "+1 per second"; the paper's counters are all counts, ours keeps cumulative watch
time as the issue and the paper's Sec. 2 example list it). Interactions of the user with other
authors never change f_ua, which is the SCRI-MDP's assumption.

SCRI samples as a Tianshou ``ReplayBuffer`` (one row per UA interaction, i.e. per shown item;
`data.asa` writes them, RLIV-UA and the offline baselines read them):
- ``obs``: (state_dim,) float32 s_ua^t;  ``obs_next``: (state_dim,) the ASA s'_ua;
- ``act``: int64 catalogue item id shown;
- ``rew``: float32 watch time in seconds (the default task, so plain Tianshou algorithms train);
- ``terminated`` / ``truncated``: always False (a UA pair's lifelong MDP has no end);
- ``info``: ``user`` (int64), ``author`` (int64), ``rewards`` ((len(TASKS),) float32 in TASKS
  order; the gift column is 0 where the source has no gifts), ``timestamp`` (int64 epoch ms).
Which tasks are real is `tasks_for(behaviours)` of the source, stored beside the HDF5 file.
- ``info.item_x``: (len(ITEM_FEATURES),) float32, the shown item's static feature row
  (`Catalogue.item_features`: log duration, log popularity, live author), the same three
  numbers as the first columns of the item's candidate row in a UserAuthor-v0 observation.

Item features: the paper's state space (Sec. 2) lists the item's and author's static
features (item id, author id), and Eq. 2/7's max over an author's items only means something
when Q depends on the item. The state vector above is the UA part; an item-aware model
(`agents.rliv_ua`, ``item_features=True``) reads the item from ``act`` (its id, as an
embedding) and ``info.item_x`` beside it. Without item features (the author-only variant)
Q(s_ua, item) is the same for every item of an author and Eq. 2's max is just Q(s'_ua).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from recgym.simulators.protocol import Catalogue

TASKS: tuple[str, ...] = ("click", "watch_time", "follow", "gift")
"""LIV towers, in order (the paper's C = {c, w, f, g})."""

UA_COUNTERS: tuple[str, ...] = (
    "clicks",
    "long_views",
    "follows",
    "comments",
    "gifts",
    "watch_s",
)
"""Dynamic UA features f_ua, in order."""

COUNTER_BEHAVIOUR: dict[str, str] = {
    "clicks": "click",
    "long_views": "long_view",
    "follows": "follow",
    "comments": "comment",
    "gifts": "gift",
    "watch_s": "watch_ms",
}
"""The response behaviour that advances each counter."""

AUTHOR_FEATURES: tuple[str, ...] = ("log_n_items", "log_popularity", "is_live")
"""Static author features f_a (`author_features`)."""

ITEM_FEATURES: tuple[str, ...] = ("log_duration", "log_popularity", "author_is_live")
"""Static item features (`Catalogue.item_features`), in order; Session-v0's and UserAuthor-v0's
first candidate columns are the same three."""


def tasks_for(behaviours: tuple[str, ...]) -> tuple[str, ...]:
    """The TASKS a backend producing `behaviours` supports (gift only where gifts exist)."""
    return tuple(t for t in TASKS if t != "gift" or "gift" in behaviours)


def state_dim(user_dim: int) -> int:
    return user_dim + len(AUTHOR_FEATURES) + len(UA_COUNTERS)


def split_state(states: np.ndarray, user_dim: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(..., state_dim) -> f_u (..., user_dim), f_a (..., 3), f_ua (..., 6)."""
    a = user_dim + len(AUTHOR_FEATURES)
    return states[..., :user_dim], states[..., user_dim:a], states[..., a:]


def author_features(catalogue: Catalogue) -> np.ndarray:
    """(n_authors, len(AUTHOR_FEATURES)) float32: log1p items uploaded / 3, log of the summed
    popularity of the author's items relative to an average author / 5, live streamer (0/1)."""
    n_items = np.bincount(catalogue.author, minlength=catalogue.n_authors).astype(np.float64)
    pop = np.bincount(catalogue.author, weights=catalogue.popularity, minlength=catalogue.n_authors)
    rel_pop = np.log(pop * catalogue.n_authors + 1e-9) / 5.0
    return np.stack(
        [np.log1p(n_items) / 3.0, np.clip(rel_pop, -3.0, 3.0), catalogue.author_is_live],
        axis=1,
    ).astype(np.float32)


def task_rewards(responses: dict[str, np.ndarray], tasks: tuple[str, ...]) -> np.ndarray:
    """Per-item rewards (..., len(tasks)) float32 from responses (behaviour -> (...) arrays).

    click, follow, gift: 0/1; watch_time: seconds watched. A behaviour missing from
    `responses` gives 0.
    """
    shape = np.shape(responses["watch_ms"])
    out = np.zeros(shape + (len(tasks),), dtype=np.float32)
    source = {"click": "click", "watch_time": "watch_ms", "follow": "follow", "gift": "gift"}
    for j, task in enumerate(tasks):
        value = responses.get(source[task])
        if value is None:
            continue
        value = np.asarray(value, dtype=np.float32)
        out[..., j] = value / 1000.0 if task == "watch_time" else value
    return out


def counter_increments(responses: dict[str, np.ndarray]) -> np.ndarray:
    """(..., len(UA_COUNTERS)) float32 ASA increments (Eq. 4) from per-item responses."""
    shape = np.shape(responses["watch_ms"])
    out = np.zeros(shape + (len(UA_COUNTERS),), dtype=np.float32)
    for j, counter in enumerate(UA_COUNTERS):
        value = responses.get(COUNTER_BEHAVIOUR[counter])
        if value is None:
            continue
        value = np.asarray(value, dtype=np.float32)
        out[..., j] = value / 1000.0 if counter == "watch_s" else (value > 0)
    return out


def asa_next_counters(counters: np.ndarray, responses: dict[str, np.ndarray]) -> np.ndarray:
    """f_ua^{t+1} from f_ua^t (..., 6) and the t-th interaction's responses (Eq. 4)."""
    return (np.asarray(counters, dtype=np.float32) + counter_increments(responses)).astype(
        np.float32
    )


def check_scri_buffer(buffer: Any, state_dim: int | None = None) -> None:
    """Raise ValueError unless `buffer` (a Tianshou ReplayBuffer) has the SCRI layout above."""
    if len(buffer) == 0:
        raise ValueError("the SCRI buffer is empty")
    head = buffer[np.arange(min(len(buffer), 2))]
    obs = np.asarray(head.obs)
    if obs.ndim != 2:
        raise ValueError(f"SCRI obs must be (n, state_dim) rows, got shape {obs.shape}")
    if state_dim is not None and obs.shape[1] != state_dim:
        raise ValueError(f"SCRI obs have {obs.shape[1]} features; the model reads {state_dim}")
    if obs.shape[1] <= len(AUTHOR_FEATURES) + len(UA_COUNTERS):
        raise ValueError(f"SCRI obs of {obs.shape[1]} features leave no room for f_u")
    info = head.get("info")
    missing = [k for k in ("user", "author", "rewards") if info is None or k not in info]
    if missing:
        raise ValueError(f"SCRI buffer lacks info.{', info.'.join(missing)} (see simulators.scri)")
    rewards = np.asarray(info.rewards)
    if rewards.ndim != 2 or rewards.shape[1] != len(TASKS):
        raise ValueError(
            f"info.rewards must have {len(TASKS)} columns ({TASKS}), got shape {rewards.shape}"
        )
    if np.asarray(head.obs_next).shape != obs.shape:
        raise ValueError("SCRI obs_next must have the shape of obs")


def reward_scales(rewards: np.ndarray) -> np.ndarray:
    """Per-column scale: the mean of the positive rewards (1 where a column has none)."""
    rewards = np.asarray(rewards, dtype=np.float64)
    pos = rewards > 0
    total = np.where(pos, rewards, 0.0).sum(0)
    count = pos.sum(0)
    return np.where(count > 0, total / np.maximum(count, 1), 1.0).astype(np.float32)
