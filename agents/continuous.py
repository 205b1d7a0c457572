"""TD3 (online) and CQL (offline) on slate envs through a linear ranking adapter.

Tianshou's own `TD3` and `CQL` do all the learning; this file supplies the configs, the
training wiring (seeded per the Tianshou 2 notes), the offline data and save/load.

The action adapter and the networks (`LinearScoreEnv`, `RowPoolingNet`, `SlateCritic`, the
linear ranking function) live in `agents.linear`, re-exported here.

**Offline data for CQL.** CQL learns from a Tianshou `ReplayBuffer` of (obs, w, r, obs')
transitions. Logged KuaiRand rows cannot be turned into such transitions honestly: a log holds
shown items, not the weight vector that ranked them, and the env's session features (and the
candidate sets) of a logged request are not in the log. So `collect_offline_buffer` *rolls out
a logging policy* in an env and records what it did; with ``backend="learned"`` that env is the
simulator learned from the logs, which is what "offline from logged data" can mean when only a
simulator of the logs exists. The logging policy is the supervised ranker projected onto the
linear action space (per request, the least-squares weights that best reproduce the ranker's
standardised values from the score columns) plus Gaussian noise, and the buffer stores exactly
the (clipped) weights that were executed.
"""

from __future__ import annotations

import functools
import json
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces
from tianshou.algorithm import CQL, TD3
from tianshou.algorithm.modelfree.ddpg import ContinuousDeterministicPolicy
from tianshou.algorithm.modelfree.sac import AutoAlpha, SACPolicy
from tianshou.algorithm.optim import AdamOptimizerFactory
from tianshou.data import Batch, Collector, CollectStats, ReplayBuffer
from tianshou.env import DummyVectorEnv
from tianshou.exploration import GaussianNoise
from tianshou.utils.net.continuous import (
    ContinuousActorDeterministic,
    ContinuousActorProbabilistic,
)
from tianshou.utils.torch_utils import policy_within_training_step

from recgym.agents.checkpoint import config_from_dict, json_path, jsonable
from recgym.agents.dqn import (
    CurveLogger,
    NewRowsNullCheckBuffer,
    RunStats,
    eval_collector_buffer,
)
from recgym.agents.linear import (
    AgentView,
    CandidateRowsView,
    LinearScoreEnv,
    RewardFn,
    RowPoolingNet,
    SlateCritic,
    behaviour_weights,
    linear_scores,
    make_linear_env,
)
from recgym.agents.progress import stage_bar
from recgym.agents.seeding import seed_buffer_sampler, seeded_global_rngs
from recgym.agents.tb import attach
from recgym.agents.training import OnlineRunConfig, epoch_plan, off_policy_params, offline_params
from recgym.device import load_state, resolve_device
from recgym.envs.contract import (
    Obs,
    RowLayout,
    action_from_values,
    for_env,
)

SESSION_ENV_ID = "recgym/Session-v0"


# --------------------------------------------------------------------------- configs and stats
@dataclass(kw_only=True)
class TD3Config(OnlineRunConfig):
    """Online TD3 over linear ranking weights; learning rates, gamma, tau from RLIV-UA Table 1.
    The run's budget and collection settings are `agents.training.OnlineRunConfig`'s."""

    actor_lr: float = 1e-4
    """Adam learning rate of the actor."""
    critic_lr: float = 1e-3
    """Adam learning rate of both critics."""
    gamma: float = 0.9
    """Discount per request."""
    tau: float = 0.005
    """Polyak rate of the target networks."""
    n_step: int = 1
    """n-step return horizon."""
    hidden_sizes: tuple[int, ...] = (64, 64)
    """Widths of the actor's and the critics' MLPs."""
    critic_temperature: float = 0.1
    """Initial temperature of the critic's soft selection over candidates (learned)."""
    exploration_noise: float = 0.2
    """Std of the Gaussian noise added to the actor's weights while collecting."""
    policy_noise: float = 0.2
    """Std of TD3's target-policy smoothing noise."""
    noise_clip: float = 0.5
    """Clip of the target-policy smoothing noise."""
    update_actor_freq: int = 2
    """Critic updates per actor (and target) update."""
    test_episodes: int = 10
    """Deterministic episodes per test step (one test env); 0 skips testing."""


