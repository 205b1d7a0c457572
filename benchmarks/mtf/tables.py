"""`recgym bench mtf`'s report: Tables 1-4 beside the paper's numbers, with paired verdicts."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from recgym.benchmarks.claims import Claim, judge_rows, per_seed_values
from recgym.benchmarks.mtf.runner import AGENTS, ENHANCED, METRICS, TABLE1_AGENTS
from recgym.benchmarks.report import write_report
from recgym.envs.evaluation import t_interval

INTEGRATED = "IntegratedRL-MTF"
PAPER_TABLE1 = dict(
    zip(TABLE1_AGENTS, (0.7836, 0.7881, 0.7892, 0.7894, 0.7906, 0.7941, 0.7953), strict=True)
)
"""Weighted GAUC, the Enhanced-State paper's Table 1 (quoted from IntegratedRL-MTF's paper)."""
PAPER_TABLE2 = {
    "DDPG": (1.39, 0.81),
    "CQL+SAC": (1.62, 0.95),
    "BatchRL-MTF (BCQ)": (1.79, 0.98),
    "IQL": (2.09, 1.15),
    INTEGRATED: (4.64, 1.74),
}
"""Online UVC / UDT % change vs ES (Table 2; no row for IntegratedRL-MTF w/o PTM)."""
PAPER_TABLE3 = {INTEGRATED: 0.7955, ENHANCED: 0.7982}
PAPER_TABLE4 = {ENHANCED: (3.84, 0.58)}
"""Online UVC / UDT % change vs IntegratedRL-MTF."""
LABELS = {
    "weighted_gauc": "weighted GAUC",
    "valid_consumption": "UVC (valid views / session)",
    "watch_time_s": "UDT (s watched / session)",
}

CLAIMS = [
    *(
        Claim(metric="weighted_gauc", a=hi, b=lo, source="Table 1")
        for lo, hi in zip(TABLE1_AGENTS[:-1], TABLE1_AGENTS[1:], strict=True)
    ),
    *(
        Claim(metric=m, a=agent, b="ES", source="Table 2")
        for agent in PAPER_TABLE2
        for m in ("valid_consumption", "watch_time_s")
    ),
    Claim(metric="weighted_gauc", a=ENHANCED, b=INTEGRATED, source="Table 3"),
    *(
        Claim(metric=m, a=ENHANCED, b=INTEGRATED, source="Table 4")
        for m in ("valid_consumption", "watch_time_s")
    ),
    *(Claim(metric=m, a=ENHANCED, b="fixed fusion (mu_bp)", source="issue 11") for m in METRICS),
]
"""The paper's orderings (adjacent pairs of Table 1; each method vs ES in Table 2; Tables 3-4)
and the issue's: Enhanced-State beats the baseline policy it explored around."""


def _pct(a: Mapping[int, float], b: Mapping[int, float]) -> tuple[float, float, float, int]:
    seeds = sorted(set(a) & set(b))
    diffs = [100.0 * (a[s] / b[s] - 1.0) for s in seeds if b[s] != 0]
    if len(diffs) < 2:
        return (diffs[0] if diffs else math.nan), math.nan, math.nan, len(diffs)
    mean, lo, hi = t_interval(diffs)
    return mean, lo, hi, len(diffs)


def _fmt(x: float, digits: int = 2) -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:+.{digits}f}"


def _num(x: float, digits: int = 4) -> str:
    return "n/a" if x is None or math.isnan(x) else f"{x:.{digits}f}"


def _verdict_of(verdicts: Sequence[Any], backend: str, a: str, b: str, metric: str) -> str:
    for v in verdicts:
        c = v.claim
        if v.backend == backend and (c.a, c.b, c.metric) == (a, b, metric):
            return v.verdict
    return "n/a"


def _gauc_table(values: dict, backend: str, agents: Sequence[str], paper: Mapping, verdicts,
                rival_of: Mapping[str, str]) -> list[str]:  # fmt: skip
    lines = [
        "| method | paper | ours: weighted GAUC [95% interval] | verdict of the paper's ordering |",
        "|---|---:|---:|---|",
    ]
    for agent in agents:
        per = values.get((backend, agent, "weighted_gauc"), {})
        if per:
            mean, lo, hi = t_interval(list(per.values())) if len(per) > 1 else (
                next(iter(per.values())), math.nan, math.nan)  # fmt: skip
            ours = f"{_num(mean)} [{_num(lo)}, {_num(hi)}]"
        else:
            ours = "n/a"
        rival = rival_of.get(agent)
        verdict = (
            f"> {rival}: {_verdict_of(verdicts, backend, agent, rival, 'weighted_gauc')}"
            if rival
            else ""
        )
        lines.append(f"| {agent} | {paper.get(agent, '')} | {ours} | {verdict} |")
    return lines


