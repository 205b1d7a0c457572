"""What `recgym bench ruie` runs: config and presets, models, the paper's numbers, claims."""

from __future__ import annotations

from dataclasses import dataclass

from recgym.agents.ruie import VARIANTS
from recgym.benchmarks.claims import Claim

TABLE1_MODELS: tuple[str, ...] = (
    "din",
    "caser",
    "gru4rec",
    "sasrec",
    "pepnet",
    "star",
    "nextitnet",
    "ruie",
)
"""Table 1's rows in the paper's order (our sequence models by `agents.sequence.MODELS` name),
plus NextItNet alone (RUIE's backbone, `agents.sequence.NextItNet`, softmax-trained)."""
LABELS: dict[str, str] = {
    "din": "DIN",
    "caser": "Caser",
    "gru4rec": "GRU",
    "sasrec": "SASRec",
    "pepnet": "PEPNet",
    "star": "STAR",
    "nextitnet": "NextItNet",
    "ruie": "RUIE",
    "no_mha": "RUIE w/o MHA",
    "no_mha_gate": "RUIE w/o MHA&Gate",
    "no_mha_gate_suim": "RUIE w/o MHA&Gate&SUIM",
}
"""Row names as the paper prints them."""
KS: tuple[int, ...] = (5, 10, 15, 20)
METRICS: tuple[str, ...] = tuple(f"ndcg@{k}" for k in KS)

PAPER_TABLE1: dict[str, tuple[float, float, float, float]] = {
    "DIN": (0.0549, 0.1372, 0.2627, 0.3294),
    "Caser": (0.1450, 0.2549, 0.4078, 0.6313),
    "GRU": (0.4705, 1.1176, 1.6313, 2.2470),
    "SASRec": (1.0980, 2.3568, 3.4745, 4.8392),
    "PEPNet": (1.3568, 2.5450, 3.8235, 4.0470),
    "STAR": (1.4039, 2.7450, 3.1568, 4.4549),
    "RUIE": (3.8549, 7.4901, 11.1098, 14.6784),
}
"""The paper's Table 1 (NDCG@5/10/15/20 as printed; their scale is not ours, see the issue:
the authors' code ranks over embedding dimensions, so only the orderings are compared)."""
PAPER_TABLE2: dict[str, tuple[float, float, float, float]] = {
    "RUIE w/o MHA&Gate&SUIM": (2.8588, 5.8588, 8.6627, 11.7411),
    "RUIE w/o MHA&Gate": (3.2745, 6.6196, 9.7333, 12.6980),
    "RUIE w/o MHA": (3.5098, 7.0039, 10.4039, 13.7921),
    "RUIE": (3.8549, 7.4901, 11.1098, 14.6784),
}

ONLINE_AGENTS: tuple[str, ...] = (
    "random",
    "popularity",
    "NextItNet",
    "RUIE",
    "DQN",
    "click oracle (reads hidden state)",
)
"""Rows of the online table (MultiScenario-v0 on the world as it stood after its logs, and on
the learned backend; the oracle has a world row only)."""
ONLINE_METRICS: dict[str, str] = {
    "reward": "reward / session",
    "session_length": "requests / session",
    "clicks_feed": "feed clicks / session",
    "clicks_search": "search clicks / session",
}
TRACKING_METRICS: dict[str, str] = {
    "switch_auc": "AUC of Q(search) for the next scenario",
    "switch_corr": "corr. of Q(search) with the world's p(search)",
    "gate_true_search": "mean gate weight, next behaviour in search",
    "gate_true_feed": "mean gate weight, next behaviour in feed",
}


def table1_claims() -> list[Claim]:
    """The paper's Table 1 ordering that matters: RUIE above every baseline, on each NDCG@K."""
    return [
        Claim(metric=m, a="RUIE", b=LABELS[b], source="RUIE Table 1")
        for b in TABLE1_MODELS
        if b != "ruie"
        for m in METRICS
    ]


def table2_claims() -> list[Claim]:
    """Table 2: each added part helps (full > w/o MHA > w/o MHA&Gate > w/o MHA&Gate&SUIM)."""
    order = [LABELS[v] for v in VARIANTS]
    return [
        Claim(metric=m, a=better, b=worse, source="RUIE Table 2")
        for better, worse in zip(order[:-1], order[1:], strict=True)
        for m in METRICS
    ]


