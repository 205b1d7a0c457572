"""results.md / results.json of `recgym bench rdrsr`, regenerated from the stages' rows."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from recgym.benchmarks.claims import Summary, Verdict, claims_markdown, judge_rows
from recgym.benchmarks.engine import jsonable
from recgym.benchmarks.rdrsr.spec import (
    ALLOCATION_METRICS,
    LABELS,
    PAPER_TABLE2,
    PAPER_TABLE4,
    PROTOCOLS,
    RANKING_METRICS,
    TABLE2_MODELS,
    TABLE4_MODELS,
    claims,
)
from recgym.benchmarks.rdrsr.stages import TRUTH_BACKEND
from recgym.benchmarks.report import (
    cell,
    fmt,
    markdown_table,
    plot_metric,
    summaries,
    table_json,
)


def with_aliases(rows: Sequence[Mapping[str, Any]], k: Mapping[str, int]) -> list[dict]:
    """Rows plus, on a dataset where RDRSR's k is 3, RDRSR's rows again as "rdrsr-3" (Table 4's
    RDRSR-3 is then the same model, trained once)."""
    out = [dict(r) for r in rows]
    have = {(r["env"], r["agent"]) for r in rows}
    for r in rows:
        if r["agent"] == "rdrsr" and k.get(r["env"]) == 3 and (r["env"], "rdrsr-3") not in have:
            out.append({**r, "agent": "rdrsr-3"})
    return out


def _pct(s: Summary | None) -> str:
    if s is None:
        return "-"
    scaled = Summary(s.metric, 100 * s.mean, 100 * s.low, 100 * s.high, s.per_seed)
    return cell(scaled)


def paper_tables(table: Mapping[str, Any], datasets: Sequence[str]) -> list[str]:
    """Table 2 and Table 4 side by side with the paper (percent)."""
    lines: list[str] = []
    for ds in datasets:
        if ds not in PAPER_TABLE2:
            continue
        sampled = table.get(f"{ds}, {PROTOCOLS[0]}", {})
        full = table.get(f"{ds}, {PROTOCOLS[1]}", {})
        lines += [
            f"### Table 2, {ds} (percent; ours: mean [95% interval] over seeds)",
            "",
            "| model | metric | paper | ours, 99 negatives | ours, full catalogue |",
            "|---|---|---:|---:|---:|",
        ]
        for model in TABLE2_MODELS:
            for i, m in enumerate(RANKING_METRICS):
                paper = PAPER_TABLE2[ds][model][i]
                ours_s = sampled.get(model, {}).get(m)
                ours_f = full.get(model, {}).get(m)
                lines.append(
                    f"| {LABELS[model]} | {LABELS[m]} | {fmt(paper)} | {_pct(ours_s)} | "
                    f"{_pct(ours_f)} |"
                )
        lines.append("")
    lines += [
        "### Table 4 (percent NDCG@10)",
        "",
        "| dataset | model | paper | ours, 99 negatives | ours, full catalogue |",
        "|---|---|---:|---:|---:|",
    ]
    for ds in datasets:
        if ds not in PAPER_TABLE4:
            continue
        for model in TABLE4_MODELS:
            s = table.get(f"{ds}, {PROTOCOLS[0]}", {}).get(model, {}).get("ndcg@10")
            f = table.get(f"{ds}, {PROTOCOLS[1]}", {}).get(model, {}).get("ndcg@10")
            lines.append(
                f"| {ds} | {LABELS[model]} | {fmt(PAPER_TABLE4[ds][model])} | {_pct(s)} | "
                f"{_pct(f)} |"
            )
    return lines + [""]


PLOT_METRICS = ("hr@10", "ndcg@10")
"""The ranking metrics drawn (`write_plots`), one PNG per protocol each."""


def write_plots(table: Mapping[str, Any], out: Path, datasets: Sequence[str]) -> list[Path]:
    """PNGs beside results.md: for each protocol and PLOT_METRICS metric, every model's mean and
    95% interval over seeds with one series per dataset (``hr10_99-negatives.png``, ...), and
    the allocation ARI against the world's true interests (``allocation_ari.png``) when the
    world ran. Returns the paths written."""
    paths: list[Path] = []
    for protocol in PROTOCOLS:
        series = {ds: table[f"{ds}, {protocol}"] for ds in datasets if f"{ds}, {protocol}" in table}
        if not series:
            continue
        slug = protocol.replace(" ", "-")
        for metric in PLOT_METRICS:
            name = f"{metric.replace('@', '')}_{slug}.png"
            title = f"{LABELS.get(metric, metric)}, {protocol}"
            paths.append(plot_metric(series, metric, out / name, LABELS, title))
    if TRUTH_BACKEND in table:
        truth = {TRUTH_BACKEND: table[TRUTH_BACKEND]}
        paths.append(plot_metric(truth, "allocation_ari", out / "allocation_ari.png", LABELS))
    return paths


def write(
    rows: Sequence[Mapping[str, Any]],
    out: Path,
    *,
    datasets: Sequence[str],
    k: Mapping[str, int],
    intro: str,
    sequences: Mapping[str, Mapping[str, Any]],
) -> dict[str, Any]:
    """Write results.md, results.json, claims, rows.jsonl and the PNGs of `write_plots` into
    `out`."""
    out.mkdir(parents=True, exist_ok=True)
    rows = with_aliases(rows, k)
    table = summaries(rows)
    verdicts: list[Verdict] = judge_rows(claims(), rows)
    lines = ["# RDRSR: Tables 2 and 4, and allocation vs the world's true interests", "", intro, ""]
    lines += ["## Data", ""]
    for ds, info in sequences.items():
        text = (
            f"- **{ds}**: {info['users']:,} users, {info['items']:,} items, "
            f"{info['clicks']:,} clicks"
        )
        if info.get("labelled_share") is not None:
            text += f"; {100 * info['labelled_share']:.1f}% of clicks have a true interest"
        lines.append(text)
        for step in info.get("steps", []):
            extra = {
                k2: v
                for k2, v in step.items()
                if k2 not in ("step", "reason", "rows_before", "rows_after", "removed")
            }
            lines.append(
                f"  - {step['step']}: {step['reason']}; removed {step['removed']:,} of "
                f"{step['rows_before']:,} rows" + (f" ({extra})" if extra else "")
            )
    lines += ["", "## Paper vs ours", ""] + paper_tables(table, datasets)
    agents = [a for a in LABELS if a not in RANKING_METRICS + ALLOCATION_METRICS]
    for backend, cells in table.items():
        metrics = ALLOCATION_METRICS if backend == TRUTH_BACKEND else RANKING_METRICS
        present = [a for a in agents if a in cells]
        lines += [
            f"## {backend}",
            "",
            markdown_table(cells, metrics, labels=LABELS, agents=present, seeds_column=True),
            "",
        ]
    lines += ["## Claims (paired by seed)", "", claims_markdown(verdicts)]
    markdown = "\n".join(lines).rstrip() + "\n"
    (out / "results.md").write_text(markdown)
    payload = {"results": table_json(table), "claims": [jsonable(v) for v in verdicts]}
    (out / "results.json").write_text(json.dumps(jsonable(payload, nan_as_none=True), indent=2))
    with (out / "rows.jsonl").open("w") as fh:
        for r in rows:
            fh.write(json.dumps(jsonable(r, nan_as_none=True)) + "\n")
    plots = write_plots(table, out, datasets)
    return {"markdown": markdown, "verdicts": verdicts, "table": table, "plots": plots}
