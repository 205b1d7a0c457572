"""`recgym bench rliv-ua`: the RLIV-UA paper's Tables 2 and 3 (Sec. 4) on `recgym/UserAuthor-v0`.

The job, stage by stage (each writes its artefact; a re-run skips every stage whose artefact
exists *for the same settings*; `--fresh` redoes them all):

1. **logs**: build the ground-truth world and log it with the biased behaviour policy in
   KuaiRand's schema (`simulators.generate`); or take real KuaiRand logs with ``--data DIR``,
   in which case there is no ground truth and the world backend is skipped.
2. **simulator**: fit the learned user simulator on those logs (`simulators.train`).
3. **asa**: turn the logs into SCRI samples by Adjacent State Approximation (`data.asa`), once
   per evaluation backend: the samples carry the backend's user/author ids and static features,
   so a model trained on them addresses the right id embeddings (`asa_samples(backend=...)`).
   Both sample sets hold exactly the same logged rows.
4. **agents** (one checkpoint per agent and training seed), every one from the same logs:
   - offline: RankingModel = DeepFM fitted on the logs and ranking by P(click) (the paper's
     RankingModel, "best on CTR"); RLIV-UA and its ablations on the ASA samples (w/o MT: the
     watch-time tower only; w/o SL: no r_hat + gamma * V split; w/o MT & SL: both); CQL
     (Tianshou) on an offline buffer logged *in the learned simulator* by the noisy projected
     DeepFM (`agents.continuous.collect_offline_buffer`: logged KuaiRand rows do not hold the
     linear ranking weights CQL acts with, so its transitions have to come from a rollout of
     a log-like policy in the simulator of the logs; one buffer, shared by CQL's seeds);
   - online on the learned simulator: DQN, TD3 (linear ranking weights) and RLUR (TD3 over the
     fusion weights of the seed's DeepFM predictions, `agents.rlur`);
   - reference rows (`agents.references`): random; the click ranker and the myopic watch
     ranker (one `RankingModel` fit on the logs per seed, viewed two ways); longest-first and
     duration+diversity (observation rules); the patience oracle, which reads the world's
     hidden state and is evaluated on the world only. The long-term claim "RLIV-UA beats the
     myopic watch ranker" (watch time, session length) sits beside the paper's claims.
   The gift tower and the assistance gift net of RLIV-UA do not exist here, as in the paper's
   offline study: KuaiRand-schema logs carry no gift signal (`simulators.scri.tasks_for`).
5. **evaluate**: every agent on `recgym/UserAuthor-v0` over the learned simulator AND over the
   ground-truth world as it stood after writing the logs (backend "world", ``world_dir`` = the
   logs: the user state the simulator learned starts from); one JSONL row per agent x backend x
   seed in ``rows.jsonl``.
6. **report**: Table 2 / Table 3 layouts as markdown + CSV, a bar plot, the paper's numbers and
   a per-claim holds / does-not-hold list computed from the rows (regenerated from the JSONL,
   never edited by hand; ``--report-only`` redoes just this).

Seeds: seed s is a *training* seed and an *evaluation* seed at once (the quick preset has 3,
the full one 5; claims are judged on the paired per-seed differences, `benchmarks.claims`).
Every trained agent is trained once per seed (initialisation, minibatch order, exploration, id
dropout) on the same logs, simulator and offline buffer, and evaluated on fresh envs reset with
seed s; the interval over seeds therefore covers training and evaluation noise, not the
randomness of the world, the logs or the simulator fit (one of each per run, from
``--world-seed``).

RLIV-UA's target-network rate: the paper's Table 1 says tau = 0.005 with 250 x 1e4 steps of
1024 samples; a CPU budget of a few hundred steps leaves the values mostly unpropagated at that
rate (`agents.rliv_ua.train_rliv_ua`). This benchmark therefore uses tau = 0.05 for 600 steps of
256 samples in ``--quick`` (30 full target moves; the SCRI learning test's LIVs come within
~5 % of the truth at this budget) and tau = 0.02 for 2000 steps of 1024 samples in the full
run (40 moves). ``--rliv-tau 0.005`` restores Table 1's value.

Cost on 2 CPU cores: ``--quick`` took 14.5 min (872 s with the reference rows, cores shared
with another bench; measured, results in `benchmarks/results/rliv_ua/quick`); the full preset
(a 1000-user world, 14 days, 5 seeds, 5x the online and 6x the CQL budgets) is estimated at
about 2 hours from the quick run's per-step costs and has not been run. ``--tiny`` is the smoke
test (about 20 s).

Metrics (`envs.evaluation.METRICS` plus gifts): per session, requests (session length), watch
seconds, CTR (pooled over shown items), distinct categories shown (our "diversity": the paper's
is an unspecified 0-1 score), new follows, and gifts, which only the ground-truth world
produces (counted here from the step infos; a learned simulator of KuaiRand has no gifts).
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import math
import platform
import shutil
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from recgym.benchmarks.claims import Summary, summarize
from recgym.benchmarks.engine import jsonable, provenance
from recgym.benchmarks.report import fmt
from recgym.outdir import ensure_writable_dir

ENV_ID = "recgym/UserAuthor-v0"
ROWS = "rows.jsonl"
BACKENDS = ("learned", "world")
BACKEND_LABELS = {"learned": "learned simulator", "world": "ground-truth world"}

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
TABLE2 = ("ranking_model", "cql", "dqn", "td3", "rlur", "rliv_ua", *REFERENCES)
TABLE3 = ("rliv_ua_wo_mt_sl", "rliv_ua_wo_mt", "rliv_ua_wo_sl", "rliv_ua")
RLIV_VARIANTS: dict[str, dict[str, bool]] = {
    "rliv_ua": {"multi_task": True, "supervised": True},
    "rliv_ua_wo_mt": {"multi_task": False, "supervised": True},
    "rliv_ua_wo_sl": {"multi_task": True, "supervised": False},
    "rliv_ua_wo_mt_sl": {"multi_task": False, "supervised": False},
}
"""The ablation switches of `RLIVUAConfig` per variant (no gift tower, so no assistance net)."""

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


# --------------------------------------------------------------------------- configuration
@dataclass(kw_only=True)
class BenchConfig:
    """Sizes and budgets of one benchmark run (`PRESETS` holds full, quick and tiny)."""

    mode: str = "full"
    """Preset name, recorded in every row and in the default output path."""
    data: str | None = None
    """Directory of real KuaiRand logs; None: build the world and log it (ground truth)."""
    users: int = 1000
    """World users."""
    items: int = 3000
    """World items."""
    authors: int = 300
    """World authors."""
    days: int = 14
    """Days of logs."""
    world_seed: int = 0
    """Seed of the world, its logs, the simulator fit and the CQL buffer (one of each)."""
    seeds: tuple[int, ...] = (0, 1, 2, 3, 4)
    """Training-and-evaluation seeds; the 95% intervals are over these."""
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
    deepfm_epochs: int = 8
    """DeepFM passes over the training days."""
    online_steps: int = 20_000
    """Env steps of DQN, TD3 and RLUR on the learned simulator."""
    online_test_episodes: int = 5
    """Test sessions after each online epoch (the learning curve kept beside the checkpoint)."""
    cql_data_steps: int = 20_000
    """Transitions in CQL's offline buffer (logged once in the learned simulator)."""
    cql_steps: int = 3_000
    """CQL gradient steps."""
    cql_repeat: int = 10
    """Sampled actions per state in CQL's conservative penalty."""
    rliv_steps: int = 2_000
    """RLIV-UA gradient steps (two epochs)."""
    rliv_batch: int = 1024
    """RLIV-UA samples per gradient step."""
    rliv_tau: float = 0.02
    """RLIV-UA Polyak rate (Table 1: 0.005, see the module docstring)."""
    small_nets: bool = False
    """Shrink every network to one hidden layer of 16 (smoke tests only)."""
    agents: tuple[str, ...] = tuple(AGENTS)
    """Agents to train and evaluate."""

    def __post_init__(self) -> None:
        self.seeds = tuple(int(s) for s in self.seeds)
        self.agents = tuple(self.agents)
        unknown = set(self.agents) - set(AGENTS)
        if unknown:
            raise ValueError(f"unknown agents {sorted(unknown)}; expected some of {list(AGENTS)}")
        if not self.seeds:
            raise ValueError("at least one seed is needed")

    @property
    def has_world(self) -> bool:
        return self.data is None

    @property
    def backends(self) -> tuple[str, ...]:
        return BACKENDS if self.has_world else ("learned",)

    def world_config(self) -> dict[str, Any]:
        return {
            "n_users": self.users,
            "n_items": self.items,
            "n_authors": self.authors,
            "seed": self.world_seed,
        }