@dataclass(kw_only=True)
class CQLConfig:
    """Offline CQL (Tianshou's SAC-based `CQL`) over linear ranking weights."""

    actor_lr: float = 1e-4
    """Adam learning rate of the actor."""
    critic_lr: float = 1e-3
    """Adam learning rate of both critics."""
    alpha_lr: float = 1e-3
    """Adam learning rate of the entropy coefficient (with `auto_alpha`)."""
    gamma: float = 0.9
    """Discount per request."""
    tau: float = 0.005
    """Polyak rate of the target networks."""
    hidden_sizes: tuple[int, ...] = (64, 64)
    """Widths of the actor's and the critics' MLPs."""
    critic_temperature: float = 0.1
    """Initial temperature of the critic's soft selection over candidates (learned)."""
    auto_alpha: bool = True
    """Tune SAC's entropy coefficient towards entropy -J; else keep it at `alpha`."""
    alpha: float = 0.2
    """Fixed entropy coefficient (without `auto_alpha`)."""
    cql_weight: float = 1.0
    """Weight of the conservative penalty in the critic loss."""
    with_lagrange: bool = False
    """Tune the penalty's weight by dual descent towards `lagrange_threshold`."""
    lagrange_threshold: float = 10.0
    """Target of the conservative penalty with `with_lagrange`."""
    num_repeat_actions: int = 10
    """Sampled actions per state in the conservative penalty."""
    calibrated: bool = False
    """Cal-QL: floor the penalty's Q-values at the logged Monte-Carlo returns."""
    gradient_steps: int = 3_000
    """Gradient steps in total (rounded up to whole epochs)."""
    epochs: int = 3
    """Number of epochs; each ends with a test step that adds a point to the learning curve."""
    batch_size: int = 128
    """Transitions per gradient step."""
    test_episodes: int = 10
    """Deterministic episodes per test step on the test env; 0 skips testing."""
    seed: int = 0
    """Seeds torch and the buffer's sampler."""
    device: str = "auto"
    """Torch device of the networks (`recgym.device.resolve_device`; initialised on the CPU)."""


@dataclass(kw_only=True)
class OfflineDataConfig:
    """How `collect_offline_buffer` logs transitions with the (noisy) projected ranker."""

    n_steps: int = 20_000
    """Transitions to record."""
    noise: float = 0.3
    """Std of the Gaussian noise on the logging policy's weights (then clipped to [-1, 1])."""
    seed: int = 0
    """Seeds the env, the noise and the buffer's sampler."""


# --------------------------------------------------------------------------- TD3
def build_td3(layout: RowLayout, config: TD3Config) -> TD3:
    """A fresh Tianshou TD3 whose actor maps an observation of `layout` to weights in [-1, 1]^J."""
    hidden = tuple(config.hidden_sizes)
    device = resolve_device(config.device)
    actor = ContinuousActorDeterministic(
        preprocess_net=RowPoolingNet(layout, hidden), action_shape=(layout.action_dim,)
    )
    policy = ContinuousDeterministicPolicy(
        actor=actor,
        exploration_noise=GaussianNoise(sigma=config.exploration_noise),
        action_space=spaces.Box(-1.0, 1.0, shape=(layout.action_dim,), dtype=np.float32),
        observation_space=spaces.Box(-10.0, 10.0, shape=(layout.obs_dim,), dtype=np.float32),
        action_scaling=True,
    ).to(device)
    return TD3(
        policy=policy,
        policy_optim=AdamOptimizerFactory(lr=config.actor_lr),
        critic=SlateCritic(layout, hidden, config.critic_temperature).to(device),
        critic_optim=AdamOptimizerFactory(lr=config.critic_lr),
        critic2=SlateCritic(layout, hidden, config.critic_temperature).to(device),
        critic2_optim=AdamOptimizerFactory(lr=config.critic_lr),
        tau=config.tau,
        gamma=config.gamma,
        policy_noise=config.policy_noise,
        update_actor_freq=config.update_actor_freq,
        noise_clip=config.noise_clip,
        n_step_return_horizon=config.n_step,
    ).to(device)


