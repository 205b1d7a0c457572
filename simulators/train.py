"""`train_simulator`: fit a learned simulator to a log directory, score and save it."""

from __future__ import annotations

import json
import resource
import time
from pathlib import Path
from typing import Any

import torch

from recgym.simulators.fidelity import fidelity_report, read_truth, render_markdown
from recgym.simulators.learned import LearnedSimulator, SimulatorConfig, build_log_table


def train_simulator(
    data_dir: str | Path,
    out: str | Path,
    config: SimulatorConfig | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Load `data_dir` (`recgym.data.load`), fit on its training sessions, score, save to `out`.

    `out` receives model.pt, config.json and fidelity.json (`LearnedSimulator.save`) plus
    fidelity.md (`render_markdown`). The fidelity report is computed on held-out users and days
    only (`simulators.fidelity`), with the world's truth when `data_dir` has world_truth.parquet.
    Torch runs with `config.torch_threads` threads throughout (restored afterwards). Returns a
    summary: paths, row counts, seconds per stage, peak resident memory and the report.
    """
    from recgym.data import load

    cfg = config or SimulatorConfig()
    out = Path(out)
    threads = torch.get_num_threads()
    torch.set_num_threads(cfg.torch_threads)
    seconds: dict[str, float] = {}
    try:
        started = time.perf_counter()
        dataset = load(data_dir)
        table = build_log_table(dataset, cfg)
        del dataset
        seconds["prepare"] = time.perf_counter() - started

        mark = time.perf_counter()
        sim = LearnedSimulator.fit(table, progress=progress)
        seconds["fit"] = time.perf_counter() - mark

        mark = time.perf_counter()
        report = fidelity_report(sim, table, truth=read_truth(data_dir), seed=cfg.seed)
        seconds["fidelity"] = time.perf_counter() - mark
        seconds["total"] = time.perf_counter() - started
        peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
        report["training"] = {
            "data": str(data_dir),
            "rows": table.n_rows,
            "train_rows": report["rows"]["train"],
            "seconds": {k: round(v, 1) for k, v in seconds.items()},
            "peak_rss_mb": round(peak_mb),
            "torch_threads": cfg.torch_threads,
        }
        sim.fidelity = report
        sim.save(out)
        (out / "fidelity.md").write_text(render_markdown(report))
    finally:
        torch.set_num_threads(threads)
    return {
        "out": str(out),
        "files": ["model.pt", "config.json", "fidelity.json", "fidelity.md"],
        **report["training"],
        "targets": report["targets"],
        "fidelity": report,
    }


def summary_text(result: dict[str, Any]) -> str:
    """What `recgym simulator train` prints: the markdown report and one line of cost."""
    t = result["seconds"]
    cost = (
        f"{result['rows']:,} rows ({result['train_rows']:,} for training) in {t['total']:.0f} s "
        f"(prepare {t['prepare']:.0f}, fit {t['fit']:.0f}, fidelity {t['fidelity']:.0f}); "
        f"peak memory {result['peak_rss_mb']:,} MB; saved to {result['out']}"
    )
    return render_markdown(result["fidelity"]) + "\n" + cost


__all__ = ["summary_text", "train_simulator"]

if __name__ == "__main__":  # pragma: no cover - a convenience until the CLI is wired
    import argparse

    parser = argparse.ArgumentParser(description="fit a learned simulator to a log directory")
    parser.add_argument("--data", required=True)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    res = train_simulator(args.data, args.out)
    print(summary_text(res))
    print(json.dumps(res["targets"], indent=2))
