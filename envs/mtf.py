"""`recgym/MTFSession-v0`: multi-task fusion in a session (Enhanced-State RL-MTF's MDP).

Per request the candidate generator retrieves N candidates, a multi-task ranking model (MTL,
`agents.mtl.MTLModel`) predicts per candidate click, valid consumption (watch > 10 s), watch
time, like, forward and follow, the agent's fusion weights turn five of those predictions into
one score, and the top ``list_size`` (the paper's l = 5) are shown.

The step logic is one batched core (`MTFCore`) over ``n_slots`` concurrent users (leading
axis), so it can serve as a native vector env; `MTFSessionEnv` is the `gym.Env` over one slot.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
from gymnasium import spaces

from recgym.envs.contract import (
    CANDIDATE_FEATURES,
    FLOAT_HIGH,
    FLOAT_LOW,
    UniformBox,
    slate_observation_space,
)
from recgym.envs.driver import EpisodeDriver
from recgym.envs.mtf_fusion import (
    ACTION_DIM,
    BIAS_RANGE,
    DEFAULT_REWARD_WEIGHTS,
    FUSED,
    HISTORY_FEATURES,
    MTF_CANDIDATE_FEATURES,
    MTF_CONTEXT_FEATURES,
    MTL_COLUMNS,
    POWER_RANGE,
    WATCH_REF_S,
    action_to_fusion,
    fused_values,
    item_rewards,
    product_fusion,
)
from recgym.envs.session import observe
from recgym.envs.vector import BatchedMDP, MDPEnv, MDPVectorEnv
from recgym.simulators.candidates import CandidateGenerator
from recgym.simulators.protocol import UserModel


def _clip(x: np.ndarray) -> np.ndarray:
    return np.clip(x, FLOAT_LOW, FLOAT_HIGH).astype(np.float32)


class MTFCore(BatchedMDP):
    """The batched step logic of MTFSession-v0 over ``n_slots`` users (see `MTFSessionEnv`),
    an `envs.vector.BatchedMDP` (so `MTFSessionEnv` is its 1-slot face and
    `mtf_vector_env` its native vector env).

    ``begin(slots)`` starts episodes and returns their observations; ``step(action, slots)``
    shows each slot its fused top-l and returns (obs, reward, terminated, truncated, info),
    every entry with a leading len(slots) axis. A slot whose episode ended must be begun again
    before it is stepped. ``reset_slots`` / ``step_slots`` are the same with the
    `BatchedMDP` signatures (and ``candidates`` in the info).
    """

    def __init__(
        self,
        backend: str | UserModel = "world",
        checkpoint: str | None = None,
        world_config: dict | None = None,
        world_dir: str | None = None,
        users: np.ndarray | Sequence[int] | None = None,
        *,
        n_slots: int = 1,
        mtl: Any = None,
        n_candidates: int = 50,
        list_size: int = 5,
        action_mode: str = "per_item",
        reward_weights: Mapping[str, float] | None = None,
        max_steps: int = 30,
        fusion: Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray] = product_fusion,
        power_range: tuple[float, float] = POWER_RANGE,
        bias_range: tuple[float, float] = BIAS_RANGE,
        mtl_warmup_requests: int = 8,
        name: str = "recgym/MTFSession-v0",
        device: str = "auto",
    ) -> None:
        self.name = name
        if action_mode not in ("per_item", "per_request"):
            raise ValueError(
                f"{name}: action_mode must be 'per_item' or 'per_request', got {action_mode!r}"
            )
        self.driver = EpisodeDriver(
            backend,
            checkpoint,
            world_config,
            world_dir,
            users=users,
            n_slots=n_slots,
            device=device,
        )
        self.n_slots = self.driver.n_slots
        self.action_mode = action_mode
        self.n_candidates, self.list_size = int(n_candidates), int(list_size)
        if not 0 < self.list_size <= self.n_candidates:
            raise ValueError(f"{name}: list_size {list_size} must be in 1..n_candidates")
        self.max_steps = int(max_steps)
        self.reward_weights = dict(
            DEFAULT_REWARD_WEIGHTS if reward_weights is None else reward_weights
        )
        unknown = set(self.reward_weights) - set(DEFAULT_REWARD_WEIGHTS)
        if unknown:
            raise ValueError(
                f"{name}: reward_weights name {sorted(unknown)}; Formula 2's behaviours are "
                f"{sorted(DEFAULT_REWARD_WEIGHTS)}"
            )
        self.fusion, self.power_range, self.bias_range = fusion, power_range, bias_range
        self.generator = CandidateGenerator(
            catalogue=self.catalogue, n_candidates=self.n_candidates
        )
        if mtl is None:
            key = None
            if isinstance(backend, str):  # a backend rebuilt from the same source: reuse
                key = (
                    backend,
                    checkpoint,
                    json.dumps(world_config, sort_keys=True),
                    world_dir,
                    self.n_candidates,
                    self.list_size,
                    int(mtl_warmup_requests),
                )
            mtl = _DEFAULT_MTL.get(key) if key is not None else None
            if mtl is None:
                mtl = self._fit_default_mtl(mtl_warmup_requests)
                if key is not None:
                    _DEFAULT_MTL[key] = mtl
        elif isinstance(mtl, str):
            from recgym.agents.mtl import MTLModel  # the ranking stage's model (agents/mtl.py)

            mtl = MTLModel.load(mtl, device=device)
        self.mtl = mtl.for_backend(self.model) if hasattr(mtl, "for_backend") else mtl
        s, n, n_items = self.n_slots, self.n_candidates, self.catalogue.n_items
        self.candidates = np.zeros((s, n), dtype=np.int64)
        self.steps = np.zeros(s, dtype=np.int64)
        self.last = np.zeros((s, 3))  # click rate, watch ratio, valid rate of the last request
        self.session = np.zeros((s, 2))  # minutes watched, valid consumptions this session
        self.exposure = np.zeros((s, self.catalogue.n_categories))
        self.shown = np.zeros((s, n_items), dtype=bool)
        self.rows = np.zeros((s, n, len(MTF_CANDIDATE_FEATURES)), dtype=np.float32)
        self.single_observation_space = self.observation_space()
        self.single_action_space = self.action_space()

    @property
    def model(self) -> UserModel:
        return self.driver.model

    @property
    def catalogue(self):
        return self.driver.catalogue

    # ------------------------------------------------------------------ spaces
    def observation_space(self) -> spaces.Dict:
        base = slate_observation_space(
            user_dim=self.model.user_feature_dim,
            n_candidates=self.n_candidates,
            row_width=len(MTF_CANDIDATE_FEATURES),
            n_users=self.model.n_users,
            n_items=self.catalogue.n_items,
            n_authors=self.catalogue.n_authors,
            n_categories=self.catalogue.n_categories,
        )

        def floats(*shape: int) -> spaces.Box:
            return spaces.Box(FLOAT_LOW, FLOAT_HIGH, shape=shape, dtype=np.float32)

        return spaces.Dict(
            {
                **base.spaces,
                "context": floats(len(MTF_CONTEXT_FEATURES)),
                "history": floats(len(HISTORY_FEATURES)),
            }
        )

    def action_space(self) -> spaces.Box:
        shape = (self.n_candidates, ACTION_DIM) if self.action_mode == "per_item" else (ACTION_DIM,)
        return UniformBox(-1.0, 1.0, shape=shape)

    # ------------------------------------------------------------------ episodes
    def seed(self, seed: int | None, np_random: np.random.Generator | None = None) -> None:
        self.driver.seed(seed, np_random)

    def reset_slots(
        self, slots: np.ndarray, options: Mapping[str, Any] | None = None
    ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        obs = self.begin(slots, options)
        idx = self._slots(slots)
        return obs, {
            "user_id": self.driver.user[idx].copy(),
            "candidates": self.candidates[idx].copy(),
        }

    def step_slots(
        self, actions: Any, slots: np.ndarray
    ) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        obs, reward, term, trunc, info = self.step(actions, slots)
        info["candidates"] = self.candidates[self._slots(slots)].copy()
        return obs, reward, term, trunc, info

    def _slots(self, slots: Sequence[int] | np.ndarray | None) -> np.ndarray:
        return self.driver._slots(slots)

    def begin(
        self, slots: Sequence[int] | np.ndarray | None = None, options: Mapping | None = None
    ) -> dict[str, np.ndarray]:
        """Start episodes in `slots` (default all): draw users, retrieve, observe."""
        idx = self._slots(slots)
        self.driver.begin(options, idx)
        self.steps[idx] = 0
        self.last[idx] = 0.0
        self.session[idx] = 0.0
        self.exposure[idx] = 0.0
        self.shown[idx] = False
        self.candidates[idx] = self.driver.retrieve(self.generator, idx)
        return self.observe(idx)

    def observe(self, idx: np.ndarray) -> dict[str, np.ndarray]:
        """The enhanced state of `idx`: Session-v0's entries, the MTL's predictions per
        candidate, the history summary and the context with the last valid rate."""
        users = self.driver.user[idx]
        session = np.stack(
            [self.steps[idx] / self.max_steps, self.last[idx, 0], self.last[idx, 1]], 1
        )
        obs = observe(
            self.model, users, self.candidates[idx], session, self.exposure[idx], self.shown[idx]
        )
        rank_cols = [CANDIDATE_FEATURES.index(c) for c in _RANKER_COLUMNS]
        pred = self.mtl.predict(
            users, self.candidates[idx], obs["user"], obs["candidates"][..., rank_cols]
        )
        mtl = pred.copy()
        mtl[..., 2] = pred[..., 2] / (pred[..., 2] + WATCH_REF_S)
        obs["candidates"] = _clip(np.concatenate([obs["candidates"], mtl], axis=-1))
        self.rows[idx] = obs["candidates"]
        so_far = np.stack(
            [
                np.log1p(self.session[idx, 0]),
                self.session[idx, 1] / (np.maximum(self.steps[idx], 1) * self.list_size),
            ],
            axis=1,
        )
        obs["context"] = _clip(np.concatenate([obs["context"], self.last[idx, 2:3], so_far], 1))
        obs["history"] = self._history_summary(users)
        return obs

    def _history_summary(self, users: np.ndarray) -> np.ndarray:
        cat = self.catalogue
        hist = self.model.history(users)
        valid = hist >= 0
        n = np.maximum(valid.sum(axis=1), 1)
        feats = cat.item_features(np.maximum(hist, 0))[..., :2] * valid[..., None]
        mean = feats.sum(axis=1) / n[:, None]
        counts = np.zeros((len(users), cat.n_categories))
        rows = np.repeat(np.arange(len(users)), hist.shape[1])
        np.add.at(counts, (rows, cat.category[np.maximum(hist, 0)].ravel()), valid.ravel())
        top = -np.sort(-counts, axis=1)[:, :3] / n[:, None]
        distinct = (counts > 0).sum(axis=1) / hist.shape[1]
        return _clip(np.concatenate([mean, top, distinct[:, None]], axis=1))

    def check_action(self, action: Any, n: int) -> np.ndarray:
        """The (n, N, 10) per-item fusion actions of `n` slots; ValueError naming the env."""
        want = (self.n_candidates, ACTION_DIM) if self.action_mode == "per_item" else (ACTION_DIM,)
        try:
            a = np.asarray(action, dtype=np.float64)
        except (TypeError, ValueError):
            raise ValueError(f"{self.name}: action must be numeric of shape {want}") from None
        if a.shape != (n, *want):
            raise ValueError(
                f"{self.name}: action_mode={self.action_mode!r} takes actions of shape "
                f"{want} per user, got {a.shape[1:] if a.shape[:1] == (n,) else a.shape}"
            )
        if not np.isfinite(a).all():
            raise ValueError(f"{self.name}: action must be finite (NaN or inf given)")
        if (np.abs(a) > 1.0 + 1e-6).any():
            raise ValueError(
                f"{self.name}: action must lie in [-1, 1], got values in "
                f"[{a.min():.3g}, {a.max():.3g}]"
            )
        if self.action_mode == "per_request":
            a = np.broadcast_to(a[:, None, :], (n, self.n_candidates, ACTION_DIM))
        return np.clip(a, -1.0, 1.0)

    def scores(self, action: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """(B, N, 10) per-item actions, (B, N, F) rows -> (B, N) fused scores."""
        power, bias = action_to_fusion(action, self.power_range, self.bias_range)
        return self.fusion(fused_values(rows), power, bias)

    def step(
        self, action: Any, slots: Sequence[int] | np.ndarray | None = None
    ) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        """Show each of `slots` the top-l of its fused scores; Formula 3 rewards."""
        idx = self._slots(slots)
        a = self.check_action(action, len(idx))
        score = self.scores(a, self.rows[idx])
        shown_index = np.argsort(-score, axis=1, kind="stable")[:, : self.list_size]
        slate = np.take_along_axis(self.candidates[idx], shown_index, axis=1)
        res = self.driver.respond(slate, idx)
        r = {k: np.asarray(v) for k, v in res.responses.items()}
        per_item = item_rewards(r, self.reward_weights)
        watch_s = r["watch_ms"] / 1000.0
        valid = watch_s > 10.0
        cats = self.catalogue.category[slate]
        self.exposure[idx] *= 0.8
        np.add.at(self.exposure, (np.repeat(idx, slate.shape[1]), cats.ravel()), 1.0)
        self.shown[idx[:, None], slate] = True
        ratio = r["watch_ms"] / np.maximum(self.catalogue.duration_ms[slate], 1)
        self.last[idx] = np.stack([r["click"].mean(1), ratio.mean(1), valid.mean(1)], axis=1)
        self.session[idx] += np.stack([watch_s.sum(1) / 60.0, valid.sum(1)], axis=1)
        self.steps[idx] += 1
        terminated = np.asarray(res.left, dtype=bool)
        truncated = (self.steps[idx] >= self.max_steps) & ~terminated
        info = {
            "user_id": self.driver.user[idx].copy(),
            "slate": slate,
            "shown_index": shown_index,
            "item_reward": per_item,
            "valid": valid,
            "watch_s": watch_s,
            "responses": r,
        }
        self.candidates[idx] = self.driver.retrieve(self.generator, idx)
        return self.observe(idx), per_item.sum(axis=1), terminated, truncated, info

    # ------------------------------------------------------------------ default MTL
    def _fit_default_mtl(self, requests_per_user: int) -> Any:
        """Without an `mtl`, fit one on `requests_per_user` uniformly random lists per user
        (at most 512 users) collected from this backend with a private generator, then return
        the backend to its initial state. A self-contained default for tests and quick starts
        (deterministic, so fitted once per process for a backend named by the same arguments:
        `_DEFAULT_MTL`); benchmarks pass an MTL fitted on the logs (`agents.mtl.MTLModel.fit`)."""
        from recgym.agents.deepfm import Vocabulary
        from recgym.agents.mtl import MTLConfig, MTLModel

        rng = np.random.default_rng(20240917)
        cat, model = self.catalogue, self.model
        users = rng.permutation(model.n_users)[:512].astype(np.int64)
        model.begin_session(users, rng)
        sparse, dense, labels = [], [], []
        rank_cols = [CANDIDATE_FEATURES.index(c) for c in _RANKER_COLUMNS]
        b, k = len(users), self.list_size
        for _ in range(max(int(requests_per_user), 1)):
            cand = self.generator(model.history(users), rng)
            pick = np.argsort(rng.random(cand.shape), axis=1)[:, :k]
            slate = np.take_along_axis(cand, pick, axis=1)
            zeros = np.zeros((b, 3))
            obs = observe(
                model,
                users,
                slate,
                zeros,
                np.zeros((b, cat.n_categories)),
                np.zeros((b, cat.n_items), dtype=bool),
            )
            res = model.step(users, slate, rng)
            r = res.responses
            watch = np.asarray(r["watch_ms"], dtype=np.float64)
            ratio = np.clip(watch / np.maximum(cat.duration_ms[slate], 1), 0.0, 2.0)
            labels.append(
                np.stack(
                    [
                        np.asarray(r.get(name, np.zeros_like(watch)), dtype=np.float64)
                        for name in ("click",)
                    ]
                    + [(watch > 10_000).astype(np.float64), ratio]
                    + [
                        np.asarray(r.get(name, np.zeros_like(watch)), dtype=np.float64)
                        for name in ("like", "forward", "follow")
                    ],
                    axis=-1,
                ).reshape(-1, 6)
            )
            dense.append(
                np.concatenate(
                    [
                        np.repeat(obs["user"], k, axis=0),
                        obs["candidates"][..., rank_cols].reshape(-1, len(rank_cols)),
                    ],
                    axis=1,
                )
            )
            sparse.append(
                np.stack(
                    [
                        np.repeat(users + 1, k),
                        slate.ravel() + 1,
                        cat.author[slate].ravel() + 1,
                        cat.category[slate].ravel() + 1,
                    ],
                    axis=1,
                )
            )
        self.driver.restore_initial_state()
        vocab = Vocabulary(
            users=np.arange(model.n_users),
            items=np.arange(cat.n_items),
            item_author=np.r_[0, cat.author + 1],
            item_category=np.r_[0, cat.category + 1],
            n_authors=cat.n_authors,
            n_categories=cat.n_categories,
        )
        fitted = MTLModel(MTLConfig(epochs=2, batch_size=512, min_steps=150))
        labels_a = np.concatenate(labels)
        fitted.fit_arrays(
            np.concatenate(sparse),
            np.concatenate(dense),
            labels_a,
            np.ones(len(labels_a), dtype=bool),
            vocab,
        )
        return _BackendIds(fitted)


_DEFAULT_MTL: dict[tuple, Any] = {}
"""Default MTLs fitted in this process, by the backend arguments and warm-up size."""


class _BackendIds:
    """An MTL fitted on backend ids: `for_backend` must not map them to raw log ids."""

    def __init__(self, mtl: Any) -> None:
        self.mtl = mtl

    def predict(self, *args: Any) -> np.ndarray:
        return self.mtl.predict(*args)


_RANKER_COLUMNS = (
    "log_duration",
    "log_popularity",
    "history_category_share",
    "history_author_share",
)
"""The MTL's dense item inputs (`agents.baselines.RANKER_FEATURES`), read from the rows."""


