"""Online DQN on `recgym/Session-v0` (one item per request) with a per-candidate shared Q-network.

Tianshou's own `DQN` and `DiscreteQLearningPolicy` do all the learning; this file only supplies
the network, the config, the training loop's wiring (seeded per the Tianshou 2 notes) and
save/load. For slate evaluation wrap the result in `agents.baselines.QSlatePolicy`, which shows
the top-K candidates by Q-value.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces
from tianshou.algorithm import DQN
from tianshou.algorithm.modelfree.dqn import DiscreteQLearningPolicy
from tianshou.algorithm.optim import AdamOptimizerFactory
from tianshou.data import Batch, Collector, CollectStats, VectorReplayBuffer
from tianshou.data.batch import create_value as _tianshou_create_value
from tianshou.data.buffer import manager as _buffer_manager
from tianshou.data.collector import DEFAULT_BUFFER_MAXSIZE
from tianshou.utils.torch_utils import policy_within_training_step
from torch import nn

from recgym.agents.checkpoint import json_path, jsonable
from recgym.agents.progress import BarLogger, stage_bar
from recgym.agents.seeding import seed_buffer_sampler, seeded_global_rngs
from recgym.agents.tb import attach
from recgym.agents.training import OnlineRunConfig, epoch_plan, off_policy_params
from recgym.device import load_state, resolve_device
from recgym.envs import register_all
from recgym.envs.contract import RowLayout, row_features, row_layout
from recgym.envs.session import SESSION_FEATURES
from recgym.envs.tianshou_vector import TianshouVectorEnv

ENV_ID = "recgym/Session-v0"


class CandidateQNet(nn.Module):
    """Q(s, i) for every candidate i by one MLP over [user + session part ⊕ candidate i's row].

    Input: the flat observation of `envs.contract.FlattenCandidates` (``[user | context |
    candidate rows]``), split by the contract's `RowLayout` (rows of CANDIDATE_FEATURES on
    Session-v0; UserAuthor-v0 rows add author and user-author columns). The first layer is
    applied to the context once per observation and to each candidate row, then summed (the
    same function as a layer on the concatenation, without copying the context N times).
    Weights are shared across candidates, so the network scores any candidate set and is
    invariant to candidate order.
    """

    def __init__(self, *, layout: RowLayout, hidden_sizes: tuple[int, ...] = (64, 64)) -> None:
        super().__init__()
        if not hidden_sizes:
            raise ValueError("CandidateQNet needs at least one hidden layer")
        self.layout = layout
        self.user_dim = layout.user_dim
        self.n_candidates = layout.n_rows
        self.context_dim = layout.context_dim
        self.n_features = layout.row_dim
        self.context_in = nn.Linear(self.context_dim, hidden_sizes[0])
        self.candidate_in = nn.Linear(self.n_features, hidden_sizes[0], bias=False)
        layers: list[nn.Module] = [nn.ReLU()]
        for a, b in zip(hidden_sizes[:-1], hidden_sizes[1:], strict=True):
            layers += [nn.Linear(a, b), nn.ReLU()]
        layers.append(nn.Linear(hidden_sizes[-1], 1))
        self.head = nn.Sequential(*layers)

    def forward(
        self, obs: np.ndarray | torch.Tensor, state: Any = None, info: Any = None
    ) -> tuple[torch.Tensor, Any]:
        """(B, obs_dim) flat observations -> ((B, n_candidates) Q-values, state)."""
        x = torch.as_tensor(obs, dtype=torch.float32, device=self.context_in.weight.device)
        context, cands = self.layout.split(x)
        h = self.context_in(context).unsqueeze(1) + self.candidate_in(cands)
        return self.head(h).squeeze(-1), state


@dataclass(kw_only=True)
class DQNConfig(OnlineRunConfig):
    """Online DQN on Session-v0 in `action_mode="discrete"`; defaults fit a small world in ~20 s.
    The run's budget and collection settings are `agents.training.OnlineRunConfig`'s."""

    lr: float = 1e-3
    """Adam learning rate."""
    gamma: float = 0.9
    """Discount per request."""
    n_step: int = 1
    """n-step return horizon."""
    eps_start: float = 1.0
    """ε of ε-greedy exploration at the first training step (after warm-up)."""
    eps_end: float = 0.05
    """ε after `eps_decay_steps` env steps (then constant)."""
    eps_decay_steps: int = 4_000
    """Env steps over which ε falls linearly from eps_start to eps_end."""
    batch_size: int = 64
    """Transitions per gradient step."""
    target_update_freq: int = 100
    """Gradient steps between hard target-network updates (0: no target network)."""
    hidden_sizes: tuple[int, ...] = (64, 64)
    """Widths of the per-candidate MLP."""
    huber_delta: float | None = None
    """Huber loss threshold on the TD error; None for MSE."""
    double: bool = True
    """Double DQN targets."""


@dataclass(kw_only=True)
class RunStats:
    """What a training run (`train_dqn`, and the TD3/CQL/RLUR trainers) measured."""

    learning_curve: list[tuple[int, float]] = field(default_factory=list)
    """(env step online / gradient step offline, mean greedy test return) per test step."""
    best_reward: float = float("nan")
    env_steps: int = 0
    gradient_steps: int = 0
    seconds: float = 0.0
    update_seconds: float = 0.0


DQNRunStats = RunStats
"""The name `train_dqn` has always returned."""


class CurveLogger(BarLogger):
    """Keeps (env step, mean test return) of every test step in memory and moves the run's one
    progress bar (`agents.progress.BarLogger`: `bar` may be None); logs nothing else."""

    def __init__(self, bar: Any = None, counts: Literal["env", "update"] = "env") -> None:
        super().__init__(bar, counts)
        self.curve: list[tuple[int, float]] = []

    def log_test_data(self, log_data: dict, step: int) -> None:
        self.curve.append((int(step), float(log_data["returns_stat"]["mean"])))


class NewRowsNullCheckBuffer(VectorReplayBuffer):
    """A `VectorReplayBuffer` whose ``hasnull()`` scans only the rows added since its last
    clean answer, with the full scan's answer.

    Tianshou 2.0.1's off-policy trainer calls ``buffer.hasnull()`` after every collect (no
    option turns it off), and `ReplayBuffer.hasnull` gathers the whole buffer (``self[:]``:
    every valid row's obs, obs_next, act, ...) and runs ``pd.isnull`` over it, so a training
    step of 8 env steps re-scans thousands of rows: a quarter of the CPU of a 6,000-step DQN
    run (default config). Here `add` records the rows it wrote (``add`` returns them), and
    ``hasnull`` checks those, which gives the full scan's answer because a row that answered
    clean and has not been written since is still clean. The answer is Tianshou's (True on a
    NaN or None anywhere in a valid row; the trainer then raises its own
    `MalformedBufferError`): after a True the unchecked rows are kept, so asking again scans
    them again, as the full scan would.

    It falls back to the full scan (then tracks rows again) when the rows alone cannot say:
    at the first check, after ``reset``/``set_batch``/``set_array_at_key`` (writes that bypass
    ``add``), after the stored keys change (a key that first appears in a later ``add`` fills
    the older rows with None, which ``hasnull`` reports), for ``stack_num > 1`` or
    ``ignore_obs_next`` buffers (whose rows read their neighbours), and once more rows were
    added unchecked than the buffer holds (so the tracking stays small). Writes through a
    sub-buffer (``buffer.buffers[i].add``) bypass the manager and are not tracked: use this
    buffer's ``add`` (the Collector does). Sampling and contents are `VectorReplayBuffer`'s.

    Its storage is allocated on zero pages (`_zero_pages_allocation`): Tianshou allocates the
    whole buffer at the first ``add`` with ``np.full(shape, 0)``, which writes every byte, while
    ``np.zeros`` takes pages that cost only once written; same keys, dtypes, shapes and values.
    A run that fills a fraction of its buffer pays for that fraction (`eval_collector_buffer`:
    a test Collector's default buffer of flat Session-v0 observations was 300 MB written at the
    first test episode, half a second of a 2,000-step DQN run in a fresh process).
    """

    def __init__(self, total_size: int, buffer_num: int, **kwargs: Any) -> None:
        self._rows_to_check: list[np.ndarray] = []
        self._n_unchecked = 0
        self._check_all = True
        self._checked_keys: tuple[str, ...] | None = None
        super().__init__(total_size, buffer_num, **kwargs)

    def add(
        self, batch: Any, buffer_ids: np.ndarray | list[int] | None = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        if self._meta.get_keys():
            out = super().add(batch, buffer_ids)
        else:  # the first add allocates the whole buffer
            with _zero_pages_allocation():
                out = super().add(batch, buffer_ids)
        self._rows_to_check.append(np.asarray(out[0], dtype=np.int64))
        self._n_unchecked += len(out[0])
        if self._n_unchecked > self.maxsize:  # unasked for a whole buffer: scan it all
            self._mark_all()
        return out

    def hasnull(self) -> bool:
        keys = _key_paths(self._meta)
        if (
            self._check_all
            or keys != self._checked_keys
            or self.stack_num != 1
            or not self._save_obs_next
        ):
            found = super().hasnull()
        elif self._rows_to_check:
            rows = np.unique(np.concatenate(self._rows_to_check))
            found = self[rows].hasnull()
        else:
            found = False
        if not found:
            self._mark_all()
            self._check_all, self._checked_keys = False, keys
        return found

    def reset(self, keep_statistics: bool = False) -> None:
        super().reset(keep_statistics=keep_statistics)
        self._mark_all()

    def set_batch(self, batch: Any) -> None:
        super().set_batch(batch)
        self._mark_all()

    def set_array_at_key(
        self,
        seq: np.ndarray,
        key: str,
        index: Any = None,
        default_value: float | None = None,
    ) -> None:
        super().set_array_at_key(seq, key, index, default_value)
        self._mark_all()

    def __setstate__(self, state: dict[str, Any]) -> None:
        """Unpickled or `load_hdf5`-ed (no ``__init__``): the next check is a full one."""
        super().__setstate__(state)
        self._mark_all()

    def _mark_all(self) -> None:
        """Forget the tracked rows; the next check is a full scan."""
        self._rows_to_check, self._n_unchecked = [], 0
        self._check_all, self._checked_keys = True, None


def eval_collector_buffer(n_envs: int) -> NewRowsNullCheckBuffer:
    """The buffer Tianshou's `Collector` makes when given none (`DEFAULT_BUFFER_MAXSIZE` rows
    per env: 100,000 rows of flat observations for 10 test envs, 300 MB written at the first
    test episode), on zero pages: test episodes touch only the rows they write."""
    return NewRowsNullCheckBuffer(DEFAULT_BUFFER_MAXSIZE * n_envs, n_envs)


def _zero_pages_value(inst: Any, size: int, stack: bool = True) -> Any:
    """Tianshou's `create_value` (the buffer's empty storage for rows like `inst`) with numeric
    and bool arrays from ``np.zeros`` (untouched pages stay unallocated) instead of
    ``np.full(shape, 0)``; the same keys, shapes, dtypes and values. Anything else (object
    arrays, tensors, scalars) goes to Tianshou's function."""
    if isinstance(inst, np.ndarray) and issubclass(inst.dtype.type, np.bool_ | np.number):
        shape = (size, *inst.shape) if stack else (size, *inst.shape[1:])
        return np.zeros(shape, dtype=inst.dtype.type)
    if isinstance(inst, dict | Batch):
        empty = Batch()
        for key, value in inst.items():
            empty.__dict__[key] = _zero_pages_value(value, size, stack)
        return empty
    return _tianshou_create_value(inst, size, stack)