def _pct_table(values: dict, backend: str, agents: Sequence[str], base: str, paper: Mapping,
               verdicts) -> list[str]:  # fmt: skip
    lines = [
        f"| method | paper UVC | ours UVC vs {base} | verdict | paper UDT | ours UDT vs {base} "
        "| verdict |",
        "|---|---:|---:|---|---:|---:|---|",
    ]
    for agent in agents:
        cells = [agent]
        for j, metric in enumerate(("valid_consumption", "watch_time_s")):
            a = values.get((backend, agent, metric), {})
            b = values.get((backend, base, metric), {})
            mean, lo, hi, _ = _pct(a, b) if a and b else (math.nan, math.nan, math.nan, 0)
            p = paper.get(agent)
            cells += [
                f"+{p[j]:.2f}%" if p else "",
                f"{_fmt(mean)}% [{_fmt(lo)}, {_fmt(hi)}]",
                _verdict_of(verdicts, backend, agent, base, metric),
            ]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def write_tables(
    rows: Sequence[Mapping[str, Any]],
    out: Path,
    *,
    cfg: Mapping[str, Any],
    mtl: Mapping[str, Any],
    timings: Mapping[str, Any],
) -> dict[str, Any]:
    """Write results.md / results.json / plots into `out` (`benchmarks.report.write_report`),
    with the paper's Tables 1-4 beside ours and every claim's paired verdict."""
    verdicts = judge_rows(CLAIMS, rows)
    values = per_seed_values(rows)
    backends = sorted({b for b, _, _ in values})
    sections: list[str] = []
    rivals = dict(zip(TABLE1_AGENTS[1:], TABLE1_AGENTS[:-1], strict=True))
    for backend in backends:
        sections += [
            f"## The paper's tables beside ours: {backend}",
            "",
            "**Table 1** (weighted GAUC on the test set logged by mu_bp; each row's verdict is "
            "the paper's claim that it beats the row above, paired by seed):",
            "",
            *_gauc_table(values, backend, TABLE1_AGENTS, PAPER_TABLE1, verdicts, rivals),
            "",
            "**Table 2** (online, % change vs ES, mean [95% interval over seeds of the per-seed "
            "change]; verdict of 'beats ES', paired by seed):",
            "",
            *_pct_table(values, backend, tuple(PAPER_TABLE2), "ES", PAPER_TABLE2, verdicts),
            "",
            "**Table 3** (weighted GAUC):",
            "",
            *_gauc_table(
                values,
                backend,
                (INTEGRATED, ENHANCED),
                PAPER_TABLE3,
                verdicts,
                {ENHANCED: INTEGRATED},
            ),  # fmt: skip
            "",
            "**Table 4** (online, % change vs IntegratedRL-MTF):",
            "",
            *_pct_table(values, backend, (ENHANCED,), INTEGRATED, PAPER_TABLE4, verdicts),
            "",
        ]
    seeds = cfg.get("train_seeds")
    intro = (
        f"`recgym bench mtf{' --quick' if cfg.get('quick') else ''}"
        f"{' --data ' + str(cfg['data']) if cfg.get('data') else ''}"
        f"{' --dynamics ' + ' '.join(cfg['dynamics']) if cfg.get('dynamics') else ''}`: "
        f"training seeds {seeds}; per seed and backend the exploration dataset D0 "
        f"({cfg['explore_episodes']} episodes x {cfg['slots']} users around mu_bp), the test "
        f"dataset logged by mu_bp ({cfg['test_episodes']} x {cfg['slots']}), "
        f"{cfg['gradient_steps']} gradient steps per offline learner (PTM: "
        f"{cfg['ptm_rounds']} rounds sharing them and D0's exploration budget), ES "
        f"{cfg['es_generations']} generations; online evaluation {cfg['eval_episodes']} x "
        f"{cfg['slots']} sessions under evaluation seed i (every agent meets the same users). "
        f"Mean [95% interval over seeds]. UVC = valid views (> 10 s) per session, UDT = seconds "
        f"watched per session (a session stands for a user's day). MTL held-out AUC: "
        + ", ".join(f"{k} {v:.3f}" for k, v in (mtl.get("task_auc") or {}).items())
        + "."
    )
    timing = "\n".join(
        f"- {name}: {sec:.0f} s" for name, sec in timings.items() if isinstance(sec, int | float)
    )
    return write_report(
        rows,
        out,
        title="Enhanced-State RL-MTF: the paper's Tables 1-4 on recgym",
        metrics=METRICS,
        intro=intro,
        outro="\n".join(sections) + "\n## Stage times\n\n" + timing + "\n",
        verdicts=verdicts,
        labels=LABELS,
        agents=AGENTS,
        extra_json={"config": dict(cfg), "timings": dict(timings)},
    )


__all__ = ["CLAIMS", "PAPER_TABLE1", "PAPER_TABLE2", "PAPER_TABLE3", "PAPER_TABLE4", "write_tables"]
