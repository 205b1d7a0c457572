"""RLIV-UA (Li et al. 2025, Sec. 3): multi-task lifelong-interaction-value critics of
user-author pairs, a Tianshou 2 offline algorithm trained on SCRI samples (`simulators.scri`).

What the model is, in the paper's terms:

- a shared embedding layer maps ``s_ua = [f_u | f_a | f_ua]`` to ``h_u, h_a, h_ua`` (Fig. 3);
  ``f_ua`` enters as ``log1p`` of the raw counters. With `id_embeddings` the user and author ids
  (``info.user`` / ``info.author``) add a learned vector to ``h_u`` / ``h_a``;
- one LIV tower per task (click, watch_time, follow, and gift where the source has gifts),
  each a pair of critics Q1, Q2 with Polyak-averaged targets (Eq. 5-7). Because s_ua holds no
  item features, Eq. 7's max over the author's items is just ``Q'(s'_ua)``:
  ``y = r + gamma * min(Q1', Q2')(s'_ua)``; a UA pair's lifelong MDP never terminates;
- the auxiliary supervised decomposition (Eq. 8-9): ``Q_k = r_hat + gamma * V_k`` with
  ``L_Q = huber(r_hat, r) + sum_k huber(Q_k, y)``;
- the assistance gift classifier (Eq. 10): two FC layers over ``[h_u | h_a]``, BCE on
  ``gift > 0``, only when the gift tower exists;
- total loss ``sum over towers of L_Q + L_A`` (Eq. 10), one Adam step per batch.

Serving ranks a request's candidates by the LIV ``min(Q1, Q2)`` of `rank_task` (watch time by
default, as in the paper's offline study): `LIVSlatePolicy(algo).act(obs)` on
`recgym/UserAuthor-v0` observations (adapter `user_author_states`), `score_candidates` from raw
arrays, or the Tianshou policy's `forward` (also on UserAuthor-v0 observation batches).
Scores are ranks in [-1, 1]; candidates of one author share
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

import json
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, NamedTuple

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces
from tianshou.algorithm.algorithm_base import (
    LaggedNetworkPolyakUpdateAlgorithmMixin,
    OfflineAlgorithm,
    Policy,
    TrainingStats,
)
from tianshou.algorithm.optim import OptimizerFactory
from tianshou.data import Batch, ReplayBuffer
from tianshou.trainer import OfflineTrainerParams
from tianshou.utils.torch_utils import policy_within_training_step
from torch import nn
from torch.nn import functional as F

from recgym.agents.progress import BarLogger, stage_bar
from recgym.envs.contract import Obs, action_from_values, user_id
from recgym.envs.user_author import candidate_states as ua_candidate_states
from recgym.simulators.scri import AUTHOR_FEATURES, TASKS, UA_COUNTERS, split_state

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
)
"""Config fields that decide the network (gamma too: Q = r_hat + gamma * V)."""


# --------------------------------------------------------------------------- networks
class EnsembleMLP(nn.Module):
    """M independent MLPs of the same widths over one shared input: (B, in) -> (B, M).

    Stacked weights and batched matmuls, so the 2-3 heads of 1-4 towers cost one call per layer.
    Each member is initialised like `nn.Linear`.
    """

    def __init__(self, n_members: int, in_dim: int, hidden_sizes: tuple[int, ...]) -> None:
        super().__init__()
        self.n_members = int(n_members)
        dims = [int(in_dim), *hidden_sizes, 1]
        self.weights = nn.ParameterList()
        self.biases = nn.ParameterList()
        for a, b in zip(dims[:-1], dims[1:], strict=True):
            bound = 1.0 / np.sqrt(a)
            self.weights.append(nn.Parameter(torch.empty(n_members, a, b).uniform_(-bound, bound)))
            self.biases.append(nn.Parameter(torch.empty(n_members, 1, b).uniform_(-bound, bound)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x.unsqueeze(0).expand(self.n_members, *x.shape)
        last = len(self.weights) - 1
        for i, (w, b) in enumerate(zip(self.weights, self.biases, strict=True)):
            h = torch.baddbmm(b, h, w)
            if i < last:
                h = F.relu(h)
        return h.squeeze(-1).T


class UAEmbedding(nn.Module):
    """The shared embedding layer: s_ua (B, state_dim) [+ ids] -> h_u, h_a, h_ua (B, E) each.

    Inputs are ``[f_u | f_a | log1p f_ua]`` standardised with the training buffer's statistics
    (`mean`, `std` buffers); each part has its own linear map. With id vocabularies, the id's
    vector is added to h_u / h_a; ids outside the vocabulary (or None) use row 0, and in
    training mode each id is replaced by row 0 with probability `id_dropout`.
    """

    def __init__(
        self,
        *,
        user_dim: int,
        embedding_dim: int,
        user_ids: np.ndarray | None = None,
        author_ids: np.ndarray | None = None,
        id_dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.user_dim = int(user_dim)
        self.id_dropout = float(id_dropout)
        self.state_dim = self.user_dim + len(AUTHOR_FEATURES) + len(UA_COUNTERS)
        self.register_buffer("mean", torch.zeros(self.state_dim))
        self.register_buffer("std", torch.ones(self.state_dim))
        self.user = nn.Linear(self.user_dim, embedding_dim)
        self.author = nn.Linear(len(AUTHOR_FEATURES), embedding_dim)
        self.pair = nn.Linear(len(UA_COUNTERS), embedding_dim)
        self.user_id = self.author_id = None
        if user_ids is not None and author_ids is not None:
            self.register_buffer("user_vocab", torch.as_tensor(np.sort(user_ids), dtype=torch.long))
            self.register_buffer(
                "author_vocab", torch.as_tensor(np.sort(author_ids), dtype=torch.long)
            )
            self.user_id = nn.Embedding(len(user_ids) + 1, embedding_dim)
            self.author_id = nn.Embedding(len(author_ids) + 1, embedding_dim)
            nn.init.normal_(self.user_id.weight, std=0.1)
            nn.init.normal_(self.author_id.weight, std=0.1)

    def inputs(self, states: torch.Tensor) -> torch.Tensor:
        """Raw s_ua rows -> standardised ``[f_u | f_a | log1p f_ua]``."""
        counters_at = self.user_dim + len(AUTHOR_FEATURES)
        x = torch.cat(
            [states[:, :counters_at], torch.log1p(states[:, counters_at:].clamp_min(0))], 1
        )
        return ((x - self.mean) / self.std).clamp(-10.0, 10.0)

    @staticmethod
    def index(ids: torch.Tensor, vocab: torch.Tensor) -> torch.Tensor:
        """Row of each id in an id table: 1 + its vocabulary position, or 0 if unseen."""
        pos = torch.searchsorted(vocab, ids).clamp_max(len(vocab) - 1)
        return torch.where(vocab[pos] == ids, pos + 1, torch.zeros_like(pos))

    def forward(
        self,
        states: torch.Tensor,
        users: torch.Tensor | None = None,
        authors: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x = self.inputs(states)
        a = self.user_dim + len(AUTHOR_FEATURES)
        h_u = self.user(x[:, : self.user_dim])
        h_a = self.author(x[:, self.user_dim : a])
        h_ua = self.pair(x[:, a:])
        if self.user_id is not None:
            zero = torch.zeros(len(states), dtype=torch.long, device=states.device)
            u = zero if users is None else self.index(users, self.user_vocab)
            au = zero if authors is None else self.index(authors, self.author_vocab)
            if self.training and self.id_dropout > 0:  # train the unseen-id row 0
                u = torch.where(torch.rand(len(u), device=u.device) < self.id_dropout, 0, u)
                au = torch.where(torch.rand(len(au), device=au.device) < self.id_dropout, 0, au)
            h_u = h_u + self.user_id(u)
            h_a = h_a + self.author_id(au)
        return h_u, h_a, h_ua


class LIVOutput(NamedTuple):
    """What `LIVNet` computes for a batch of s_ua; (B, n_towers) per tower, columns = towers."""

    q1: torch.Tensor
    q2: torch.Tensor
    r_hat: torch.Tensor | None
    """The supervised reward prediction (None without SL)."""
    gift_logit: torch.Tensor | None
    """(B,) assistance classifier logit of ``gift > 0`` (None without the assistance net)."""


class LIVNet(nn.Module):
    """Shared UA embedding, one LIV tower per task, and the optional assistance classifier.

    With SL each tower has three MLP heads r_hat, V1, V2 over ``H = [h_u | h_a | h_ua]`` and
    ``Q_k = r_hat.detach() + gamma * V_k`` (Eq. 8; r_hat learns from its supervised term only);
    without SL two heads Q1, Q2. Values are in scaled reward units (`reward_scales`).
    """

    def __init__(
        self,
        *,
        user_dim: int,
        towers: tuple[str, ...],
        supervised: bool,
        assistance: bool,
        gamma: float,
        hidden_sizes: tuple[int, ...],
        embedding_dim: int,
        user_ids: np.ndarray | None = None,
        author_ids: np.ndarray | None = None,
        id_dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.towers = tuple(towers)
        self.supervised = bool(supervised)
        self.heads: tuple[str, ...] = ("r_hat", "v1", "v2") if supervised else ("q1", "q2")
        self.gamma = float(gamma)
        self.embedding = UAEmbedding(
            user_dim=user_dim,
            embedding_dim=embedding_dim,
            user_ids=user_ids,
            author_ids=author_ids,
            id_dropout=id_dropout,
        )
        self.critics = EnsembleMLP(
            len(self.towers) * len(self.heads), 3 * embedding_dim, tuple(hidden_sizes)
        )
        self.assist: nn.Module | None = None
        if assistance:
            self.assist = nn.Sequential(
                nn.Linear(2 * embedding_dim, hidden_sizes[0]),
                nn.ReLU(),
                nn.Linear(hidden_sizes[0], 1),
            )
        self.register_buffer("reward_scales", torch.ones(len(self.towers)))

    @property
    def state_dim(self) -> int:
        return self.embedding.state_dim

    def forward(
        self,
        states: torch.Tensor,
        users: torch.Tensor | None = None,
        authors: torch.Tensor | None = None,
    ) -> LIVOutput:
        h_u, h_a, h_ua = self.embedding(states, users, authors)
        out = self.critics(torch.cat([h_u, h_a, h_ua], 1))
        out = out.reshape(len(states), len(self.towers), len(self.heads))
        if self.supervised:
            r_hat = out[..., 0]
            q1 = r_hat.detach() + self.gamma * out[..., 1]
            q2 = r_hat.detach() + self.gamma * out[..., 2]
        else:
            r_hat, q1, q2 = None, out[..., 0], out[..., 1]
        gift = None
        if self.assist is not None:
            gift = self.assist(torch.cat([h_u, h_a], 1)).squeeze(-1)
        return LIVOutput(q1=q1, q2=q2, r_hat=r_hat, gift_logit=gift)


# --------------------------------------------------------------------------- policy
class CandidateStates(NamedTuple):
    """One request's (or a batch of requests') candidates as SCRI states."""

    states: np.ndarray
    """(..., N, state_dim) float32 s_ua rows with raw counters."""
    users: np.ndarray | None = None
    """(...,) user id of each request, or None (unseen-id vector)."""
    authors: np.ndarray | None = None
    """(..., N) author id of each candidate, or None."""


StatesFn = Callable[[Obs], CandidateStates]
"""observation(s) -> CandidateStates: how a policy reads an env's observation."""