@contextmanager
def _zero_pages_allocation() -> Iterator[None]:
    """While open, `ReplayBufferManager.add` allocates its storage with `_zero_pages_value`
    (it calls the `create_value` of its own module, which is swapped here and restored)."""
    _buffer_manager.create_value = _zero_pages_value
    try:
        yield
    finally:
        _buffer_manager.create_value = _tianshou_create_value


def _key_paths(batch: Batch, prefix: str = "") -> tuple[str, ...]:
    """Every key of a (nested) Batch as a dotted path, sorted."""
    paths: list[str] = []
    for key, value in batch.items():
        paths.append(prefix + key)
        if isinstance(value, Batch):
            paths.extend(_key_paths(value, f"{prefix}{key}."))
    return tuple(sorted(paths))


TEST_SLOTS = 16
"""Test episodes that `train_dqn` runs side by side (slots of one native vector env)."""


def _native_envs(env_id: str, n: int, kwargs: dict[str, Any]) -> TianshouVectorEnv:
    """`n` slots of `env_id`'s native vector env (`envs.vector`: one backend, one call per step)
    as Tianshou's Collector sees a vector env: flat observations (`FlattenCandidates`'s) and
    no infos (DQN reads none, and Tianshou would copy each into the buffer)."""
    register_all()
    venv = gym.make_vec(env_id, num_envs=n, vectorization_mode="vector_entry_point", **kwargs)
    return TianshouVectorEnv(venv, flatten=True, info="none")


