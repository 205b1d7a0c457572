"""The multi-task ranking model (MTL) in front of multi-task fusion: an MMoE trained on logs.

`recgym/MTFSession-v0` ranks candidates by fusing the MTL's per-candidate predictions
(`MTL_TASKS`: click, valid consumption = watch > 10 s, watch time, like, forward/share,
follow), as the Enhanced-State RL-MTF paper's ranking stage does. The network is an MMoE
(Ma et al. 2018): `n_experts` shared expert MLPs, one softmax gate and one tower per task.

Inputs, available both in a KuaiRand-schema log and at serving time in an env (the same
fields as `agents.deepfm`):
- dense: the static user features and `agents.baselines.RANKER_FEATURES` (log duration, log
  popularity, history category / author share), built by `agents.baselines.log_features` on
  the log side and read from the observation's candidate rows at serving;
- sparse: user, item, author and leaf-category ids through `agents.deepfm.Vocabulary`
  (raw log ids; 0 = unknown, shared by ids never seen), each a small embedding.

Targets: ``is_click``; valid consumption ``play_time_ms > 10_000`` (the paper's definition;
KuaiRand's ``long_view`` uses 18 s and is not it); the watch ratio clipped to [0, 2] (MSE;
predicted watch seconds = ratio x duration); ``is_like``, ``is_forward``, ``is_follow``.
Every task sees every exposure (watch and valid are unconditional on the click).
"""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from recgym.agents.baselines import RANKER_FEATURES, log_features
from recgym.agents.deepfm import DeepFMConfig, Vocabulary, backend_id_maps
from recgym.agents.seeding import seeded_global_rngs
from recgym.agents.tb import update_curve
from recgym.device import load_state, resolve_device

MTL_TASKS: tuple[str, ...] = ("click", "valid", "watch", "like", "forward", "follow")
"""Heads, in output order; ``watch`` regresses the clipped watch ratio, the rest are binary."""
PREDICTIONS: tuple[str, ...] = ("p_click", "p_valid", "watch_s", "p_like", "p_forward", "p_follow")
"""What `MTLModel.predict` returns per candidate, in order (probabilities; watch in seconds)."""
VALID_MS = 10_000
"""A view longer than this is a valid consumption (the paper's 10 s)."""
_LABEL = {"click": "is_click", "like": "is_like", "forward": "is_forward", "follow": "is_follow"}


