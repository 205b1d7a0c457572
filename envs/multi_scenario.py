"""`recgym/MultiScenario-v0`: next item(s) for a user who moves between the feed and search.

`MultiScenarioMDP` holds the dynamics over ``n_slots`` concurrent sessions
(`envs.vector.BatchedMDP`, one backend call per step for all slots); `MultiScenarioEnv` is
its 1-slot `gym.Env` and `multi_scenario_vector_env` its native vector env.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from gymnasium import spaces

from recgym.data.writers import KEYWORD_TOKEN_BASE
from recgym.envs.contract import CANDIDATE_FEATURES, slate_action_space, slate_observation_space
from recgym.envs.driver import EpisodeDriver
from recgym.envs.session import observe, record_request, slates_from_actions
from recgym.envs.vector import BatchedMDP, Info, MDPEnv, MDPVectorEnv, Obs
from recgym.simulators.candidates import CandidateGenerator
from recgym.simulators.protocol import REC, SEARCH, Catalogue, UserModel

ENV_ID = "recgym/MultiScenario-v0"
PAPER_REWARD = {"click": 1.0, "forward": 2.0, "follow": 3.0, "like": 3.0}
"""The RUIE paper's rewards per shown item (section 3.3: click 1, share/forward 2, follow 3,
like 3)."""
SEQ_RESPONSES: tuple[str, ...] = ("click", "like", "follow", "forward")
"""Columns of ``seq_response``: the behaviours recorded with each item of the sequence."""
QUERY_LEN = 2
"""Query tokens per request: the intent's token and one noise token (as `data.writers` writes
KuaiSAR's ``keyword``)."""