def _env_kwargs(env_kwargs: dict[str, Any] | None) -> dict[str, Any]:
    kwargs = dict(env_kwargs or {})
    if kwargs.get("action_mode", "discrete") != "discrete":
        raise ValueError("DQN trains on action_mode='discrete'; evaluate slates via QSlatePolicy")
    kwargs["action_mode"] = "discrete"
    return kwargs


def build_dqn(*, layout: RowLayout, config: DQNConfig) -> DQN[DiscreteQLearningPolicy]:
    """A fresh Tianshou DQN (policy + CandidateQNet) for flat observations of `layout`
    (`envs.contract.row_layout(env.observation_space)`: Session-v0, UserAuthor-v0)."""
    net = CandidateQNet(layout=layout, hidden_sizes=tuple(config.hidden_sizes))
    net.to(resolve_device(config.device))  # initialised on the CPU: same weights on any device
    policy = DiscreteQLearningPolicy(
        model=net,
        action_space=spaces.Discrete(layout.n_rows),
        observation_space=spaces.Box(-10.0, 10.0, shape=(layout.obs_dim,), dtype=np.float32),
        eps_training=config.eps_start,
        eps_inference=0.0,
    )
    return DQN(
        policy=policy,
        optim=AdamOptimizerFactory(lr=config.lr),
        gamma=config.gamma,
        n_step_return_horizon=config.n_step,
        target_update_freq=config.target_update_freq,
        is_double=config.double,
        huber_loss_delta=config.huber_delta,
    )


