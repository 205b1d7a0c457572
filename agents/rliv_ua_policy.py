"""RLIV-UA's networks and serving side: the shared embedding and LIV towers (`LIVNet`), the
Tianshou policy that ranks candidates by the LIV (`RLIVUAPolicy`), and the slate policy that
acts on `recgym/UserAuthor-v0` observations (`LIVSlatePolicy`, adapter `user_author_states`).

The algorithm, training and checkpoints are in `agents.rliv_ua`, which re-exports all of this;
its docstring describes the model and the decisions where the paper is silent.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces
from tianshou.algorithm.algorithm_base import Policy
from tianshou.data import Batch
from torch import nn
from torch.nn import functional as F

from recgym.envs.contract import Obs, action_from_values, candidate_columns, user_id
from recgym.envs.user_author import candidate_states as ua_candidate_states
from recgym.simulators.scri import AUTHOR_FEATURES, ITEM_FEATURES, UA_COUNTERS


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
    """The shared embedding layer: s_ua (B, state_dim) [+ ids] [+ item] -> h_u, h_a, h_ua and,
    for an item-aware model, h_i (B, E) each.

    Inputs are ``[f_u | f_a | log1p f_ua]`` standardised with the training buffer's statistics
    (`mean`, `std` buffers); each part has its own linear map. With id vocabularies, the id's
    vector is added to h_u / h_a (and h_i); ids outside the vocabulary (or None) use row 0, and
    in training mode each id is replaced by row 0 with probability `id_dropout`. With
    `item_features`, h_i maps the item's standardised static row (ITEM_FEATURES).
    """

    def __init__(
        self,
        *,
        user_dim: int,
        embedding_dim: int,
        user_ids: np.ndarray | None = None,
        author_ids: np.ndarray | None = None,
        item_ids: np.ndarray | None = None,
        item_features: bool = False,
        id_dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.user_dim = int(user_dim)
        self.id_dropout = float(id_dropout)
        self.item_features = bool(item_features)
        self.state_dim = self.user_dim + len(AUTHOR_FEATURES) + len(UA_COUNTERS)
        self.register_buffer("mean", torch.zeros(self.state_dim))
        self.register_buffer("std", torch.ones(self.state_dim))
        self.user = nn.Linear(self.user_dim, embedding_dim)
        self.author = nn.Linear(len(AUTHOR_FEATURES), embedding_dim)
        self.pair = nn.Linear(len(UA_COUNTERS), embedding_dim)
        self.user_id = self.author_id = self.item_id = self.item = None
        if user_ids is not None and author_ids is not None:
            self.register_buffer("user_vocab", torch.as_tensor(np.sort(user_ids), dtype=torch.long))
            self.register_buffer(
                "author_vocab", torch.as_tensor(np.sort(author_ids), dtype=torch.long)
            )
            self.user_id = nn.Embedding(len(user_ids) + 1, embedding_dim)
            self.author_id = nn.Embedding(len(author_ids) + 1, embedding_dim)
            nn.init.normal_(self.user_id.weight, std=0.1)
            nn.init.normal_(self.author_id.weight, std=0.1)
        if self.item_features:
            self.register_buffer("item_mean", torch.zeros(len(ITEM_FEATURES)))
            self.register_buffer("item_std", torch.ones(len(ITEM_FEATURES)))
            self.item = nn.Linear(len(ITEM_FEATURES), embedding_dim)
            if item_ids is not None:
                vocab = torch.as_tensor(np.sort(item_ids), dtype=torch.long)
                self.register_buffer("item_vocab", vocab)
                self.item_id = nn.Embedding(len(item_ids) + 1, embedding_dim)
                nn.init.normal_(self.item_id.weight, std=0.1)

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

    def _rows(self, ids: torch.Tensor | None, vocab: torch.Tensor, n: int) -> torch.Tensor:
        """Id-table rows of `ids` (row 0 for None / unseen; id dropout in training)."""
        if ids is None:
            return torch.zeros(n, dtype=torch.long, device=vocab.device)
        rows = self.index(ids, vocab)
        if self.training and self.id_dropout > 0:  # train the unseen-id row 0
            rows = torch.where(torch.rand(len(rows), device=rows.device) < self.id_dropout, 0, rows)
        return rows

    def forward(
        self,
        states: torch.Tensor,
        users: torch.Tensor | None = None,
        authors: torch.Tensor | None = None,
        items: torch.Tensor | None = None,
        item_x: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, ...]:
        x = self.inputs(states)
        a = self.user_dim + len(AUTHOR_FEATURES)
        h_u = self.user(x[:, : self.user_dim])
        h_a = self.author(x[:, self.user_dim : a])
        h_ua = self.pair(x[:, a:])
        if self.user_id is not None:
            h_u = h_u + self.user_id(self._rows(users, self.user_vocab, len(states)))
            h_a = h_a + self.author_id(self._rows(authors, self.author_vocab, len(states)))
        if self.item is None:
            return h_u, h_a, h_ua
        if item_x is None:
            raise ValueError(
                "this RLIV-UA model is item-aware (item_features=True): it needs each "
                "candidate's static item row (ITEM_FEATURES) beside its state"
            )
        h_i = self.item(((item_x - self.item_mean) / self.item_std).clamp(-10.0, 10.0))
        if self.item_id is not None:
            h_i = h_i + self.item_id(self._rows(items, self.item_vocab, len(states)))
        return h_u, h_a, h_ua, h_i


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

    With SL each tower has three MLP heads r_hat, V1, V2 over ``H = [h_u | h_a | h_ua (| h_i)]``
    and ``Q_k = r_hat.detach() + gamma * V_k`` (Eq. 8; r_hat learns from its supervised term
    only); without SL two heads Q1, Q2. Values are in scaled reward units (`reward_scales`).

    An item-aware net (`item_features`) also holds, per author of the training samples, up to
    `max_items` of its items (the most often logged) with their static rows: the set Eq. 7's
    max over the author's items runs over (`next_values`).
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
        item_ids: np.ndarray | None = None,
        item_features: bool = False,
        author_table: tuple[int, int] = (0, 0),
        id_dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.towers = tuple(towers)
        self.supervised = bool(supervised)
        self.heads: tuple[str, ...] = ("r_hat", "v1", "v2") if supervised else ("q1", "q2")
        self.gamma = float(gamma)
        self.item_features = bool(item_features)
        self.embedding = UAEmbedding(
            user_dim=user_dim,
            embedding_dim=embedding_dim,
            user_ids=user_ids,
            author_ids=author_ids,
            item_ids=item_ids,
            item_features=item_features,
            id_dropout=id_dropout,
        )
        parts = 4 if item_features else 3
        self.critics = EnsembleMLP(
            len(self.towers) * len(self.heads), parts * embedding_dim, tuple(hidden_sizes)
        )
        self.assist: nn.Module | None = None
        if assistance:
            self.assist = nn.Sequential(
                nn.Linear(2 * embedding_dim, hidden_sizes[0]),
                nn.ReLU(),
                nn.Linear(hidden_sizes[0], 1),
            )
        self.register_buffer("reward_scales", torch.ones(len(self.towers)))
        if item_features:  # Eq. 7's item sets: (A,) authors, (A, M) items (-1 pads), rows
            n_authors, m = author_table
            self.register_buffer("table_authors", torch.zeros(n_authors, dtype=torch.long))
            self.register_buffer("table_items", torch.full((n_authors, m), -1, dtype=torch.long))
            self.register_buffer("table_item_x", torch.zeros(n_authors, m, len(ITEM_FEATURES)))

    @property
    def state_dim(self) -> int:
        return self.embedding.state_dim

    def forward(
        self,
        states: torch.Tensor,
        users: torch.Tensor | None = None,
        authors: torch.Tensor | None = None,
        items: torch.Tensor | None = None,
        item_x: torch.Tensor | None = None,
    ) -> LIVOutput:
        h = self.embedding(states, users, authors, items, item_x)
        out = self.critics(torch.cat(h, 1))
        out = out.reshape(len(states), len(self.towers), len(self.heads))
        if self.supervised:
            r_hat = out[..., 0]
            q1 = r_hat.detach() + self.gamma * out[..., 1]
            q2 = r_hat.detach() + self.gamma * out[..., 2]
        else:
            r_hat, q1, q2 = None, out[..., 0], out[..., 1]
        gift = None
        if self.assist is not None:
            gift = self.assist(torch.cat([h[0], h[1]], 1)).squeeze(-1)
        return LIVOutput(q1=q1, q2=q2, r_hat=r_hat, gift_logit=gift)

    def set_author_items(self, authors: np.ndarray, items: np.ndarray, item_x: np.ndarray) -> None:
        """Fill the item sets from training samples' (author, item, item row) triples: per
        author its most often logged items (ties: smaller id first), at most the table's width."""
        n_authors, m = self.table_items.shape
        pairs, first, counts = np.unique(
            np.stack([authors, items], 1), axis=0, return_index=True, return_counts=True
        )
        order = np.lexsort((pairs[:, 1], -counts, pairs[:, 0]))
        pairs, first = pairs[order], first[order]
        keys, start = np.unique(pairs[:, 0], return_index=True)
        if len(keys) != n_authors:
            raise ValueError(f"the table holds {n_authors} authors, the samples {len(keys)}")
        rank = np.arange(len(pairs)) - np.repeat(start, np.diff(np.r_[start, len(pairs)]))
        keep = rank < m
        row = np.searchsorted(keys, pairs[keep, 0])
        table = np.full((n_authors, m), -1, dtype=np.int64)
        rows_x = np.zeros((n_authors, m, len(ITEM_FEATURES)), dtype=np.float32)
        table[row, rank[keep]] = pairs[keep, 1]
        rows_x[row, rank[keep]] = item_x[first[keep]]
        self.table_authors.copy_(torch.as_tensor(keys))
        self.table_items.copy_(torch.as_tensor(table))
        self.table_item_x.copy_(torch.as_tensor(rows_x))

    def next_values(
        self,
        states: torch.Tensor,
        users: torch.Tensor | None,
        authors: torch.Tensor,
        items: torch.Tensor | None = None,
        item_x: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """(B, towers) ``max over the author's items of min(Q1, Q2)(s', item)`` (Eq. 7). An
        author-only net has no item to maximise over: ``min(Q1, Q2)(s')``. Authors outside the
        item table (none in training) fall back to the sample's own item (`items`, `item_x`)."""
        if not self.item_features:
            out = self(states, users, authors)
            return torch.minimum(out.q1, out.q2)
        keys = self.table_authors
        pos = torch.searchsorted(keys, authors).clamp_max(len(keys) - 1)
        known = keys[pos] == authors
        cand = self.table_items[pos]  # (B, M)
        cand_x = self.table_item_x[pos]
        valid = (cand >= 0) & known[:, None]
        if items is not None and item_x is not None:  # the sample's own item when unknown
            cand[:, 0] = torch.where(known, cand[:, 0], items)
            cand_x[:, 0] = torch.where(known[:, None], cand_x[:, 0], item_x)
            valid[:, 0] = True
        b, m = cand.shape
        rep = torch.arange(b, device=states.device).repeat_interleave(m)
        out = self(
            states[rep],
            None if users is None else users[rep],
            authors[rep],
            cand.reshape(-1),
            cand_x.reshape(b * m, -1),
        )
        value = torch.minimum(out.q1, out.q2).reshape(b, m, -1)
        value = value.masked_fill(~valid[..., None], float("-inf")).max(1).values
        return torch.nan_to_num(value, neginf=0.0)  # no item at all: no future value


# --------------------------------------------------------------------------- policy
class CandidateStates(NamedTuple):
    """One request's (or a batch of requests') candidates as SCRI states."""

    states: np.ndarray
    """(..., N, state_dim) float32 s_ua rows with raw counters."""
    users: np.ndarray | None = None
    """(...,) user id of each request, or None (unseen-id vector)."""
    authors: np.ndarray | None = None
    """(..., N) author id of each candidate, or None."""
    items: np.ndarray | None = None
    """(..., N) item id of each candidate, or None (an item-aware model's unseen-item vector)."""
    item_x: np.ndarray | None = None
    """(..., N, len(ITEM_FEATURES)) static item rows (needed by an item-aware model)."""


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
        items: np.ndarray | None = None,
        item_x: np.ndarray | None = None,
    ) -> np.ndarray:
        """(..., state_dim) states -> (...,) float64 values of one task's tower, in its reward's
        units (scaled back). head: "liv" = min(Q1, Q2) (Eq. 5), "r_hat" = the supervised reward
        prediction (SL only), "q1" / "q2" = one critic. `users` broadcasts over the last axis
        of `authors` (one user per request). An item-aware model also reads `items` (...) and
        `item_x` (..., len(ITEM_FEATURES))."""
        task = task or self.rank_task
        states = np.asarray(states, dtype=np.float32)
        if states.shape[-1] != self.net.state_dim:
            raise ValueError(
                f"states have {states.shape[-1]} features; this model reads {self.net.state_dim} "
                f"(user_dim {self.net.embedding.user_dim} + author + counters)"
            )
        lead = states.shape[:-1]
        dev = self.net.reward_scales.device  # the inputs go to the net's device, scores come back
        u = a = None
        if users is not None:
            u = torch.as_tensor(_broadcast_ids(users, lead).reshape(-1), device=dev)
        if authors is not None:
            a = torch.as_tensor(_broadcast_ids(authors, lead).reshape(-1), device=dev)
        i = None
        if items is not None:
            i = torch.as_tensor(_broadcast_ids(items, lead).reshape(-1), device=dev)
        ix = None
        if item_x is not None:
            x = np.asarray(item_x, np.float32).reshape(-1, len(ITEM_FEATURES))
            ix = torch.as_tensor(x, device=dev)
        k = self.net.towers.index(task)
        was_training = self.net.training
        self.net.eval()
        with torch.no_grad():
            s = torch.from_numpy(states.reshape(-1, states.shape[-1])).to(dev)
            out = self.net(s, u, a, i, ix)
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
        return v.cpu().numpy().astype(np.float64).reshape(lead)

    def candidate_states(self, obs: Any, info: Any) -> CandidateStates:
        if self.states_fn is not None:
            return self.states_fn(obs)
        if isinstance(obs, Batch | dict) and "candidates" in obs:
            return user_author_states(obs)
        found = dict.fromkeys(("user", "author", "item", "item_x"))
        if isinstance(info, Batch | dict):
            found.update({k: info[k] for k in found if k in info})
        return CandidateStates(np.asarray(obs, dtype=np.float32), *found.values())

    def forward(self, batch: Batch, state: Any = None, **kwargs: Any) -> Batch:
        cands = self.candidate_states(batch.obs, getattr(batch, "info", None))
        liv = self.values(
            cands.states, cands.users, cands.authors, items=cands.items, item_x=cands.item_x
        )
        return Batch(act=liv_scores(liv), liv=liv, state=state)


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


