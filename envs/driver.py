"""The episode driver every recgym MDP composes: backend, seed tree, user draw, history, responses.

An MDP is a `gym.Env` that *holds* an `EpisodeDriver` (it does not subclass another env). The
driver owns what every MDP over recgym's users shares, and nothing about actions, observations
or rewards:

- the backend (`envs.backends.make_backend`: the ground-truth world, a world directory, a learned
  simulator or any `UserModel`) and its initial-state snapshot, restored on a seeded reset;
- the seed tree: named `np.random.Generator` streams spawned from one seed with
  `np.random.SeedSequence`, so that what a policy does never shifts another stream (paired
  comparisons: under one seed every policy meets the same users in the same order);
- drawing the next user (from a `users` subset, or named by the caller) and beginning their
  session in the backend;
- the user's history and `respond(slate)`, the backend's response to a shown slate.

A slate session (`recgym/Session-v0`), a next-item MDP over the whole catalogue and an
interest-allocation MDP each use it (tests/test_driver.py builds the last two on the driver
alone). The driver is vectorised over ``n_slots`` concurrent users (one per env slot of a
native vector env; 1 for a `gym.Env`): every call takes the ``slots`` it concerns (default:
all) and makes one backend call for them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from recgym.envs.backends import make_backend
from recgym.simulators.candidates import CandidateGenerator
from recgym.simulators.protocol import StepResult, UserModel

STREAMS: tuple[str, ...] = ("users", "time", "candidates", "responses")
"""The driver's named random streams, in spawn order (children 0..3 of the seed's SeedSequence):
users (which user opens the next episode: one draw per slot and begin), time (the backend's
`begin_session` draws, e.g. the world's gaps between sessions), candidates (retrieval) and
responses (the backend's `step`)."""


@dataclass
class Streams:
    """The seeded generators of one seed.

    ``users`` has one generator per slot; the others are shared by the slots (each is drawn from
    by one vectorised backend or retrieval call). ``extra`` holds the streams an MDP asked for
    by name (`EpisodeDriver(extra_streams=...)`), children 4, 5, ... of the seed, so adding one
    never changes the four above.
    """

    users: list[np.random.Generator]
    time: np.random.Generator
    candidates: np.random.Generator
    responses: np.random.Generator
    extra: dict[str, np.random.Generator]


class EpisodeDriver:
    """Backend, seeded streams and current users of ``n_slots`` concurrent episodes.

    Typical use inside an env::

        def reset(self, *, seed=None, options=None):
            super().reset(seed=seed)
            self.driver.seed(seed, self.np_random)    # reseeds and restores the backend on a seed
            user = self.driver.begin(options)         # draws the user, begins the session
            history = self.driver.history()           # (1, history_len), newest last, -1 padded
            ...

        def step(self, action):
            result = self.driver.respond(slate[None, :])  # StepResult over (1, K)

    Arguments: backend ("world" | "learned" | a UserModel), checkpoint (for "learned"),
    world_config (dict of WorldConfig fields), world_dir (a saved world, for "world") - as
    `make_backend`; users (ids drawn from, default all); n_slots (concurrent users, default 1);
    extra_streams (names of further streams the MDP needs, in `Streams.extra`); device (where a
    learned backend's models run, `make_backend`).

    Seeding. ``seed(s)`` spawns `STREAMS` (then `extra_streams`) from
    ``np.random.SeedSequence(s)``. With one slot the users stream is child 0 itself; with
    several, slot i draws from child i of child 0, so the users a slot meets depend only on the
    seed and the slot, not on when the other slots' episodes ended - except that the slots'
    users at one time are distinct (the backends step distinct users in one call): a draw that
    is another slot's current user is drawn again from the same slot's stream (`draw_users`).

    State. The backend's user state persists across episodes (a returning user's history, its
    interests, ...) until a seeded reset returns it to the state the driver was built with:
    the backend's ``snapshot()`` then if it has ``snapshot``/``restore``, else its
    ``reset_state()``.
    """

    def __init__(
        self,
        backend: str | UserModel = "world",
        checkpoint: str | None = None,
        world_config: dict | None = None,
        world_dir: str | None = None,
        users: np.ndarray | Sequence[int] | None = None,
        n_slots: int = 1,
        extra_streams: Sequence[str] = (),
        device: str = "auto",
    ):
        self.model: UserModel = make_backend(
            backend, checkpoint, world_config, world_dir=world_dir, device=device
        )
        self.catalogue = self.model.catalogue
        n = int(self.model.n_users)
        if users is None:
            self.users = np.arange(n)
        else:
            self.users = np.asarray(users).reshape(-1)
            if len(self.users) == 0:
                raise ValueError("users is empty: pass at least one user id (or None for all)")
            if not np.issubdtype(self.users.dtype, np.integer):
                raise ValueError(f"users must be integer user ids, got dtype {self.users.dtype}")
            bad = (self.users < 0) | (self.users >= n)
            if bad.any():
                raise ValueError(
                    f"users {self.users[bad][:10].tolist()} are outside the backend's "
                    f"{n} users (0..{n - 1})"
                )
        if int(n_slots) < 1:
            raise ValueError(f"n_slots must be at least 1, got {n_slots}")
        if int(n_slots) > len(self.users):
            raise ValueError(
                f"n_slots={n_slots} exceeds the {len(self.users)} users drawn from: the users "
                "in the slots at one time must be distinct"
            )
        self.n_slots = int(n_slots)
        clash = set(extra_streams) & set(STREAMS)
        if clash or len(set(extra_streams)) != len(extra_streams):
            raise ValueError(
                f"extra_streams {list(extra_streams)} repeat a name or clash with {STREAMS}"
            )
        self.extra_streams = tuple(extra_streams)
        self.user = np.zeros(self.n_slots, dtype=np.int64)  # each slot's user (`begin` sets)
        self._begun = False  # whether every slot has a user (`begin` over all slots done)
        self.streams: Streams | None = None
        self._initial_state = self.model.snapshot() if hasattr(self.model, "snapshot") else None

    # ------------------------------------------------------------------ seeding
    @property
    def seeded(self) -> bool:
        return self.streams is not None

    def seed(self, seed: int | None, np_random: np.random.Generator | None = None) -> None:
        """Gymnasium's reset semantics for the driver's state.

        With a `seed`: the backend returns to its initial state and every stream is spawned
        anew from `seed`, so the same seed replays the same episodes. Without one, the streams
        continue (a further episode of a running env), or, on the very first reset of an
        unseeded env, are spawned from a seed drawn from `np_random` (the env's
        gymnasium ``np_random``, itself from OS entropy).
        """
        if seed is not None:
            self.restore_initial_state()
            self._begun = False
        elif self.streams is not None:
            return
        else:
            source = np_random if np_random is not None else np.random.default_rng()
            seed = int(source.integers(2**63))
        children = np.random.SeedSequence(seed).spawn(len(STREAMS) + len(self.extra_streams))
        users, time, candidates, responses = children[: len(STREAMS)]
        slot_users = [users] if self.n_slots == 1 else users.spawn(self.n_slots)
        self.streams = Streams(
            users=[np.random.default_rng(s) for s in slot_users],
            time=np.random.default_rng(time),
            candidates=np.random.default_rng(candidates),
            responses=np.random.default_rng(responses),
            extra={
                name: np.random.default_rng(child)
                for name, child in zip(self.extra_streams, children[len(STREAMS) :], strict=True)
            },
        )

    def restore_initial_state(self) -> None:
        """Back to the backend state the driver was built with (`restore`), else the backend's
        own initial state (`reset_state`)."""
        if self._initial_state is not None and hasattr(self.model, "restore"):
            self.model.restore(self._initial_state)
        elif hasattr(self.model, "reset_state"):
            self.model.reset_state()

    def _streams(self) -> Streams:
        if self.streams is None:
            raise RuntimeError("EpisodeDriver: call seed() (the env's reset) before drawing")
        return self.streams

    def _slots(self, slots: np.ndarray | Sequence[int] | None) -> np.ndarray:
        if slots is None:
            return np.arange(self.n_slots)
        out = np.asarray(slots, dtype=np.int64).reshape(-1)
        if ((out < 0) | (out >= self.n_slots)).any():
            raise ValueError(f"slots {out.tolist()} outside 0..{self.n_slots - 1}")
        return out

    # ------------------------------------------------------------------ episodes
    def draw_users(self, slots: np.ndarray | Sequence[int] | None = None) -> np.ndarray:
        """The next user of each of `slots` (one draw from each slot's users stream).

        With several slots, the users in the slots at one time are distinct (the backends step
        distinct users in one call): a slot whose draw is the user of another slot (one not
        being drawn for, or one drawn for earlier in `slots`) draws again from its own stream.
        One slot never redraws, so a 1-slot driver's users are its stream's draws."""
        streams = self._streams()
        idx = self._slots(slots)
        n = len(self.users)
        order = idx.tolist()  # Python ints: list indexing and set lookups without numpy scalars
        gens = streams.users
        draws = np.fromiter((gens[i].integers(n) for i in order), np.int64, len(order))
        users = self.users[draws].astype(np.int64)
        if self.n_slots > 1:
            busy = np.ones(self.n_slots, dtype=bool)
            busy[idx] = False
            taken = set(self.user[busy].tolist()) if self._begun else set()
            drawn = users.tolist()
            for j, slot in enumerate(order):
                user = drawn[j]
                while user in taken:
                    user = int(self.users[gens[slot].integers(n)])
                drawn[j] = user
                taken.add(user)
            users = np.array(drawn, dtype=np.int64)
        return users

    def begin(
        self,
        options: Mapping[str, Any] | None = None,
        slots: np.ndarray | Sequence[int] | None = None,
    ) -> np.ndarray:
        """Start an episode in `slots` (default all): draw their users, begin their sessions.

        ``options={"user": id}`` (an int, or one id per slot) names the user instead; the draw
        still happens, so the sequence of drawn users stays paired with a run that did not name
        one. Returns the (len(slots),) users, also stored in `user`.
        """
        idx = self._slots(slots)
        users = self.draw_users(idx)
        named = (options or {}).get("user")
        if named is not None:
            named = np.broadcast_to(np.asarray(named), users.shape)
            if (
                not np.issubdtype(named.dtype, np.integer)
                or ((named < 0) | (named >= self.model.n_users)).any()
            ):
                raise ValueError(
                    f"options['user'] must be user ids in 0..{self.model.n_users - 1}, "
                    f"got {named.tolist()}"
                )
            users = named.astype(np.int64)
            if self.n_slots > 1:
                others = np.ones(self.n_slots, dtype=bool)
                others[idx] = False
                held = self.user[others] if self._begun else np.zeros(0, np.int64)
                if len(np.unique(users)) != len(users) or np.isin(users, held).any():
                    raise ValueError(
                        f"options['user'] {users.tolist()} repeats a user or names one already "
                        "in another slot: the users in the slots at one time must be distinct"
                    )
        self.user[idx] = users
        self._begun = self._begun or len(idx) == self.n_slots
        self.model.begin_session(users.copy(), self._streams().time)
        return users.copy()

    def hold(self, users: np.ndarray) -> None:
        """Take `users` (one per slot) as the slots' current users, as if `begin` had drawn
        them: for a core that draws users itself (`envs.session_device`) before it asks
        `begin` to check named ones against the other slots'."""
        self.user[:] = users
        self._begun = True

    def history(self, slots: np.ndarray | Sequence[int] | None = None) -> np.ndarray:
        """(len(slots), history_len) int64 items the slots' users consumed, newest last,
        -1 padded."""
        return self.model.history(self.user[self._slots(slots)])

    def user_features(self, slots: np.ndarray | Sequence[int] | None = None) -> np.ndarray:
        """(len(slots), user_feature_dim) float32 static features of the slots' users."""
        return self.model.user_features(self.user[self._slots(slots)])

    def retrieve(
        self, generator: CandidateGenerator, slots: np.ndarray | Sequence[int] | None = None
    ) -> np.ndarray:
        """(len(slots), generator.n_candidates) candidates for the slots' users, drawn from
        their histories with the candidates stream."""
        return generator(self.history(slots), self._streams().candidates)

    def respond(
        self,
        slate: np.ndarray,
        slots: np.ndarray | Sequence[int] | None = None,
        scenario: np.ndarray | None = None,
    ) -> StepResult:
        """The backend's response to showing `slate` (len(slots), K) item ids to the slots'
        users (responses stream); the backend's user state advances. `scenario` (one code per
        slot, `simulators.protocol.REC`/`SEARCH`) is passed on only when given."""
        idx = self._slots(slots)
        slate = np.asarray(slate, dtype=np.int64)
        if slate.ndim != 2 or slate.shape[0] != len(idx):
            raise ValueError(
                f"slate must be (slots, K) = ({len(idx)}, K) item ids, got shape {slate.shape}"
            )
        n_items = self.catalogue.n_items
        if slate.size and (slate.min() < 0 or slate.max() >= n_items):
            raise ValueError(f"slate item ids must be in 0..{n_items - 1}")
        rng = self._streams().responses
        if scenario is None:
            return self.model.step(self.user[idx], slate, rng)
        return self.model.step(self.user[idx], slate, rng, scenario=np.asarray(scenario))


__all__ = ["STREAMS", "EpisodeDriver", "Streams"]