@dataclass(kw_only=True)
class BenchConfig:
    """Sizes and budgets of one `recgym bench ruie` run (`PRESETS`: full, quick, tiny)."""

    mode: str = "full"
    """Preset name (set by --quick / --tiny)."""
    data: str | None = None
    """A KuaiSAR directory (rec_inter.csv, src_inter.csv, item_features.csv, ...) to run Tables
    1 and 2 on instead of the world's logs; the online section then runs on a learned simulator
    trained on its files alone (with `learned_backend`), without world rows, oracle or
    Q-vs-truth tracking, which need the world."""
    users: int = 1000
    """World users."""
    items: int = 2000
    """World items."""
    authors: int = 200
    """World authors."""
    days: int = 7
    """Days of world logs."""
    max_users: int | None = None
    """Users drawn for the offline tables (None: all with >= 3 behaviours; the paper 10,000)."""
    max_per_user: int = 30
    """Each user's last behaviours kept (the paper's sequence length is 20)."""
    seq_len: int = 20
    """Sequence length L (the paper's 20)."""
    dim: int = 64
    """Embedding dimension of every model."""
    epochs: int = 10
    """Training epochs (the paper 50; no early stopping: the protocol has no validation set)."""
    batch_size: int = 256
    """Batch size (the paper's 256)."""
    lr: float = 0.001
    """Adam learning rate (the paper 0.01; 0.001 trains every model here stably)."""
    models: tuple[str, ...] = TABLE1_MODELS
    """Table 1 models (`TABLE1_MODELS` names)."""
    ablations: bool = True
    """Run Table 2 (RUIE's three ablations)."""
    seeds: tuple[int, ...] = (0, 1, 2, 3, 4)
    """Training seeds; seed i's online evaluation uses evaluation seed i (paired)."""
    online_episodes: int = 30
    """MultiScenario-v0 sessions per agent and seed (0: no online section)."""
    online_max_steps: int = 30
    """Requests per online session at most."""
    dqn_steps: int = 12000
    """Env steps of Tianshou's DQN (`agents.dqn.train_dqn`) on MultiScenario-v0 per training
    seed (0: no DQN row). Cheap beside the fits: 3,000 steps took 6 s on the quick preset's
    world (one idle core), so full trains twice the quick preset's 6,000 (`recgym demo`'s)."""
    dqn_epochs: int = 6
    """DQN training epochs (each ends with `dqn_test_episodes` greedy sessions)."""
    dqn_test_episodes: int = 10
    """Greedy test sessions after each DQN epoch (its learning curve)."""
    dqn_backend: str = "world"
    """Where DQN trains: "world" (MultiScenario-v0 on the world as it stood after its logs, as
    the issue asks) or "learned" (on the learned backend; needs `learned_backend`). With
    `data` there is no world: DQN trains on the learned backend."""
    learned_backend: bool = True
    """Also evaluate every online agent (the oracle aside: it reads the world) on
    MultiScenario-v0 over a learned simulator fitted on the bench's world logs
    (`benchmarks.ruie.online.simulator`), or with `data` on that directory's files (the only
    online backend then; off: no online section)."""
    sim_epochs: int = 8
    """Epochs of the learned backend's response model (`SimulatorConfig.epochs`'s default)."""
    seed: int = 0
    """Root seed of the world, its logs and the user sample."""
    device: str = "auto"
    """Torch device of every model, in training and online ('auto': CUDA when available, else
    CPU; `recgym.device`)."""

    def __post_init__(self) -> None:
        if self.dqn_backend not in ("world", "learned"):
            raise ValueError(
                f"bench ruie: dqn_backend must be 'world' or 'learned', got {self.dqn_backend!r}"
            )
        if self.dqn_backend == "learned" and self.dqn_steps and not self.learned_backend:
            raise ValueError("bench ruie: dqn_backend='learned' needs learned_backend=True")
        if self.dqn_steps < 0:
            raise ValueError(f"bench ruie: dqn_steps must be >= 0, got {self.dqn_steps}")
        if self.learned_backend and self.sim_epochs < 1:
            raise ValueError(f"bench ruie: sim_epochs must be >= 1, got {self.sim_epochs}")


PRESETS: dict[str, BenchConfig] = {
    "full": BenchConfig(),
    "quick": BenchConfig(
        mode="quick",
        users=600,
        items=1500,
        authors=150,
        days=5,
        max_per_user=15,
        dim=32,
        epochs=3,
        online_episodes=10,
        online_max_steps=20,
        dqn_steps=6000,
    ),
    "tiny": BenchConfig(
        mode="tiny",
        users=80,
        items=300,
        authors=30,
        days=3,
        max_per_user=10,
        seq_len=8,
        dim=16,
        epochs=1,
        models=("gru4rec", "nextitnet", "ruie"),
        seeds=(0, 1),
        online_episodes=2,
        online_max_steps=5,
        dqn_steps=64,
        dqn_epochs=1,
        dqn_test_episodes=1,
    ),
}
"""full: the committed table; quick: <= 20 minutes alone on 2 cores; tiny: a smoke test (the
numbers mean nothing). The tiny preset keeps the learned backend's 8 epochs (~3.5 s): fitted
for 1 epoch on the tiny logs its behaviour heads stay near 0.5 for every item, so every agent
drew the same responses and the learned rows could not tell agents apart."""

__all__ = [
    "KS",
    "LABELS",
    "METRICS",
    "ONLINE_AGENTS",
    "ONLINE_METRICS",
    "PAPER_TABLE1",
    "PAPER_TABLE2",
    "PRESETS",
    "TABLE1_MODELS",
    "TRACKING_METRICS",
    "BenchConfig",
    "table1_claims",
    "table2_claims",
]