def _as_policy(model: Any) -> RLIVUAPolicy:
    """The `RLIVUAPolicy` of an `RLIVUA` algorithm (its ``.policy``), or the policy itself."""
    return model if isinstance(model, RLIVUAPolicy) else model.policy


def score_candidates(
    model: Any,
    f_u: np.ndarray,
    f_a: np.ndarray,
    f_ua: np.ndarray,
    user: int | None = None,
    authors: np.ndarray | None = None,
    items: np.ndarray | None = None,
    item_x: np.ndarray | None = None,
) -> np.ndarray:
    """(N,) scores in [-1, 1] of one request's candidates by the rank task's LIV (`liv_scores`;
    an author-only model ties the candidates of one author). Unknown or missing ids use the
    unseen-id vectors; an item-aware model needs `item_x` (N, len(ITEM_FEATURES))."""
    policy = _as_policy(model)
    states = candidate_states(f_u, f_a, f_ua)
    users = None if user is None else np.full(len(states), int(user), dtype=np.int64)
    return liv_scores(policy.values(states, users, authors, items=items, item_x=item_x))


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
    items = np.asarray(obs["item_id"], dtype=np.int64)
    item_x = candidate_columns(obs, ITEM_FEATURES)  # = Catalogue.item_features of the items
    return CandidateStates(states, user_id(obs), authors, items, item_x)


