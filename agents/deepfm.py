"""DeepFM, the RLIV-UA paper's RankingModel: a supervised multi-task ranker trained on logs.

DeepFM (Guo et al. 2017) over F fields with k-dimensional embeddings e_f: per task t,
``y_t = b_t + sum_f w_{t,f}(x_f) + FM(e) + DNN_t(e_1 ⊕ ... ⊕ e_F)`` with the factorisation-
machine term ``FM(e) = sum_{f<g} <e_f, e_g> = 1/2 sum_k [(sum_f e_fk)^2 - sum_f e_fk^2]``
(`fm_interaction`). Embeddings and the FM term are shared by the tasks ("shared bottom");
each task has its own first-order weights and DNN output. Tasks: click, watch ratio
(regression, later times duration = expected watch time), long view, like, follow.

Fields, and how each is available both in a KuaiRand log and at serving time in an env:
- sparse: user id, item id, author id, leaf category. The model keeps its own vocabularies of
  the log's raw ids and its own item -> author / category table (from the items file); at
  serving it maps the observation's candidate ids (``obs["item_id"]``) and user
  (``obs["user_id"]``) to raw ids through the id maps of the backend it was bound to
  (`for_backend`: a learned simulator's ``item_ids`` / ``user_ids``; the ground-truth world's
  ids are the raw ids, the default) and looks author and category up in its own table. Ids it
  never saw share an "unknown" embedding.
- dense (one field each, ``e_f = x_f v_f``): the static user features and RANKER_FEATURES
  (log duration, log popularity, history category / author share). These come from
  `agents.baselines.log_features` on the log side and from the observation's rows at serving,
  exactly as for the MLP `RankingModel` (whose docstring lists the residual differences).
"""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pandas as pd
import torch
from torch import nn
from torch.nn import functional as F

from recgym.agents.baselines import RANKER_FEATURES, RankerConfig, log_features
from recgym.agents.seeding import seeded_global_rngs
from recgym.agents.tb import scalar_writer
from recgym.device import load_state, module_device, resolve_device
from recgym.envs.contract import Obs, action_from_values, candidate_columns, user_id
from recgym.simulators.features import USER_FEATURE_DIM

TASKS: tuple[str, ...] = ("click", "watch", "long_view", "like", "follow")
"""Heads DeepFM can learn; ``watch`` regresses the clipped watch ratio, the rest are binary."""
TASK_LABEL = {
    "click": "is_click",
    "long_view": "long_view",
    "like": "is_like",
    "follow": "is_follow",
}
"""Log column of each binary task."""
SPARSE_FIELDS: tuple[str, ...] = ("user", "item", "author", "category")
"""Id fields, in the order of the sparse input's last axis."""


def fm_interaction(embeddings: torch.Tensor) -> torch.Tensor:
    """(..., F, k) field embeddings -> (...,) sum over field pairs f < g of <e_f, e_g>."""
    square_of_sum = embeddings.sum(dim=-2).pow(2)
    sum_of_squares = embeddings.pow(2).sum(dim=-2)
    return 0.5 * (square_of_sum - sum_of_squares).sum(dim=-1)


