"""RLIV-UA bench report: aggregation over seeds, paired claims, tables, plot, markdown."""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from recgym.benchmarks.claims import Summary, summarize
from recgym.benchmarks.engine import jsonable
from recgym.benchmarks.report import fmt
from recgym.benchmarks.rliv_ua.spec import (
    AGENTS,
    BACKEND_LABELS,
    BACKENDS,
    ENV_ID,
    METRIC_LABELS,
    PAPER_METRICS,
    PAPER_TABLE2,
    PAPER_TABLE3,
    ROWS,
    TABLE2,
    TABLE3,
    TABLE_METRICS,
    WORLD_ONLY,
    BenchConfig,
)
from recgym.benchmarks.rliv_ua.stages import Job

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
    run = read_json(job.out / "run.json")
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
            rec = read_json(path)
            if "seconds" in rec:
                name = path.name.removesuffix(".done.json").removesuffix(".json")
                group = name if path.parent == markers else path.parent.name
                stage_seconds[group] = stage_seconds.get(group, 0.0) + float(rec["seconds"])
    asa = read_json(markers / f"asa_{job.cfg.backends[0]}.json")
    return {
        "logged_exposures": read_json(markers / "logs.json").get("rows"),
        "simulator_targets": read_json(job.sim_dir / "fidelity.json").get("targets", {}),
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


def read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
