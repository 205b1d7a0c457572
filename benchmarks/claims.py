"""Summaries over seeds and the one claims writer: paired verdicts on a paper's orderings.

Evaluation protocol (DESIGN.md): train seed i is evaluated with evaluation seed i, so two agents'
values for seed i are paired. A claim "A beats B on metric M" is judged on the per-seed
differences A_i - B_i: their mean and 95% Student-t interval. The verdict is **reproduced** when
the interval excludes 0 in the claimed direction, **contradicted** when it excludes 0 the other
way, and **inconclusive** otherwise (also with fewer than 2 paired seeds, where no interval
exists). Headlines count only reproduced claims.

Summaries of a bounded metric never leave its range: the t interval is clipped to the metric's
range from the registry (counts >= 0, rates in [0, 1]), and a difference's interval to
[low - high, high - low].
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from recgym.benchmarks.metrics import metric as registered
from recgym.envs.evaluation import t_interval

REPRODUCED, CONTRADICTED, INCONCLUSIVE = "reproduced", "contradicted", "inconclusive"


@dataclass(frozen=True)
class Summary:
    """Mean and 95% interval over seeds of one metric, clipped to the metric's range."""

    metric: str
    mean: float
    low: float
    high: float
    per_seed: dict[int, float] = field(default_factory=dict)

    @property
    def n(self) -> int:
        return len(self.per_seed)


def _as_per_seed(values: Mapping[int, float] | Sequence[float]) -> dict[int, float]:
    if isinstance(values, Mapping):
        return {int(k): float(v) for k, v in values.items()}
    return {i: float(v) for i, v in enumerate(values)}


def summarize(
    values: Mapping[int, float] | Sequence[float], metric: str, confidence: float = 0.95
) -> Summary:
    """Mean and t interval of per-seed `values` ({seed: value} or a list), clipped to range."""
    per_seed = _as_per_seed(values)
    if not per_seed:
        raise ValueError(f"no values to summarise for {metric}")
    m = registered(metric)
    mean, lo, hi = t_interval(list(per_seed.values()), confidence)
    return Summary(metric, m.clip(mean), m.clip(lo), m.clip(hi), per_seed)


@dataclass(frozen=True, kw_only=True)
class Claim:
    """A paper's ordering: on `metric`, agent `a` is `direction` ("greater"/"less") than `b`."""

    metric: str
    a: str
    b: str
    direction: Literal["greater", "less"] = "greater"
    source: str = ""
    """Where the paper says it (e.g. "RLIV-UA Table 2")."""

    def __post_init__(self) -> None:
        if self.direction not in ("greater", "less"):
            raise ValueError(f"direction must be 'greater' or 'less', got {self.direction!r}")
        registered(self.metric)

    def text(self) -> str:
        return f"{self.a} {'>' if self.direction == 'greater' else '<'} {self.b} on {self.metric}"


@dataclass(frozen=True)
class Verdict:
    """A claim judged on paired seeds: mean of A - B, its interval, and the verdict."""

    claim: Claim
    backend: str | None
    diff: float
    low: float
    high: float
    seeds: tuple[int, ...]
    verdict: str


def judge(
    claim: Claim,
    a_values: Mapping[int, float],
    b_values: Mapping[int, float],
    backend: str | None = None,
    confidence: float = 0.95,
) -> Verdict:
    """The claim on the seeds both agents have ({seed: value} each), paired by seed."""
    seeds = tuple(sorted(set(a_values) & set(b_values)))
    diff = np.array([a_values[s] - b_values[s] for s in seeds], dtype=np.float64)
    if len(seeds) < 2:
        mean = float(diff.mean()) if len(seeds) else math.nan
        return Verdict(claim, backend, mean, math.nan, math.nan, seeds, INCONCLUSIVE)
    mean, lo, hi = t_interval(diff.tolist(), confidence)
    m = registered(claim.metric)
    if m.low is not None and m.high is not None:
        span = m.high - m.low
        lo, hi = max(lo, -span), min(hi, span)
    if lo > 0:  # the whole interval says A > B
        verdict = REPRODUCED if claim.direction == "greater" else CONTRADICTED
    elif hi < 0:  # the whole interval says A < B
        verdict = REPRODUCED if claim.direction == "less" else CONTRADICTED
    else:
        verdict = INCONCLUSIVE
    return Verdict(claim, backend, mean, lo, hi, seeds, verdict)


