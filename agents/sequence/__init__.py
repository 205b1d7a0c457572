"""In-house sequential recommenders with one padding convention (see `base`).

-1 = padding, left-padded, newest item last; every model is a `SequenceRecommender` with
``user_state`` / ``item_vectors`` / ``score`` / ``loss``; `make_model` builds one by name with a
seeded initialisation; `fit` trains, `rank_targets` / `evaluate` rank leave-one-out targets.
"""

from __future__ import annotations

from typing import Any

from recgym.agents.seeding import seeded_global_rngs
from recgym.agents.sequence.attention import STAMP, BERT4Rec, SASRec
from recgym.agents.sequence.base import (
    PAD,
    PairwiseRecommender,
    SequenceRecommender,
    pad_sequences,
)
from recgym.agents.sequence.conv import Caser, NextItNet, NextItNetEncoder
from recgym.agents.sequence.data import SequenceData, Split, leave_one_out
from recgym.agents.sequence.evaluate import (
    evaluate,
    rank_targets,
    ranking_report,
    sample_negatives,
)
from recgym.agents.sequence.multi_interest import MCPRN, MIND, ComiRecSA
from recgym.agents.sequence.multi_scenario import DIN, STAR, PEPNet
from recgym.agents.sequence.recurrent import NARM, GRU4Rec, Popularity
from recgym.agents.sequence.train import TrainConfig, fit

MODELS: dict[str, type[SequenceRecommender]] = {
    "popularity": Popularity,
    "gru4rec": GRU4Rec,
    "narm": NARM,
    "stamp": STAMP,
    "caser": Caser,
    "sasrec": SASRec,
    "bert4rec": BERT4Rec,
    "nextitnet": NextItNet,
    "mcprn": MCPRN,
    "comirec_sa": ComiRecSA,
    "mind": MIND,
    "din": DIN,
    "star": STAR,
    "pepnet": PEPNet,
}
"""Every model by name (``popularity`` is not trained: ``trainable = False``)."""


def make_model(
    name: str, n_items: int, dim: int = 64, max_len: int = 50, seed: int = 0, **kw: Any
) -> SequenceRecommender:
    """The model `name` (a MODELS key) with its parameters initialised from `seed`.

    The initialisation draws from torch's global generator inside
    `agents.seeding.seeded_global_rngs(seed)`, which restores the caller's state afterwards.
    Extra keywords go to the model's constructor.
    """
    try:
        cls = MODELS[name]
    except KeyError:
        raise ValueError(f"unknown sequence model {name!r}; known: {', '.join(MODELS)}") from None
    with seeded_global_rngs(seed):
        return cls(n_items, dim=dim, max_len=max_len, **kw)


__all__ = [
    "BERT4Rec",
    "DIN",
    "MCPRN",
    "MIND",
    "MODELS",
    "NARM",
    "PAD",
    "PEPNet",
    "STAMP",
    "STAR",
    "Caser",
    "ComiRecSA",
    "GRU4Rec",
    "NextItNet",
    "NextItNetEncoder",
    "SASRec",
    "PairwiseRecommender",
    "Popularity",
    "SequenceData",
    "SequenceRecommender",
    "Split",
    "TrainConfig",
    "evaluate",
    "fit",
    "leave_one_out",
    "make_model",
    "pad_sequences",
    "rank_targets",
    "ranking_report",
    "sample_negatives",
]