def liv_scores(values: np.ndarray) -> np.ndarray:
    """(..., N) values -> float32 scores in [-1, 1], best 1, worst -1, equal values equal scores.

    The score is ``1 - 2 * rank / (N - 1)`` with rank = how many candidates have a strictly
    larger value. Items of one author share s_ua and so their LIV: they get one score, and the
    env's stable top-K shows them in candidate order.
    """
    values = np.asarray(values, dtype=np.float64)
    n = values.shape[-1]
    rank = (values[..., None, :] > values[..., :, None]).sum(-1)
    return (1.0 - 2.0 * rank / max(n - 1, 1)).astype(np.float32)


def _broadcast_ids(ids: Any, lead: tuple[int, ...]) -> np.ndarray:
    """Ids per request (fewer trailing axes) or per row -> int64 ids of shape `lead`."""
    ids = np.asarray(ids, dtype=np.int64)
    ids = ids.reshape(ids.shape + (1,) * (len(lead) - ids.ndim))
    return np.array(np.broadcast_to(ids, lead))


class RLIVUAPolicy(Policy):
    """Scores candidates by the LIV ``min(Q1, Q2)`` of `rank_task`.

    `forward` maps a batch of observations to (B, N) scores in [-1, 1]: the observations are
    read by `states_fn` (an adapter such as `user_author_states`); without one, UserAuthor-v0
    observation batches (Tianshou `Batch` with a ``candidates`` entry) are read by
    `user_author_states`, and anything else must already be (B, N, state_dim) candidate states,
    with optional ``info.user`` (B,) and ``info.author`` (B, N). Any N works; `action_space`
    only names the env's.
    """

    def __init__(
        self,
        *,
        net: LIVNet,
        rank_task: str,
        action_space: gym.Space,
        observation_space: gym.Space | None = None,
        states_fn: StatesFn | None = None,
    ) -> None:
        super().__init__(
            action_space=action_space,
            observation_space=observation_space,
            action_scaling=False,
            action_bound_method=None,
        )
        if rank_task not in net.towers:
            raise ValueError(f"rank_task {rank_task!r} has no tower (towers: {net.towers})")
        self.net = net
        self.rank_task = rank_task
        self.states_fn = states_fn

    def values(
        self,
        states: np.ndarray,
        users: np.ndarray | None = None,
        authors: np.ndarray | None = None,
        task: str | None = None,
        head: str = "liv",
    ) -> np.ndarray:
        """(..., state_dim) states -> (...,) float64 values of one task's tower, in its reward's
        units (scaled back). head: "liv" = min(Q1, Q2) (Eq. 5), "r_hat" = the supervised reward
        prediction (SL only), "q1" / "q2" = one critic. `users` broadcasts over the last axis
        of `authors` (one user per request)."""
        task = task or self.rank_task
        states = np.asarray(states, dtype=np.float32)
        if states.shape[-1] != self.net.state_dim:
            raise ValueError(
                f"states have {states.shape[-1]} features; this model reads {self.net.state_dim} "
                f"(user_dim {self.net.embedding.user_dim} + author + counters)"
            )
        lead = states.shape[:-1]
        u = a = None
        if users is not None:
            u = torch.as_tensor(_broadcast_ids(users, lead).reshape(-1))
        if authors is not None:
            a = torch.as_tensor(_broadcast_ids(authors, lead).reshape(-1))
        k = self.net.towers.index(task)
        was_training = self.net.training
        self.net.eval()
        with torch.no_grad():
            out = self.net(torch.from_numpy(states.reshape(-1, states.shape[-1])), u, a)
        self.net.train(was_training)
        if head == "liv":
            v = torch.minimum(out.q1, out.q2)[:, k]
        elif head == "r_hat":
            if out.r_hat is None:
                raise ValueError("head='r_hat' needs a supervised (SL) model")
            v = out.r_hat[:, k]
        elif head in ("q1", "q2"):
            v = getattr(out, head)[:, k]
        else:
            raise ValueError(f"unknown head {head!r}")
        v = v * self.net.reward_scales[k]
        return v.numpy().astype(np.float64).reshape(lead)

    def candidate_states(self, obs: Any, info: Any) -> CandidateStates:
        if self.states_fn is not None:
            return self.states_fn(obs)
        if isinstance(obs, Batch | dict) and "candidates" in obs:
            return user_author_states(obs)
        users = authors = None
        if isinstance(info, Batch | dict):
            users = info["user"] if "user" in info else None
            authors = info["author"] if "author" in info else None
        return CandidateStates(np.asarray(obs, dtype=np.float32), users, authors)

    def forward(self, batch: Batch, state: Any = None, **kwargs: Any) -> Batch:
        cands = self.candidate_states(batch.obs, getattr(batch, "info", None))
        liv = self.values(cands.states, cands.users, cands.authors)
        return Batch(act=liv_scores(liv), liv=liv, state=state)


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
        self._columns = torch.as_tensor([TASKS.index(t) for t in net.towers])
        self._rank = net.towers.index(config.rank_task)
        self._gift = TASKS.index("gift")

    def process_buffer(self, buffer: ReplayBuffer) -> ReplayBuffer:
        """Check the SCRI layout once (the OfflineTrainer calls this before training)."""
        check_scri_buffer(buffer, self.policy.net.state_dim)
        return buffer

    def _ids(self, batch: Batch) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        if self.policy.net.embedding.user_id is None:
            return None, None
        return (
            torch.as_tensor(np.asarray(batch.info.user, np.int64)),
            torch.as_tensor(np.asarray(batch.info.author, np.int64)),
        )

    def losses(self, batch: Batch) -> dict[str, torch.Tensor]:
        """The terms of Eq. 9-10 on a batch of SCRI samples (what `_update_with_batch` minimises).

        Keys: loss, q_loss, reward_loss (SL), assist_loss (assistance net), y (B, towers),
        rewards (B, towers) scaled, q1/q2 (B, towers), r_hat (SL), gift_logit.
        """
        net = self.policy.net
        cfg = self.config
        obs = torch.as_tensor(np.asarray(batch.obs), dtype=torch.float32)
        obs_next = torch.as_tensor(np.asarray(batch.obs_next), dtype=torch.float32)
        all_rewards = torch.as_tensor(np.asarray(batch.info.rewards), dtype=torch.float32)
        rewards = all_rewards[:, self._columns] / net.reward_scales
        users, authors = self._ids(batch)
        with torch.no_grad():
            nxt = self.net_old(obs_next, users, authors)
            y = rewards + self.gamma * torch.minimum(nxt.q1, nxt.q2)  # Eq. 5, 7 (no terminal)
        out = net(obs, users, authors)

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
def check_scri_buffer(buffer: ReplayBuffer, state_dim: int | None = None) -> None:
    """Raise ValueError unless `buffer` has the SCRI layout of `simulators.scri`."""
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