class MultiScenarioMDP(BatchedMDP):
    """MultiScenario-v0's dynamics over ``n_slots`` concurrent sessions (see `MultiScenarioEnv`).

    Per-slot state (leading slot axis): ``scenario``, ``query`` (category, -1 in the feed),
    ``query_tokens``, ``candidates``, ``session_exposure``, ``shown``, ``last``, ``steps``.
    Per-user state (leading user axis, kept across episodes like the backend's own state and
    cleared on a seeded reset): the cross-scenario behaviour sequence ``seq_item``,
    ``seq_scenario``, ``seq_response``.
    """

    def __init__(
        self,
        backend: str | UserModel = "world",
        checkpoint: str | None = None,
        world_config: dict | None = None,
        slate_size: int = 6,
        n_candidates: int = 50,
        action_mode: str = "scores",
        reward_weights: dict[str, float] | None = None,
        max_steps: int = 100,
        users: np.ndarray | None = None,
        world_dir: str | None = None,
        seq_len: int = 20,
        n_slots: int = 1,
        name: str = ENV_ID,
        device: str = "auto",
    ):
        self.name = name
        if action_mode not in ("scores", "discrete"):
            raise ValueError(
                f"{name}: action_mode must be 'scores' or 'discrete', got {action_mode!r}"
            )
        if backend == "learned":
            from recgym.simulators.learned.scenario import ScenarioSimulator

            if checkpoint is None:
                raise ValueError(f"{name}: backend='learned' needs checkpoint=DIR")
            try:
                backend = ScenarioSimulator.load(checkpoint)
            except ValueError as exc:
                raise ValueError(f"{name}: {exc}") from None
        self.driver = EpisodeDriver(
            backend,
            checkpoint,
            world_config,
            world_dir,
            users=users,
            n_slots=n_slots,
            extra_streams=("scenario",),
            device=device,
        )
        if not callable(getattr(self.model, "next_scenario", None)):
            raise ValueError(
                f"{name}: the backend {type(self.model).__name__} has no next_scenario(users, "
                "rng); use the world"
            )
        self.n_slots = self.driver.n_slots
        self.action_mode = action_mode
        self.slate_size = 1 if action_mode == "discrete" else int(slate_size)
        self.n_candidates = int(n_candidates)
        if not 1 <= self.slate_size <= self.n_candidates:
            raise ValueError(f"{name}: slate_size {slate_size} not in 1..n_candidates")
        if int(seq_len) < 1 or int(max_steps) < 1:
            raise ValueError(f"{name}: seq_len and max_steps must be >= 1")
        self.max_steps, self.seq_len = int(max_steps), int(seq_len)
        self.reward_weights = dict(PAPER_REWARD if reward_weights is None else reward_weights)
        unknown = set(self.reward_weights) - set(self.model.behaviours)
        if unknown:
            raise ValueError(
                f"{name}: reward_weights name behaviours the backend lacks: {sorted(unknown)}"
            )
        cat = self.catalogue
        self.generator = CandidateGenerator(catalogue=cat, n_candidates=self.n_candidates)
        self.single_observation_space = self._observation_space()
        self.single_action_space = slate_action_space(action_mode, self.n_candidates)
        s, n_users = self.n_slots, int(self.model.n_users)
        self.scenario = np.zeros(s, dtype=np.int64)
        self.query = np.full(s, -1, dtype=np.int64)
        self.query_tokens = np.full((s, QUERY_LEN), -1, dtype=np.int64)
        self.candidates = np.zeros((s, self.n_candidates), dtype=np.int64)
        self.session_exposure = np.zeros((s, cat.n_categories))
        self.shown = np.zeros((s, cat.n_items), dtype=bool)
        self.last = np.zeros((s, 2))
        self.steps = np.zeros(s, dtype=np.int64)
        self.seq_item = np.full((n_users, self.seq_len), -1, dtype=np.int64)
        self.seq_scenario = np.full((n_users, self.seq_len), -1, dtype=np.int64)
        self.seq_response = np.zeros((n_users, self.seq_len, len(SEQ_RESPONSES)), dtype=np.int8)

    def _observation_space(self) -> spaces.Dict:
        cat = self.catalogue
        base = slate_observation_space(
            user_dim=self.model.user_feature_dim,
            n_candidates=self.n_candidates,
            row_width=len(CANDIDATE_FEATURES),
            n_users=self.model.n_users,
            n_items=cat.n_items,
            n_authors=cat.n_authors,
            n_categories=cat.n_categories,
        )
        top_token = KEYWORD_TOKEN_BASE + cat.n_categories - 1
        extra = {
            "scenario": spaces.Box(0, 1, shape=(1,), dtype=np.int64),
            "query": spaces.Box(-1, top_token, shape=(QUERY_LEN,), dtype=np.int64),
            "seq_item": spaces.Box(-1, cat.n_items - 1, shape=(self.seq_len,), dtype=np.int64),
            "seq_scenario": spaces.Box(-1, 1, shape=(self.seq_len,), dtype=np.int64),
            "seq_response": spaces.Box(
                0, 1, shape=(self.seq_len, len(SEQ_RESPONSES)), dtype=np.int8
            ),
        }
        return spaces.Dict({**dict(base.spaces), **extra})

    @property
    def model(self) -> UserModel:
        return self.driver.model

    @property
    def catalogue(self) -> Catalogue:
        return self.driver.catalogue

    # ------------------------------------------------------------------ BatchedMDP
    def seed(self, seed: int | None, np_random: np.random.Generator | None = None) -> None:
        if seed is not None:
            self.seq_item[:] = -1
            self.seq_scenario[:] = -1
            self.seq_response[:] = 0
        self.driver.seed(seed, np_random)

    def reset_slots(
        self, slots: np.ndarray, options: Mapping[str, Any] | None = None
    ) -> tuple[Obs, Info]:
        users = self.driver.begin(options, slots)
        self.session_exposure[slots] = 0.0
        self.shown[slots] = False
        self.last[slots] = 0.0
        self.steps[slots] = 0
        self._next_request(slots)
        return self._observe(slots), self._request_info(slots, users)

    def step_slots(
        self, actions: Any, slots: np.ndarray
    ) -> tuple[Obs, np.ndarray, np.ndarray, np.ndarray, Info]:
        if not self.driver.seeded:
            raise RuntimeError(f"{self.name}: call reset() before step()")
        slate = self.slates_from_actions(actions, slots)
        scenario = self.scenario[slots].copy()
        res = self.driver.respond(slate, slots, scenario=scenario)
        r = res.responses
        reward = np.zeros(len(slots))
        for behaviour, weight in self.reward_weights.items():
            reward += weight * np.asarray(r[behaviour], dtype=np.float64).sum(axis=1)
        cats = record_request(self, slots, slate, r)
        self._record(self.driver.user[slots], slate, scenario, r)
        terminated = np.asarray(res.left, dtype=bool).copy()
        truncated = (self.steps[slots] >= self.max_steps) & ~terminated
        info: Info = {
            "user_id": self.driver.user[slots].copy(),
            "slate": slate,
            "scenario_shown": scenario,
            "categories": cats,
            "responses": {name: np.asarray(value) for name, value in r.items()},
            "candidates_shown": self.candidates[slots].copy(),
        }
        self._next_request(slots)
        info.update(self._request_info(slots, info["user_id"]))
        return self._observe(slots), reward, terminated, truncated, info

    # ------------------------------------------------------------------ helpers
    def _next_request(self, slots: np.ndarray) -> None:
        """The next scenario and query from the backend, then the request's candidates: search
        candidates from the query's category (`CandidateGenerator.for_categories`), feed ones
        from the history (both from the candidates stream)."""
        streams = self.driver.streams
        assert streams is not None
        users = self.driver.user[slots]
        scenario, query = self.model.next_scenario(users, streams.extra["scenario"])
        noise = streams.extra["scenario"].integers(0, KEYWORD_TOKEN_BASE, len(slots))
        is_search = scenario == SEARCH
        self.scenario[slots] = scenario
        self.query[slots] = np.where(is_search, query, -1)
        self.query_tokens[slots] = np.where(
            is_search[:, None], np.stack([KEYWORD_TOKEN_BASE + query, noise], axis=1), -1
        )
        cand = self.driver.retrieve(self.generator, slots)
        if is_search.any():
            cand[is_search] = self.generator.for_categories(query[is_search], streams.candidates)
        self.candidates[slots] = cand

    def _record(
        self, users: np.ndarray, slate: np.ndarray, scenario: np.ndarray, r: Mapping[str, Any]
    ) -> None:
        """Append each user's clicked items (in slate order) with the request's scenario and
        their responses to the cross-scenario sequence (newest last, -1 padded)."""
        click = np.asarray(r["click"], dtype=bool)

        resp = np.stack(
            [np.asarray(r.get(b, np.zeros_like(click)), dtype=np.int8) for b in SEQ_RESPONSES],
            axis=-1,
        )
        items = np.concatenate([self.seq_item[users], np.where(click, slate, -1)], axis=1)
        scen = np.concatenate(
            [self.seq_scenario[users], np.where(click, scenario[:, None], -1)], axis=1
        )
        resp = np.concatenate([self.seq_response[users], resp * click[..., None]], axis=1)
        order = np.argsort(items >= 0, axis=1, kind="stable")[:, -self.seq_len :]
        self.seq_item[users] = np.take_along_axis(items, order, axis=1)
        self.seq_scenario[users] = np.take_along_axis(scen, order, axis=1)
        self.seq_response[users] = np.take_along_axis(resp, order[..., None], axis=1)

    def _request_info(self, slots: np.ndarray, users: np.ndarray) -> Info:
        return {
            "user_id": np.asarray(users, dtype=np.int64).copy(),
            "candidates": self.candidates[slots].copy(),
            "scenario": self.scenario[slots].copy(),
            "query_category": self.query[slots].copy(),
        }

    def slates_from_actions(self, actions: Any, slots: np.ndarray) -> np.ndarray:
        """(len(slots), slate_size) item ids shown: the top-`slate_size` candidates by score,
        best first, or the chosen candidate; ValueError naming the env for an invalid action
        (`envs.session.slates_from_actions`, shared with Session-v0)."""
        return slates_from_actions(
            self.name, actions, self.candidates[slots], self.action_mode, self.slate_size
        )

    def _observe(self, slots: np.ndarray) -> Obs:
        users = self.driver.user[slots]
        context = np.empty((len(slots), 3), dtype=np.float64)
        context[:, 0] = self.steps[slots] / self.max_steps
        context[:, 1:] = self.last[slots]
        obs = observe(
            self.model,
            users,
            self.candidates[slots],
            session=context,
            session_exposure=self.session_exposure[slots],
            shown=self.shown[slots],
        )
        obs["scenario"] = self.scenario[slots].reshape(-1, 1).copy()
        obs["query"] = self.query_tokens[slots].copy()
        obs["seq_item"] = self.seq_item[users].copy()
        obs["seq_scenario"] = self.seq_scenario[users].copy()
        obs["seq_response"] = self.seq_response[users].copy()
        return obs


