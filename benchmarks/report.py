"""The one report writer: tables (markdown, JSON) and plots (PNG), regenerated from result rows.

Numbers are written by one formatter, `fmt`; a table cell is "mean [low, high]" over seeds
(`claims.summarize`: 95% t interval, clipped to the metric's range). Nothing here edits a table by
hand: every output is a function of the rows (and the claims judged on them).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from recgym.benchmarks.claims import Summary, Verdict, claims_markdown, per_seed_values, summarize
from recgym.envs.evaluation import format_number

Table = dict[str, dict[str, dict[str, Summary]]]
"""{backend: {agent: {metric: Summary}}}."""


def fmt(x: float | None) -> str:
    """One number for a table (`envs.evaluation.format_number`); "n/a" for None."""
    return "n/a" if x is None else format_number(x)


def cell(s: Summary | None) -> str:
    """ "mean [low, high]" (just the mean when there is no interval); "-" for a missing cell."""
    if s is None:
        return "-"
    text = fmt(s.mean)
    if math.isfinite(s.low) and math.isfinite(s.high):
        text += f" [{fmt(s.low)}, {fmt(s.high)}]"
    return text


def summaries(rows: Iterable[Mapping[str, Any]]) -> Table:
    """Rows -> {backend: {agent: {metric: Summary over seeds}}}, in first-seen order."""
    table: Table = {}
    for (backend, agent, name), values in per_seed_values(rows).items():
        table.setdefault(backend, {}).setdefault(agent, {})[name] = summarize(values, name)
    return table


def markdown_table(
    cells: Mapping[str, Mapping[str, Summary | None]],
    metrics: Sequence[str],
    *,
    labels: Mapping[str, str] | None = None,
    agents: Sequence[str] | None = None,
    first: str = "agent",
    seeds_column: bool = False,
    missing: Mapping[str, str] | None = None,
) -> str:
    """One row per agent ({agent: {metric: Summary}}), one column per metric ("mean [lo, hi]").

    `labels` renames metrics and agents in the header/first column; `agents` fixes the row
    order (default: the mapping's); `seeds_column` adds the number of seeds per row; `missing`
    is the text of an absent cell per metric (default "-"; e.g. "n/a" where a backend has no
    such behaviour).
    """
    labels, missing = labels or {}, missing or {}
    head = [first, *(labels.get(m, m) for m in metrics)] + (["seeds"] if seeds_column else [])
    lines = ["| " + " | ".join(head) + " |", "|---|" + "---:|" * (len(head) - 1)]
    for agent in agents if agents is not None else list(cells):
        row = cells.get(agent, {})
        texts = [cell(row[m]) if row.get(m) is not None else missing.get(m, "-") for m in metrics]
        if seeds_column:
            texts.append(str(max((s.n for s in row.values() if s is not None), default=0)))
        lines.append(f"| {labels.get(agent, agent)} | " + " | ".join(texts) + " |")
    return "\n".join(lines)


def table_json(table: Table) -> dict[str, Any]:
    """The JSON form of a Table: mean, ci_low, ci_high, per_seed for every cell."""
    return {
        backend: {
            agent: {
                name: {
                    "mean": s.mean,
                    "ci_low": s.low if math.isfinite(s.low) else None,
                    "ci_high": s.high if math.isfinite(s.high) else None,
                    "per_seed": {str(k): v for k, v in s.per_seed.items()},
                }
                for name, s in row.items()
            }
            for agent, row in agents.items()
        }
        for backend, agents in table.items()
    }


def plot_metric(
    table: Table,
    metric: str,
    path: str | Path,
    labels: Mapping[str, str] | None = None,
    title: str | None = None,
) -> Path:
    """A point plot of one metric: agents on the x axis, one marker per backend, 95% bars;
    `title` names what the plot shows before "mean and 95% interval over seeds" (default: the
    metric's label)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = labels or {}
    backends = list(table)
    agents = list(dict.fromkeys(a for b in backends for a in table[b]))
    fig, ax = plt.subplots(figsize=(max(4.0, 1.1 * len(agents) + 1.5), 3.4))
    width = 0.6 / max(1, len(backends))
    for j, backend in enumerate(backends):
        xs, ys, err = [], [], [[], []]
        for i, agent in enumerate(agents):
            s = table[backend].get(agent, {}).get(metric)
            if s is None:
                continue
            xs.append(i + (j - (len(backends) - 1) / 2) * width)
            ys.append(s.mean)
            ok = math.isfinite(s.low) and math.isfinite(s.high)
            err[0].append(s.mean - s.low if ok else 0.0)
            err[1].append(s.high - s.mean if ok else 0.0)
        ax.errorbar(
            xs, ys, yerr=np.array(err), fmt="o", capsize=3, label=labels.get(backend, backend)
        )
    ax.set_xticks(range(len(agents)))
    ax.set_xticklabels([labels.get(a, a) for a in agents], rotation=20, ha="right", fontsize=8)
    ax.set_ylabel(labels.get(metric, metric))
    what = title if title is not None else labels.get(metric, metric)
    ax.set_title(f"{what}: mean and 95% interval over seeds", fontsize=9)
    if len(backends) > 1:
        ax.legend(fontsize=8, frameon=False)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def write_report(
    rows: Sequence[Mapping[str, Any]],
    out_dir: str | Path,
    *,
    title: str,
    metrics: Sequence[str],
    intro: str = "",
    outro: str = "",
    verdicts: Sequence[Verdict] = (),
    labels: Mapping[str, str] | None = None,
    agents: Sequence[str] | None = None,
    plots: bool = True,
    extra_json: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Write ``results.md``, ``results.json`` and one ``<metric>.png`` per metric into `out_dir`.

    The markdown is: title, `intro`, one table per backend, the claims (if any), `outro`.

    Returns {"markdown": text, "tables": {backend: markdown}, "paths": {...}}.
    """
    from recgym.benchmarks.engine import jsonable

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    labels = labels or {}
    table = summaries(rows)
    tables = {
        backend: markdown_table(cells, metrics, labels=labels, agents=agents)
        for backend, cells in table.items()
    }
    lines = [f"# {title}", ""] + ([intro, ""] if intro else [])
    for backend, text in tables.items():
        lines += [f"## On the {labels.get(backend, backend)}", "", text, ""]
    if verdicts:
        lines += ["## Claims (paired by seed)", "", claims_markdown(verdicts)]
    if outro:
        lines += [outro]
    markdown = "\n".join(lines).rstrip() + "\n"
    paths: dict[str, str] = {"markdown": str(out / "results.md"), "json": str(out / "results.json")}
    (out / "results.md").write_text(markdown)
    payload = {
        "title": title,
        "results": table_json(table),
        "claims": [jsonable(v) for v in verdicts],
        **(extra_json or {}),
    }
    (out / "results.json").write_text(json.dumps(jsonable(payload, nan_as_none=True), indent=2))
    if plots:
        for name in metrics:
            safe = name.replace("@", "_at_")
            paths[name] = str(plot_metric(table, name, out / f"{safe}.png", labels))
    return {"markdown": markdown, "tables": tables, "paths": paths, "table": table}


__all__ = [
    "Table",
    "cell",
    "fmt",
    "markdown_table",
    "plot_metric",
    "summaries",
    "table_json",
    "write_report",
]