def _all(buffer: ReplayBuffer) -> Batch:
    return buffer[np.arange(len(buffer))]


def reward_scales(rewards: np.ndarray) -> np.ndarray:
    """Per-column scale: the mean of the positive rewards (1 where a column has none)."""
    rewards = np.asarray(rewards, dtype=np.float64)
    pos = rewards > 0
    total = np.where(pos, rewards, 0.0).sum(0)
    count = pos.sum(0)
    return np.where(count > 0, total / np.maximum(count, 1), 1.0).astype(np.float32)


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
    data = _all(buffer)
    obs = np.asarray(data.obs, dtype=np.float32)
    user_dim = obs.shape[1] - len(AUTHOR_FEATURES) - len(UA_COUNTERS)
    rewards = np.asarray(data.info.rewards, dtype=np.float32)
    if "gift" in cfg.towers and not (rewards[:, TASKS.index("gift")] > 0).any():
        warnings.warn(
            "the gift tower trains on a buffer without a single gift; pass "
            "tasks=simulators.scri.tasks_for(behaviours) if the source has no gift signal",
            stacklevel=2,
        )
    torch.manual_seed(cfg.seed)
    user_ids = author_ids = None
    if cfg.id_embeddings:
        user_ids = np.unique(np.asarray(data.info.user, np.int64))
        author_ids = np.unique(np.asarray(data.info.author, np.int64))
    net = _make_net(cfg, user_dim, user_ids, author_ids)
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
        id_dropout=cfg.id_dropout,
    )