class MultiScenarioEnv(MDPEnv):
    """One user's session of requests, each in the feed or in search, as KuaiSAR records them.

    ## Description
    A user (drawn from the backend's population) opens the app. Before every request the backend
    says which scenario it is in and, for a search, its query (`World.next_scenario`: on the
    world, an unmet search intent makes a search likelier and is its query, and what is found in
    search kindles feed interests; `simulators/scenarios.py`). Feed candidates come from the
    user's history, popularity and at random; search candidates mostly from the query's
    category. The agent ranks the candidates; the top ``slate_size`` are shown (``K = 1`` is
    next-item recommendation); the backend responds per item and decides whether the user leaves.

    ## Action Space
    ``action_mode="scores"``: ``Box(-1, 1, (n_candidates,))``, a score per candidate; the
    ``slate_size`` highest are shown, best first. ``action_mode="discrete"``:
    ``Discrete(n_candidates)``, the one item shown (slate size 1).

    ## Observation Space
    A ``Dict``: Session-v0's contract entries (`envs.contract`: ``"user"``, ``"context"``,
    ``"candidates"`` (n_candidates, 7) CANDIDATE_FEATURES, ``"item_id"``, ``"author_id"``,
    ``"category_id"``, ``"mask"``, ``"user_id"``), plus ``"scenario"`` int64 (1,) this request's
    scenario (0 feed, 1 search); ``"query"`` int64 (2,) its query tokens (``1000 + query
    category`` and a noise token in 0..999, as `data.writers` writes KuaiSAR's ``keyword``;
    -1 -1 in the feed); and the cross-scenario behaviour sequence of the user's clicked items,
    newest last, -1 padded: ``"seq_item"`` int64 (seq_len,), ``"seq_scenario"`` int64
    (seq_len,) and ``"seq_response"`` int8 (seq_len, 4) (click, like, follow, forward). The
    sequence is the env's record of what the user clicked in this env since its last seeded
    reset (it starts empty: the backend's history carries no scenarios) and persists across
    the user's episodes.

    ## Starting State
    ``reset`` draws a user, begins their session in the backend, draws the first scenario and
    query and retrieves candidates. ``reset(seed=...)`` returns the backend to its initial state
    and clears the sequences. Randomness: the driver's four streams (users, time, candidates,
    responses) plus a ``scenario`` stream for the scenario switch and query noise, so under one
    seed every policy meets the same users in the same order.

    ## Rewards
    ``sum_k sum_b reward_weights[b] * response_b[k]`` over shown items; default the paper's
    click 1, forward 2, follow 3, like 3 (`PAPER_REWARD`).

    ## Episode End
    ``terminated`` when the user leaves; ``truncated`` after ``max_steps`` requests.

    ## Invalid actions
    ``ValueError`` naming the env for a Discrete index outside [0, n_candidates) or not an
    integer, scores not of shape (n_candidates,), NaN or infinite scores.

    ## Arguments
    backend ("world" | "learned": a `simulators.learned.scenario.ScenarioSimulator` checkpoint
    (a learned simulator with its scenario.json) | a UserModel with ``next_scenario``),
    checkpoint, world_config, world_dir, slate_size (6),
    n_candidates (50), action_mode ("scores" | "discrete"), reward_weights, max_steps (100),
    users, seq_len (20).

    ## Vector env
    ``gym.make_vec("recgym/MultiScenario-v0", num_envs=N, vectorization_mode=
    "vector_entry_point")`` steps N sessions with one backend call (`MultiScenarioMDP`).

    ## Version History
    v0: initial version.
    """

    mdp: MultiScenarioMDP

    def __init__(self, *args: Any, **kwargs: Any):
        self.attach(MultiScenarioMDP(*args, **kwargs))

    @property
    def driver(self) -> EpisodeDriver:
        return self.mdp.driver

    @property
    def model(self) -> UserModel:
        return self.mdp.model

    @property
    def catalogue(self) -> Catalogue:
        return self.mdp.catalogue


def multi_scenario_vector_env(num_envs: int = 1, **kwargs: Any) -> MDPVectorEnv:
    """`recgym/MultiScenario-v0`'s native vector env: `num_envs` concurrent sessions."""
    return MDPVectorEnv(MultiScenarioMDP(n_slots=num_envs, **kwargs))


__all__ = [
    "ENV_ID",
    "PAPER_REWARD",
    "QUERY_LEN",
    "REC",
    "SEQ_RESPONSES",
    "MultiScenarioEnv",
    "MultiScenarioMDP",
    "multi_scenario_vector_env",
]