@contextmanager
def one_thread() -> Iterator[None]:
    """Torch on one thread within the block (small nets: more threads only contend), restored
    afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


class MMoENet(nn.Module):
    """Multi-gate mixture of experts over [dense ⊕ id embeddings] -> (..., n_tasks) outputs."""

    def __init__(
        self,
        vocab_sizes: tuple[int, ...],
        n_dense: int,
        n_tasks: int,
        *,
        embedding_dim: int = 8,
        n_experts: int = 4,
        expert_dim: int = 32,
        tower_dim: int = 16,
    ) -> None:
        super().__init__()
        offsets = np.concatenate([[0], np.cumsum(vocab_sizes)[:-1]])
        self.register_buffer("offsets", torch.as_tensor(offsets, dtype=torch.long))
        self.embedding = nn.Embedding(int(sum(vocab_sizes)), embedding_dim)
        nn.init.normal_(self.embedding.weight, std=0.01)
        n_in = n_dense + len(vocab_sizes) * embedding_dim
        self.experts = nn.ModuleList(
            nn.Sequential(nn.Linear(n_in, expert_dim), nn.ReLU()) for _ in range(n_experts)
        )
        self.gates = nn.Linear(n_in, n_tasks * n_experts)
        self.towers = nn.ModuleList(
            nn.Sequential(nn.Linear(expert_dim, tower_dim), nn.ReLU(), nn.Linear(tower_dim, 1))
            for _ in range(n_tasks)
        )
        self.n_tasks, self.n_experts = n_tasks, n_experts
        self.register_buffer("mean", torch.zeros(n_dense))
        self.register_buffer("std", torch.ones(n_dense))

    def forward(self, sparse: torch.Tensor, dense: torch.Tensor) -> torch.Tensor:
        x = (dense - self.mean) / self.std
        e = self.embedding(sparse + self.offsets).flatten(start_dim=-2)
        h = torch.cat([x, e], dim=-1)
        experts = torch.stack([ex(h) for ex in self.experts], dim=-2)  # (..., E, D)
        gates = self.gates(h).unflatten(-1, (self.n_tasks, self.n_experts)).softmax(-1)
        mixed = gates @ experts  # (..., T, D)
        return torch.cat([t(mixed[..., i, :]) for i, t in enumerate(self.towers)], dim=-1)


@dataclass(kw_only=True)
class MTLConfig:
    """How `MTLModel` is built and fitted."""

    embedding_dim: int = 8
    """Size of each id embedding."""
    n_experts: int = 4
    """Shared experts of the MMoE."""
    expert_dim: int = 32
    """Width of each expert's output."""
    tower_dim: int = 16
    """Hidden width of each task's tower."""
    lr: float = 3e-3
    """Adam learning rate."""
    epochs: int = 4
    """Passes over the training rows."""
    batch_size: int = 1024
    """Rows per gradient step."""
    min_steps: int = 400
    """At least this many gradient steps: small tables get more epochs (rare tasks need them)."""
    watch_ratio_cap: float = 2.0
    """Watch ratios are clipped to [0, cap]."""
    holdout_days: int = 1
    """The last this many log days are held out for the reported AUCs."""
    seed: int = 0
    """Seed of weight initialisation and minibatch order."""
    device: str = "auto"
    """Torch device of the network (`recgym.device.resolve_device`); the weights are initialised
    and the minibatch order drawn on the CPU, so a seed gives the same run on any device."""


@dataclass(kw_only=True)
class MTLFitStats:
    """Held-out quality of a fit (AUC per binary task, NaN where a label is constant)."""

    task_auc: dict[str, float] = field(default_factory=dict)
    watch_rmse: float = float("nan")
    n_train: int = 0
    n_test: int = 0
    seconds: float = 0.0