class DeepFMNet(nn.Module):
    """Multi-task DeepFM over sparse id fields and dense fields.

    `forward(sparse, dense)` takes (..., len(vocab_sizes)) int64 codes (0 = unknown, each
    field's own code space) and (..., n_dense) float features; dense inputs are standardised
    with the buffers `mean` / `std` (set from the training rows, saved with the weights).
    Returns (..., n_tasks) raw outputs (logits for binary tasks).
    """

    def __init__(
        self,
        vocab_sizes: tuple[int, ...],
        n_dense: int,
        n_tasks: int,
        embedding_dim: int = 16,
        hidden_sizes: tuple[int, ...] = (64, 64),
    ) -> None:
        super().__init__()
        self.vocab_sizes = tuple(int(v) for v in vocab_sizes)
        offsets = np.concatenate([[0], np.cumsum(self.vocab_sizes)[:-1]])
        self.register_buffer("offsets", torch.as_tensor(offsets, dtype=torch.long))
        total = int(sum(self.vocab_sizes))
        self.embedding = nn.Embedding(total, embedding_dim)
        self.first_order = nn.Embedding(total, n_tasks)
        self.dense_embedding = nn.Parameter(torch.empty(n_dense, embedding_dim))
        self.dense_linear = nn.Linear(n_dense, n_tasks)  # first order of dense fields + bias
        nn.init.normal_(self.embedding.weight, std=0.01)
        nn.init.zeros_(self.first_order.weight)
        nn.init.normal_(self.dense_embedding, std=0.01)
        n_fields = len(self.vocab_sizes) + n_dense
        layers: list[nn.Module] = []
        width = n_fields * embedding_dim
        for h in hidden_sizes:
            layers += [nn.Linear(width, h), nn.ReLU()]
            width = h
        layers.append(nn.Linear(width, n_tasks))
        self.deep = nn.Sequential(*layers)
        self.register_buffer("mean", torch.zeros(n_dense))
        self.register_buffer("std", torch.ones(n_dense))

    def field_embeddings(self, sparse: torch.Tensor, dense: torch.Tensor) -> torch.Tensor:
        """(..., S) codes, (..., D) standardised dense -> (..., S + D, k) field embeddings."""
        e_sparse = self.embedding(sparse + self.offsets)
        e_dense = dense.unsqueeze(-1) * self.dense_embedding
        return torch.cat([e_sparse, e_dense], dim=-2)

    def forward(self, sparse: torch.Tensor, dense: torch.Tensor) -> torch.Tensor:
        x = (dense - self.mean) / self.std
        e = self.field_embeddings(sparse, x)
        first = self.first_order(sparse + self.offsets).sum(dim=-2) + self.dense_linear(x)
        deep = self.deep(e.flatten(start_dim=-2))
        return first + deep + fm_interaction(e).unsqueeze(-1)


@dataclass(kw_only=True)
class DeepFMConfig:
    """How `DeepFMRanker` builds its training table from logs, fits, and ranks."""

    tasks: tuple[str, ...] = TASKS
    """Heads to learn (a subset of TASKS containing click and watch)."""
    target: str = "watch"
    """What ranking sorts by: "watch" (predicted watch time) or "click" (P(click))."""
    embedding_dim: int = 16
    """k, the embedding size of every field."""
    hidden_sizes: tuple[int, ...] = (64, 64)
    """Widths of the DNN part."""
    lr: float = 2e-3
    """Adam learning rate."""
    weight_decay: float = 1e-6
    """Adam weight decay."""
    epochs: int = 8
    """Passes over the training days."""
    batch_size: int = 512
    """Rows per gradient step."""
    watch_weight: float = 1.0
    """Weight of the watch-ratio MSE next to the binary cross-entropies (each weight 1)."""
    watch_ratio_cap: float = 2.0
    """Watch ratios are clipped to [0, cap] (`RankerConfig.watch_ratio_cap`)."""
    holdout_days: int = 1
    """The last this many days are held out for the reported metrics."""
    history_len: int = 20
    """Clicked items the history-share features count (`RankerConfig.history_len`)."""
    request_size: int = 6
    """Log rows per request (`RankerConfig.request_size`)."""
    session_gap_minutes: float = 30.0
    """Session cut in the log (`RankerConfig.session_gap_minutes`)."""
    seed: int = 0
    """Seed of weight initialisation and minibatch order."""
    device: str = "auto"
    """Torch device of the network (`recgym.device.resolve_device`); the weights are initialised
    and the minibatch order drawn on the CPU, so a seed gives the same run on any device."""

    def ranker_config(self) -> RankerConfig:
        """The `RankerConfig` that `log_features` reads the shared settings from."""
        return RankerConfig(
            watch_ratio_cap=self.watch_ratio_cap,
            holdout_days=self.holdout_days,
            history_len=self.history_len,
            request_size=self.request_size,
            session_gap_minutes=self.session_gap_minutes,
            seed=self.seed,
        )


@dataclass(kw_only=True)
class DeepFMFitStats:
    """What `DeepFMRanker.fit` measured; held-out numbers are on the last `holdout_days`."""

    click_auc: float
    """ROC AUC of the predicted click on held-out days."""
    train_click_auc: float
    """The same on the training days."""
    watch_rmse: float
    """Held-out RMSE of the predicted (clipped) watch ratio."""
    watch_rmse_constant: float
    """Held-out RMSE of the training mean watch ratio, for reference."""
    task_auc: dict[str, float] = field(default_factory=dict)
    """Held-out AUC of every binary task (NaN where a label is constant)."""
    n_train: int = 0
    n_test: int = 0
    seconds: float = 0.0