def _make_algorithm(
    net: LIVNet, cfg: RLIVUAConfig, n_candidates: int, states_fn: StatesFn | None
) -> RLIVUA:
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
    torch.manual_seed(cfg.seed)
    buffer._random_state = np.random.RandomState(cfg.seed)  # Tianshou's default is 42
    bar = stage_bar(cfg.epochs * cfg.steps_per_epoch, "RLIV-UA", progress, unit="update")
    logger = _LossLogger(bar)
    result = algo.run_training(
        OfflineTrainerParams(
            buffer=buffer,
            max_epochs=cfg.epochs,
            epoch_num_steps=cfg.steps_per_epoch,
            batch_size=cfg.batch_size,
            logger=logger,
            verbose=False,
            show_progress=False,  # Tianshou's is a bar per epoch; the logger moves one bar
        )
    )
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


# --------------------------------------------------------------------------- serving
def candidate_states(f_u: np.ndarray, f_a: np.ndarray, f_ua: np.ndarray) -> np.ndarray:
    """One request's SCRI states: f_u (user_dim,), f_a (N, 3), f_ua (N, 6) raw counts ->
    (N, state_dim) float32 rows ``[f_u | f_a | f_ua]``."""
    f_a = np.asarray(f_a, dtype=np.float32)
    f_ua = np.asarray(f_ua, dtype=np.float32)
    if f_a.shape[-1] != len(AUTHOR_FEATURES) or f_ua.shape[-1] != len(UA_COUNTERS):
        raise ValueError(
            f"f_a must be (N, {len(AUTHOR_FEATURES)}) and f_ua (N, {len(UA_COUNTERS)}), "
            f"got {f_a.shape} and {f_ua.shape}"
        )
    n = f_a.shape[0]
    user = np.broadcast_to(np.asarray(f_u, dtype=np.float32), (n, np.shape(f_u)[-1]))
    return np.concatenate([user, f_a, f_ua], axis=1)


