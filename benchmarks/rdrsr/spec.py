"""What `recgym bench rdrsr` runs: its config, the models, the paper's numbers and its claims."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from recgym.benchmarks.claims import Claim

SHARED_DATA = Path(__file__).resolve().parents[3] / "shared" / "data"
"""The default data: ``../shared/data`` beside the repository (user subsets of the datasets)."""

DATASETS: dict[str, str] = {
    "ml-100k": "ml-100k",
    "lastfm": "lastfm-hetrec2011-2k",
    "foursquare": "foursquare-nyc",
    "world": "",
}
"""Bench dataset name -> folder under the shared data ("world": generated, no folder)."""

PAPER_K: dict[str, int] = {"ml-100k": 4, "foursquare": 3, "lastfm": 3, "world": 4}
"""RDRSR's maximum interest number per dataset (the paper's Table 3; the world: 4, the most
active interests most of its users have)."""

TABLE2_MODELS = ("gru4rec", "stamp", "caser", "bert4rec", "mcprn", "rdrsr")
"""The paper's Table 2 rows (MCPRN with 3 channels, as its MCPRN-3 in Table 4)."""
EXTRA_MODELS = ("narm", "sasrec", "comirec_sa", "mind")
"""Strong or multi-interest models a reader will ask about (not in the paper)."""
TABLE4_MODELS = ("mcprn", "rdrsr-f3", "rdrsr-3")
"""Table 4: MCPRN-3, RDRSR-F3 (DID off, 3 interests) and RDRSR-3 (at most 3)."""

LABELS: dict[str, str] = {
    "gru4rec": "GRU4Rec",
    "stamp": "STAMP",
    "caser": "Caser",
    "bert4rec": "BERT4Rec",
    "mcprn": "MCPRN-3",
    "rdrsr": "RDRSR",
    "rdrsr-3": "RDRSR-3",
    "rdrsr-f3": "RDRSR-F3",
    "narm": "NARM",
    "sasrec": "SASRec",
    "comirec_sa": "ComiRec-SA",
    "mind": "MIND",
    "random": "random allocation",
    "single": "one interest",
    "hr@10": "HR@10",
    "ndcg@10": "NDCG@10",
    "hr@50": "HR@50",
    "ndcg@50": "NDCG@50",
    "allocation_nmi": "NMI vs true interests",
    "allocation_ari": "ARI vs true interests",
}

RANKING_METRICS = ("hr@10", "ndcg@10", "hr@50", "ndcg@50")
ALLOCATION_METRICS = ("allocation_nmi", "allocation_ari")
PROTOCOLS = ("99 negatives", "full catalogue")
"""Backend names of the rows: a dataset's ranking rows are ``"<dataset>, <protocol>"``."""

PAPER_TABLE2: dict[str, dict[str, tuple[float, float, float, float]]] = {
    "ml-100k": {
        "gru4rec": (14.21, 6.76, 40.51, 12.51),
        "stamp": (9.65, 4.61, 34.04, 9.83),
        "caser": (12.30, 5.58, 39.34, 11.36),
        "bert4rec": (11.66, 5.22, 37.01, 10.62),
        "mcprn": (14.42, 6.51, 42.74, 12.64),
        "rdrsr": (14.80, 6.60, 43.90, 12.90),
    },
    "foursquare": {
        "gru4rec": (18.93, 10.88, 35.09, 14.41),
        "stamp": (17.71, 10.02, 33.74, 13.55),
        "caser": (15.22, 8.39, 31.3, 11.86),
        "bert4rec": (14.5, 8.21, 23.35, 10.77),
        "mcprn": (19.15, 10.91, 37.49, 14.94),
        "rdrsr": (20.40, 10.50, 41.90, 15.30),
    },
    "lastfm": {
        "gru4rec": (12.05, 6.78, 26.41, 9.92),
        "stamp": (8.12, 4.93, 17.37, 6.93),
        "caser": (9.95, 5.54, 22.32, 8.24),
        "bert4rec": (6.13, 3.07, 17.11, 5.46),
        "mcprn": (12.05, 6.33, 27.43, 9.65),
        "rdrsr": (14.50, 6.90, 31.30, 9.92),
    },
}
"""The paper's Table 2 (percent): HR@10, NDCG@10, HR@50, NDCG@50 per dataset and model."""

PAPER_TABLE4: dict[str, dict[str, float]] = {
    "ml-100k": {"mcprn": 6.32, "rdrsr-f3": 6.30, "rdrsr-3": 6.60},
    "foursquare": {"mcprn": 9.73, "rdrsr-f3": 10.10, "rdrsr-3": 10.50},
    "lastfm": {"mcprn": 6.32, "rdrsr-f3": 6.40, "rdrsr-3": 6.90},
}
"""The paper's Table 4 (percent NDCG@10)."""