@dataclass(kw_only=True)
class Vocabulary:
    """Raw log ids -> codes (0 = unknown) and each known item's author and category codes."""

    users: np.ndarray  # (U,) sorted raw user ids; code = position + 1
    items: np.ndarray  # (I,) sorted raw item ids; code = position + 1
    item_author: np.ndarray  # (I + 1,) author code per item code (0 for unknown)
    item_category: np.ndarray  # (I + 1,) leaf category code per item code (0 for unknown)
    n_authors: int
    n_categories: int

    @classmethod
    def from_dataset(cls, ds: Any) -> Vocabulary:
        it = ds.interactions
        users = np.union1d(ds.users["user_id"].to_numpy(np.int64), it["user_id"].to_numpy())
        items = np.union1d(ds.items["item_id"].to_numpy(np.int64), it["item_id"].to_numpy())
        frame = ds.items.drop_duplicates("item_id").set_index("item_id").reindex(items)
        if "tag" in frame:
            leaf = frame["tag"].astype("string").str.split(",").str[-1].str.strip()
            leaf = pd.to_numeric(leaf, errors="coerce")
        else:
            leaf = pd.Series(np.nan, index=frame.index)
        author = frame["author_id"] if "author_id" in frame else pd.Series(np.nan, frame.index)
        author_codes, n_authors = _codes(pd.to_numeric(author, errors="coerce"))
        category_codes, n_categories = _codes(leaf)
        return cls(
            users=users,
            items=items,
            item_author=np.r_[0, author_codes],
            item_category=np.r_[0, category_codes],
            n_authors=n_authors,
            n_categories=n_categories,
        )

    @property
    def sizes(self) -> tuple[int, ...]:
        """Code-space sizes of SPARSE_FIELDS (each with its unknown code 0)."""
        return (
            len(self.users) + 1,
            len(self.items) + 1,
            self.n_authors + 1,
            self.n_categories + 1,
        )

    def encode(self, raw_users: np.ndarray, raw_items: np.ndarray) -> np.ndarray:
        """Broadcast raw user and item ids -> (..., 4) int64 codes of SPARSE_FIELDS."""
        raw_users, raw_items = np.broadcast_arrays(raw_users, raw_items)
        user = _lookup(self.users, raw_users)
        item = _lookup(self.items, raw_items)
        return np.stack(
            [user, item, self.item_author[item], self.item_category[item]], axis=-1
        ).astype(np.int64)

    def arrays(self) -> dict[str, np.ndarray]:
        return {
            "users": self.users,
            "items": self.items,
            "item_author": self.item_author,
            "item_category": self.item_category,
            "n_authors": np.array(self.n_authors),
            "n_categories": np.array(self.n_categories),
        }

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, np.ndarray]) -> Vocabulary:
        return cls(
            users=arrays["users"],
            items=arrays["items"],
            item_author=arrays["item_author"],
            item_category=arrays["item_category"],
            n_authors=int(arrays["n_authors"]),
            n_categories=int(arrays["n_categories"]),
        )


def _codes(values: pd.Series) -> tuple[np.ndarray, int]:
    """Codes 1..n of the distinct non-missing values (sorted); missing -> 0 (unknown)."""
    codes, uniques = pd.factorize(values, sort=True)
    return (codes + 1).astype(np.int64), len(uniques)


def _lookup(sorted_ids: np.ndarray, raw: np.ndarray) -> np.ndarray:
    pos = np.searchsorted(sorted_ids, raw)
    pos_c = np.minimum(pos, max(len(sorted_ids) - 1, 0))
    found = (pos < len(sorted_ids)) & (sorted_ids[pos_c] == raw) if len(sorted_ids) else pos < 0
    return np.where(found, pos_c + 1, 0).astype(np.int64)


