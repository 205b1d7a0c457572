"""Training a sequence model: Adam on mini-batches, early stopping on validation NDCG@10.

`fit` draws the batch order from ``np.random.default_rng(seed)`` and runs inside
`agents.seeding.seeded_global_rngs(seed)`, so dropout, BERT4Rec's cloze masks and the sampled
negatives of the sampled-softmax losses (which use torch's generator) are reproducible from
`seed` and the caller's random state is left as it was. The best validation state is restored at
the end. A model with ``trainable = False`` (`Popularity`) is fitted by counting instead.
"""

from __future__ import annotations

import copy
import math
from dataclasses import asdict, dataclass

import numpy as np
import torch

from recgym.agents.progress import stage_bar
from recgym.agents.seeding import seeded_global_rngs
from recgym.agents.sequence.base import SequenceRecommender
from recgym.agents.sequence.data import SequenceData
from recgym.agents.sequence.evaluate import evaluate
from recgym.agents.tb import update_curve
from recgym.device import resolve_device


@dataclass(kw_only=True)
class TrainConfig:
    """How `fit` trains a sequence model."""

    epochs: int = 20
    """Passes over the training rows (at most; early stopping may end sooner)."""
    batch_size: int = 256
    """Training rows per gradient step."""
    lr: float = 1e-3
    """Adam's learning rate."""
    weight_decay: float = 0.0
    """Adam's L2 penalty."""
    patience: int = 3
    """Validations without a better NDCG@10 before training stops."""
    eval_every: int = 1
    """Epochs between validations."""
    device: str = "auto"
    """Torch device of the model and batches (`recgym.device.resolve_device`: 'auto' = CUDA when
    available, else CPU). The row order comes from a numpy generator, so a seed gives the same
    batches on any device."""
    grad_clip: float | None = 5.0
    """Max gradient norm (None: no clipping)."""
    progress: bool = False
    """Draw one progress bar over the epochs (only on a terminal)."""

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1 or self.eval_every < 1 or self.patience < 1:
            raise ValueError(
                f"TrainConfig: epochs, batch_size, eval_every and patience must be >= 1: {self}"
            )
        if not self.lr > 0:
            raise ValueError(f"TrainConfig: lr must be > 0, got {self.lr}")


def _context(
    data: SequenceData, rows: np.ndarray, device: torch.device
) -> dict[str, torch.Tensor] | None:
    if data.context is None:
        return None
    return {k: torch.as_tensor(v[rows], device=device) for k, v in data.context.items()}


def fit(
    model: SequenceRecommender,
    train: SequenceData,
    valid: SequenceData | None = None,
    config: TrainConfig | None = None,
    seed: int = 0,
) -> dict:
    """Train `model` in place; returns its history.

    History: ``loss`` (mean training loss per epoch), ``valid_ndcg@10`` and ``valid_epoch``
    (per validation), ``best_epoch`` (whose state is restored; the last epoch without
    `valid`), ``stopped_early``, ``config``. Raises ValueError on an empty training set.
    """
    config = config or TrainConfig()
    if len(train) == 0:
        raise ValueError("fit: the training set is empty")
    device = resolve_device(config.device)
    model.to(device)
    history: dict = {"loss": [], "valid_ndcg@10": [], "valid_epoch": [], "config": asdict(config)}
    if not model.trainable:
        model.fit_counts(train)
        history.update(best_epoch=0, stopped_early=False)
        return history
    rng = np.random.default_rng(seed)
    opt = torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    best, best_state, best_epoch, waited = -math.inf, None, config.epochs, 0
    bar = stage_bar(config.epochs, f"fit {type(model).__name__}", config.progress, unit="epoch")
    stopped = False
    curve = update_curve(type(model).__name__, seed, every=1)  # TensorBoard inside a stage
    with seeded_global_rngs(seed), curve as log:
        for epoch in range(1, config.epochs + 1):
            model.train()
            order = rng.permutation(len(train))
            total, count = 0.0, 0
            for lo in range(0, len(order), config.batch_size):
                rows = order[lo : lo + config.batch_size]
                seq = torch.as_tensor(train.seq[rows], device=device)
                target = torch.as_tensor(train.target[rows], device=device)
                loss = model.loss(seq, target, _context(train, rows, device))
                if not torch.isfinite(loss):
                    raise FloatingPointError(
                        f"fit {type(model).__name__}: loss {loss.item()} at epoch {epoch}"
                    )
                opt.zero_grad(set_to_none=True)
                loss.backward()
                if config.grad_clip is not None:
                    torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
                opt.step()
                total += loss.item() * len(rows)
                count += len(rows)
            history["loss"].append(total / count)
            log(epoch, {"loss": total / count})
            if bar is not None:
                bar.update(1)
            if valid is not None and (epoch % config.eval_every == 0 or epoch == config.epochs):
                ndcg = evaluate(model, valid, ks=(10,))["ndcg@10"]
                history["valid_ndcg@10"].append(ndcg)
                history["valid_epoch"].append(epoch)
                log(epoch, {"valid_ndcg@10": ndcg})
                if ndcg > best:
                    best, best_epoch, waited = ndcg, epoch, 0
                    best_state = copy.deepcopy(model.state_dict())
                else:
                    waited += 1
                    if waited >= config.patience:
                        stopped = True
                        break
    if bar is not None:
        bar.close()
    if best_state is not None:
        model.load_state_dict(best_state)
    else:
        best_epoch = len(history["loss"])
    model.eval()
    history.update(best_epoch=best_epoch, stopped_early=stopped)
    return history


__all__ = ["TrainConfig", "fit"]