class LIVSlatePolicy:
    """`act(obs)` for `envs.evaluation`: scores a request's candidates by the LIV.

    `states_fn(obs) -> CandidateStates` reads the observation (default: the UserAuthor-v0
    adapter `user_author_states`); on a Box (scores) or None action space the result is
    `liv_scores`, on Discrete(N) the argmax.
    """

    def __init__(
        self,
        model: Any,
        states_fn: StatesFn = user_author_states,
        action_space: gym.Space | None = None,
    ) -> None:
        self.policy = _as_policy(model)
        self.states_fn = states_fn
        self.action_space = action_space

    def values(self, obs: Obs) -> np.ndarray:
        c = self.states_fn(obs)
        return self.policy.values(c.states, c.users, c.authors, items=c.items, item_x=c.item_x)

    def act(self, obs: Obs) -> np.ndarray | int:
        values = self.values(obs)
        if isinstance(self.action_space, spaces.Discrete):
            return action_from_values(values, self.action_space, obs.get("mask"))
        return liv_scores(values)


__all__ = [
    "CandidateStates",
    "EnsembleMLP",
    "LIVNet",
    "LIVOutput",
    "LIVSlatePolicy",
    "RLIVUAPolicy",
    "StatesFn",
    "UAEmbedding",
    "candidate_states",
    "liv_scores",
    "score_candidates",
    "user_author_states",
]