def _as_policy(model: RLIVUA | RLIVUAPolicy) -> RLIVUAPolicy:
    return model.policy if isinstance(model, RLIVUA) else model


def score_candidates(
    model: RLIVUA | RLIVUAPolicy,
    f_u: np.ndarray,
    f_a: np.ndarray,
    f_ua: np.ndarray,
    user: int | None = None,
    authors: np.ndarray | None = None,
) -> np.ndarray:
    """(N,) scores in [-1, 1] of one request's candidates by the rank task's LIV (`liv_scores`;
    candidates of one author tie). Unknown or missing ids use the unseen-id vectors."""
    policy = _as_policy(model)
    states = candidate_states(f_u, f_a, f_ua)
    users = None if user is None else np.full(len(states), int(user), dtype=np.int64)
    return liv_scores(policy.values(states, users, authors))


def user_author_states(obs: Obs) -> CandidateStates:
    """The `recgym/UserAuthor-v0` adapter: candidate states from an observation dict (or a
    batch of them).

    States are `envs.user_author.candidate_states` (raw counters recovered from the observed
    log1p), the user id is ``obs["user_id"]`` and the authors are ``obs["author_id"]``. Ids are
    the env backend's: train on samples built with ``data.asa.asa_samples(...,
    backend=<the env's backend>)`` (``id_space == "backend"``), otherwise a learned simulator's
    dense ids would address the wrong embeddings.
    """
    states = ua_candidate_states(obs)
    authors = np.asarray(obs["author_id"], dtype=np.int64)
    return CandidateStates(states, user_id(obs), authors)