def backend_id_maps(backend: Any) -> tuple[np.ndarray | None, np.ndarray | None]:
    """A backend's (user, item) id -> raw log id maps: a learned simulator indexes users and
    items densely and keeps the raw ids in ``user_ids`` / ``item_ids``; None where the
    backend's ids are the raw ids (the ground-truth world)."""
    user_map = getattr(backend, "user_ids", None)
    item_map = getattr(backend, "item_ids", None)
    return (
        None if user_map is None else np.asarray(user_map, dtype=np.int64),
        None if item_map is None else np.asarray(item_map, dtype=np.int64),
    )


def raw_ids(backend: Any, users: np.ndarray, items: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A backend's user and item ids as the raw ids of the logs it stands for."""
    user_map, item_map = backend_id_maps(backend)
    users = np.asarray(users, dtype=np.int64)
    items = np.asarray(items, dtype=np.int64)
    return (
        users if user_map is None else user_map[users],
        items if item_map is None else item_map[items],
    )


class DeepFMRanker:
    """The greedy supervised DeepFM ranker: fit on a KuaiRand-format log, rank candidates.

    `fit(ds)` learns every head of `config.tasks`; acting shows the candidates with the highest
    predicted watch time (``target="watch"``, predicted ratio times duration) or P(click)
    (``target="click"``), one request at a time. `feedbacks` exposes all heads per candidate
    for rankers that fuse them (RLUR).
    """

    def __init__(
        self, config: DeepFMConfig | None = None, action_space: gym.Space | None = None
    ) -> None:
        self.config = config or DeepFMConfig()
        cfg = self.config
        unknown = set(cfg.tasks) - set(TASKS)
        if unknown or not {"click", "watch"} <= set(cfg.tasks):
            raise ValueError(f"tasks must be a subset of {TASKS} with click and watch")
        if cfg.target not in ("click", "watch"):
            raise ValueError(f"target must be 'click' or 'watch', got {cfg.target!r}")
        self.tasks = tuple(cfg.tasks)
        self.vocab: Vocabulary | None = None
        self.net: DeepFMNet | None = None
        self.action_space = action_space
        self.user_ids: np.ndarray | None = None
        """Raw log id of each backend user id; None: the backend's ids are raw (`for_backend`)."""
        self.item_ids: np.ndarray | None = None
        """Raw log id of each backend item id; None: the backend's ids are raw."""

    def for_backend(self, backend: Any) -> DeepFMRanker:
        """A copy (sharing the weights) that reads observation ids as `backend`'s ids, mapped to
        raw log ids by `backend_id_maps`. Harnesses call this once per env (setup, not acting);
        without it, observation ids are taken as raw ids (right for the ground-truth world)."""
        clone = copy.copy(self)
        clone.user_ids, clone.item_ids = backend_id_maps(backend)
        return clone

    @property
    def feedback_names(self) -> tuple[str, ...]:
        """Columns of `feedbacks`: ``p_<task>`` for binary tasks, ``watch_s`` for watch."""
        return tuple("watch_s" if t == "watch" else f"p_{t}" for t in self.tasks)

    def _build(self, vocab: Vocabulary) -> None:
        self.vocab = vocab
        # the initial weights come from the config's seed; the caller's generators are untouched
        with seeded_global_rngs(self.config.seed):
            self.net = DeepFMNet(
                vocab.sizes,
                USER_FEATURE_DIM + len(RANKER_FEATURES),
                len(self.tasks),
                self.config.embedding_dim,
                tuple(self.config.hidden_sizes),
            ).to(resolve_device(self.config.device))

    # ------------------------------------------------------------------ training
    def fit(self, ds: Any, progress: bool = False) -> DeepFMFitStats:
        """Train on all but the last `holdout_days` of `ds` (a loaded KuaiRand `Dataset`)."""
        from sklearn.metrics import roc_auc_score

        start = time.perf_counter()
        cfg = self.config
        torch.set_num_threads(1)
        feats = log_features(ds, cfg.ranker_config())
        it = ds.interactions
        # log_features' row order: by user, then timestamp, ties in file order
        order = np.lexsort(
            (np.arange(len(it)), it["timestamp"].to_numpy(np.int64), it["user_id"].to_numpy())
        )
        duration = np.maximum(it["duration_ms"].to_numpy(np.float64)[order], 1.0)
        if not np.allclose(np.log1p(duration / 1000.0) / 6.0, feats.cand_x[:, 0], atol=1e-4):
            raise RuntimeError("log rows are not in log_features' order")
        vocab = Vocabulary.from_dataset(ds)
        self._build(vocab)
        assert self.net is not None
        sparse = torch.from_numpy(
            vocab.encode(
                it["user_id"].to_numpy(np.int64)[order], it["item_id"].to_numpy(np.int64)[order]
            )
        )
        dense = torch.from_numpy(np.concatenate([feats.user_x, feats.cand_x], axis=1))
        labels = np.stack(
            [
                feats.watch_ratio
                if t == "watch"
                else (it[TASK_LABEL[t]].to_numpy(np.float64)[order] > 0).astype(np.float32)
                for t in self.tasks
            ],
            axis=1,
        )
        y = torch.from_numpy(labels.astype(np.float32))
        binary = torch.tensor([t != "watch" for t in self.tasks])
        task_w = torch.tensor([cfg.watch_weight if t == "watch" else 1.0 for t in self.tasks])
        tr = torch.from_numpy(np.flatnonzero(feats.is_train))
        te = torch.from_numpy(np.flatnonzero(~feats.is_train))
        self.net.mean.copy_(dense[tr].mean(0))
        self.net.std.copy_(dense[tr].std(0).clamp_min(1e-3))
        device = module_device(self.net)  # the whole table goes to the device once
        sparse, dense, y = sparse.to(device), dense.to(device), y.to(device)
        binary, task_w = binary.to(device), task_w.to(device)
        gen = torch.Generator().manual_seed(cfg.seed)
        opt = torch.optim.Adam(self.net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        epochs: Any = range(cfg.epochs)
        if progress:
            from tqdm.auto import tqdm

            epochs = tqdm(epochs, desc="DeepFM epochs")
        self.net.train()
        tb, losses = scalar_writer("DeepFM", cfg.seed), []  # TensorBoard inside a stage
        for epoch in epochs:
            for idx in tr[torch.randperm(len(tr), generator=gen)].split(cfg.batch_size):
                idx = idx.to(device)
                out = self.net(sparse[idx], dense[idx])
                bce = F.binary_cross_entropy_with_logits(out, y[idx], reduction="none")
                mse = (out - y[idx]).pow(2)
                loss = (torch.where(binary, bce, mse) * task_w).mean(0).sum()
                opt.zero_grad()
                loss.backward()
                opt.step()
                if tb is not None:
                    losses.append(loss.item())
            if tb is not None:  # mean training loss of the epoch
                tb.add_scalar("train/loss", float(np.mean(losses)), epoch + 1)
                losses = []
        if tb is not None:
            tb.close()
        self.net.eval()
        with torch.no_grad():
            out = self.net(sparse, dense).cpu().numpy()
        tr_np, te_np = tr.numpy(), te.numpy()

        def auc(j: int, rows: np.ndarray) -> float:
            lab = labels[rows, j]
            if len(rows) == 0 or lab.min() == lab.max():
                return float("nan")
            return float(roc_auc_score(lab, out[rows, j]))

        w = self.tasks.index("watch")
        c = self.tasks.index("click")

        def rmse(pred: np.ndarray) -> float:
            err = pred - labels[te_np, w]
            return float(np.sqrt(np.mean(err**2))) if len(te_np) else float("nan")

        return DeepFMFitStats(
            click_auc=auc(c, te_np),
            train_click_auc=auc(c, tr_np),
            watch_rmse=rmse(out[te_np, w]),
            watch_rmse_constant=rmse(np.full(len(te_np), labels[tr_np, w].mean())),
            task_auc={t: auc(j, te_np) for j, t in enumerate(self.tasks) if t != "watch"},
            n_train=len(tr_np),
            n_test=len(te_np),
            seconds=time.perf_counter() - start,
        )

    # ------------------------------------------------------------------ acting
    def predict(self, obs: Obs) -> dict[str, np.ndarray]:
        """Per-candidate predictions (N,) for one observation dict: ``p_<task>`` for binary
        tasks, ``watch_ratio`` and ``watch_ms`` (ratio times the candidate's duration)."""
        if self.net is None or self.vocab is None:
            raise RuntimeError("DeepFMRanker is not fitted")
        user_x = np.asarray(obs["user"], dtype=np.float32)
        if user_x.shape != (USER_FEATURE_DIM,):
            raise ValueError(
                f"DeepFMRanker acts on one observation with {USER_FEATURE_DIM} user features, "
                f"got 'user' of shape {user_x.shape}"
            )
        cand_x = candidate_columns(obs, RANKER_FEATURES)
        users = np.full(len(cand_x), int(user_id(obs)), dtype=np.int64)
        items = np.asarray(obs["item_id"], dtype=np.int64)
        if self.user_ids is not None:
            users = self.user_ids[users]
        if self.item_ids is not None:
            items = self.item_ids[items]
        sparse = self.vocab.encode(users, items)
        dense = np.concatenate(
            [np.broadcast_to(user_x, (len(cand_x), len(user_x))), cand_x], axis=1
        )
        with torch.no_grad():
            device = module_device(self.net)
            out = self.net(
                torch.from_numpy(sparse).to(device),
                torch.from_numpy(dense.astype(np.float32)).to(device),
            )
        out = out.cpu().numpy().astype(np.float64)
        pred: dict[str, np.ndarray] = {}
        for j, task in enumerate(self.tasks):
            if task == "watch":
                ratio = np.maximum(out[:, j], 0.0)
                duration_ms = np.expm1(6.0 * cand_x[:, RANKER_FEATURES.index("log_duration")]) * 1e3
                pred["watch_ratio"] = ratio
                pred["watch_ms"] = ratio * duration_ms
            else:
                pred[f"p_{task}"] = 1.0 / (1.0 + np.exp(-out[:, j]))
        return pred

    def feedbacks(self, obs: Obs) -> np.ndarray:
        """(N, len(feedback_names)) predicted feedbacks: probabilities and watch seconds."""
        pred = self.predict(obs)
        return np.stack(
            [pred["watch_ms"] / 1000.0 if t == "watch" else pred[f"p_{t}"] for t in self.tasks],
            axis=1,
        )

    def candidate_values(self, obs: Obs) -> np.ndarray:
        """The ranking value per candidate: expected watch ms or P(click), per `target`."""
        pred = self.predict(obs)
        return pred["watch_ms"] if self.config.target == "watch" else pred["p_click"]

    def act(self, obs: Obs) -> np.ndarray | int:
        return action_from_values(self.candidate_values(obs), self.action_space, obs["mask"])

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | Path) -> Path:
        """Write weights and vocabularies to `path` and the config JSON beside it (+ .json)."""
        if self.net is None or self.vocab is None:
            raise RuntimeError("DeepFMRanker is not fitted")
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        vocab = {k: torch.from_numpy(np.asarray(v)) for k, v in self.vocab.arrays().items()}
        torch.save({"net": self.net.state_dict(), "vocab": vocab}, path)
        meta = {"kind": "DeepFM", "config": asdict(self.config)}
        path.with_name(path.name + ".json").write_text(json.dumps(meta, indent=2))
        return path

    @classmethod
    def load(
        cls, path: str | Path, action_space: gym.Space | None = None, device: str | None = None
    ) -> DeepFMRanker:
        """Rebuild a ranker saved by `save` (on any device) on `device` (None: the saved
        config's; 'auto' for files from before the option)."""
        path = Path(path)
        meta = json.loads(path.with_name(path.name + ".json").read_text())
        cfg = {k: tuple(v) if isinstance(v, list) else v for k, v in meta["config"].items()}
        if device is not None:
            cfg["device"] = device
        model = cls(DeepFMConfig(**cfg), action_space=action_space)
        state = load_state(path, "cpu")  # vocabularies are read on the host; weights move in _build
        model._build(Vocabulary.from_arrays({k: v.numpy() for k, v in state["vocab"].items()}))
        assert model.net is not None
        model.net.load_state_dict(state["net"])
        model.net.eval()
        return model


__all__ = [
    "DeepFMConfig",
    "DeepFMFitStats",
    "DeepFMNet",
    "DeepFMRanker",
    "SPARSE_FIELDS",
    "TASKS",
    "Vocabulary",
    "backend_id_maps",
    "fm_interaction",
    "raw_ids",
]
