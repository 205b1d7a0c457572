"""RLIV-UA bench entry points: run (or resume) the bench, its CLI."""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence
from dataclasses import asdict, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from recgym.benchmarks.rliv_ua.evaluate import machine, read_rows, stage_evaluate
from recgym.benchmarks.rliv_ua.spec import (
    AGENTS,
    PRESETS,
    RLIV_VARIANTS,
    ROWS,
    BenchConfig,
    settings_digest,
)
from recgym.benchmarks.rliv_ua.stages import (
    Job,
    stage_asa,
    stage_logs,
    stage_simulator,
    train_agents,
)
from recgym.benchmarks.rliv_ua.tables import collect_facts, read_json, report
from recgym.outdir import ensure_writable_dir


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
        last = read_json(job.out / "run.json")
        if last.get("config_hash") != settings_digest(asdict(cfg)):
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
                "config_hash": settings_digest(asdict(cfg)),
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