def train_online(
    env_factory: Callable[[], LinearScoreEnv],
    config: TD3Config,
    progress: bool = True,
    desc: str = "TD3",
) -> tuple[TD3, RunStats]:
    """Train TD3 online on envs from `env_factory` (`LinearScoreEnv`s); used by TD3 and RLUR.

    With `progress`, one bar over the run's env steps, labelled `desc`.

    Uniform-random warm-up, then `epochs` epochs of noisy collection (`collect_steps` env steps
    per training step, `updates_per_step` gradient steps per env step); each epoch ends with
    `test_episodes` deterministic episodes on a separate env. Same seed, same weights.
    """
    cfg = config
    cfg.check()
    start = time.perf_counter()
    torch.set_num_threads(1)
    # Tianshou's GaussianNoise draws from the global numpy RNG: seeded here, the caller's restored
    with seeded_global_rngs(cfg.seed):
        train_envs = DummyVectorEnv([env_factory for _ in range(cfg.n_envs)])
        train_envs.seed(cfg.seed)
        algo = build_td3(train_envs.workers[0].env.view.layout, cfg)
        # the same buffer as VectorReplayBuffer; its NaN check after each collect reads only
        # the new rows (`agents.dqn.NewRowsNullCheckBuffer`)
        buffer = NewRowsNullCheckBuffer(cfg.buffer_size, cfg.n_envs)
        seed_buffer_sampler(buffer, cfg.seed)  # `random_seed` does not reach the manager
        train_collector = Collector[CollectStats](algo, train_envs, buffer, exploration_noise=True)
        test_envs = test_collector = None
        if cfg.test_episodes > 0:
            test_envs = DummyVectorEnv([env_factory])
            test_envs.seed(cfg.seed + 10_000)
            test_collector = Collector[CollectStats](algo, test_envs, eval_collector_buffer(1))
        with policy_within_training_step(algo.policy):
            train_collector.reset()
            train_collector.collect(n_step=cfg.warmup_steps, random=True)
        epochs, epoch_steps = epoch_plan(cfg.env_steps, cfg.epochs)
        bar = stage_bar(epochs * epoch_steps, desc, progress, unit="env step")
        logger = attach(CurveLogger(bar), desc, cfg.seed)  # + TensorBoard inside a stage
        result = algo.run_training(off_policy_params(cfg, train_collector, test_collector, logger))
    logger.close()
    train_envs.close()
    if test_envs is not None:
        test_envs.close()
    return algo, RunStats(
        learning_curve=logger.curve,
        best_reward=float(result.best_reward) if test_collector is not None else float("nan"),
        env_steps=int(result.train_step),
        gradient_steps=int(result.update_step) * round(cfg.updates_per_step * cfg.collect_steps),
        seconds=time.perf_counter() - start,
        update_seconds=float(result.timing.train_time_update),
    )


def train_td3(
    env_kwargs: Mapping[str, Any] | None = None,
    config: TD3Config | None = None,
    env_id: str = SESSION_ENV_ID,
    progress: bool = True,
) -> tuple[LinearScorePolicy, RunStats]:
    """Train TD3 online on `make_env(env_id, **env_kwargs)` through the linear adapter.

    The reward is the env's (default: watch seconds). Returns the slate policy (its `algo` is
    the Tianshou TD3) and the run's stats.
    """
    cfg = config or TD3Config()
    kwargs = dict(env_kwargs or {})
    algo, stats = train_online(
        functools.partial(make_linear_env, env_id, kwargs), cfg, progress=progress
    )
    view = CandidateRowsView(algo.policy.actor.preprocess.layout)
    return LinearScorePolicy(algo, view, config=cfg, env_id=env_id, env_kwargs=kwargs), stats


# --------------------------------------------------------------------------- CQL (offline)
def candidate_values(ranker: Any, obs: Obs) -> np.ndarray:
    """A supervised ranker's per-candidate values for one observation dict:
    `DeepFMRanker.candidate_values(obs)` or `RankingModel.values(obs)`."""
    if hasattr(ranker, "candidate_values"):
        return ranker.candidate_values(obs)
    return ranker.values(obs)


