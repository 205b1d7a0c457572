"""RLIV-UA (Li et al. 2025, Sec. 3): multi-task lifelong-interaction-value critics of
user-author pairs, a Tianshou 2 offline algorithm trained on SCRI samples (`simulators.scri`).

What the model is, in the paper's terms:

- a shared embedding layer maps ``s_ua = [f_u | f_a | f_ua]`` to ``h_u, h_a, h_ua`` (Fig. 3);
  ``f_ua`` enters as ``log1p`` of the raw counters. With `id_embeddings` the user and author ids
  (``info.user`` / ``info.author``) add a learned vector to ``h_u`` / ``h_a``. With
  `item_features` (the paper's Sec. 2 state space) the item adds ``h_i``: its static row
  (``info.item_x``, ITEM_FEATURES) and its id (``act``) as an embedding;
- one LIV tower per task (click, watch_time, follow, and gift where the source has gifts),
  each a pair of critics Q1, Q2 with Polyak-averaged targets (Eq. 5-7):
  ``y = r + gamma * max_i min(Q1', Q2')(s'_ua, i)`` over the author's items i (the most often
  logged `max_target_items` of them in the training samples); the author-only variant has no
  item to maximise over (``Q'(s'_ua)``); a UA pair's lifelong MDP never terminates;
- the auxiliary supervised decomposition (Eq. 8-9): ``Q_k = r_hat + gamma * V_k`` with
  ``L_Q = huber(r_hat, r) + sum_k huber(Q_k, y)``;
- the assistance gift classifier (Eq. 10): two FC layers over ``[h_u | h_a]``, BCE on
  ``gift > 0``, only when the gift tower exists;
- total loss ``sum over towers of L_Q + L_A`` (Eq. 10), one Adam step per batch.

Serving ranks a request's candidates by the LIV ``min(Q1, Q2)`` of `rank_task` (watch time by
default, as in the paper's offline study): `LIVSlatePolicy(algo).act(obs)` on
`recgym/UserAuthor-v0` observations (adapter `user_author_states`), `score_candidates` from raw
arrays, or the Tianshou policy's `forward` (also on UserAuthor-v0 observation batches).
Scores are ranks in [-1, 1]; in the author-only variant candidates of one author share
s_ua, hence one LIV and one score, and the env's stable top-K shows them in candidate order.

Decisions where the paper is silent (each also noted where it is made):

- **r_hat is trained by the supervised term only**: the TD terms see ``r_hat.detach()``, so
  the V heads learn what the reward model leaves over, ``(y - r_hat) / gamma``, and r_hat
  stays a plain myopic reward predictor;
- **reward scaling**: each task's reward is divided by its mean over the samples where it is
  positive (`reward_scales`, fitted on the training buffer and saved with the weights), so one
  typical interaction is worth about 1 in every tower: 0/1 tasks are unchanged, watch time in
  seconds becomes "multiples of an average watch". Sparse tasks keep their small means, and
  Huber's threshold (1) means the same thing in every tower;
- **input standardisation**: ``[f_u | f_a | log1p f_ua]`` is standardised with the training
  buffer's mean and std (saved with the weights);
- **ids**: id vocabularies are the ids seen in the training buffer; row 0 of each id table
  is an "unseen id" vector, which serving uses for any id outside the vocabulary (or when no
  ids are given). During training each id is replaced by the unseen row with probability
  `id_dropout`, so that row learns the average user / author instead of staying random;
- **w/o SL** keeps the Huber loss (only the r_hat/V split is removed); the assistance net
  exists only beside a gift tower, so **w/o MT** with a non-gift `rank_task` has none;
- one optimiser over all parameters, with the embedding layer in its own parameter group
  (the paper lists separate critic and embedding learning rates); gradients are clipped to
  `max_grad_norm`.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from gymnasium import spaces
from tianshou.algorithm.algorithm_base import (
    LaggedNetworkPolyakUpdateAlgorithmMixin,
    OfflineAlgorithm,
    TrainingStats,
)
from tianshou.algorithm.optim import OptimizerFactory
from tianshou.data import Batch, ReplayBuffer
from tianshou.utils.torch_utils import policy_within_training_step
from torch import nn
from torch.nn import functional as F

from recgym.agents.progress import BarLogger, stage_bar
from recgym.agents.rliv_ua_policy import (
    CandidateStates,
    EnsembleMLP,
    LIVNet,
    LIVOutput,
    LIVSlatePolicy,
    RLIVUAPolicy,
    StatesFn,
    UAEmbedding,
    candidate_states,
    liv_scores,
    score_candidates,
    user_author_states,
)
from recgym.agents.seeding import seed_buffer_sampler, seeded_global_rngs
from recgym.agents.tb import attach
from recgym.agents.training import offline_params
from recgym.device import resolve_device
from recgym.simulators.scri import (
    AUTHOR_FEATURES,
    TASKS,
    UA_COUNTERS,
    check_scri_buffer,
    reward_scales,
    split_state,
)

if TYPE_CHECKING:  # at run time through `__getattr__` (the checkpoint module imports this one)
    from recgym.agents.rliv_ua_checkpoint import load_rliv_ua, save_rliv_ua

KIND = "RLIV-UA"


# --------------------------------------------------------------------------- config
@dataclass(kw_only=True)
class RLIVUAConfig:
    """RLIV-UA hyperparameters (Table 1 where the paper gives them) and ablation switches."""

    tasks: tuple[str, ...] = TASKS
    """Tasks the data source really has (`scri.tasks_for(behaviours)`); one tower each."""
    rank_task: str = "watch_time"
    """Whose LIV ranks candidates at serving (the paper's offline study uses watch time)."""
    multi_task: bool = True
    """False = "w/o MT": only the `rank_task` tower is built and trained."""
    supervised: bool = True
    """False = "w/o SL": plain Q heads, no r_hat + gamma * V_hat decomposition (Eq. 8-9)."""
    assistance: bool = True
    """False = "w/o AL": no assistance gift classifier (it needs a gift tower anyway)."""
    gamma: float = 0.9
    """Discount between consecutive interactions of one UA pair."""
    tau: float = 0.005
    """Polyak rate of the target networks (Table 1)."""
    critic_lr: float = 1e-3
    """Adam learning rate of the towers and the assistance net."""
    embedding_lr: float = 1e-3
    """Adam learning rate of the shared embedding layer (incl. id embeddings)."""
    batch_size: int = 1024
    """SCRI samples per gradient step."""
    item_features: bool = True
    """The state includes the item's static features (its id as an embedding and its
    ITEM_FEATURES row), as the paper's Sec. 2 state space lists them, and Eq. 7 maximises over
    the author's items; False = the author-only variant (Eq. 3's s_ua alone)."""
    max_target_items: int = 32
    """Items per author that Eq. 7's max runs over (the author's most often logged ones)."""
    hidden_sizes: tuple[int, ...] = (64, 64)
    """Widths of every r_hat / V / Q MLP (and the assistance net's first layer)."""
    embedding_dim: int = 32
    """Width of each of h_u, h_a, h_ua."""
    id_embeddings: bool = True
    """Add learned user / author id vectors to h_u / h_a (unseen ids share one vector)."""
    id_dropout: float = 0.1
    """Training probability of replacing an id by the unseen-id vector (trains that vector)."""
    huber_delta: float = 1.0
    """Huber threshold of every regression term, in scaled reward units."""
    max_grad_norm: float | None = 10.0
    """Gradient-norm clip of the one optimiser step; None: no clipping."""
    epochs: int = 4
    """OfflineTrainer epochs. Table 1's 250 x 1e4 steps are far beyond a CPU: 4 x 500 steps of
    1024 samples (20 passes over 100k samples) take about a minute on one busy core. With Table
    1's tau the values are then only partly propagated (see `train_rliv_ua`)."""
    steps_per_epoch: int = 500
    """Gradient steps per epoch."""
    seed: int = 0
    """Seeds torch (initialisation, id dropout) and the buffer's sampler."""
    device: str = "auto"
    """Torch device of the networks (`recgym.device.resolve_device`); they are initialised and
    fitted to the buffer's statistics on the CPU, then moved."""

    def __post_init__(self) -> None:
        self.tasks = tuple(self.tasks)
        self.hidden_sizes = tuple(int(h) for h in self.hidden_sizes)
        unknown = set(self.tasks) - set(TASKS)
        if unknown:
            raise ValueError(f"unknown tasks {sorted(unknown)}; SCRI tasks are {TASKS}")
        if self.rank_task not in self.tasks:
            raise ValueError(f"rank_task {self.rank_task!r} is not among tasks {self.tasks}")
        if not self.hidden_sizes:
            raise ValueError("hidden_sizes needs at least one layer")

    @property
    def towers(self) -> tuple[str, ...]:
        """The tasks that get a LIV tower, in TASKS order."""
        chosen = self.tasks if self.multi_task else (self.rank_task,)
        return tuple(t for t in TASKS if t in chosen)

    @property
    def has_assistance(self) -> bool:
        return self.assistance and "gift" in self.towers


_STRUCTURE_FIELDS = (
    "tasks",
    "rank_task",  # only without multi_task: it is then the one tower
    "multi_task",
    "supervised",
    "assistance",
    "gamma",
    "hidden_sizes",
    "embedding_dim",
    "id_embeddings",
    "item_features",
    "max_target_items",
)
"""Config fields that decide the network (gamma too: Q = r_hat + gamma * V)."""


# --------------------------------------------------------------------------- algorithm
@dataclass(kw_only=True)
class RLIVUAStats(TrainingStats):
    """Losses of one gradient step (scaled reward units; None where the part is absent)."""

    loss: float
    """Eq. 10: sum over towers of L_Q, plus L_A."""
    q_loss: float
    """Sum over towers and both critics of huber(Q_k, y)."""
    reward_loss: float | None = None
    """Sum over towers of huber(r_hat, r) (SL only)."""
    assist_loss: float | None = None
    """BCE of the assistance gift classifier."""
    q_mean: float
    """Mean LIV min(Q1, Q2) of the rank task's tower on the batch."""
    target_mean: float
    """Mean TD target y of the rank task's tower."""


class _EmbeddingGroupAdam(OptimizerFactory):
    """Adam with the module's ``embedding`` parameters in their own learning-rate group."""

    def __init__(self, critic_lr: float, embedding_lr: float) -> None:
        super().__init__()
        self.critic_lr = critic_lr
        self.embedding_lr = embedding_lr

    def create_instances(self, module: nn.Module) -> tuple[torch.optim.Optimizer, None]:
        emb = {id(p) for p in module.embedding.parameters()}
        groups = [
            {"params": list(module.embedding.parameters()), "lr": self.embedding_lr},
            {"params": [p for p in module.parameters() if id(p) not in emb]},
        ]
        return self._create_optimizer_for_params(groups), None

    def _create_optimizer_for_params(self, params: Any) -> torch.optim.Optimizer:
        return torch.optim.Adam(params, lr=self.critic_lr)


class RLIVUA(OfflineAlgorithm[RLIVUAPolicy], LaggedNetworkPolyakUpdateAlgorithmMixin):
    """Offline learner of RLIV-UA (Eq. 5-10) on a SCRI ReplayBuffer; see the module docstring.

    The target network is a lagged copy of the whole `LIVNet` (embedding included), moved by
    ``tau`` towards the online one after every gradient step.
    """

    def __init__(self, *, policy: RLIVUAPolicy, config: RLIVUAConfig) -> None:
        super().__init__(policy=policy)
        LaggedNetworkPolyakUpdateAlgorithmMixin.__init__(self, tau=config.tau)
        self.config = config
        self.gamma = float(config.gamma)
        self.optim = self._create_optimizer(
            policy.net,
            _EmbeddingGroupAdam(config.critic_lr, config.embedding_lr),
            max_grad_norm=config.max_grad_norm,
        )
        self.net_old = self._add_lagged_network(policy.net)
        net = policy.net
        self._columns = torch.as_tensor(
            [TASKS.index(t) for t in net.towers], device=net.reward_scales.device
        )
        self._rank = net.towers.index(config.rank_task)
        self._gift = TASKS.index("gift")

    def process_buffer(self, buffer: ReplayBuffer) -> ReplayBuffer:
        """Check the SCRI layout once (the OfflineTrainer calls this before training)."""
        check_scri_buffer(buffer, self.policy.net.state_dim)
        return buffer

    def _ids(self, batch: Batch) -> tuple[torch.Tensor | None, ...]:
        """users, authors, items (the shown item, `act`) and item rows of a batch; the ids are
        None without id embeddings (authors always given to an item-aware net: Eq. 7's sets)."""
        net = self.policy.net
        dev = net.reward_scales.device
        with_ids = net.embedding.user_id is not None
        users = None
        if with_ids:
            users = torch.as_tensor(np.asarray(batch.info.user, np.int64), device=dev)
        authors = None
        if with_ids or net.item_features:
            authors = torch.as_tensor(np.asarray(batch.info.author, np.int64), device=dev)
        if not net.item_features:
            return users, authors, None, None
        items = torch.as_tensor(np.asarray(batch.act, np.int64), device=dev)
        item_x = torch.as_tensor(np.asarray(batch.info.item_x, np.float32), device=dev)
        return users, authors, items, item_x

    def losses(self, batch: Batch) -> dict[str, torch.Tensor]:
        """The terms of Eq. 9-10 on a batch of SCRI samples (what `_update_with_batch` minimises).

        Keys: loss, q_loss, reward_loss (SL), assist_loss (assistance net), y (B, towers),
        rewards (B, towers) scaled, q1/q2 (B, towers), r_hat (SL), gift_logit.
        """
        net = self.policy.net
        cfg = self.config
        dev = net.reward_scales.device
        obs = torch.as_tensor(np.asarray(batch.obs), dtype=torch.float32, device=dev)
        obs_next = torch.as_tensor(np.asarray(batch.obs_next), dtype=torch.float32, device=dev)
        all_rewards = torch.as_tensor(
            np.asarray(batch.info.rewards), dtype=torch.float32, device=dev
        )
        rewards = all_rewards[:, self._columns] / net.reward_scales
        users, authors, items, item_x = self._ids(batch)
        with torch.no_grad():  # Eq. 5, 7: max over the author's items (no terminal state)
            y = rewards + self.gamma * self.net_old.module.next_values(
                obs_next, users, authors, items, item_x
            )
        out = net(obs, users, authors, items, item_x)

        def huber(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
            """Per-tower mean Huber loss, summed over towers."""
            per = F.huber_loss(pred, target, reduction="none", delta=cfg.huber_delta)
            return per.mean(0).sum()

        q_loss = huber(out.q1, y) + huber(out.q2, y)
        terms: dict[str, torch.Tensor] = {"q_loss": q_loss}
        loss = q_loss
        if out.r_hat is not None:
            terms["reward_loss"] = huber(out.r_hat, rewards)
            loss = loss + terms["reward_loss"]
        if out.gift_logit is not None:
            label = (all_rewards[:, self._gift] > 0).float()
            terms["assist_loss"] = F.binary_cross_entropy_with_logits(out.gift_logit, label)
            loss = loss + terms["assist_loss"]
        terms.update(
            loss=loss,
            y=y,
            rewards=rewards,
            q1=out.q1,
            q2=out.q2,
            r_hat=out.r_hat,
            gift_logit=out.gift_logit,
        )
        return terms

    def _update_with_batch(self, batch: Batch) -> RLIVUAStats:
        terms = self.losses(batch)
        self.optim.step(terms["loss"])
        self._update_lagged_network_weights()
        k = self._rank

        def item(key: str) -> float | None:
            return float(terms[key].item()) if key in terms else None

        return RLIVUAStats(
            loss=float(terms["loss"].item()),
            q_loss=float(terms["q_loss"].item()),
            reward_loss=item("reward_loss"),
            assist_loss=item("assist_loss"),
            q_mean=float(torch.minimum(terms["q1"], terms["q2"])[:, k].mean().item()),
            target_mean=float(terms["y"][:, k].mean().item()),
        )


# --------------------------------------------------------------------------- build / train
def build_rliv_ua(
    buffer: ReplayBuffer,
    config: RLIVUAConfig | None = None,
    *,
    n_candidates: int = 50,
    states_fn: StatesFn | None = None,
) -> RLIVUA:
    """A fresh RLIV-UA fitted to `buffer`'s statistics: input mean/std, per-task reward scales
    and id vocabularies (all saved with the weights). `n_candidates` only names the policy's
    action space (Box(-1, 1, (N,))); the policy scores any number of candidates."""
    cfg = config or RLIVUAConfig()
    check_scri_buffer(buffer)
    data = buffer[np.arange(len(buffer))]
    obs = np.asarray(data.obs, dtype=np.float32)
    user_dim = obs.shape[1] - len(AUTHOR_FEATURES) - len(UA_COUNTERS)
    rewards = np.asarray(data.info.rewards, dtype=np.float32)
    if "gift" in cfg.towers and not (rewards[:, TASKS.index("gift")] > 0).any():
        warnings.warn(
            "the gift tower trains on a buffer without a single gift; pass "
            "tasks=simulators.scri.tasks_for(behaviours) if the source has no gift signal",
            stacklevel=2,
        )
    user_ids = author_ids = item_ids = None
    authors = np.asarray(data.info.author, np.int64)
    items = np.asarray(data.act, np.int64)
    if cfg.id_embeddings:
        user_ids = np.unique(np.asarray(data.info.user, np.int64))
        author_ids = np.unique(authors)
        item_ids = np.unique(items) if cfg.item_features else None
    table = (0, 0)
    if cfg.item_features:
        if "item_x" not in data.info:
            raise ValueError(
                "item_features=True needs info.item_x (the shown item's static row) in the SCRI "
                "buffer: build it with data.asa.asa_samples, or pass item_features=False"
            )
        item_x = np.asarray(data.info.item_x, np.float32)
        pairs = np.unique(np.stack([authors, items], 1), axis=0)
        _, per_author = np.unique(pairs[:, 0], return_counts=True)
        table = (len(per_author), int(min(per_author.max(), cfg.max_target_items)))
    with seeded_global_rngs(cfg.seed):  # the initial weights; the caller's RNG state restored
        net = _make_net(cfg, user_dim, user_ids, author_ids, item_ids, table)
    if cfg.item_features:
        net.set_author_items(authors, items, item_x)
        net.embedding.item_mean.copy_(torch.as_tensor(item_x.mean(0)))
        net.embedding.item_std.copy_(torch.as_tensor(np.maximum(item_x.std(0), 1e-2)))
    f_u, f_a, f_ua = split_state(obs, user_dim)
    x = np.concatenate([f_u, f_a, np.log1p(np.maximum(f_ua, 0))], axis=1).astype(np.float64)
    net.embedding.mean.copy_(torch.as_tensor(x.mean(0), dtype=torch.float32))
    net.embedding.std.copy_(torch.as_tensor(np.maximum(x.std(0), 1e-2), dtype=torch.float32))
    columns = [TASKS.index(t) for t in net.towers]
    net.reward_scales.copy_(torch.as_tensor(reward_scales(rewards[:, columns])))
    return _make_algorithm(net, cfg, n_candidates, states_fn)


def _make_net(
    cfg: RLIVUAConfig,
    user_dim: int,
    user_ids: np.ndarray | None,
    author_ids: np.ndarray | None,
    item_ids: np.ndarray | None = None,
    author_table: tuple[int, int] = (0, 0),
) -> LIVNet:
    return LIVNet(
        user_dim=user_dim,
        towers=cfg.towers,
        supervised=cfg.supervised,
        assistance=cfg.has_assistance,
        gamma=cfg.gamma,
        hidden_sizes=cfg.hidden_sizes,
        embedding_dim=cfg.embedding_dim,
        user_ids=user_ids,
        author_ids=author_ids,
        item_ids=item_ids,
        item_features=cfg.item_features,
        author_table=author_table,
        id_dropout=cfg.id_dropout,
    )


def _make_algorithm(
    net: LIVNet, cfg: RLIVUAConfig, n_candidates: int, states_fn: StatesFn | None
) -> RLIVUA:
    net.to(resolve_device(cfg.device))  # before the algorithm builds its optimizer
    policy = RLIVUAPolicy(
        net=net,
        rank_task=cfg.rank_task,
        action_space=spaces.Box(-1.0, 1.0, shape=(int(n_candidates),), dtype=np.float32),
        states_fn=states_fn,
    )
    return RLIVUA(policy=policy, config=cfg)


@dataclass(kw_only=True)
class RLIVUARunStats:
    """What `train_rliv_ua` measured."""

    loss_curve: list[tuple[int, float]] = field(default_factory=list)
    """(gradient step, mean Eq. 10 loss over the epoch) after every epoch."""
    gradient_steps: int = 0
    seconds: float = 0.0
    update_seconds: float = 0.0


class _LossLogger(BarLogger):
    """Averages the update losses of each epoch in memory and moves the run's one progress bar
    (`bar` may be None); logs nothing else."""

    def __init__(self, bar: Any = None) -> None:
        super().__init__(bar, counts="update")
        self.curve: list[tuple[int, float]] = []
        self._losses: list[float] = []

    def log_update_data(self, log_data: dict, step: int) -> None:
        super().log_update_data(log_data, step)
        self._losses.append(float(log_data["loss"]))

    def log_info_data(self, log_data: dict, step: int) -> None:
        self.curve.append((int(log_data["update_step"]), float(np.mean(self._losses))))
        self._losses = []


def train_rliv_ua(
    buffer: ReplayBuffer,
    config: RLIVUAConfig | None = None,
    progress: bool = True,
    algo: RLIVUA | None = None,
) -> tuple[RLIVUA, RLIVUARunStats]:
    """Train RLIV-UA offline on a SCRI buffer with Tianshou's OfflineTrainer.

    `config.epochs` epochs of `config.steps_per_epoch` gradient steps on `config.batch_size`
    samples drawn uniformly with replacement (one bar for the run when `progress`). Reseeds
    the buffer's sampler with `config.seed`, so a seed fixes the weights (one torch thread).
    Pass `algo` to continue training a built or loaded model. For `data.asa` samples:
    ``train_rliv_ua(samples.buffer, RLIVUAConfig(tasks=samples.tasks))``.

    How far the future propagates is set by ``tau * steps`` (the target moves by tau per
    step, each full move is one Bellman backup discounted by gamma), not by the batch size.
    On the tests' synthetic world (true LIVs 72 vs 109) the defaults (2000 steps, tau 0.005,
    about 50 s for 100k samples) reach 44 vs 60: the ranking is right, the values are about
    60% propagated; tau 0.02 for 1000 steps reaches 60 vs 93, tau 0.05 for 600 steps of 256
    samples 69 vs 115 in 8 s.
    """
    cfg = config or (algo.config if algo is not None else RLIVUAConfig())
    start = time.perf_counter()
    torch.set_num_threads(1)
    if algo is None:
        algo = build_rliv_ua(buffer, cfg)
    seed_buffer_sampler(buffer, cfg.seed)  # Tianshou's default is 42
    bar = stage_bar(cfg.epochs * cfg.steps_per_epoch, "RLIV-UA", progress, unit="update")
    logger = attach(_LossLogger(bar), "RLIV-UA", cfg.seed)  # + TensorBoard inside a stage
    with seeded_global_rngs(cfg.seed):  # id dropout draws from torch's global generator
        steps = cfg.epochs * cfg.steps_per_epoch
        params = offline_params(
            buffer,
            gradient_steps=steps,
            epochs=cfg.epochs,
            batch_size=cfg.batch_size,
            logger=logger,
        )
        result = algo.run_training(params)
    logger.close()
    return algo, RLIVUARunStats(
        loss_curve=logger.curve,
        gradient_steps=int(result.update_step),
        seconds=time.perf_counter() - start,
        update_seconds=float(result.timing.train_time_update),
    )


def update_steps(algo: RLIVUA, buffer: ReplayBuffer, steps: int, batch_size: int) -> RLIVUAStats:
    """`steps` gradient steps outside a trainer (e.g. in tests); returns the last step's stats."""
    stats = None
    with policy_within_training_step(algo.policy):
        for _ in range(steps):
            stats = algo.update(buffer=buffer, sample_size=batch_size)
    return stats


# --------------------------------------------------------------------------- save / load
def __getattr__(name: str) -> Any:
    """`save_rliv_ua` / `load_rliv_ua` live in `agents.rliv_ua_checkpoint` (which imports this
    module); they stay importable from here."""
    if name in ("save_rliv_ua", "load_rliv_ua"):
        from recgym.agents import rliv_ua_checkpoint

        return getattr(rliv_ua_checkpoint, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [  # the networks and serving (agents.rliv_ua_policy) stay importable from here
    "build_rliv_ua",
    "candidate_states",
    "CandidateStates",
    "check_scri_buffer",
    "EnsembleMLP",
    "liv_scores",
    "LIVNet",
    "LIVOutput",
    "LIVSlatePolicy",
    "load_rliv_ua",
    "reward_scales",
    "RLIVUA",
    "RLIVUAConfig",
    "RLIVUAPolicy",
    "RLIVUARunStats",
    "RLIVUAStats",
    "save_rliv_ua",
    "score_candidates",
    "train_rliv_ua",
    "UAEmbedding",
    "update_steps",
    "user_author_states",
]
