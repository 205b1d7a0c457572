"""`train_simulator`: fit a learned simulator to a log directory (KuaiRand or KuaiSAR), score and
save it."""

from __future__ import annotations

import json
import resource
import time
from pathlib import Path
from typing import Any

import torch

from recgym.device import resolve_device
from recgym.outdir import ensure_writable_dir
from recgym.simulators.fidelity import fidelity_report, read_truth, read_world, render_markdown
from recgym.simulators.learned import LearnedSimulator, SimulatorConfig, build_log_table
from recgym.simulators.learned.scenario import SCENARIO_FILE, fit_scenario_model

BEHAVIOUR_COLUMNS = (
    "is_click",
    "long_view",
    "play_time_ms",
    "duration_ms",
    "is_like",
    "is_follow",
    "is_comment",
    "is_forward",
    "is_hate",
)
"""Log columns the simulator learns from (KuaiRand's names); data without them is refused."""

EXPECTED = (
    "KuaiRand-format logs (log_standard_*.csv / log_random_*.csv with "
    + ", ".join(BEHAVIOUR_COLUMNS[:4])
    + ", ...; e.g. from `recgym world generate`)"
)
TRAINABLE_FORMATS = ("kuairand", "kuaisar")
"""Formats `train_simulator` fits on: KuaiRand logs, or KuaiSAR logs seen through
`simulators.learned.kuaisar.kuairand_view` (then with a `ScenarioModel` beside the checkpoint)."""


def check_kuairand_logs(dataset: Any) -> None:
    """Raise `DataError` unless `dataset` is KuaiRand-format logs with behaviour to learn from.

    Any other format loads fine but has none of the behaviour columns: the response model would
    fit all-zero labels (click loss 0) and the leave model nonsense, and training would "succeed".
    So: the format must be "kuairand", every `BEHAVIOUR_COLUMNS` column present, and at least one
    click logged (a log without a click has nothing to learn).
    """
    from recgym.data import DataError

    if dataset.format != "kuairand":
        raise DataError(
            f"simulator training needs {EXPECTED}; found {dataset.format} data", file=dataset.source
        )
    inter = dataset.interactions
    missing = [c for c in BEHAVIOUR_COLUMNS if c not in inter.columns]
    if missing:
        raise DataError(
            f"simulator training needs {EXPECTED}; the log has no column(s) {', '.join(missing)}",
            file=dataset.source,
        )
    if not (inter["is_click"].to_numpy() > 0).any():
        raise DataError(
            f"simulator training needs logged clicks; is_click is 0 on all {len(inter):,} rows",
            file=dataset.source,
        )