def collect_offline_buffer(
    env_kwargs: Mapping[str, Any] | None,
    config: OfflineDataConfig | None = None,
    ranker: Any = None,
    env_id: str = SESSION_ENV_ID,
    view: AgentView | None = None,
    progress: bool = True,
) -> ReplayBuffer:
    """Log `n_steps` transitions of the noisy projected ranker in `make_env(env_id, **env_kwargs)`.

    For CQL "from logged data" pass ``env_kwargs={"backend": "learned", "checkpoint": ...}``,
    the simulator learned from the logs. Per request the logging policy plays
    ``clip(behaviour_weights(ranker) + N(0, noise^2), -1, 1)`` (uniform random weights when
    `ranker` is None); ``act`` holds exactly those weights, ``rew`` the env's reward, and
    ``done = terminated | truncated``. Episodes follow each other in order; the first reset is
    seeded. The buffer samples with ``RandomState(seed)``.
    """
    cfg = config or OfflineDataConfig()
    torch.set_num_threads(1)  # a learned simulator's small nets run slower on more threads
    env = make_linear_env(env_id, env_kwargs, view)
    layout = env.view.layout
    if ranker is not None:
        ranker = for_env(ranker, env.env)  # a DeepFM reads the backend's ids as raw ids
    rng = np.random.default_rng(cfg.seed)
    n = int(cfg.n_steps)
    obs_buf = np.zeros((n, layout.obs_dim), dtype=np.float32)
    next_buf = np.zeros_like(obs_buf)
    act = np.zeros((n, layout.action_dim), dtype=np.float32)
    rew = np.zeros(n, dtype=np.float32)
    term = np.zeros(n, dtype=bool)
    trunc = np.zeros(n, dtype=bool)
    steps: Any = range(n)
    if progress:
        from tqdm.auto import tqdm

        steps = tqdm(steps, desc="offline data")
    obs, _ = env.reset(seed=cfg.seed)
    for t in steps:
        if ranker is None:
            w = rng.uniform(-1.0, 1.0, layout.action_dim)
        else:
            values = candidate_values(ranker, env.raw_obs)
            w = behaviour_weights(layout, obs, values)
            w = w + rng.normal(0.0, cfg.noise, layout.action_dim)
        w = np.clip(w, -1.0, 1.0)
        nxt, r, te, tr, _ = env.step(w)
        obs_buf[t], act[t], rew[t], next_buf[t], term[t], trunc[t] = obs, w, r, nxt, te, tr
        obs = env.reset()[0] if te or tr else nxt
    env.close()
    buffer = ReplayBuffer.from_data(
        obs=obs_buf,
        act=act,
        rew=rew,
        terminated=term,
        truncated=trunc,
        done=term | trunc,
        obs_next=next_buf,
    )
    seed_buffer_sampler(buffer, cfg.seed)  # from_data always seeds 42
    return buffer


def build_cql(layout: RowLayout, config: CQLConfig) -> CQL:
    """A fresh Tianshou CQL (SAC actor, two `SlateCritic`s) for observations of `layout`.

    Tianshou 2.0.1's CQL samples its out-of-distribution actions from
    ``U(-min_action, max_action)``, so ``min_action=1.0`` here gives the intended U(-1, 1).
    The networks move to `config.device` before CQL is built (it puts its penalty weight on the
    policy's device when constructed).
    """
    hidden = tuple(config.hidden_sizes)
    device = resolve_device(config.device)
    j = layout.action_dim
    actor = ContinuousActorProbabilistic(
        preprocess_net=RowPoolingNet(layout, hidden),
        action_shape=(j,),
        unbounded=True,
        conditioned_sigma=True,
    )
    policy = SACPolicy(
        actor=actor,
        action_space=spaces.Box(-1.0, 1.0, shape=(j,), dtype=np.float32),
        observation_space=spaces.Box(-10.0, 10.0, shape=(layout.obs_dim,), dtype=np.float32),
        action_scaling=False,
    ).to(device)
    alpha: float | AutoAlpha = config.alpha
    if config.auto_alpha:
        alpha = AutoAlpha(
            target_entropy=-float(j),
            log_alpha=float(np.log(config.alpha)),
            optim=AdamOptimizerFactory(lr=config.alpha_lr),
        )
    return CQL(
        policy=policy,
        policy_optim=AdamOptimizerFactory(lr=config.actor_lr),
        critic=SlateCritic(layout, hidden, config.critic_temperature).to(device),
        critic_optim=AdamOptimizerFactory(lr=config.critic_lr),
        critic2=SlateCritic(layout, hidden, config.critic_temperature).to(device),
        critic2_optim=AdamOptimizerFactory(lr=config.critic_lr),
        cql_weight=config.cql_weight,
        tau=config.tau,
        gamma=config.gamma,
        alpha=alpha,
        with_lagrange=config.with_lagrange,
        lagrange_threshold=config.lagrange_threshold,
        min_action=1.0,
        max_action=1.0,
        num_repeat_actions=config.num_repeat_actions,
        calibrated=config.calibrated,
    ).to(device)