PRESETS: dict[str, BenchConfig] = {
    "full": BenchConfig(),
    "quick": BenchConfig(
        mode="quick",
        users=500,
        items=1500,
        authors=150,
        days=7,
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


def _digest(obj: Any) -> str:
    return hashlib.sha1(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:12]


# --------------------------------------------------------------------------- stage machinery
class Job:
    """Paths, settings and the stage runner of one benchmark run.

    A stage is done when its marker file exists and records the same key: its settings (a dict
    that includes the keys of the stages it depends on) and the hash of the code it runs
    (`benchmarks.engine.code_hash`: the source of the modules it imports, tracked or not);
    otherwise it runs and writes the marker last, with its own measurements. So a re-run with
    other settings or other code redoes exactly the stages they reach, never reusing a stale one.
    """

    def __init__(self, cfg: BenchConfig, out: Path, work: Path, fresh: bool, progress: bool):
        self.cfg, self.out, self.work = cfg, out, work
        self.fresh, self.progress = fresh, progress
        self.timings: dict[str, float] = {}
        self.started = time.perf_counter()
        self._dataset: Any = None
        self.logs_dir = Path(cfg.data) if cfg.data else work / "logs"
        self.sim_dir = work / "simulator"
        self._code: dict[tuple[str, ...], str] = {}

    def code(self, modules: Sequence[str] = (__name__,)) -> str:
        """Hash of the code of `modules` and every recgym module they import (default: this
        bench, which reaches every agent, env and simulator it trains or plays)."""
        from recgym.benchmarks.engine import code_hash

        modules = tuple(modules)
        if modules not in self._code:
            self._code[modules] = code_hash(modules)
        return self._code[modules]

    # ------------------------------------------------------------------ keys
    @property
    def logs_key(self) -> dict[str, Any]:
        if self.cfg.data:
            return {"data": str(Path(self.cfg.data).resolve())}
        # "state": the logs dir also holds the post-log world (world_state.npz), which the
        # world backend loads; older logs dirs lack it and are regenerated
        return {"world": self.cfg.world_config(), "days": self.cfg.days, "state": "post-log"}

    @property
    def sim_key(self) -> dict[str, Any]:
        return {"logs": self.logs_key, "sim": self.sim_config_dict()}

    def sim_config_dict(self) -> dict[str, Any]:
        return asdict(self.simulator_config())

    def simulator_config(self) -> Any:
        from recgym.simulators.learned import SimulatorConfig

        cfg = self.cfg
        extra: dict[str, Any] = {}
        if cfg.small_nets:
            extra = {"hidden": (32,), "embedding_dim": 8, "author_dim": 4, "heldout_days": 1}
        return SimulatorConfig(
            epochs=cfg.sim_epochs, leave_steps=cfg.sim_leave_steps, seed=cfg.world_seed, **extra
        )

    def env_common(self) -> dict[str, Any]:
        c = self.cfg
        return {
            "n_candidates": c.n_candidates,
            "slate_size": c.slate_size,
            "max_steps": c.max_steps,
        }

    def env_kwargs(self, backend: str) -> dict[str, Any]:
        if backend == "learned":
            return {"backend": "learned", "checkpoint": str(self.sim_dir), **self.env_common()}
        # the world saved after writing the logs, not a fresh pre-log World (issue 8, point 3)
        return {"backend": "world", "world_dir": str(self.logs_dir), **self.env_common()}

    # ------------------------------------------------------------------ running stages
    def say(self, msg: str) -> None:
        if self.progress:
            elapsed = time.perf_counter() - self.started
            print(f"[{elapsed:7.1f}s] {msg}", flush=True)

    def stage(
        self,
        name: str,
        marker: Path,
        key: Mapping[str, Any],
        fn: Callable[[], dict | None],
        code: Sequence[str] = (__name__,),
    ) -> dict[str, Any]:
        """Run `fn` unless `marker` records the same `key` and code (of `code`'s modules);
        returns the marker's content."""
        key = {"settings": key, "code": self.code(code)}
        if marker.exists() and not self.fresh:
            done = json.loads(marker.read_text())
            if done.get("key") == json.loads(json.dumps(key, default=str)):
                self.say(f"{name}: done before, skipped")
                return done
        self.say(f"{name} ...")
        t = time.perf_counter()
        extra = fn() or {}
        seconds = round(time.perf_counter() - t, 1)
        self.timings[name] = seconds
        record = {"key": key, "seconds": seconds, **extra}
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.write_text(json.dumps(jsonable(record), indent=2))
        self.say(f"{name}: done in {seconds} s")
        return json.loads(marker.read_text())

    @property
    def dataset(self) -> Any:
        if self._dataset is None:
            from recgym import data

            self._dataset = data.load(self.logs_dir)
        return self._dataset


# --------------------------------------------------------------------------- data stages
def stage_logs(job: Job) -> None:
    cfg = job.cfg
    if cfg.data:
        if not job.logs_dir.is_dir():
            raise FileNotFoundError(f"--data {cfg.data} is not a directory")
        job.say(f"logs: using {cfg.data} (real logs: no ground-truth world to evaluate on)")
        return
    from recgym.simulators.generate import generate
    from recgym.simulators.logs import LogConfig
    from recgym.simulators.world import WorldConfig

    def run() -> dict:
        if (job.logs_dir / "world.json").exists():  # an older world's logs: start clean
            shutil.rmtree(job.logs_dir)
        summary = generate(
            job.logs_dir,
            WorldConfig(**cfg.world_config()),
            LogConfig(days=cfg.days, seed=cfg.world_seed),
            progress=False,
        )
        return {"rows": summary["rows"], "users": summary["users"], "items": summary["items"]}

    job.stage(
        "logs",
        job.work / "markers" / "logs.json",
        job.logs_key,
        run,
        ("recgym.simulators.generate",),
    )


def stage_simulator(job: Job) -> dict[str, Any]:
    from recgym.simulators.train import train_simulator

    def run() -> dict:
        result = train_simulator(job.logs_dir, job.sim_dir, job.simulator_config(), progress=False)
        return {"rows": result["rows"], "train_rows": result["train_rows"]}

    marker = job.work / "markers" / "simulator.json"
    return job.stage("simulator", marker, job.sim_key, run, ("recgym.simulators.train",))


def asa_path(job: Job, backend: str) -> Path:
    return job.work / "asa" / f"{backend}.h5"


def asa_key(job: Job, backend: str) -> dict[str, Any]:
    sim = job.sim_key if backend == "learned" else None  # the ids and features come from it
    return {"logs": job.logs_key, "backend": backend, "sim": sim}


def env_key(env: Mapping[str, Any]) -> dict[str, Any]:
    """Env kwargs without the simulator's path (its identity is `Job.sim_key`)."""
    return {k: v for k, v in env.items() if k != "checkpoint"}


def stage_asa(job: Job) -> None:
    from recgym.data.asa import asa_samples
    from recgym.envs import make_env

    for backend in job.cfg.backends:

        def run(backend: str = backend) -> dict:
            env = make_env(ENV_ID, **job.env_kwargs(backend))
            samples = asa_samples(job.dataset, backend=env.unwrapped.model)
            samples.save(asa_path(job, backend))
            env.close()
            return {"samples": len(samples.buffer), "tasks": list(samples.tasks)}

        job.stage(
            f"asa [{backend}]",
            job.work / "markers" / f"asa_{backend}.json",
            asa_key(job, backend),
            run,
        )


# --------------------------------------------------------------------------- agent configs
def deepfm_config(job: Job, seed: int) -> Any:
    from recgym.agents.deepfm import DeepFMConfig

    small = {"embedding_dim": 4, "hidden_sizes": (16,)} if job.cfg.small_nets else {}
    return DeepFMConfig(target="click", epochs=job.cfg.deepfm_epochs, seed=seed, **small)


def _online_common(job: Job, seed: int) -> dict[str, Any]:
    c = job.cfg
    common: dict[str, Any] = {
        "env_steps": c.online_steps,
        "test_episodes": c.online_test_episodes,
        "seed": seed,
    }
    if c.small_nets:
        common.update(epochs=1, warmup_steps=16, hidden_sizes=(16,), batch_size=16)
    return common


def dqn_config(job: Job, seed: int) -> Any:
    from recgym.agents.dqn import DQNConfig

    return DQNConfig(**_online_common(job, seed))


def td3_config(job: Job, seed: int) -> Any:
    from recgym.agents.continuous import TD3Config

    return TD3Config(**_online_common(job, seed))


def rlur_config(job: Job, seed: int) -> Any:
    from recgym.agents.rlur import RLURConfig

    return RLURConfig(**_online_common(job, seed))


def cql_config(job: Job, seed: int) -> Any:
    from recgym.agents.continuous import CQLConfig

    c = job.cfg
    small = {"hidden_sizes": (16,), "batch_size": 16, "epochs": 1} if c.small_nets else {}
    return CQLConfig(
        gradient_steps=c.cql_steps,
        num_repeat_actions=c.cql_repeat,
        test_episodes=0,
        seed=seed,
        **small,
    )


def cql_data_config(job: Job) -> Any:
    from recgym.agents.continuous import OfflineDataConfig

    return OfflineDataConfig(n_steps=job.cfg.cql_data_steps, seed=job.cfg.world_seed)


def rliv_config(job: Job, variant: str, tasks: Sequence[str], seed: int) -> Any:
    from recgym.agents.rliv_ua import RLIVUAConfig

    c = job.cfg
    small = {"hidden_sizes": (16,), "embedding_dim": 8} if c.small_nets else {}
    epochs = 2 if c.rliv_steps >= 2 else 1
    return RLIVUAConfig(
        tasks=tuple(tasks),
        tau=c.rliv_tau,
        epochs=epochs,
        steps_per_epoch=max(c.rliv_steps // epochs, 1),
        batch_size=c.rliv_batch,
        seed=seed,
        **RLIV_VARIANTS[variant],
        **small,
    )


# --------------------------------------------------------------------------- agent training
def ckpt_path(job: Job, agent: str, seed: int, backend: str | None = None) -> Path:
    name = f"seed{seed}.pt" if backend is None else f"{backend}_seed{seed}.pt"
    return job.work / "agents" / agent / name


def deepfm_key(job: Job, seed: int) -> dict[str, Any]:
    return {"logs": job.logs_key, "deepfm": asdict(deepfm_config(job, seed))}


def train_agents(job: Job) -> dict[tuple[str, int, str | None], dict[str, Any]]:
    """Train every agent of `job.cfg.agents` for every seed; returns the stage records."""
    cfg = job.cfg
    want = set(cfg.agents)
    records: dict[tuple[str, int, str | None], dict[str, Any]] = {}
    needs_deepfm = bool(want & {"ranking_model", "rlur", "cql"})
    learned = job.env_kwargs("learned")
    for seed in cfg.seeds:
        if needs_deepfm:
            records["ranking_model", seed, None] = _train_deepfm(job, seed)
        if want & {"click_ranker", "myopic_watch_ranker"}:
            rec = _train_ranker(job, seed)  # one fit, two views
            records["click_ranker", seed, None] = records["myopic_watch_ranker", seed, None] = rec
    if "cql" in want:
        data = _collect_cql_buffer(job)
        for seed in cfg.seeds:
            records["cql", seed, None] = _train_cql(job, seed, data, learned)
    for seed in cfg.seeds:
        if "dqn" in want:
            records["dqn", seed, None] = _train_dqn(job, seed, learned)
        if "td3" in want:
            records["td3", seed, None] = _train_td3(job, seed, learned)
        if "rlur" in want:
            records["rlur", seed, None] = _train_rlur(job, seed, learned)
    for variant in RLIV_VARIANTS:
        if variant not in want:
            continue
        for backend in cfg.backends:
            for seed in cfg.seeds:
                records[variant, seed, backend] = _train_rliv(job, variant, seed, backend)
    return records


def _train_deepfm(job: Job, seed: int) -> dict[str, Any]:
    from recgym.agents.deepfm import DeepFMRanker

    path = ckpt_path(job, "ranking_model", seed)

    def run() -> dict:
        model = DeepFMRanker(deepfm_config(job, seed))
        stats = model.fit(job.dataset)
        model.save(path)
        return {"click_auc": stats.click_auc, "train_click_auc": stats.train_click_auc}

    return job.stage(
        f"train RankingModel (DeepFM) seed {seed}",
        path.with_name(path.name + ".done.json"),
        deepfm_key(job, seed),
        run,
    )


def ranker_config(job: Job, seed: int) -> Any:
    from recgym.agents.baselines import RankerConfig

    cfg = job.cfg
    extra: dict[str, Any] = {"hidden_sizes": (16,)} if cfg.small_nets else {}
    return RankerConfig(epochs=cfg.deepfm_epochs, request_size=cfg.slate_size, seed=seed, **extra)


def _train_ranker(job: Job, seed: int) -> dict[str, Any]:
    """The reference rankers' `RankingModel` (click and watch-ratio heads), fitted on the logs."""
    from recgym.agents.baselines import RankingModel

    path = ckpt_path(job, "click_ranker", seed)

    def run() -> dict:
        model = RankingModel(ranker_config(job, seed), target="click")
        stats = model.fit(job.dataset)
        model.save(path)
        return {"click_auc": getattr(stats, "click_auc", None)}

    return job.stage(
        f"train the reference rankers (RankingModel) seed {seed}",
        path.with_name(path.name + ".done.json"),
        {"logs": job.logs_key, "ranker": asdict(ranker_config(job, seed))},
        run,
    )


def _collect_cql_buffer(job: Job) -> Path:
    from recgym.agents.continuous import collect_offline_buffer
    from recgym.agents.deepfm import DeepFMRanker

    path = job.work / "agents" / "cql" / "offline_buffer.h5"
    seed0 = job.cfg.seeds[0]
    key = {
        "sim": job.sim_key,
        "env": env_key(job.env_kwargs("learned")),
        "data": asdict(cql_data_config(job)),
        "ranker": deepfm_key(job, seed0),
    }

    def run() -> dict:
        ranker = DeepFMRanker.load(ckpt_path(job, "ranking_model", seed0))
        buffer = collect_offline_buffer(
            job.env_kwargs("learned"), cql_data_config(job), ranker, ENV_ID, progress=False
        )
        path.parent.mkdir(parents=True, exist_ok=True)
        buffer.save_hdf5(str(path))
        return {"transitions": len(buffer), "mean_reward": float(np.mean(buffer.rew))}

    job.stage("CQL offline buffer", path.with_name(path.name + ".done.json"), key, run)
    return path


def _train_cql(job: Job, seed: int, data: Path, env: dict[str, Any]) -> dict[str, Any]:
    from tianshou.data import ReplayBuffer

    from recgym.agents.continuous import train_cql
    from recgym.envs import make_env
    from recgym.envs.contract import row_layout

    path = ckpt_path(job, "cql", seed)
    buffer_key = json.loads(data.with_name(data.name + ".done.json").read_text())["key"]
    key = {"buffer": buffer_key, "cql": asdict(cql_config(job, seed))}

    def run() -> dict:
        buffer = ReplayBuffer.load_hdf5(str(data))
        probe = make_env(ENV_ID, **env)
        layout = row_layout(probe.observation_space)
        probe.close()
        policy, stats = train_cql(buffer, layout, cql_config(job, seed), env, ENV_ID, False)
        policy.save(path)
        return {"gradient_steps": stats.gradient_steps}

    return job.stage(f"train CQL seed {seed}", path.with_name(path.name + ".done.json"), key, run)


def _online_key(job: Job, config: Any, env: dict[str, Any]) -> dict[str, Any]:
    return {"sim": job.sim_key, "env": env_key(env), "config": asdict(config)}


def _train_dqn(job: Job, seed: int, env: dict[str, Any]) -> dict[str, Any]:
    from recgym.agents.dqn import save_dqn, train_dqn

    path = ckpt_path(job, "dqn", seed)
    config = dqn_config(job, seed)

    def run() -> dict:
        algo, stats = train_dqn(env, config, progress=False, env_id=ENV_ID)
        save_dqn(algo, config, path, env, env_id=ENV_ID)
        return {"learning_curve": stats.learning_curve, "gradient_steps": stats.gradient_steps}

    return job.stage(
        f"train DQN seed {seed}",
        path.with_name(path.name + ".done.json"),
        _online_key(job, config, env),
        run,
    )


def _train_td3(job: Job, seed: int, env: dict[str, Any]) -> dict[str, Any]:
    from recgym.agents.continuous import train_td3

    path = ckpt_path(job, "td3", seed)
    config = td3_config(job, seed)

    def run() -> dict:
        policy, stats = train_td3(env, config, ENV_ID, False)
        policy.save(path)
        return {"learning_curve": stats.learning_curve, "gradient_steps": stats.gradient_steps}

    return job.stage(
        f"train TD3 seed {seed}",
        path.with_name(path.name + ".done.json"),
        _online_key(job, config, env),
        run,
    )


def _train_rlur(job: Job, seed: int, env: dict[str, Any]) -> dict[str, Any]:
    from recgym.agents.deepfm import DeepFMRanker
    from recgym.agents.rlur import train_rlur

    path = ckpt_path(job, "rlur", seed)
    config = rlur_config(job, seed)
    key = {**_online_key(job, config, env), "ranker": deepfm_key(job, seed)}

    def run() -> dict:
        ranker = DeepFMRanker.load(ckpt_path(job, "ranking_model", seed))
        policy, stats = train_rlur(ranker, env, config, ENV_ID, False)
        policy.save(path)
        return {"learning_curve": stats.learning_curve, "gradient_steps": stats.gradient_steps}

    return job.stage(f"train RLUR seed {seed}", path.with_name(path.name + ".done.json"), key, run)


def _train_rliv(job: Job, variant: str, seed: int, backend: str) -> dict[str, Any]:
    from recgym.agents.rliv_ua import save_rliv_ua, train_rliv_ua
    from recgym.data.asa import load_asa

    path = ckpt_path(job, variant, seed, backend)
    samples_meta = json.loads((job.work / "markers" / f"asa_{backend}.json").read_text())
    config = rliv_config(job, variant, samples_meta["tasks"], seed)
    key = {"asa": asa_key(job, backend), "config": asdict(config)}

    def run() -> dict:
        samples = load_asa(asa_path(job, backend))
        algo, stats = train_rliv_ua(samples.buffer, config, progress=False)
        save_rliv_ua(algo, path)
        return {"loss_curve": stats.loss_curve, "gradient_steps": stats.gradient_steps}

    label = f"train {AGENTS[variant].label} [{backend} ids] seed {seed}"
    return job.stage(label, path.with_name(path.name + ".done.json"), key, run)


# --------------------------------------------------------------------------- evaluation
def load_policy(job: Job, agent: str, seed: int, backend: str) -> Any:
    """The trained slate policy of `agent` for `seed`, as `envs.evaluation` plays it."""
    if agent == "random":
        from recgym.agents.baselines import RandomPolicy

        return RandomPolicy(seed=seed)
    if agent in ("click_ranker", "myopic_watch_ranker"):
        from recgym.agents.baselines import RankingModel
        from recgym.agents.references import rankers_from_model

        model = RankingModel.load(ckpt_path(job, "click_ranker", seed))
        click, watch = rankers_from_model(model)
        return click if agent == "click_ranker" else watch
    if agent == "longest_first":
        from recgym.agents.references import LongestFirst

        return LongestFirst()
    if agent == "duration_diversity":
        from recgym.agents.references import DurationDiversity

        return DurationDiversity()
    if agent == "ranking_model":
        from recgym.agents.deepfm import DeepFMRanker

        return DeepFMRanker.load(ckpt_path(job, agent, seed))
    if agent in ("cql", "td3"):
        from recgym.agents.continuous import LinearScorePolicy

        return LinearScorePolicy.load(ckpt_path(job, agent, seed))
    if agent == "rlur":
        from recgym.agents.rlur import RLURPolicy

        return RLURPolicy.load(ckpt_path(job, agent, seed))
    if agent == "dqn":
        from recgym.agents.baselines import QSlatePolicy
        from recgym.agents.dqn import load_dqn

        algo, _ = load_dqn(ckpt_path(job, agent, seed))
        return QSlatePolicy(algo)
    if agent in RLIV_VARIANTS:
        from recgym.agents.rliv_ua import LIVSlatePolicy, load_rliv_ua

        return LIVSlatePolicy(load_rliv_ua(ckpt_path(job, agent, seed, backend)))
    raise ValueError(f"unknown agent {agent!r}")


def play_seed(policy: Any, env: Any, episodes: int, seed: int) -> dict[str, float | None]:
    """METRICS of one seed (`envs.evaluation.seed_metrics`) plus ``gifts`` per session.

    The first reset is seeded, the following sessions continue from it (user state persists,
    as in `envs.evaluation.run_sessions`). Gifts are counted from each step's responses; a
    backend that never reports a ``gift`` behaviour gets None (not zero).
    """
    from recgym.envs.contract import for_env
    from recgym.envs.evaluation import seed_metrics, session_totals

    policy = for_env(policy, env)  # a DeepFM (or RLUR over one) maps the backend's ids
    if hasattr(policy, "reset"):
        policy.reset(seed)
    totals, gifts = [], []
    has_gifts = False
    for episode in range(episodes):
        obs, _ = env.reset(seed=seed) if episode == 0 else env.reset()
        infos, gift = [], 0.0
        done = False
        while not done:
            obs, _, terminated, truncated, info = env.step(policy.act(obs))
            infos.append(info)
            if "gift" in info["responses"]:
                has_gifts = True
                gift += float(np.sum(info["responses"]["gift"]))
            done = terminated or truncated
        totals.append(session_totals(infos))
        gifts.append(gift)
    metrics: dict[str, float | None] = dict(seed_metrics(totals))
    metrics["gifts"] = float(np.mean(gifts)) if has_gifts else None
    return metrics


def agent_key(job: Job, agent: str, seed: int, backend: str, records: Mapping) -> str:
    """Digest of what an evaluation row depends on: the agent's training key and the eval."""
    if agent in UNTRAINED:
        trained = None
    elif agent in RLIV_VARIANTS:
        trained = records[agent, seed, backend]["key"]
    else:
        trained = records[agent, seed, None]["key"]
    return _digest(
        {
            "agent": agent,
            "trained": trained,
            "env": env_key(job.env_kwargs(backend)),
            "sim": job.sim_key if backend == "learned" else None,
            "logs": job.logs_key,  # world_dir is a path; the world it holds is the logs' world
            "episodes": job.cfg.episodes,
            "seed": seed,
            "code": job.code(),  # how it is played and scored
        }
    )


UNTRAINED = frozenset({"random", "longest_first", "duration_diversity", "oracle"})


def eval_cells(cfg: BenchConfig) -> list[tuple[str, str, int]]:
    """(agent, backend, seed) of every evaluation row; the oracle only on the world."""
    return [
        (a, b, s)
        for a in cfg.agents
        for b in cfg.backends
        if not (a in WORLD_ONLY and b != "world")
        for s in cfg.seeds
    ]


def open_env(job: Job, agent: str, seed: int, backend: str) -> tuple[Any, Any]:
    """(policy, env) of one evaluation row: the oracle steps the very world it reads."""
    from recgym.envs import make_env

    if agent == "oracle":
        from recgym.agents.references import PatienceOracle
        from recgym.simulators.world_state import load_world

        oracle = PatienceOracle(load_world(job.logs_dir), None, job.cfg.slate_size, seed)
        return oracle, oracle.make_env(ENV_ID, **job.env_common())
    return load_policy(job, agent, seed, backend), make_env(ENV_ID, **job.env_kwargs(backend))


def read_rows(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    rows = []
    for line in path.read_text().splitlines():
        if line.strip():
            rows.append(json.loads(line))
    return rows


def stage_evaluate(job: Job, records: Mapping) -> list[dict[str, Any]]:
    """Evaluate every (agent, backend, seed) without a row for its current key; return the
    current rows (old rows of other settings stay in the JSONL but are not returned)."""
    rows_path = job.out / ROWS
    existing = {row["key"]: row for row in read_rows(rows_path)}
    if job.fresh:
        wanted = {agent_key(job, a, s, b, records) for a, b, s in eval_cells(job.cfg)}
        kept = [row for row in existing.values() if row["key"] not in wanted]
        rows_path.write_text("".join(json.dumps(r) + "\n" for r in kept))
        existing = {row["key"]: row for row in kept}
    sha = git_sha()
    current = []
    for agent, backend, seed in eval_cells(job.cfg):
        key = agent_key(job, agent, seed, backend, records)
        if key in existing:
            current.append(existing[key])
            continue
        t = time.perf_counter()
        policy, env = open_env(job, agent, seed, backend)
        try:
            metrics = play_seed(policy, env, job.cfg.episodes, seed)
        finally:
            env.close()
        seconds = round(time.perf_counter() - t, 2)
        row = {
            "bench": "rliv_ua",
            "env": ENV_ID,
            "agent": agent,
            "label": AGENTS[agent].label,
            "backend": backend,
            "seed": seed,
            "episodes": job.cfg.episodes,
            "metrics": metrics,
            "train_seconds": _train_seconds(agent, seed, backend, records),
            "eval_seconds": seconds,
            "mode": job.cfg.mode,
            "key": key,
            "config_hash": _digest(asdict(job.cfg)),
            "git_sha": sha,
            "timestamp": datetime.now(UTC).isoformat(timespec="seconds"),
            "machine": machine(),
            "provenance": provenance(),  # commit + dirty-tree hash incl. untracked
        }
        with open(rows_path, "a", encoding="utf-8") as f:
            f.write(json.dumps(row) + "\n")
        job.say(
            f"evaluate {AGENTS[agent].label} on the {BACKEND_LABELS[backend]} seed {seed}: "
            f"{metrics['session_length']:.2f} requests, {metrics['watch_time_s']:.0f} s "
            f"({seconds} s)"
        )
        current.append(row)
    return current


def _train_seconds(agent: str, seed: int, backend: str, records: Mapping) -> float | None:
    if agent in UNTRAINED:
        return None
    rec = records[(agent, seed, backend if agent in RLIV_VARIANTS else None)]
    return rec.get("seconds")


def git_sha() -> str:
    from recgym.benchmarks.throughput import git_sha as sha

    return sha()


def machine() -> dict[str, Any]:
    import os

    return {"nproc": os.cpu_count(), "python": platform.python_version()}


# --------------------------------------------------------------------------- aggregation
Cell = Summary
"""One agent x backend x metric over seeds (`benchmarks.claims.Summary`: mean and 95% t
interval clipped to the metric's range, so a count's interval never goes below zero)."""


def aggregate(rows: Iterable[Mapping[str, Any]]) -> dict[str, dict[str, dict[str, Cell | None]]]:
    """Rows -> {backend: {agent: {metric: Cell or None (metric absent on that backend)}}}."""
    grouped: dict[tuple[str, str, str], dict[int, float]] = {}
    absent: set[tuple[str, str, str]] = set()
    for row in rows:
        for metric in TABLE_METRICS:
            value = row["metrics"].get(metric)
            slot = (row["backend"], row["agent"], metric)
            if value is None:
                absent.add(slot)
            else:
                grouped.setdefault(slot, {})[int(row["seed"])] = float(value)
    out: dict[str, dict[str, dict[str, Cell | None]]] = {}
    for backend, agent, metric in sorted(grouped.keys() | absent):
        cell = (
            summarize(grouped[backend, agent, metric], metric)
            if (backend, agent, metric) in grouped
            else None
        )
        out.setdefault(backend, {}).setdefault(agent, {})[metric] = cell
    return out


# --------------------------------------------------------------------------- claims
@dataclass(frozen=True)
class Claim:
    """ "`lower` < `higher` on `metric`" (agent keys), a statement of the paper's Sec. 4."""

    table: str
    metric: str
    lower: str
    higher: str

    @property
    def text(self) -> str:
        lower, higher = AGENTS[self.lower].label, AGENTS[self.higher].label
        return f"{lower} < {higher} on {METRIC_LABELS[self.metric]}"


def paper_claims() -> list[Claim]:
    """The orderings the paper reports: Table 2's chain RankingModel < CQL < DQN < TD3 < RLUR <
    RLIV-UA on session length and watch time, RankingModel best on CTR, and (Table 3) every
    ablation below the full model, with w/o MT & SL below w/o MT (the SL claim of Sec. 4.3)."""
    chain = ("ranking_model", "cql", "dqn", "td3", "rlur", "rliv_ua")
    claims = []
    for metric in ("session_length", "watch_time_s"):
        claims += [Claim("2", metric, a, b) for a, b in zip(chain[:-1], chain[1:], strict=True)]
    claims += [Claim("2", "ctr", other, "ranking_model") for other in chain[1:]]
    for metric in ("session_length", "watch_time_s"):
        claims += [
            Claim("3", metric, "rliv_ua_wo_mt_sl", "rliv_ua"),
            Claim("3", metric, "rliv_ua_wo_mt", "rliv_ua"),
            Claim("3", metric, "rliv_ua_wo_sl", "rliv_ua"),
            Claim("3", metric, "rliv_ua_wo_mt_sl", "rliv_ua_wo_mt"),
        ]
    return claims


def long_term_claims() -> list[Claim]:
    """Ours, beside the paper's (issue 8 point 6): a long-term claim is made against the myopic
    watch-time ranker, which already maximises each request's watch time."""
    return [
        Claim("2", metric, "myopic_watch_ranker", "rliv_ua")
        for metric in ("watch_time_s", "session_length")
    ]


def all_claims() -> list[Claim]:
    return paper_claims() + long_term_claims()


def paper_value(agent: str, metric: str) -> float | None:
    if metric not in PAPER_METRICS:
        return None
    name = AGENTS[agent].paper
    table = {**PAPER_TABLE2, **PAPER_TABLE3}
    if name is None or name not in table:
        return None
    return table[name][PAPER_METRICS.index(metric)]


def paper_verdict(claim: Claim) -> str:
    lo, hi = paper_value(claim.lower, claim.metric), paper_value(claim.higher, claim.metric)
    if claim in long_term_claims():
        return "ours (long-term vs myopic, issue 8)"
    if lo is None or hi is None:
        return "not in the paper's offline tables"
    return "holds" if lo < hi else "does not hold"


@dataclass(kw_only=True)
class Verdict:
    """How a claim fares on one backend: means, the per-seed difference and the wording."""

    claim: Claim
    backend: str
    lower: float
    higher: float
    diff_low: float
    diff_high: float
    n: int
    here: str


def judge(
    claim: Claim, backend: str, table: Mapping[str, Mapping[str, Cell | None]]
) -> Verdict | None:
    """The claim on one backend from the per-seed values, paired by seed (both agents are
    trained with seed s and evaluated on envs reset with seed s; every agent meets the same
    users): `benchmarks.claims.judge` - "reproduced" when the 95% t-interval of the per-seed
    differences excludes 0 in the claimed direction, "contradicted" when it excludes 0 the
    other way, "inconclusive" when it covers 0 (the wording says which way the mean went)."""
    from recgym.benchmarks import claims as paired

    a = table.get(claim.lower, {}).get(claim.metric)
    b = table.get(claim.higher, {}).get(claim.metric)
    if a is None or b is None:
        return None
    seeds = sorted(set(a.per_seed) & set(b.per_seed))
    if not seeds:
        return None
    v = paired.judge(
        paired.Claim(metric=claim.metric, a=claim.higher, b=claim.lower),
        {s: b.per_seed[s] for s in seeds},
        {s: a.per_seed[s] for s in seeds},
        backend,
    )
    m, lo, hi = v.diff, v.low, v.high
    if len(seeds) < 2:
        here = f"{paired.INCONCLUSIVE} (one seed: no interval)"
    elif v.verdict in (paired.REPRODUCED, paired.CONTRADICTED):
        here = v.verdict
    else:
        here = f"{paired.INCONCLUSIVE} (mean {'in' if m > 0 else 'against'} the claimed direction)"
    return Verdict(
        claim=claim,
        backend=backend,
        lower=a.mean,
        higher=b.mean,
        diff_low=lo,
        diff_high=hi,
        n=len(seeds),
        here=here,
    )


# --------------------------------------------------------------------------- report
def table_rows(table_id: str, cfg: BenchConfig, backend: str = "world") -> list[str]:
    agents = TABLE2 if table_id == "2" else TABLE3
    return [a for a in agents if a in cfg.agents and not (a in WORLD_ONLY and backend != "world")]


def markdown_table(
    table_id: str, backend: str, results: Mapping[str, Mapping[str, Cell | None]], cfg: BenchConfig
) -> str:
    """Table 2 or 3 on one backend (`benchmarks.report.markdown_table`); gifts are "n/a" where
    the backend has none."""
    from recgym.benchmarks.report import markdown_table as table

    labels = {**METRIC_LABELS, **{a: AGENTS[a].label for a in AGENTS}}
    return table(
        results,
        TABLE_METRICS,
        labels=labels,
        agents=table_rows(table_id, cfg, backend),
        first="Models",
        seeds_column=True,
        missing={"gifts": "n/a"},
    )


def paper_markdown(table_id: str) -> str:
    table = PAPER_TABLE2 if table_id == "2" else PAPER_TABLE3
    lines = [
        "| Models (paper) | Session Length | Watch Time | CTR | Diversity |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, values in table.items():
        lines.append(f"| {name} | " + " | ".join(f"{v:.4f}" for v in values) + " |")
    return "\n".join(lines)


def write_csv(path: Path, table_id: str, results: Mapping, cfg: BenchConfig) -> None:
    columns = ["table", "backend", "agent", "label", "n_seeds"]
    for metric in TABLE_METRICS:
        columns += [f"{metric}_mean", f"{metric}_ci_low", f"{metric}_ci_high"]
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(columns)
        for backend in cfg.backends:
            for agent in table_rows(table_id, cfg, backend):
                cells = results.get(backend, {}).get(agent, {})
                n = max((len(c.per_seed) for c in cells.values() if c is not None), default=0)
                row: list[Any] = [table_id, backend, agent, AGENTS[agent].label, n]
                for metric in TABLE_METRICS:
                    c = cells.get(metric)
                    row += ["", "", ""] if c is None else [c.mean, c.low, c.high]
                writer.writerow(row)


def write_claims_csv(path: Path, verdicts: Sequence[Verdict]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(
            [
                "table",
                "backend",
                "metric",
                "lower",
                "higher",
                "claim",
                "paper",
                "here",
                "mean_lower",
                "mean_higher",
                "diff_ci_low",
                "diff_ci_high",
                "n_seeds",
            ]
        )
        for v in verdicts:
            c = v.claim
            writer.writerow(
                [
                    c.table,
                    v.backend,
                    c.metric,
                    c.lower,
                    c.higher,
                    c.text,
                    paper_verdict(c),
                    v.here,
                    v.lower,
                    v.higher,
                    v.diff_low,
                    v.diff_high,
                    v.n,
                ]
            )


def plot(results: Mapping, cfg: BenchConfig, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metrics = PAPER_METRICS
    backends = [b for b in cfg.backends if b in results]
    agents = [a for a in (*TABLE2, *TABLE3[:-1]) if a in cfg.agents]
    fig, axes = plt.subplots(
        len(backends),
        len(metrics),
        figsize=(4.2 * len(metrics), 3.6 * len(backends)),
        squeeze=False,
    )
    colours = plt.get_cmap("tab10")
    for i, backend in enumerate(backends):
        for j, metric in enumerate(metrics):
            ax = axes[i][j]
            for k, agent in enumerate(agents):
                cell = results[backend].get(agent, {}).get(metric)
                if cell is None:
                    continue
                err = None
                if math.isfinite(cell.low):
                    err = [[cell.mean - cell.low], [cell.high - cell.mean]]
                ax.bar(k, cell.mean, yerr=err, capsize=3, color=colours(k % 10))
            ax.set_xticks(range(len(agents)))
            ax.set_xticklabels(
                [AGENTS[a].label.replace(" (", "\n(") for a in agents], fontsize=6, rotation=60
            )
            ax.set_title(f"{METRIC_LABELS[metric]} - {BACKEND_LABELS[backend]}", fontsize=9)
    fig.suptitle(f"RLIV-UA Tables 2-3 on {ENV_ID} ({cfg.mode}; mean and 95% interval over seeds)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def report(job: Job, rows: Sequence[Mapping[str, Any]], records: Mapping | None = None) -> str:
    """Write results.md, table2.csv, table3.csv, claims.csv and metrics.png from `rows`."""
    cfg, out = job.cfg, job.out
    results = aggregate(rows)
    verdicts = [
        v
        for backend in cfg.backends
        for claim in all_claims()
        if (v := judge(claim, backend, results.get(backend, {}))) is not None
    ]
    write_csv(out / "table2.csv", "2", results, cfg)
    write_csv(out / "table3.csv", "3", results, cfg)
    write_claims_csv(out / "claims.csv", verdicts)
    plot(results, cfg, out / "metrics.png")
    md = _markdown(job, results, verdicts, rows)
    (out / "results.md").write_text(md)
    (out / "config.json").write_text(json.dumps(jsonable(cfg), indent=2))
    return md


def _markdown(job: Job, results: Mapping, verdicts: Sequence[Verdict], rows: Sequence) -> str:
    cfg = job.cfg
    lines = [
        f"# RLIV-UA (Li et al. 2025) Tables 2 and 3 on `{ENV_ID}` — {cfg.mode}",
        "",
        f"Regenerated by `recgym bench rliv-ua{_mode_flag(cfg)}` from `{ROWS}` (one row per agent "
        "x backend x seed); edit the JSONL, never this file. Mean [95% t-interval] over seeds.",
        "",
        "## Setup",
        "",
    ]
    run = _read_json(job.out / "run.json")
    lines += _setup_lines(cfg, run.get("facts") or {})
    for table_id, title in (("2", "Table 2: compared methods"), ("3", "Table 3: ablations")):
        lines += [f"## {title}", ""]
        for backend in cfg.backends:
            lines += [
                f"### On the {BACKEND_LABELS[backend]}",
                "",
                markdown_table(table_id, backend, results.get(backend, {}), cfg),
                "",
            ]
        if not cfg.has_world:
            lines += [
                "No ground-truth evaluation: the logs are real (`--data`), so there is no world "
                "to evaluate on; only the learned simulator's numbers exist.",
                "",
            ]
        lines += [
            f"### The paper's Table {table_id} (offline, a simulator trained on KuaiRand)",
            "",
            paper_markdown(table_id),
            "",
            "Units differ: the paper's watch time unit is not stated and its diversity is a 0-1 "
            "score; ours are seconds and distinct categories per session. Compare orderings.",
            "",
            f"### Does the paper's ordering hold here? (Table {table_id})",
            "",
        ]
        lines += _claim_lines([v for v in verdicts if v.claim.table == table_id], cfg)
        lines.append("")
    lines += _observations(results, cfg)
    lines += _notes(run, rows)
    return "\n".join(lines) + "\n"


def _observations(results: Mapping, cfg: BenchConfig) -> list[str]:
    """Computed remarks: how far the two backends agree, and whether any gift happened."""
    from scipy.stats import spearmanr

    lines = ["## Observations (computed)", ""]
    if set(cfg.backends) == set(BACKENDS):
        agents = [
            a
            for a in cfg.agents
            if results.get("learned", {}).get(a, {}).get("watch_time_s") is not None
            and results.get("world", {}).get(a, {}).get("watch_time_s") is not None
        ]
        if len(agents) >= 3:
            sim = [results["learned"][a]["watch_time_s"].mean for a in agents]
            world = [results["world"][a]["watch_time_s"].mean for a in agents]
            rho = spearmanr(sim, world).statistic
            lines.append(
                f"- Sim-to-real: the Spearman rank correlation of the {len(agents)} agents' mean "
                f"watch time on the learned simulator and on the world is {rho:.2f} (1 = the "
                "simulator orders the agents as the world does)."
            )
    gifts = [
        cell.mean
        for backend in results.values()
        for agent in backend.values()
        if (cell := agent.get("gifts")) is not None
    ]
    if gifts and max(gifts) == 0:
        lines.append(
            "- Gifts: no agent's sessions produced a single gift on the world (the world gives "
            "gifts only to followed live-streaming authors, with a probability that grows with "
            "the bond); the column is kept for the layout, it cannot rank the agents here."
        )
    elif not gifts:
        lines.append("- Gifts: no backend here produces gifts (a learned simulator of KuaiRand).")
    lines.append("")
    return lines


def _mode_flag(cfg: BenchConfig) -> str:
    flag = {"quick": " --quick", "tiny": " --tiny"}.get(cfg.mode, "")
    return flag + (f" --data {cfg.data}" if cfg.data else "")


VERDICT_WORDS = ("reproduced", "contradicted", "inconclusive")


def _claim_lines(verdicts: Sequence[Verdict], cfg: BenchConfig) -> list[str]:
    """A summary line per backend, then one table row per claim: the paper's verdict (from its
    transcribed numbers) and ours per backend (means, 95% interval of the per-seed difference)."""
    lines = []
    for backend in cfg.backends:
        mine = [v for v in verdicts if v.backend == backend]
        if mine:
            count = {w: sum(v.here.startswith(w) for v in mine) for w in VERDICT_WORDS}
            lines.append(
                f"- On the {BACKEND_LABELS[backend]}: **{count['reproduced']} of {len(mine)} "
                f"reproduced** (the 95% interval of the per-seed paired difference excludes 0 in "
                f"the claimed direction), {count['contradicted']} contradicted, "
                f"{count['inconclusive']} inconclusive; only reproduced claims count."
            )
    lines.append("")
    claims = list(dict.fromkeys(v.claim for v in verdicts))
    head = ["Claim", "paper", *(f"here: {BACKEND_LABELS[b]}" for b in cfg.backends)]
    lines += ["| " + " | ".join(head) + " |", "|---" * len(head) + "|"]
    for claim in claims:
        lo, hi = paper_value(claim.lower, claim.metric), paper_value(claim.higher, claim.metric)
        paper = paper_verdict(claim)
        if lo is not None and hi is not None:
            paper += f" ({fmt(lo)} vs {fmt(hi)})"
        cells = [claim.text, paper]
        for backend in cfg.backends:
            v = next((v for v in verdicts if v.claim == claim and v.backend == backend), None)
            cells.append(
                "-"
                if v is None
                else f"**{v.here}** ({fmt(v.lower)} vs {fmt(v.higher)}; difference "
                f"[{fmt(v.diff_low)}, {fmt(v.diff_high)}])"
            )
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    return lines


def collect_facts(job: Job) -> dict[str, Any]:
    """What the report states about the artefacts (log size, simulator fidelity targets, ASA
    samples, seconds per stage), read from the work directory's stage records. Stored in
    OUT/run.json, so `--report-only` needs only the output directory."""
    markers = job.work / "markers"
    stage_seconds: dict[str, float] = {}
    for path in sorted(job.work.rglob("*.json")):
        if path.parent == markers or path.name.endswith(".done.json"):
            rec = _read_json(path)
            if "seconds" in rec:
                name = path.name.removesuffix(".done.json").removesuffix(".json")
                group = name if path.parent == markers else path.parent.name
                stage_seconds[group] = stage_seconds.get(group, 0.0) + float(rec["seconds"])
    asa = _read_json(markers / f"asa_{job.cfg.backends[0]}.json")
    return {
        "logged_exposures": _read_json(markers / "logs.json").get("rows"),
        "simulator_targets": _read_json(job.sim_dir / "fidelity.json").get("targets", {}),
        "asa_samples": asa.get("samples"),
        "asa_tasks": asa.get("tasks"),
        "stage_seconds": {k: round(v, 1) for k, v in sorted(stage_seconds.items())},
    }


def _setup_lines(cfg: BenchConfig, facts: Mapping[str, Any]) -> list[str]:
    lines = []
    if cfg.data:
        lines.append(f"- Logs: real KuaiRand logs from `{cfg.data}`; no ground-truth world.")
    else:
        lines.append(
            f"- World: {cfg.users} users, {cfg.items} items, {cfg.authors} authors (WorldConfig "
            f"seed {cfg.world_seed}); {cfg.days} days of logs by the click-biased behaviour "
            f"policy ({facts.get('logged_exposures')} logged exposures)."
        )
    targets = facts.get("simulator_targets") or {}
    if targets:
        parts = [
            f"{name} {t['value']:.3f} ({t['rule']}: {'met' if t['met'] else 'NOT met'})"
            for name, t in targets.items()
        ]
        lines.append("- Learned simulator (held-out users and days): " + "; ".join(parts) + ".")
    if facts.get("asa_samples") is not None:
        lines.append(
            f"- ASA samples: {facts['asa_samples']} SCRI samples, towers {facts['asa_tasks']} "
            "(no gift tower and no assistance net: the logs have no gift column, as KuaiRand)."
        )
    if len(cfg.seeds) < 5:
        lines.append(
            f"- **{len(cfg.seeds)} seeds only** ({cfg.mode} preset; the full preset uses 5): the "
            "intervals are wide and few claims can be reproduced at this size."
        )
    lines += [
        "- Reference rows (`agents.references`): random; the click ranker and the myopic watch "
        "ranker (one `RankingModel` fit on the logs per seed, ranking by predicted click and by "
        "predicted immediate watch time); longest-first and duration+diversity (rules on the "
        "observation); the patience oracle, which reads the world's hidden state (world only).",
        f"- Seeds {list(cfg.seeds)}: each is a training seed of every trained agent and the "
        f"evaluation seed of its envs; {cfg.episodes} sessions per agent, backend and seed; "
        f"sessions truncated at {cfg.max_steps} requests; {cfg.n_candidates} candidates, "
        f"slates of {cfg.slate_size}. The world, logs, simulator and CQL buffer are one draw "
        f"(seed {cfg.world_seed}).",
        f"- Budgets: DQN / TD3 / RLUR {cfg.online_steps:,} env steps each on the learned "
        f"simulator; CQL {cfg.cql_steps:,} gradient steps ({cfg.cql_repeat} sampled actions) on "
        f"{cfg.cql_data_steps:,} transitions logged in the learned simulator by the noisy "
        f"projected DeepFM; DeepFM {cfg.deepfm_epochs} epochs; RLIV-UA {cfg.rliv_steps:,} "
        f"gradient steps of {cfg.rliv_batch} samples with tau = {cfg.rliv_tau} (Table 1: "
        "0.005; see the benchmark's docstring), gamma 0.9, one model per backend's id space.",
        "- Every RL agent ranks the same UserAuthor-v0 candidates: DQN by a per-candidate "
        "Q-network, TD3/CQL by linear ranking weights over the candidate features, RLUR by "
        "fusion weights over DeepFM's predicted feedbacks, RLIV-UA by the watch-time LIV of "
        "each candidate's user-author state (items of one author tie).",
        "",
    ]
    return lines


def _notes(run: Mapping[str, Any], rows: Sequence[Mapping[str, Any]]) -> list[str]:
    lines = ["## Timings", ""]
    stage_seconds = (run.get("facts") or {}).get("stage_seconds") or {}
    eval_seconds = sum(float(r.get("eval_seconds") or 0) for r in rows)
    total = sum(stage_seconds.values()) + eval_seconds
    lines.append(
        "Seconds per stage (summed over seeds, as recorded when each stage last ran): "
        + ", ".join(f"{k} {v:.0f}" for k, v in stage_seconds.items())
        + f", evaluation {eval_seconds:.0f}; total {total:.0f} s."
    )
    if run.get("wall_seconds") is not None:
        ran = run.get("ran") or {}
        lines.append(
            f"Last invocation: {run.get('wall_seconds')} s wall clock on {run.get('nproc')} "
            f"cores ({run.get('when')}), running {len(ran)} stages ({sum(ran.values()):.0f} s) "
            "and reusing the rest."
        )
    lines.append("")
    return lines


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


# --------------------------------------------------------------------------- entry points
def run(
    cfg: BenchConfig,
    out: str | Path,
    work: str | Path,
    fresh: bool = False,
    progress: bool = True,
    report_only: bool = False,
) -> dict[str, Any]:
    """Run (or resume) the benchmark; returns {"markdown", "rows", "out"}."""
    import torch

    torch.set_num_threads(1)
    job = Job(cfg, Path(out), Path(work), fresh, progress)
    ensure_writable_dir(job.out)  # an unwritable --out fails here, before any stage
    started = time.perf_counter()
    if report_only:
        last = _read_json(job.out / "run.json")
        if last.get("config_hash") != _digest(asdict(cfg)):
            raise SystemExit(
                f"{job.out / 'run.json'} records no finished run with these settings; run "
                "without --report-only"
            )
        keys = set(last["row_keys"])
        rows = [r for r in read_rows(job.out / ROWS) if r["key"] in keys]
        md = report(job, rows)
        return {"markdown": md, "rows": rows, "out": str(job.out)}
    ensure_writable_dir(job.work)
    stage_logs(job)
    stage_simulator(job)
    if set(cfg.agents) & set(RLIV_VARIANTS):
        stage_asa(job)
    records = train_agents(job)
    rows = stage_evaluate(job, records)
    wall = round(time.perf_counter() - started, 1)
    (job.out / "run.json").write_text(
        json.dumps(
            {
                "wall_seconds": wall,
                "ran": job.timings,
                "nproc": machine()["nproc"],
                "when": datetime.now(UTC).isoformat(timespec="seconds"),
                "mode": cfg.mode,
                "config_hash": _digest(asdict(cfg)),
                "row_keys": [row["key"] for row in rows],
                "facts": collect_facts(job),
            },
            indent=2,
        )
    )
    md = report(job, rows, records)
    job.say(f"report: {job.out / 'results.md'} ({wall} s in this invocation)")
    return {"markdown": md, "rows": rows, "out": str(job.out)}


def _parser() -> argparse.ArgumentParser:
    """--quick / --tiny pick a preset; every BenchConfig field is an option (generated from the
    dataclass, help = the field's docstring) that overrides the preset's value."""
    from recgym.benchmarks.engine_cli import config_parser

    p = argparse.ArgumentParser(
        prog="recgym bench rliv-ua",
        description="Reproduce the RLIV-UA paper's Tables 2 and 3 on recgym/UserAuthor-v0: "
        "world -> logs -> learned simulator; RankingModel (DeepFM), CQL, DQN, TD3, RLUR, RLIV-UA "
        "and its ablations trained from the same logs (offline methods) or on the learned "
        "simulator (online methods); each evaluated on the learned simulator and on the "
        "ground-truth world; tables (markdown + CSV), a bar plot and the paper's claims checked. "
        "Staged and resumable. Options not given take the preset's value (full unless --quick "
        "or --tiny).",
    )
    size = p.add_mutually_exclusive_group()
    size.add_argument(
        "--quick",
        action="store_true",
        help="a 500-user world, 7 days of logs, 3 seeds, small budgets (measured: 9 minutes "
        "on 2 otherwise idle cores, 1.4 GB peak memory)",
    )
    size.add_argument(
        "--tiny",
        action="store_true",
        help="a smoke test: a 60-user world, 2 seeds, a few steps per agent, tiny networks "
        "(well under a minute; the numbers mean nothing)",
    )
    p.add_argument(
        "--out",
        metavar="DIR",
        help="results directory: rows.jsonl, results.md, table2.csv, table3.csv, claims.csv, "
        "metrics.png, config.json, run.json (default: benchmarks/results/rliv_ua/MODE)",
    )
    p.add_argument(
        "--work",
        metavar="DIR",
        help="artefacts directory: logs, simulator, ASA samples, checkpoints and stage markers "
        "(default: recgym-out/bench-rliv-ua/MODE)",
    )
    config_parser(
        BenchConfig, parser=p, presets=PRESETS, exclude=("mode",), choices={"agents": AGENTS}
    )
    p.add_argument(
        "--fresh", action="store_true", help="redo every stage even when its artefact exists"
    )
    p.add_argument(
        "--report-only",
        action="store_true",
        help="only regenerate the tables, claims and plot from OUT/rows.jsonl",
    )
    p.add_argument("--quiet", action="store_true", help="no progress output")
    return p


def config_from_args(args: argparse.Namespace) -> BenchConfig:
    """The preset of --quick / --tiny (else full) with every given option applied."""
    from recgym.benchmarks import engine_cli

    mode = "quick" if args.quick else "tiny" if args.tiny else "full"
    cfg = engine_cli.config_from_args(BenchConfig, args, base=PRESETS[mode])
    return replace(cfg, agents=tuple(a for a in AGENTS if a in cfg.agents))  # table order


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    cfg = config_from_args(args)
    name = cfg.mode + ("-data" if cfg.data else "")
    out = args.out or f"benchmarks/results/rliv_ua/{name}"
    work = args.work or f"recgym-out/bench-rliv-ua/{name}"
    result = run(
        cfg, out, work, fresh=args.fresh, progress=not args.quiet, report_only=args.report_only
    )
    if not args.quiet:
        print(result["markdown"])
    return 0


__all__ = [
    "AGENTS",
    "BenchConfig",
    "PAPER_TABLE2",
    "PAPER_TABLE3",
    "PRESETS",
    "TABLE_METRICS",
    "aggregate",
    "judge",
    "main",
    "paper_claims",
    "play_seed",
    "run",
]
