"""RLIV-UA bench spec: agents, the paper's tables and claims, the run's settings and presets."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from recgym.benchmarks.claims import Claim

ENV_ID = "recgym/UserAuthor-v0"
BACKENDS = ("learned", "learned_b", "world")
BACKEND_LABELS = {
    "learned": "learned simulator (the online agents trained in it)",
    "learned_b": "second learned simulator (another seed and held-out users; nobody trained in it)",
    "world": "ground-truth world",
}
ID_SPACE = {"learned": "learned", "learned_b": "learned", "world": "world"}
"""The id space of each backend: both simulators are fit on the same logs, so their dense user
and item indices are the same (`simulators.learned` indexes the log's ids, whatever the seed);
an RLIV-UA model trained on ASA samples in one space serves every backend of that space."""

TABLE_METRICS: tuple[str, ...] = (
    "session_length",
    "watch_time_s",
    "ctr",
    "diversity",
    "follows",
    "gifts",
)
"""Columns of both tables: the paper's four, then follows and gifts per session."""
METRIC_LABELS = {
    "session_length": "Session Length",
    "watch_time_s": "Watch Time (s)",
    "ctr": "CTR",
    "diversity": "Diversity (categories)",
    "follows": "Follows",
    "gifts": "Gifts",
}
PAPER_METRICS = ("session_length", "watch_time_s", "ctr", "diversity")


@dataclass(frozen=True)
class AgentInfo:
    """An agent of the tables: its label, the table it belongs to and how it learns."""

    label: str
    table: str  # "2" or "3"; RLIV-UA is in both
    learns: str  # "offline (logs)", "online (learned simulator)", "none"
    paper: str | None = None  # the row label in the paper's table, if it has one


AGENTS: dict[str, AgentInfo] = {
    "ranking_model": AgentInfo("RankingModel (DeepFM)", "2", "offline (logs)", "RankingModel"),
    "cql": AgentInfo("CQL", "2", "offline (simulator-logged buffer)", "CQL"),
    "dqn": AgentInfo("DQN", "2", "online (learned simulator)", "DQN"),
    "td3": AgentInfo("TD3", "2", "online (learned simulator)", "TD3"),
    "rlur": AgentInfo("RLUR", "2", "online (learned simulator)", "RLUR"),
    "rliv_ua": AgentInfo("RLIV-UA", "2+3", "offline (ASA samples of the logs)", "RLIV-UA"),
    "rliv_ua_wo_mt_sl": AgentInfo(
        "RLIV-UA (w/o MT & SL)", "3", "offline (ASA samples of the logs)", "RLIV-UA(w/o MT & SL)"
    ),
    "rliv_ua_wo_mt": AgentInfo(
        "RLIV-UA (w/o MT)", "3", "offline (ASA samples of the logs)", "RLIV-UA(w/o MT)"
    ),
    "rliv_ua_wo_sl": AgentInfo("RLIV-UA (w/o SL)", "3", "offline (ASA samples of the logs)"),
    "rliv_ua_author_only": AgentInfo(
        "RLIV-UA (author-only state)", "2+3", "offline (ASA samples of the logs)"
    ),
    # reference rows (`agents.references`, issue 8 point 4)
    "random": AgentInfo("random (reference)", "2", "none"),
    "click_ranker": AgentInfo("click ranker (reference)", "2", "offline (logs)"),
    "myopic_watch_ranker": AgentInfo("myopic watch ranker (reference)", "2", "offline (logs)"),
    "longest_first": AgentInfo("longest-first (reference)", "2", "none"),
    "duration_diversity": AgentInfo("duration+diversity (reference)", "2", "none"),
    "oracle": AgentInfo("patience oracle (reads hidden state)", "2", "none"),
}
REFERENCES = (
    "random",
    "click_ranker",
    "myopic_watch_ranker",
    "longest_first",
    "duration_diversity",
    "oracle",
)
"""`agents.references.reference_panel`'s rows: the click and myopic watch rankers are one
`RankingModel` fit per seed viewed two ways; the oracle reads the world's hidden state, so it
is evaluated on the world backend only."""
WORLD_ONLY = frozenset({"oracle"})
TABLE2 = (
    "ranking_model",
    "cql",
    "dqn",
    "td3",
    "rlur",
    "rliv_ua",
    "rliv_ua_author_only",
    *REFERENCES,
)
TABLE3 = ("rliv_ua_wo_mt_sl", "rliv_ua_wo_mt", "rliv_ua_wo_sl", "rliv_ua_author_only", "rliv_ua")
RLIV_VARIANTS: dict[str, dict[str, bool]] = {
    "rliv_ua": {"multi_task": True, "supervised": True, "item_features": True},
    "rliv_ua_wo_mt": {"multi_task": False, "supervised": True, "item_features": True},
    "rliv_ua_wo_sl": {"multi_task": True, "supervised": False, "item_features": True},
    "rliv_ua_wo_mt_sl": {"multi_task": False, "supervised": False, "item_features": True},
    "rliv_ua_author_only": {"multi_task": True, "supervised": True, "item_features": False},
}
"""The switches of `RLIVUAConfig` per variant. Every variant but the author-only one has the
item's static features in its state (the paper's Sec. 2); the towers are the ASA samples'
tasks (a gift tower, and so the assistance net, where the logs have gifts: world logs do)."""

# The paper's Table 2 and Table 3 (offline, simulator on KuaiRand): session length, watch time,
# CTR, diversity. Transcribed from Sec. 4.2-4.3; the w/o SL variant has no offline row (it only
# appears in the online Table 4).
PAPER_TABLE2: dict[str, tuple[float, float, float, float]] = {
    "RankingModel": (2.0132, 59.4812, 0.5948, 0.0629),
    "CQL": (2.2660, 58.0753, 0.5125, 0.1727),
    "DQN": (4.0610, 49.5454, 0.2247, 0.7477),
    "TD3": (4.7820, 52.7157, 0.2228, 0.8500),
    "RLUR": (6.6810, 151.0550, 0.4519, 0.7206),
    "RLIV-UA": (12.8860, 377.4867, 0.5015, 0.8827),
}
PAPER_TABLE3: dict[str, tuple[float, float, float, float]] = {
    "RLIV-UA(w/o MT & SL)": (7.2940, 188.0499, 0.5229, 0.7994),
    "RLIV-UA(w/o MT)": (9.2800, 248.1804, 0.5340, 0.8746),
    "RLIV-UA": (12.8860, 377.4867, 0.5015, 0.8827),
}


CHAIN = ("ranking_model", "cql", "dqn", "td3", "rlur", "rliv_ua")
"""Table 2's ordering on session length and watch time (Sec. 4.2), worst first."""


def paper_claims() -> list[Claim]:
    """The orderings the paper reports (`Claim.a` is the one claimed higher): Table 2's chain
    RankingModel < CQL < DQN < TD3 < RLUR < RLIV-UA on session length and watch time,
    RankingModel best on CTR, and (Table 3) every ablation below the full model, with w/o MT & SL
    below w/o MT (the SL claim of Sec. 4.3)."""
    out = []
    for metric in ("session_length", "watch_time_s"):
        out += [
            Claim(metric=metric, a=hi, b=lo, source="Table 2")
            for lo, hi in zip(CHAIN[:-1], CHAIN[1:], strict=True)
        ]
    out += [Claim(metric="ctr", a="ranking_model", b=o, source="Table 2") for o in CHAIN[1:]]
    for metric in ("session_length", "watch_time_s"):
        out += [
            Claim(metric=metric, a="rliv_ua", b=lo, source="Table 3")
            for lo in ("rliv_ua_wo_mt_sl", "rliv_ua_wo_mt", "rliv_ua_wo_sl")
        ]
        out.append(Claim(metric=metric, a="rliv_ua_wo_mt", b="rliv_ua_wo_mt_sl", source="Table 3"))
    return out


LONG_TERM = "ours: long-term vs myopic"
"""`Claim.source` of the claims that are ours, not the paper's."""


ITEMS = "ours: item features in the state"
"""`Claim.source` of the item-aware vs author-only claims (issue 14 point 1)."""


def long_term_claims() -> list[Claim]:
    """Ours, beside the paper's (issue 8 point 6): a long-term claim is made against the myopic
    watch-time ranker, which already maximises each request's watch time; and the item-aware
    state against the author-only one."""
    metrics = ("watch_time_s", "session_length")
    return [
        *(Claim(metric=m, a="rliv_ua", b="myopic_watch_ranker", source=LONG_TERM) for m in metrics),
        *(Claim(metric=m, a="rliv_ua", b="rliv_ua_author_only", source=ITEMS) for m in metrics),
    ]


def all_claims() -> list[Claim]:
    return paper_claims() + long_term_claims()


def paper_value(agent: str, metric: str) -> float | None:
    """The paper's number for `agent` (key) on `metric`, None where its tables have none."""
    name = AGENTS[agent].paper
    table = {**PAPER_TABLE2, **PAPER_TABLE3}
    if metric not in PAPER_METRICS or name not in table:
        return None
    return table[name][PAPER_METRICS.index(metric)]


def paper_verdict(claim: Claim) -> str:
    """Whether the paper's own transcribed numbers order the claim's agents as it says."""
    if claim.source == LONG_TERM:
        return "ours (long-term vs myopic, issue 8)"
    if claim.source == ITEMS:
        return "ours (the paper's state has item features, issue 14)"
    hi, lo = paper_value(claim.a, claim.metric), paper_value(claim.b, claim.metric)
    if lo is None or hi is None:
        return "not in the paper's offline tables"
    return "holds" if hi > lo else "does not hold"


# --------------------------------------------------------------------------- configuration
PAIR_BASE = 1000
"""With several worlds, (world w, seed s) is the pairing unit ``w * PAIR_BASE + s``."""


@dataclass(kw_only=True)
class BenchConfig:
    """Sizes and budgets of one benchmark run (`PRESETS` holds full, quick and tiny)."""

    mode: str = "full"
    """Preset name, recorded in every row and in the default output path."""
    data: str | None = None
    """Directory of real KuaiRand logs; None: build the world and log it (ground truth)."""
    users: int = 600
    """World users."""
    items: int = 1800
    """World items."""
    authors: int = 180
    """World authors."""
    days: int = 7
    """Days of logs."""
    world_seeds: tuple[int, ...] = (0, 1)
    """Seeds of the independently drawn worlds: each has its own world, logs, simulators, ASA
    samples and CQL buffer, and every agent is trained and evaluated in each; the tables and
    claims pool the (world, seed) pairs (`pair_seed`)."""
    seeds: tuple[int, ...] = (0, 1, 2, 3, 4)
    """Training-and-evaluation seeds, in every world; the 95% intervals are over the (world,
    seed) pairs."""
    episodes: int = 100
    """Evaluation sessions per agent, backend and seed."""
    max_steps: int = 100
    """Requests after which a session is truncated (training and evaluation envs)."""
    n_candidates: int = 50
    """Candidates per request (as the logs' behaviour policy)."""
    slate_size: int = 6
    """Items shown per request (as in the logs)."""
    sim_epochs: int = 4
    """Learned-simulator response-model epochs."""
    sim_leave_steps: int = 1000
    """Learned-simulator leave-model gradient steps."""
    deepfm_epochs: int = 4
    """DeepFM passes over the training days."""
    online_steps: int = 5_000
    """Env steps of DQN, TD3 and RLUR on the learned simulator."""
    online_test_episodes: int = 5
    """Test sessions after each online epoch (the learning curve kept beside the checkpoint)."""
    cql_data_steps: int = 5_000
    """Transitions in CQL's offline buffer (logged once in the learned simulator)."""
    cql_steps: int = 800
    """CQL gradient steps."""
    cql_repeat: int = 4
    """Sampled actions per state in CQL's conservative penalty."""
    rliv_steps: int = 800
    """RLIV-UA gradient steps (two epochs)."""
    rliv_batch: int = 256
    """RLIV-UA samples per gradient step."""
    rliv_tau: float = 0.04
    """RLIV-UA Polyak rate (Table 1: 0.005, see the module docstring)."""
    small_nets: bool = False
    """Shrink every network to one hidden layer of 16 (smoke tests only)."""
    agents: tuple[str, ...] = tuple(AGENTS)
    """Agents to train and evaluate."""
    second_simulator: bool = True
    """Also judge every agent on a second simulator fit on the same logs with another seed
    (other initialisation, other held-out users), in which no agent was trained."""
    device: str = "auto"
    """Torch device of the simulators and every agent, in training and evaluation ('auto': CUDA
    when available, else CPU; `recgym.device`)."""

    def __post_init__(self) -> None:
        self.seeds = tuple(int(s) for s in self.seeds)
        self.world_seeds = tuple(int(w) for w in self.world_seeds)
        worlds = self.world_seeds
        if not worlds or len(set(worlds)) != len(worlds) or min(worlds) < 0:
            raise ValueError(f"world_seeds must be distinct, >= 0 and non-empty, got {worlds}")
        if self.data is not None and len(self.world_seeds) > 1:
            raise ValueError(
                f"--data {self.data}: real logs are one draw, so give one --world-seeds (it "
                f"seeds the simulator fit and the CQL buffer), got {list(self.world_seeds)}"
            )
        if self.multi_world and not all(0 <= s < PAIR_BASE for s in self.seeds):
            raise ValueError(f"with several worlds the seeds must lie in [0, {PAIR_BASE})")
        self.agents = tuple(self.agents)
        unknown = set(self.agents) - set(AGENTS)
        if unknown:
            raise ValueError(f"unknown agents {sorted(unknown)}; expected some of {list(AGENTS)}")
        if not self.seeds:
            raise ValueError("at least one seed is needed")

    @property
    def multi_world(self) -> bool:
        return len(self.world_seeds) > 1

    def pair_seed(self, world: int, seed: int) -> int:
        """The unit the tables and claims pair on: the training seed itself with one world,
        else ``world * PAIR_BASE + seed`` (1003 = world 1, seed 3): agents are paired only
        within one world and seed (same world, logs, simulators, evaluation users)."""
        return world * PAIR_BASE + seed if self.multi_world else seed

    @property
    def has_world(self) -> bool:
        return self.data is None

    @property
    def backends(self) -> tuple[str, ...]:
        return tuple(
            b
            for b in BACKENDS
            if (b != "world" or self.has_world) and (b != "learned_b" or self.second_simulator)
        )

    def world_config(self, world: int) -> dict[str, Any]:
        return {
            "n_users": self.users,
            "n_items": self.items,
            "n_authors": self.authors,
            "seed": world,
        }


PRESETS: dict[str, BenchConfig] = {
    # full = the BenchConfig defaults: 2 worlds x 5 seeds in one run. Sized from one world x one
    # seed at these sizes on a nearly idle 2-core machine (load ~1.5; `recgym bench rliv-ua
    # --world-seeds 0 --seeds 0`, 2026-11-26): 398 CPU-s (404 s wall). Per world 39 CPU-s
    # (logs 2, simulators 14 + 12, ASA 0.5, CQL buffer 10); per (world, seed) 353 CPU-s: DeepFM
    # 3, rankers 1, CQL 21, DQN 14, TD3 21, RLUR 25, RLIV-UA models 242 (item-aware 63 per id
    # space, w/o MT 13, w/o SL 30, w/o MT & SL 10, author-only 5; x 2 id spaces) and the
    # evaluation of every agent on three backends 26. Estimate: 2 x (39 + 5 x 353) ~ 3,600
    # CPU-s, about 1 hour serially (--workers 2: the seeds' stages in parallel, ~35-40 min).
    "full": BenchConfig(),
    "quick": BenchConfig(
        mode="quick",
        users=500,
        items=1500,
        authors=150,
        days=7,
        world_seeds=(0,),
        seeds=(0, 1, 2),
        episodes=100,
        deepfm_epochs=4,
        online_steps=4_000,
        cql_data_steps=4_000,
        cql_steps=500,
        cql_repeat=4,
        rliv_steps=600,
        rliv_batch=256,
        rliv_tau=0.05,
    ),
    "tiny": BenchConfig(
        mode="tiny",
        users=60,
        items=200,
        authors=20,
        days=2,
        world_seeds=(0,),
        seeds=(0, 1),
        episodes=3,
        max_steps=6,
        n_candidates=20,
        slate_size=4,
        sim_epochs=1,
        sim_leave_steps=50,
        deepfm_epochs=1,
        online_steps=32,
        online_test_episodes=1,
        cql_data_steps=48,
        cql_steps=8,
        cql_repeat=2,
        rliv_steps=8,
        rliv_batch=64,
        rliv_tau=0.05,
        small_nets=True,
    ),
}