def train_dqn(
    env_kwargs: dict[str, Any] | None = None,
    config: DQNConfig | None = None,
    progress: bool = True,
    env_id: str = ENV_ID,
) -> tuple[DQN[DiscreteQLearningPolicy], DQNRunStats]:
    """Train DQN online on `env_id` (`make_env(env_id, **env_kwargs, action_mode="discrete")`).

    Any env with Session-v0's observation layout works (Session-v0, UserAuthor-v0).

    Uniform-random warm-up, then `epochs` epochs of ε-greedy collection (`collect_steps` env
    steps per training step, `updates_per_step` gradient steps per env step); each epoch ends
    with `test_episodes` greedy episodes on a separate env (up to `TEST_SLOTS` of them at once,
    in one native vector env), recorded in the learning curve.
    The same seed gives the same weights (Dummy envs, one torch thread).
    """
    cfg = config or DQNConfig()
    kwargs = _env_kwargs(env_kwargs)
    cfg.check()
    start = time.perf_counter()
    torch.set_num_threads(1)
    # Tianshou's ε-greedy draws from the global numpy RNG: seeded here, the caller's restored
    with seeded_global_rngs(cfg.seed):
        # the n_envs training envs are slots of one native vector env (one population of
        # users, one backend call per step); the test episodes run side by side in another
        # one with its own backend (greedy: they draw nothing from the global RNG, so how
        # many run at once leaves training as it is)
        train_envs = _native_envs(env_id, cfg.n_envs, kwargs)
        n_test = max(1, min(cfg.test_episodes, TEST_SLOTS, len(train_envs.mdp.driver.users)))
        test_envs = _native_envs(env_id, n_test, kwargs)
        train_envs.seed(cfg.seed)
        test_envs.seed(cfg.seed + 10_000)
        algo = build_dqn(layout=row_layout(train_envs.mdp.single_observation_space), config=cfg)
        policy = algo.policy
        buffer = NewRowsNullCheckBuffer(cfg.buffer_size, cfg.n_envs)
        seed_buffer_sampler(buffer, cfg.seed)  # `random_seed` does not reach the manager
        train_collector = Collector[CollectStats](algo, train_envs, buffer, exploration_noise=True)
        test_collector = Collector[CollectStats](
            algo, test_envs, eval_collector_buffer(n_test), exploration_noise=True
        )
        with policy_within_training_step(policy):
            train_collector.reset()
            train_collector.collect(n_step=cfg.warmup_steps, random=True)

        def set_eps(epoch: int, env_step: int) -> None:
            frac = min(env_step / max(cfg.eps_decay_steps, 1), 1.0)
            policy.set_eps_training(cfg.eps_start + frac * (cfg.eps_end - cfg.eps_start))

        epochs, epoch_steps = epoch_plan(cfg.env_steps, cfg.epochs)
        bar = stage_bar(epochs * epoch_steps, "DQN", progress, unit="env step")
        logger = attach(CurveLogger(bar), "DQN", cfg.seed)  # + TensorBoard inside a stage
        result = algo.run_training(
            off_policy_params(cfg, train_collector, test_collector, logger, training_fn=set_eps)
        )
    logger.close()
    train_envs.close()
    test_envs.close()
    stats = DQNRunStats(
        learning_curve=logger.curve,
        best_reward=float(result.best_reward),
        env_steps=int(result.train_step),
        gradient_steps=int(algo._iter),
        seconds=time.perf_counter() - start,
        update_seconds=float(result.timing.train_time_update),
    )
    return algo, stats


