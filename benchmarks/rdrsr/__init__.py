"""`recgym bench rdrsr`: the RDRSR paper's Tables 2 and 4, and allocation quality on the world.

Data: ML-100k, Last.fm (hetrec 2k tag assignments: the timed "clicks") and Foursquare NYC, from
``../shared/data`` (user subsets) or ``--data DIR --dataset NAME`` (a directory in the dataset's
original format), with the paper's preprocessing (`data.sequences.paper_sequences`: every step
reported); and the ground-truth world's click sequences, each click labelled with its true
interest (`envs.interest_allocation.world_sequences`). A user's repeated clicks on an item are kept
by default (`RDRSRBenchConfig.repeats`); ranking among unseen items then makes a repeated target
easy, and 94% of the Foursquare subset's test targets are repeats (`--no-repeats` drops them, but
the Foursquare subset does not survive its 10-core without them).

Protocol: leave-one-out (last click test, second-to-last validation, the rest trains; the
`agents.sequence` split), sequences of the paper's t = 10, d = 64, Adam 0.001, early stopping on
validation NDCG@10. Each test target is ranked two ways: among 99 negatives that are neither the
target nor an item the user has seen (the same negatives for every model under a seed, so models
are paired) and among the whole catalogue without the user's seen items. HR@10/50, NDCG@10/50
(`benchmarks.metrics`). On the world, every model with an allocation (RDRSR, RDRSR-F3, MCPRN's
purpose channels) and two references (uniformly random over k, one interest) are scored by the
per-user NMI and adjusted Rand index of their allocation of the test sequence against the true
interests. >= 5 seeds; claims (`spec.claims`) judged on paired per-seed differences.

Stages (`benchmarks.engine`): one per dataset's sequences, one per (dataset, model, seed), one
per seed for the world's references, so a rerun redoes only what changed.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from recgym.benchmarks.engine import Engine, Stage
from recgym.benchmarks.rdrsr.spec import DATASETS, PAPER_K, RDRSRBenchConfig, claims
from recgym.benchmarks.rdrsr.stages import references_stage, sequences_stage, train_stage


def stages(cfg: RDRSRBenchConfig) -> list[Stage]:
    """Every stage of the bench (cfg with its preset applied)."""
    out: list[Stage] = []
    for ds in cfg.datasets():
        seq_cfg: dict[str, Any] = {"dataset": ds, "repeats": cfg.repeats}
        if ds == "world":
            seq_cfg.update(
                world_users=cfg.world_users,
                world_items=cfg.world_items,
                world_clicks=cfg.world_clicks,
            )
        else:
            seq_cfg["path"] = str(cfg.data_dir(ds))
        seq_name = f"sequences-{ds}"
        out.append(Stage(seq_name, seq_cfg, sequences_stage))
        for model in cfg.models:
            if model == "rdrsr-3" and PAPER_K[ds] == 3:
                continue  # the same model as "rdrsr" there (report.with_aliases)
            for seed in cfg.seeds:
                train_cfg = {
                    "dataset": ds,
                    "model": model,
                    "seed": seed,
                    "k": PAPER_K[ds],
                    "epochs": cfg.epochs,
                    "patience": cfg.patience,
                    "validate": cfg.validate,
                    "dim": cfg.dim,
                    "max_len": cfg.max_len,
                    "batch_size": cfg.batch_size,
                    "lr": cfg.lr,
                    "train_rows_per_user": cfg.train_rows_per_user,
                    "n_negatives": cfg.n_negatives,
                    "sequences": seq_cfg,
                    "device": cfg.device,
                }
                out.append(Stage(f"{ds}-{model}-seed{seed}", train_cfg, train_stage, (seq_name,)))
        if ds == "world":
            for seed in cfg.seeds:
                ref_cfg = {"seed": seed, "k": PAPER_K[ds], "max_len": cfg.max_len}
                out.append(
                    Stage(f"world-references-seed{seed}", ref_cfg, references_stage, (seq_name,))
                )
    return out


def run(cfg: RDRSRBenchConfig, progress: bool = True) -> dict[str, Any]:
    """Run (or reuse) every stage and write the report into ``cfg.out``."""
    from recgym.benchmarks.rdrsr.report import write

    cfg = cfg.preset()
    t = time.perf_counter()
    done = Engine(cfg.out, progress=progress).run(stages(cfg))
    rows = [row for r in done.values() for row in r.rows()]
    sequences = {
        name.removeprefix("sequences-"): r.result
        for name, r in done.items()
        if name.startswith("sequences-")
    }
    ran = sum(r.seconds for r in done.values() if not r.reused)
    intro = (
        f"Preset: {'quick' if cfg.quick else 'full'}; seeds {list(cfg.seeds)}; "
        f"epochs <= {cfg.epochs}, d = {cfg.dim}, t = {cfg.max_len}, batch {cfg.batch_size}, "
        f"lr {cfg.lr}, training rows per user {cfg.train_rows_per_user or 'all'}; "
        f"{'repeated clicks kept' if cfg.repeats else 'first click per (user, item) only'}; "
        f"data {cfg.data or 'the ../shared/data subsets'}. Stage time this run: {ran:.0f} s "
        f"(wall {time.perf_counter() - t:.0f} s). Cells: mean [95% t interval] over seeds."
    )
    result = write(
        rows, Path(cfg.out), datasets=cfg.datasets(), k=PAPER_K, intro=intro, sequences=sequences
    )
    (Path(cfg.out) / "config.json").write_text(
        json.dumps({"config": {k: v for k, v in vars(cfg).items()}}, indent=2, default=str)
    )
    return result


def main(argv: Sequence[str] | None = None) -> int:
    from recgym.benchmarks.engine_cli import parse_config

    cfg, _ = parse_config(RDRSRBenchConfig, argv, prog="recgym bench rdrsr")
    result = run(cfg)
    print(result["markdown"])
    return 0


__all__ = ["DATASETS", "PAPER_K", "RDRSRBenchConfig", "claims", "main", "run", "stages"]