def per_seed_values(
    rows: Iterable[Mapping[str, Any]],
) -> dict[tuple[str, str, str], dict[int, float]]:
    """{(backend, agent, metric): {seed: value}} from result rows; a duplicate row raises."""
    out: dict[tuple[str, str, str], dict[int, float]] = {}
    for row in rows:
        cell = out.setdefault((row["backend"], row["agent"], row["metric"]), {})
        seed = int(row["seed"])
        if seed in cell:
            raise ValueError(
                f"two rows for agent {row['agent']!r}, backend {row['backend']!r}, "
                f"metric {row['metric']!r}, seed {seed}"
            )
        cell[seed] = float(row["value"])
    return out


def judge_rows(claims: Sequence[Claim], rows: Iterable[Mapping[str, Any]]) -> list[Verdict]:
    """Every claim on every backend whose rows have both agents' values for its metric."""
    values = per_seed_values(rows)
    backends = sorted({b for b, _, _ in values})
    verdicts = []
    for backend in backends:
        for c in claims:
            a, b = values.get((backend, c.a, c.metric)), values.get((backend, c.b, c.metric))
            if a is not None and b is not None:
                verdicts.append(judge(c, a, b, backend))
    return verdicts


def headline(verdicts: Sequence[Verdict]) -> str:
    """'k of n claims reproduced (c contradicted, i inconclusive)' - only reproduced count."""
    counts = {v: sum(x.verdict == v for x in verdicts) for v in (REPRODUCED, CONTRADICTED)}
    rest = len(verdicts) - sum(counts.values())
    return (
        f"{counts[REPRODUCED]} of {len(verdicts)} claims reproduced "
        f"({counts[CONTRADICTED]} contradicted, {rest} inconclusive)"
    )


def claims_markdown(verdicts: Sequence[Verdict]) -> str:
    """A markdown table: claim, backend, paired difference mean [95% interval], n, verdict."""
    from recgym.benchmarks.report import fmt

    lines = [
        "| claim | source | backend | A - B, paired [95% interval] | seeds | verdict |",
        "|---|---|---|---|---:|---|",
    ]
    for v in verdicts:
        interval = f"{fmt(v.diff)} [{fmt(v.low)}, {fmt(v.high)}]"
        lines.append(
            f"| {v.claim.text()} | {v.claim.source or '-'} | {v.backend or '-'} | {interval} "
            f"| {len(v.seeds)} | **{v.verdict}** |"
        )
    return "\n".join(lines) + "\n\n" + headline(verdicts) + "\n"


def write_claims(verdicts: Sequence[Verdict], out_dir: str | Path) -> dict[str, Path]:
    """Write ``claims.md`` and ``claims.json`` (verdicts + headline) into `out_dir`."""
    from recgym.benchmarks.engine import jsonable

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    md, js = out / "claims.md", out / "claims.json"
    md.write_text(claims_markdown(verdicts))
    payload = {"headline": headline(verdicts), "verdicts": [asdict(v) for v in verdicts]}
    js.write_text(json.dumps(jsonable(payload, nan_as_none=True), indent=2))
    return {"markdown": md, "json": js}


__all__ = [
    "CONTRADICTED",
    "Claim",
    "INCONCLUSIVE",
    "REPRODUCED",
    "Summary",
    "Verdict",
    "claims_markdown",
    "headline",
    "judge",
    "judge_rows",
    "per_seed_values",
    "summarize",
    "write_claims",
]