# --------------------------------------------------------------------------- save / load
def save_dqn(
    algo: DQN[DiscreteQLearningPolicy],
    config: DQNConfig,
    path: str | Path,
    env_kwargs: dict[str, Any] | None = None,
    env_id: str = ENV_ID,
) -> Path:
    """Write `algo.state_dict()` (weights, target net, optimizer) to `path` and the config, the
    network's input sizes and the env kwargs as JSON beside it (`path` + .json)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    net = algo.policy.model
    torch.save(algo.state_dict(), path)
    meta = {
        "kind": "DQN",
        "env_id": env_id,
        "config": asdict(config),
        "layout": net.layout.to_dict(),
        "env_kwargs": _env_kwargs(env_kwargs),
    }
    json_path(path).write_text(json.dumps(meta, indent=2, default=jsonable))
    return path


def load_dqn(
    path: str | Path, device: str | None = None
) -> tuple[DQN[DiscreteQLearningPolicy], DQNConfig]:
    """Rebuild the DQN saved by `save_dqn` (no env needed, saved on any device) and its config,
    on `device` (None: the saved config's, 'auto' for files from before the option)."""
    path = Path(path)
    meta = json.loads(path.with_name(path.name + ".json").read_text())
    cfg_dict = meta["config"]
    cfg_dict["hidden_sizes"] = tuple(cfg_dict["hidden_sizes"])
    if device is not None:
        cfg_dict["device"] = device
    cfg = DQNConfig(**cfg_dict)
    algo = build_dqn(layout=_saved_layout(meta), config=cfg)
    algo.load_state_dict(load_state(path, cfg.device))
    return algo, cfg


def _saved_layout(meta: dict[str, Any]) -> RowLayout:
    """The network's layout from a checkpoint's JSON (older files stored only its sizes)."""
    if "layout" in meta:
        return RowLayout.from_dict(meta["layout"])
    user_dim, n = int(meta["user_dim"]), int(meta["n_candidates"])
    context_dim = user_dim + len(SESSION_FEATURES)
    row = (int(meta["obs_dim"]) - context_dim) // n
    return RowLayout(
        user_dim=user_dim, context_dim=context_dim, n_rows=n, row_names=row_features(row)
    )


__all__ = [
    "CandidateQNet",
    "CurveLogger",
    "RunStats",
    "DQNConfig",
    "DQNRunStats",
    "NewRowsNullCheckBuffer",
    "build_dqn",
    "eval_collector_buffer",
    "load_dqn",
    "save_dqn",
    "train_dqn",
]