def claims() -> list[Claim]:
    """The paper's orderings: RDRSR above every Table 2 baseline on HR@10 / NDCG@10 (the paper
    bolds RDRSR almost everywhere), RDRSR-3 > RDRSR-F3 > MCPRN-3 on NDCG@10 (Table 4); on the
    world, RDRSR's allocation above a random one and one interest on both truth metrics (the
    issue's question; the paper cannot measure it)."""
    out = [
        Claim(metric=m, a="rdrsr", b=b, source="RDRSR Table 2")
        for b in TABLE2_MODELS[:-1]
        for m in ("hr@10", "ndcg@10")
    ]
    out += [
        Claim(metric="ndcg@10", a="rdrsr-3", b="rdrsr-f3", source="RDRSR Table 4"),
        Claim(metric="ndcg@10", a="rdrsr-f3", b="mcprn", source="RDRSR Table 4"),
    ]
    out += [
        Claim(metric=m, a="rdrsr", b=b, source="issue 13 (world truth)")
        for b in ("random", "single")
        for m in ALLOCATION_METRICS
    ]
    return out


@dataclass(kw_only=True)
class RDRSRBenchConfig:
    """`recgym bench rdrsr`: the paper's Tables 2 and 4, and allocation vs the world's truth."""

    out: str = "recgym-out/rdrsr"
    """Output directory (stages, rows, results.md)."""
    quick: bool = False
    """The quick preset: the paper's models only (Tables 2 and 4), each user's 5 newest training
    prefixes, 2 epochs without validation, d = 32, 300 world users of 30 clicks."""
    data: str | None = None
    """A dataset directory in its original format (u.data ML-100k, hetrec Last.fm, the
    Foursquare NYC table); needs --dataset. Default: the ../shared/data subsets."""
    dataset: str | None = None
    """Run one dataset only: ml-100k, lastfm, foursquare or world (default: all four)."""
    repeats: bool = True
    """Keep a user's repeated clicks on an item (the paper's pipeline says nothing else). Off
    (--no-repeats): only the first click per (user, item), so no held-out item is one the user
    has seen. With repeats, ranking among the unseen items makes a repeated target easy: 94% of
    the Foursquare subset's test targets and 25% of Last.fm's are repeats. Without them the
    Foursquare subset is empty after its 10-core (a DataError)."""
    seeds: tuple[int, ...] = (0, 1, 2, 3, 4)
    """Training seeds; seed i is also the seed of the evaluation negatives (paired)."""
    models: tuple[str, ...] = TABLE2_MODELS + EXTRA_MODELS + ("rdrsr-f3", "rdrsr-3")
    """Models to train ("rdrsr-3" is trained only where RDRSR's k is not 3)."""
    epochs: int = 20
    """Training epochs (at most: early stopping on validation NDCG@10)."""
    patience: int = 3
    """Validations without a better NDCG@10 before stopping."""
    validate: bool = True
    """Validate every epoch (early stopping, best epoch restored); off: train every epoch."""
    dim: int = 64
    """Embedding size d (the paper's 64)."""
    max_len: int = 10
    """Sequence length t (the paper's 10)."""
    batch_size: int = 256
    """Training rows per step (the paper's 2048 is a GPU batch)."""
    lr: float = 1e-3
    """Adam's learning rate (the paper's 0.001)."""
    train_rows_per_user: int = 0
    """Keep only each user's most recent N training prefixes (0: all)."""
    n_negatives: int = 99
    """Negatives of the sampled evaluation protocol and of RDRSR's sampled softmax."""
    world_users: int = 600
    """World users (one sequence each)."""
    world_items: int = 1500
    """World catalogue size."""
    world_clicks: int = 40
    """Clicks collected per world user (the last two are validation and test)."""
    device: str = "auto"
    """Torch device of every model ('auto': CUDA when available, else CPU; `recgym.device`)."""

    def __post_init__(self) -> None:
        if self.dataset is not None and self.dataset not in DATASETS:
            raise ValueError(
                f"--dataset must be one of {', '.join(DATASETS)}, got {self.dataset!r}"
            )
        if self.data is not None and self.dataset in (None, "world"):
            raise ValueError("--data DIR needs --dataset ml-100k, lastfm or foursquare")
        unknown = set(self.models) - set(LABELS)
        if unknown:
            raise ValueError(f"unknown models {sorted(unknown)}; known: {sorted(LABELS)[:12]}")
        if len(self.seeds) < 1:
            raise ValueError("give at least one seed")

    def preset(self) -> RDRSRBenchConfig:
        """The config with the quick preset applied (when `quick`)."""
        if not self.quick:
            return self
        return replace(
            self,
            models=tuple(m for m in self.models if m not in EXTRA_MODELS),
            epochs=2,
            validate=False,
            dim=32,
            train_rows_per_user=5,
            world_users=300,
            world_items=1000,
            world_clicks=30,
            out=self.out if self.out != "recgym-out/rdrsr" else "recgym-out/rdrsr-quick",
        )

    def datasets(self) -> tuple[str, ...]:
        return (self.dataset,) if self.dataset is not None else tuple(DATASETS)

    def data_dir(self, dataset: str) -> Path:
        if self.data is not None:
            return Path(self.data)
        return SHARED_DATA / DATASETS[dataset]