class MTFSessionEnv(MDPEnv):
    """A session of requests; the agent sets the fusion weights that rank each request's list.

    ## Description
    A user opens the app. At every request the candidate generator retrieves ``n_candidates``
    items; the MTL (``mtl``: an `agents.mtl.MTLModel` fitted on the logs, or a path to one;
    without it the env fits one on uniformly random lists it collects from its backend)
    predicts per candidate click, valid consumption, watch time, like, forward and follow;
    the fusion (``fusion``, default `product_fusion`: ``prod_i (p_i + bias_i) ** power_i``
    over `FUSED`, the production form, since the paper's Formula 1 is not in our text) turns
    five of them into one score per candidate, and the top ``list_size`` are shown.

    ## Action Space
    ``action_mode="per_item"`` (Enhanced-State RL-MTF): ``Box(-1, 1, (n_candidates, 10))``,
    one fusion vector per user-item pair; ``"per_request"`` (IntegratedRL-MTF and the other
    baselines): ``Box(-1, 1, (10,))`` applied to every candidate. A vector is
    ``[power_1..power_5, bias_1..bias_5]`` over `FUSED`; powers map linearly to
    ``power_range`` (default [0, 2]) and biases to ``bias_range`` (default [0.01, 1]).

    ## Observation Space
    The enhanced state as a ``Dict`` (`envs.contract.slate_observation_space` keys, with
    its own widths): ``"user"`` (U,) static user features; ``"context"`` (7,)
    `MTF_CONTEXT_FEATURES` (flush num = request index / max_steps, last request's click
    rate, watch ratio and valid rate, history fill, and the session so far: log1p of the
    minutes watched and valid consumptions per item shown); ``"history"`` (6,) `HISTORY_FEATURES`
    (the behaviour sequence summarised: mean log duration and popularity of the last
    consumed items, top-3 category shares, share of distinct categories);
    ``"candidates"`` (N, 13) `MTF_CANDIDATE_FEATURES` (Session-v0's 7 columns, then the
    MTL's predictions `MTL_COLUMNS`); ``"item_id"``, ``"author_id"``, ``"category_id"``
    (N,), ``"mask"`` (N,) all ones, ``"user_id"`` (1,).

    ## Starting State
    As Session-v0: ``reset`` draws a user from ``users`` with the driver's seeded streams
    (`envs.driver.EpisodeDriver`), so under one seed every policy meets the same users in the
    same order; ``reset(seed=...)`` returns the backend to its initial state (``world_dir``:
    the world as it stood after its logs).

    ## Rewards
    Formula 2 per shown item, ``sum_i w_i v_i`` over watch seconds, valid consumption (watch
    > 10 s), like, forward and follow (``reward_weights``, default
    `DEFAULT_REWARD_WEIGHTS`); the step reward is Formula 3, the sum over the list.
    ``info`` carries per item ``item_reward``, ``valid``, ``watch_s``, the ``slate`` and the
    candidate indices shown (``shown_index``).

    ## Episode End
    ``terminated`` when the user leaves; ``truncated`` after ``max_steps`` requests.

    ## Invalid actions
    A wrong shape, NaN/inf, or values outside [-1, 1]: ``ValueError`` naming the env.

    ## Arguments
    backend, checkpoint, world_config, world_dir, users (as Session-v0), mtl, n_candidates
    (50), list_size (5), action_mode ("per_item" | "per_request"), reward_weights,
    max_steps (30), fusion, power_range, bias_range, mtl_warmup_requests (8: requests per
    user of the default MTL's collection).

    ## Version History
    v0: initial version.
    """

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("name", "recgym/MTFSession-v0")
        self.attach(MTFCore(n_slots=1, **kwargs))

    @property
    def core(self) -> MTFCore:
        return self.mdp  # type: ignore[return-value]

    @property
    def model(self) -> UserModel:
        return self.core.model

    @property
    def catalogue(self):
        return self.core.catalogue

    @property
    def driver(self) -> EpisodeDriver:
        return self.core.driver


def mtf_vector_env(num_envs: int = 1, **kwargs: Any) -> MDPVectorEnv:
    """`recgym/MTFSession-v0`'s native vector env: `num_envs` concurrent sessions."""
    kwargs.setdefault("name", "recgym/MTFSession-v0")
    return MDPVectorEnv(MTFCore(n_slots=num_envs, **kwargs))


__all__ = [
    "ACTION_DIM",
    "BIAS_RANGE",
    "DEFAULT_REWARD_WEIGHTS",
    "FUSED",
    "HISTORY_FEATURES",
    "MTFCore",
    "MTFSessionEnv",
    "MTF_CANDIDATE_FEATURES",
    "MTF_CONTEXT_FEATURES",
    "MTL_COLUMNS",
    "POWER_RANGE",
    "action_to_fusion",
    "fused_values",
    "item_rewards",
    "mtf_vector_env",
    "product_fusion",
]