class MTLModel:
    """The MTL ranking model: `fit` on a KuaiRand-schema log (or on arrays), `predict` batches.

    Predictions are for backend ids: `for_backend` maps a learned simulator's dense ids to the
    log's raw ids (the world's ids are the raw ids), as `agents.deepfm.DeepFMRanker` does.
    """

    def __init__(self, config: MTLConfig | None = None) -> None:
        self.config = config or MTLConfig()
        self.vocab: Vocabulary | None = None
        self.net: MMoENet | None = None
        self.user_ids: np.ndarray | None = None
        self.item_ids: np.ndarray | None = None

    def for_backend(self, backend: Any) -> MTLModel:
        """A copy (sharing weights) reading ids as `backend`'s ids (see the class doc)."""
        clone = copy.copy(self)
        clone.user_ids, clone.item_ids = backend_id_maps(backend)
        return clone

    def _build(self, vocab: Vocabulary, n_dense: int) -> None:
        cfg = self.config
        self.vocab = vocab
        with seeded_global_rngs(cfg.seed):  # weight init, without touching the caller's state
            self.net = MMoENet(
                vocab.sizes,
                n_dense,
                len(MTL_TASKS),
                embedding_dim=cfg.embedding_dim,
                n_experts=cfg.n_experts,
                expert_dim=cfg.expert_dim,
                tower_dim=cfg.tower_dim,
            ).to(resolve_device(cfg.device))

    # ------------------------------------------------------------------ training
    def fit(self, ds: Any) -> MTLFitStats:
        """Fit on a loaded KuaiRand `Dataset` (the world's logs or real KuaiRand)."""
        it = ds.interactions
        missing = [c for c in ("play_time_ms", "is_click", "duration_ms") if c not in it]
        if missing:
            raise ValueError(f"MTLModel.fit: the log has no column(s) {missing}")
        feats = log_features(
            ds, DeepFMConfig(holdout_days=self.config.holdout_days).ranker_config()
        )
        order = np.lexsort(
            (np.arange(len(it)), it["timestamp"].to_numpy(np.int64), it["user_id"].to_numpy())
        )

        def col(name: str) -> np.ndarray:
            if name not in it:
                return np.zeros(len(it), dtype=np.float32)  # a log without the behaviour
            return (it[name].to_numpy(np.float64)[order] > 0).astype(np.float32)

        play = it["play_time_ms"].to_numpy(np.float64)[order]
        labels = np.stack(
            [
                col("is_click"),
                (play > VALID_MS).astype(np.float32),
                np.minimum(feats.watch_ratio, self.config.watch_ratio_cap),
                col("is_like"),
                col("is_forward"),
                col("is_follow"),
            ],
            axis=1,
        )
        vocab = Vocabulary.from_dataset(ds)
        sparse = vocab.encode(
            it["user_id"].to_numpy(np.int64)[order], it["item_id"].to_numpy(np.int64)[order]
        )
        dense = np.concatenate([feats.user_x, feats.cand_x], axis=1)
        return self.fit_arrays(sparse, dense, labels, feats.is_train, vocab)

    def fit_arrays(
        self,
        sparse: np.ndarray,
        dense: np.ndarray,
        labels: np.ndarray,
        is_train: np.ndarray,
        vocab: Vocabulary,
    ) -> MTLFitStats:
        """Fit on rows: (R, 4) sparse codes, (R, D) dense [user ⊕ RANKER_FEATURES], (R, 6)
        labels in `MTL_TASKS` order, (R,) train mask (the rest is held out)."""
        with one_thread():
            return self._fit_arrays(sparse, dense, labels, is_train, vocab)

    def _fit_arrays(
        self,
        sparse: np.ndarray,
        dense: np.ndarray,
        labels: np.ndarray,
        is_train: np.ndarray,
        vocab: Vocabulary,
    ) -> MTLFitStats:
        from sklearn.metrics import roc_auc_score

        start = time.perf_counter()
        cfg = self.config
        self._build(vocab, dense.shape[1])
        assert self.net is not None
        s, d = torch.from_numpy(sparse.astype(np.int64)), torch.from_numpy(dense.astype(np.float32))
        y = torch.from_numpy(labels.astype(np.float32))
        tr = torch.from_numpy(np.flatnonzero(is_train))
        te = np.flatnonzero(~np.asarray(is_train))
        self.net.mean.copy_(d[tr].mean(0))
        self.net.std.copy_(d[tr].std(0).clamp_min(1e-3))
        dev = self.net.mean.device  # the whole table goes to the device once
        s, d, y = s.to(dev), d.to(dev), y.to(dev)
        binary = torch.tensor([t != "watch" for t in MTL_TASKS], device=dev)
        gen = torch.Generator().manual_seed(cfg.seed)
        opt = torch.optim.Adam(self.net.parameters(), lr=cfg.lr)
        self.net.train()
        n_batches = max(-(-len(tr) // cfg.batch_size), 1)
        n_epochs = max(cfg.epochs, -(-cfg.min_steps // n_batches))
        with update_curve("MTL", cfg.seed, every=1) as log:  # TensorBoard inside a stage
            for epoch in range(n_epochs):
                total = torch.zeros((), device=dev)
                for idx in tr[torch.randperm(len(tr), generator=gen)].split(cfg.batch_size):
                    idx = idx.to(dev)
                    out = self.net(s[idx], d[idx])
                    bce = F.binary_cross_entropy_with_logits(out, y[idx], reduction="none")
                    loss = torch.where(binary, bce, (out - y[idx]).pow(2)).mean(0).sum()
                    opt.zero_grad()
                    loss.backward()
                    opt.step()
                    total += loss.detach()
                log(epoch + 1, {"loss": float(total) / n_batches})
        self.net.eval()
        stats = MTLFitStats(n_train=len(tr), n_test=len(te))
        if len(te):
            with torch.no_grad():
                t_te = torch.from_numpy(te).to(dev)
                out = self.net(s[t_te], d[t_te]).cpu().numpy()
            lab = labels[te]
            for j, task in enumerate(MTL_TASKS):
                if task == "watch":
                    stats.watch_rmse = float(np.sqrt(np.mean((out[:, j] - lab[:, j]) ** 2)))
                elif lab[:, j].min() != lab[:, j].max():
                    stats.task_auc[task] = float(roc_auc_score(lab[:, j], out[:, j]))
                else:
                    stats.task_auc[task] = float("nan")
        stats.seconds = time.perf_counter() - start
        return stats

    # ------------------------------------------------------------------ serving
    def predict(
        self, users: np.ndarray, items: np.ndarray, user_x: np.ndarray, cand_x: np.ndarray
    ) -> np.ndarray:
        """(B,) backend user ids, (B, N) item ids, (B, U) user features, (B, N, 4)
        RANKER_FEATURES -> (B, N, 6) float64 `PREDICTIONS` (probabilities, watch seconds)."""
        if self.net is None or self.vocab is None:
            raise RuntimeError("MTLModel is not fitted")
        users = np.asarray(users, dtype=np.int64)
        items = np.asarray(items, dtype=np.int64)
        if cand_x.shape[-1] != len(RANKER_FEATURES):
            raise ValueError(f"cand_x must end in {len(RANKER_FEATURES)} RANKER_FEATURES columns")
        if self.user_ids is not None:
            users = self.user_ids[users]
        if self.item_ids is not None:
            items = self.item_ids[items]
        b, n = items.shape
        sparse = self.vocab.encode(users[:, None], items)
        dense = np.concatenate(
            [np.broadcast_to(user_x[:, None, :], (b, n, user_x.shape[-1])), cand_x], axis=-1
        )
        with torch.no_grad(), one_thread():
            dev = self.net.mean.device
            out = self.net(
                torch.from_numpy(sparse).to(dev), torch.from_numpy(dense.astype(np.float32)).to(dev)
            )
        out = out.cpu().numpy().astype(np.float64)
        pred = 1.0 / (1.0 + np.exp(-out))
        w = MTL_TASKS.index("watch")
        duration_s = np.expm1(6.0 * cand_x[..., RANKER_FEATURES.index("log_duration")])
        pred[..., w] = np.clip(out[..., w], 0.0, self.config.watch_ratio_cap) * duration_s
        return pred

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | Path) -> Path:
        """Weights and vocabulary to `path`, the config JSON beside it (`path` + .json)."""
        if self.net is None or self.vocab is None:
            raise RuntimeError("MTLModel is not fitted")
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        vocab = {k: torch.from_numpy(np.asarray(v)) for k, v in self.vocab.arrays().items()}
        torch.save(
            {"net": self.net.state_dict(), "vocab": vocab, "n_dense": self.net.mean.numel()}, path
        )
        meta = {"kind": "MTL", "config": asdict(self.config)}
        path.with_name(path.name + ".json").write_text(json.dumps(meta, indent=2))
        return path

    @classmethod
    def load(cls, path: str | Path, device: str | None = None) -> MTLModel:
        """Rebuild a model saved by `save` (on any device) on `device` (None: the saved
        config's; 'auto' for files from before the option)."""
        path = Path(path)
        meta = json.loads(path.with_name(path.name + ".json").read_text())
        if meta.get("kind") != "MTL":
            raise ValueError(f"{path}: not an MTL checkpoint (kind {meta.get('kind')!r})")
        config = dict(meta["config"])
        if device is not None:
            config["device"] = device
        model = cls(MTLConfig(**config))
        state = load_state(path, "cpu")  # vocabularies are read on the host; weights move
        vocab = Vocabulary.from_arrays({k: v.numpy() for k, v in state["vocab"].items()})
        model._build(vocab, int(state["n_dense"]))
        assert model.net is not None
        model.net.load_state_dict(state["net"])
        model.net.eval()
        return model


__all__ = [
    "MMoENet",
    "MTLConfig",
    "MTLFitStats",
    "MTLModel",
    "MTL_TASKS",
    "PREDICTIONS",
    "VALID_MS",
]