def train_simulator(
    data_dir: str | Path,
    out: str | Path,
    config: SimulatorConfig | None = None,
    progress: bool = True,
    device: str | torch.device = "auto",
) -> dict[str, Any]:
    """Load `data_dir` (`recgym.data.load`), fit on its training sessions, score, save to `out`.

    The models are fitted and scored on `device` ('auto': CUDA when available; see
    `recgym.device`); the summary records it.

    `data_dir` holds KuaiRand-format logs, or a KuaiSAR directory (detected by its files;
    rec_inter.csv, src_inter.csv and item_features.csv are required, `check_kuaisar_dir`). A
    KuaiSAR directory is read through `simulators.learned.kuaisar.kuairand_view` (its docstring
    records every column mapping, including the imputed play times of search rows, seeded by
    ``config.seed``), and a `ScenarioModel` (the feed/search switch and the queries,
    `simulators.learned.scenario.fit_scenario_model`, with the config's ``request_size`` and
    ``session_gap_minutes``) is fitted on the same files and saved beside the checkpoint as
    scenario.json, so `MultiScenarioEnv(backend="learned", checkpoint=out)` loads it.

    `out` receives model.pt, config.json and fidelity.json (`LearnedSimulator.save`) plus
    fidelity.md (`render_markdown`), and scenario.json from KuaiSAR. The fidelity report is
    computed on held-out users and days only (`simulators.fidelity`), with the world's truth
    when `data_dir` has world_truth.parquet.
    Torch runs with `config.torch_threads` threads throughout (restored afterwards). Returns a
    summary: paths, row counts, seconds per stage, peak resident memory and the report.

    Before any training: `out` must be writable (`OutputError` otherwise) and `data_dir` must
    hold KuaiRand-format logs or KuaiSAR files (`DataError` otherwise, without loading a dataset
    of another format; `check_kuairand_logs`, `check_kuaisar_dir`).
    """
    from recgym.data import DataError, detect_format
    from recgym.simulators.learned.kuaisar import check_kuaisar_dir

    cfg = config or SimulatorConfig()
    device = resolve_device(device)  # an unusable device fails before any work
    fmt, source = detect_format(data_dir)
    if fmt not in TRAINABLE_FORMATS:  # refuse before loading (an ML/Last.fm load can take a while)
        raise DataError(
            f"simulator training needs {EXPECTED} or a KuaiSAR directory (rec_inter.csv, "
            f"src_inter.csv, item_features.csv); found {fmt} data",
            file=source,
        )
    if fmt == "kuaisar":
        check_kuaisar_dir(source)
    out = ensure_writable_dir(out)
    threads = torch.get_num_threads()
    torch.set_num_threads(cfg.torch_threads)
    seconds: dict[str, float] = {}
    try:
        started = time.perf_counter()
        dataset, imputed = _training_logs(data_dir, fmt, cfg.seed)
        table = build_log_table(dataset, cfg)
        del dataset
        seconds["prepare"] = time.perf_counter() - started

        mark = time.perf_counter()
        sim = LearnedSimulator.fit(table, progress=progress, device=device)
        seconds["fit"] = time.perf_counter() - mark

        mark = time.perf_counter()
        report = fidelity_report(
            sim, table, truth=read_truth(data_dir), world=read_world(data_dir), seed=cfg.seed
        )
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
            "device": str(device),
        }
        files = ["model.pt", "config.json", "fidelity.json", "fidelity.md"]
        if fmt == "kuaisar":
            mark = time.perf_counter()
            scenario = fit_scenario_model(
                source,
                sim.catalogue,
                sim.item_ids,
                sim.user_ids,
                request_size=cfg.request_size,
                session_gap_minutes=cfg.session_gap_minutes,
            )
            report["training"]["scenario"] = {
                "p_search": scenario.p_search,
                "counts": scenario.counts,
            }
            report["training"]["watch_imputed_rows"] = imputed
            report["training"]["seconds"]["scenario"] = round(time.perf_counter() - mark, 1)
        sim.fidelity = report
        sim.save(out)
        (out / "fidelity.md").write_text(render_markdown(report))
        if fmt == "kuaisar":
            scenario.save(out)
            files.append(SCENARIO_FILE)
    finally:
        torch.set_num_threads(threads)
    return {
        "out": str(out),
        "format": fmt,
        "files": files,
        **report["training"],
        "targets": report["targets"],
        "fidelity": report,
    }


def _training_logs(data_dir: str | Path, fmt: str, seed: int) -> tuple[Any, int]:
    """The dataset `build_log_table` reads and how many rows had their play time imputed:
    KuaiRand logs as loaded (`check_kuairand_logs`), or KuaiSAR seen through `kuairand_view`."""
    from recgym.data import DataError, load
    from recgym.simulators.learned.kuaisar import kuairand_view

    dataset = load(data_dir)
    if fmt == "kuairand":
        check_kuairand_logs(dataset)
        return dataset, 0
    view = kuairand_view(dataset, seed=seed)
    inter = view.interactions
    if not (inter["is_click"].to_numpy() > 0).any():
        raise DataError(
            f"simulator training needs logged clicks; click (rec_inter.csv) and click_cnt "
            f"(src_inter.csv) are 0 on all {len(inter):,} rows",
            file=dataset.source,
        )
    return view, int(inter["watch_imputed"].sum())


def summary_text(result: dict[str, Any]) -> str:
    """What `recgym simulator train` prints: the markdown report and one line of cost."""
    t = result["seconds"]
    cost = (
        f"{result['rows']:,} rows ({result['train_rows']:,} for training) in {t['total']:.0f} s "
        f"(prepare {t['prepare']:.0f}, fit {t['fit']:.0f}, fidelity {t['fidelity']:.0f}); "
        f"peak memory {result['peak_rss_mb']:,} MB; saved to {result['out']}"
    )
    return render_markdown(result["fidelity"]) + "\n" + cost


__all__ = [
    "BEHAVIOUR_COLUMNS",
    "TRAINABLE_FORMATS",
    "check_kuairand_logs",
    "summary_text",
    "train_simulator",
]

if __name__ == "__main__":  # pragma: no cover - a convenience until the CLI is wired
    import argparse

    parser = argparse.ArgumentParser(description="fit a learned simulator to a log directory")
    parser.add_argument("--data", required=True)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    res = train_simulator(args.data, args.out)
    print(summary_text(res))
    print(json.dumps(res["targets"], indent=2))
