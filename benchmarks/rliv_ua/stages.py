"""RLIV-UA bench stages: the stage runner, logs, simulator, ASA samples and agent training."""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from recgym.benchmarks.engine import jsonable
from recgym.benchmarks.rliv_ua.spec import AGENTS, ENV_ID, RLIV_VARIANTS, BenchConfig

# --------------------------------------------------------------------------- stage machinery
CODE_MODULES = ("recgym.benchmarks.rliv_ua.stages", "recgym.benchmarks.rliv_ua.evaluate")
"""The modules whose code (with all they import) keys every stage and evaluation row."""


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

    def code(self, modules: Sequence[str] = CODE_MODULES) -> str:
        """Hash of the code of `modules` and every recgym module they import (default: the
        bench's stages and evaluation, which reach every agent, env and simulator it trains or
        plays; the package's ``__init__`` imports the report too, so in effect the whole bench:
        safe, not minimal)."""
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
        code: Sequence[str] = CODE_MODULES,
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
