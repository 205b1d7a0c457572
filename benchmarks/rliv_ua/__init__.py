"""`recgym bench rliv-ua`: the RLIV-UA paper's Tables 2 and 3 (Sec. 4) on `recgym/UserAuthor-v0`.

A spec on the bench engine (`benchmarks.engine`; stages in `rliv_ua.stages`, each keyed by its
settings, the code it runs and its inputs; a re-run reuses every finished stage whose key is
unchanged, so a changed setting reruns exactly the stages it reaches; `--fresh` discards
everything first). Stage outputs live under ``--work``, the report under ``--out``:

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
     watch-time tower only; w/o SL: no r_hat + gamma * V split; w/o MT & SL: both; the
     author-only state: no item features, Eq. 3's s_ua alone; every other variant has the
     item's id and static row in its state, the paper's Sec. 2); CQL
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
   World logs carry the optional ``is_gift`` column, so RLIV-UA there has its gift tower and
   the assistance gift net (real KuaiRand logs have no gift signal: no gift tower,
   `simulators.scri.tasks_for`).
5. **evaluate** (one stage per agent and seed): every agent on `recgym/UserAuthor-v0` over the
   learned simulator the online agents trained in, over a second simulator fit on the same
   logs with another seed (other initialisation and held-out users; nobody trained in it;
   ``--no-second-simulator`` drops it) AND over the ground-truth world as it stood after
   writing the logs (backend "world", ``world_dir`` = the logs: the user state the simulator
   learned starts from); one row per agent x backend x seed x metric. The share of served
   candidates with a non-zero UA counter is recorded beside the ASA samples' share (the
   train/serve shift of RLIV-UA's states).
6. **report** (`rliv_ua.report`): Table 2 / Table 3 per backend (markdown, ``results.json``),
   one plot per paper metric, the paper's numbers and a reproduced / contradicted /
   inconclusive verdict per claim (``claims.md``/``claims.json``), all regenerated from the
   evaluation rows (``rows.jsonl``: the engine's rows, with provenance) on every run.

Seeds and worlds: seed s is a *training* seed and an *evaluation* seed at once (quick 3, full
5). Every trained agent is trained once per seed (initialisation, minibatch order, exploration,
id dropout) on the same logs, simulator and offline buffer, and evaluated on fresh envs reset
with seed s. ``--world-seeds`` draws independent worlds (full: 2, quick and tiny: 1): each has
its own world, logs, both simulator fits, ASA samples and CQL buffer (stages ``w<world>-...``),
and every agent and seed is trained and evaluated in each. The tables and the claims pool the
(world, seed) pairs: two agents are paired only on the same world and seed (same logs,
simulators and evaluation users), and the paired differences of all pairs give the interval
(`benchmarks.claims`; a pair shows as seed ``world * 1000 + seed``). With one world the interval
covers training and evaluation noise only; with several it also sees the world draw, though the
t-interval treats the pairs of one world as independent (two worlds are too few to estimate the
between-world variance separately).

RLIV-UA's target-network rate: the paper's Table 1 says tau = 0.005 with 250 x 1e4 steps of
1024 samples; a CPU budget of a few hundred steps leaves the values mostly unpropagated at that
rate (`agents.rliv_ua.train_rliv_ua`). This benchmark therefore uses tau = 0.05 for 600 steps of
256 samples in ``--quick`` (30 full target moves; the SCRI learning test's LIVs come within
~5 % of the truth at this budget) and tau = 0.04 for 800 steps of 256 samples in the full
run (32 moves: 1000 steps of 512 samples cost ~170 CPU-s per item-aware model, and the full
run trains 100 models). ``--rliv-tau 0.005`` restores Table 1's value.

Cost: ``--quick`` (one world, 3 seeds) took 54 min on 2 cores shared with about six other jobs
(`benchmarks/results/rliv_ua/quick/command.txt`). The full preset is sized for about 1-1.5 hours
on an idle 2-core machine; see `spec.PRESETS` for the per-stage CPU measurement behind it.
``--tiny`` is the smoke test.

Metrics (`envs.evaluation.METRICS` plus gifts): per session, requests (session length), watch
seconds, CTR (pooled over shown items), distinct categories shown (our "diversity": the paper's
is an unspecified 0-1 score), new follows, and gifts, which only the ground-truth world
produces (counted here from the step infos; the learned simulator models no gifts).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from recgym.benchmarks.rliv_ua.spec import (
    AGENTS,
    BACKENDS,
    PAPER_TABLE2,
    PAPER_TABLE3,
    PRESETS,
    REFERENCES,
    RLIV_VARIANTS,
    TABLE2,
    TABLE3,
    TABLE_METRICS,
    WORLD_ONLY,
    AgentInfo,
    BenchConfig,
    all_claims,
    long_term_claims,
    paper_claims,
    paper_verdict,
)


def run(
    cfg: BenchConfig, out: str | Path, work: str | Path, fresh: bool = False, progress: bool = True
) -> dict[str, Any]:
    """Run (or reuse) every stage of `cfg` under `work` and write the report into `out`;
    returns {"markdown", "rows", "stages"} (stages: {name: `engine.StageResult`})."""
    import torch

    from recgym.benchmarks.engine import Engine
    from recgym.benchmarks.rliv_ua import report
    from recgym.benchmarks.rliv_ua.stages import is_evaluation, stages
    from recgym.outdir import ensure_writable_dir

    torch.set_num_threads(1)
    ensure_writable_dir(Path(out))  # an unwritable --out fails here, before any stage
    done = Engine(work, progress=progress, fresh=fresh).run(stages(cfg))
    rows = [r for name, s in done.items() if is_evaluation(name) for r in s.rows()]
    md = report.write(cfg, rows, done, Path(out))
    return {"markdown": md, "rows": rows, "stages": done}


def _cli() -> Any:
    from recgym.benchmarks.engine_cli import PresetCLI

    return PresetCLI(
        BenchConfig,
        PRESETS,
        prog="recgym bench rliv-ua",
        description="Reproduce the RLIV-UA paper's Tables 2 and 3 on recgym/UserAuthor-v0: "
        "world -> logs -> learned simulator; RankingModel (DeepFM), CQL, DQN, TD3, RLUR, RLIV-UA "
        "and its ablations trained from the same logs (offline methods) or on the learned "
        "simulator (online methods); each evaluated on the learned simulators and on the "
        "ground-truth world, in every world of --world-seeds; tables pooled over (world, seed) "
        "pairs, plots and the paper's claims checked. Stages on the bench engine, resumable. "
        "Options not given take the preset's value (full unless --quick or --tiny).",
        sizes={
            "quick": "a 500-user world, 7 days of logs, 3 seeds, small budgets (54 min on 2 "
            "shared cores)",
            "tiny": "a smoke test: a 60-user world, 2 seeds, a few steps per agent, tiny "
            "networks (the numbers mean nothing)",
        },
        results="benchmarks/results/rliv_ua",
        work="recgym-out/bench-rliv-ua",
        out_help="report directory: results.md, results.json, claims.md, claims.json, "
        "rows.jsonl, config.json, plots (default: benchmarks/results/rliv_ua/MODE)",
        work_help="stage outputs <work>/<stage>/<key>/: logs, simulator, ASA samples, "
        "checkpoints, evaluation rows (default: recgym-out/bench-rliv-ua/MODE)",
        choices={"agents": tuple(AGENTS)},
    )


def parser() -> Any:
    """--quick / --tiny pick a preset; every BenchConfig field is an option (generated from the
    dataclass, help = the field's docstring) that overrides the preset's value."""
    return _cli().parser()


def config_from_args(args: Any) -> BenchConfig:
    """The preset of --quick / --tiny (else full) with every given option applied."""
    return _cli().config(args)


def main(argv: Sequence[str] | None = None) -> int:
    return _cli().main(run, argv)


__all__ = [
    "AGENTS",
    "BACKENDS",
    "PAPER_TABLE2",
    "PAPER_TABLE3",
    "PRESETS",
    "REFERENCES",
    "RLIV_VARIANTS",
    "TABLE2",
    "TABLE3",
    "TABLE_METRICS",
    "WORLD_ONLY",
    "AgentInfo",
    "BenchConfig",
    "all_claims",
    "config_from_args",
    "long_term_claims",
    "main",
    "paper_claims",
    "paper_verdict",
    "parser",
    "run",
]