class LIVSlatePolicy:
    """`act(obs)` for `envs.evaluation`: scores a request's candidates by the LIV.

    `states_fn(obs) -> CandidateStates` reads the observation (default: the UserAuthor-v0
    adapter `user_author_states`); on a Box (scores) or None action space the result is
    `liv_scores`, on Discrete(N) the argmax.
    """

    def __init__(
        self,
        model: RLIVUA | RLIVUAPolicy,
        states_fn: StatesFn = user_author_states,
        action_space: gym.Space | None = None,
    ) -> None:
        self.policy = _as_policy(model)
        self.states_fn = states_fn
        self.action_space = action_space

    def values(self, obs: Obs) -> np.ndarray:
        cands = self.states_fn(obs)
        return self.policy.values(cands.states, cands.users, cands.authors)

    def act(self, obs: Obs) -> np.ndarray | int:
        values = self.values(obs)
        if isinstance(self.action_space, spaces.Discrete):
            return action_from_values(values, self.action_space, obs.get("mask"))
        return liv_scores(values)


# --------------------------------------------------------------------------- save / load
def save_rliv_ua(algo: RLIVUA, path: str | Path) -> Path:
    """Write `algo.state_dict()` (weights, target net, optimiser, input/reward statistics, id
    vocabularies) to `path` and the config plus input sizes as JSON beside it (`path` + .json)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    net = algo.policy.net
    torch.save(algo.state_dict(), path)
    emb = net.embedding
    meta = {
        "kind": KIND,
        "config": asdict(algo.config),
        "user_dim": emb.user_dim,
        "n_users": 0 if emb.user_id is None else len(emb.user_vocab),
        "n_authors": 0 if emb.author_id is None else len(emb.author_vocab),
        "n_candidates": int(algo.policy.action_space.shape[0]),
    }
    _json_path(path).write_text(json.dumps(meta, indent=2))
    return path


def load_rliv_ua(
    path: str | Path,
    config: RLIVUAConfig | None = None,
    states_fn: StatesFn | None = None,
) -> RLIVUA:
    """Rebuild the RLIV-UA saved by `save_rliv_ua`. If `config` is given, its structural
    fields (towers, heads, widths, gamma, ids) must equal the saved ones; ValueError otherwise,
    as when the weights do not fit the saved config."""
    path = Path(path)
    meta = json.loads(_json_path(path).read_text())
    if meta.get("kind") != KIND:
        raise ValueError(
            f"{_json_path(path)} is not an {KIND} checkpoint (kind {meta.get('kind')})"
        )
    names = {f.name for f in fields(RLIVUAConfig)}
    unknown = set(meta["config"]) - names
    if unknown:
        raise ValueError(f"{_json_path(path)} has unknown config fields {sorted(unknown)}")
    saved = RLIVUAConfig(**meta["config"])
    if config is not None:
        diff = [
            f"{name}: saved {getattr(saved, name)!r}, given {getattr(config, name)!r}"
            for name in _STRUCTURE_FIELDS
            if getattr(saved, name) != getattr(config, name)
            and (name != "rank_task" or not saved.multi_task)  # any tower may rank
        ]
        if diff:
            raise ValueError(f"config does not match the checkpoint {path}: " + "; ".join(diff))
    ids = saved.id_embeddings and meta["n_users"] > 0
    net = _make_net(
        saved,
        int(meta["user_dim"]),
        np.zeros(meta["n_users"], np.int64) if ids else None,
        np.zeros(meta["n_authors"], np.int64) if ids else None,
    )
    cfg = config or saved
    algo = _make_algorithm(net, cfg, meta["n_candidates"], states_fn)
    state = torch.load(path, weights_only=True)
    for group, lr in zip(
        state["_optimizers"][0]["param_groups"], (cfg.embedding_lr, cfg.critic_lr), strict=True
    ):
        group["lr"] = lr  # the given config's learning rates, not the saved ones
    try:
        algo.load_state_dict(state)
    except (RuntimeError, ValueError) as err:
        raise ValueError(f"weights in {path} do not match the config in its JSON: {err}") from err
    algo.policy.net.eval()
    return algo


def _json_path(path: Path) -> Path:
    return path.with_name(path.name + ".json")


__all__ = [
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