def train_cql(
    buffer: ReplayBuffer,
    layout: RowLayout,
    config: CQLConfig | None = None,
    test_env_kwargs: Mapping[str, Any] | None = None,
    env_id: str = SESSION_ENV_ID,
    progress: bool = True,
) -> tuple[LinearScorePolicy, RunStats]:
    """Train CQL offline on `buffer` (from `collect_offline_buffer`; not modified).

    With ``test_episodes > 0`` each epoch ends with deterministic episodes on
    `make_env(env_id, **test_env_kwargs)` (the learning curve). Same seed, same weights.
    Known Tianshou 2.0.1 CQL simplifications kept as they are: its logsumexp runs over 3
    values per sampled action rather than over all samples of a state, and it bootstraps on
    ``done`` (time-limit truncations count as terminal).
    """
    import copy

    cfg = config or CQLConfig()
    start = time.perf_counter()
    torch.set_num_threads(1)
    with seeded_global_rngs(cfg.seed):
        algo = build_cql(layout, cfg)
        data = copy.deepcopy(buffer)  # CQL.process_buffer (calibrated) edits its buffer in place
        seed_buffer_sampler(data, cfg.seed)
        test_envs = test_collector = None
        kwargs = dict(test_env_kwargs or {})
        if cfg.test_episodes > 0:
            test_envs = DummyVectorEnv([functools.partial(make_linear_env, env_id, kwargs)])
            test_envs.seed(cfg.seed + 10_000)
            test_collector = Collector[CollectStats](algo, test_envs, eval_collector_buffer(1))
        epochs, epoch_steps = epoch_plan(cfg.gradient_steps, cfg.epochs)
        bar = stage_bar(epochs * epoch_steps, "CQL", progress, unit="update")
        logger = attach(CurveLogger(bar, counts="update"), "CQL", cfg.seed)
        params = offline_params(
            data,
            gradient_steps=cfg.gradient_steps,
            epochs=cfg.epochs,
            batch_size=cfg.batch_size,
            logger=logger,
            test_collector=test_collector,
            test_episodes=cfg.test_episodes,
        )
        result = algo.run_training(params)
    logger.close()
    if test_envs is not None:
        test_envs.close()
    stats = RunStats(  # the offline trainer counts samples (batch_size per gradient step)
        learning_curve=[(step // cfg.batch_size, ret) for step, ret in logger.curve],
        best_reward=float(result.best_reward) if test_collector is not None else float("nan"),
        env_steps=0,
        gradient_steps=int(result.update_step),  # one gradient step per offline training step
        seconds=time.perf_counter() - start,
        update_seconds=float(result.timing.train_time_update),
    )
    view = CandidateRowsView(layout)
    return LinearScorePolicy(algo, view, config=cfg, env_id=env_id, env_kwargs=kwargs), stats


# --------------------------------------------------------------------------- slate policy
class LinearScorePolicy:
    """A trained TD3/CQL(/RLUR) actor as a `SlatePolicy`: weights from the actor, scores
    ``w · x_i`` over the view's score columns, the top candidates shown (argmax if Discrete).

    Acting is deterministic: TD3's actor without exploration noise, CQL's SAC actor at its mode.
    """

    kinds = {"TD3": (TD3Config, build_td3), "CQL": (CQLConfig, build_cql)}

    def __init__(
        self,
        algo: TD3 | CQL,
        view: AgentView,
        config: TD3Config | CQLConfig,
        env_id: str = SESSION_ENV_ID,
        env_kwargs: Mapping[str, Any] | None = None,
        action_space: gym.Space | None = None,
    ) -> None:
        self.algo = algo
        self.view = view
        self.config = config
        self.env_id = env_id
        self.env_kwargs = dict(env_kwargs or {})
        self.action_space = action_space

    @property
    def layout(self) -> RowLayout:
        return self.view.layout

    @property
    def kind(self) -> str:
        return "CQL" if isinstance(self.algo, CQL) else "TD3"

    def weights(self, agent_obs: np.ndarray) -> np.ndarray:
        """(obs_dim,) or (B, obs_dim) agent observations -> (J,) or (B, J) weights in [-1, 1]."""
        x = np.asarray(agent_obs, dtype=np.float32)
        batch = x[None] if x.ndim == 1 else x
        policy = self.algo.policy
        was_training = policy.training
        policy.eval()
        with torch.no_grad():
            out = policy(Batch(obs=batch, info=Batch()))
        policy.train(was_training)
        w = policy.map_action(out.act).astype(np.float64)
        return w[0] if x.ndim == 1 else w

    def scores(self, obs: Obs) -> np.ndarray:
        """(N,) candidate scores ``w · x_i`` for one env observation dict."""
        agent_obs = np.clip(self.view.observe(obs), -10.0, 10.0).astype(np.float32)
        return linear_scores(self.layout, agent_obs, self.weights(agent_obs))

    def act(self, obs: Obs) -> np.ndarray | int:
        return action_from_values(self.scores(obs), self.action_space, obs["mask"])

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | Path) -> Path:
        """Write the algorithm's state dict to `path` and kind, config, layout and env kwargs
        as JSON beside it (`path` + .json)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(self.algo.state_dict(), path)
        meta = {
            "kind": self.kind,
            "config": asdict(self.config),
            "layout": self.layout.to_dict(),
            "env_id": self.env_id,
            "env_kwargs": self.env_kwargs,
        }
        json_path(path).write_text(json.dumps(meta, indent=2, default=jsonable))
        return path

    @classmethod
    def load(
        cls, path: str | Path, action_space: gym.Space | None = None, device: str | None = None
    ) -> LinearScorePolicy:
        """Rebuild a policy saved by `save` (TD3 or CQL, on any device; no env needed) acting in
        `action_space` (None: scores), on `device` (None: the saved config's)."""
        path = Path(path)
        meta = json.loads(json_path(path).read_text())
        if meta.get("kind") not in cls.kinds:
            raise ValueError(f"{path} holds a {meta.get('kind')} agent; load it with its class")
        config_cls, build = cls.kinds[meta["kind"]]
        cfg = config_from_dict(config_cls, meta["config"])
        if device is not None:
            cfg = replace(cfg, device=device)
        layout = RowLayout.from_dict(meta["layout"])
        algo = build(layout, cfg)
        algo.load_state_dict(load_state(path, cfg.device))
        return cls(
            algo, CandidateRowsView(layout), cfg, meta["env_id"], meta["env_kwargs"], action_space
        )


__all__ = [  # the adapter's names (agents.linear) stay importable from here
    "AgentView",
    "CQLConfig",
    "CandidateRowsView",
    "CurveLogger",
    "LinearScoreEnv",
    "LinearScorePolicy",
    "OfflineDataConfig",
    "RowLayout",
    "RewardFn",
    "RowPoolingNet",
    "RunStats",
    "SlateCritic",
    "TD3Config",
    "behaviour_weights",
    "build_cql",
    "build_td3",
    "candidate_values",
    "collect_offline_buffer",
    "config_from_dict",
    "linear_scores",
    "make_linear_env",
    "train_cql",
    "train_online",
    "train_td3",
]
