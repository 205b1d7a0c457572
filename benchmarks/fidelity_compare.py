"""`recgym bench fidelity-compare`: a simulator option against the default, paired by world.

A `recgym bench fidelity` run scores one world: its ``--seed`` seeds the world, its logs and
every fit, and its Kendall taus (simulator vs world, over the policy panel) are that world's.
Runs of two configurations on the same world seeds are paired by seed, as the evaluation
protocol pairs training seeds (`benchmarks.claims`): per metric, the mean of
tau(variant) - tau(base) over the worlds and its 95% Student-t interval; **better** when the
interval lies above 0, **worse** when below, **inconclusive** otherwise (or with fewer than two
paired worlds). Reads each run's ``results.json``; prints a markdown table and, with ``--out
DIR``, writes it to DIR/comparison.md.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from recgym.envs.evaluation import t_interval
from recgym.outdir import ensure_writable_dir

METRICS = ("watch_time_s", "session_length", "ctr", "valid_consumption")
LABELS = {
    "watch_time_s": "watch time / session",
    "session_length": "requests / session",
    "ctr": "CTR",
    "valid_consumption": "views > 10 s / session",
}


def load_run(path: str | Path) -> dict[str, Any]:
    """One fidelity run's world seed, configuration and taus (from DIR/results.json)."""
    file = Path(path) / "results.json"
    try:
        data = json.loads(file.read_text())
        return {
            "path": str(path),
            "seed": int(data["config"]["seed"]),
            "config": data["config"],
            "tau": {m: float(data["kendall_tau"][m]) for m in METRICS},
        }
    except FileNotFoundError:
        raise ValueError(
            f"{file}: no such file (is {path} a `recgym bench fidelity` --out?)"
        ) from None
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(
            f"{file}: not a fidelity results file ({type(exc).__name__}: {exc})"
        ) from None


def _by_seed(runs: Sequence[dict[str, Any]], side: str) -> dict[int, dict[str, Any]]:
    out: dict[int, dict[str, Any]] = {}
    for run in runs:
        if run["seed"] in out:
            raise ValueError(
                f"{side}: two runs of world seed {run['seed']} ({out[run['seed']]['path']}, "
                f"{run['path']})"
            )
        out[run["seed"]] = run
    return out


def differences(base: Sequence[dict[str, Any]], variant: Sequence[dict[str, Any]]) -> list[str]:
    """The configuration fields (other than the seed) with more than one value among the runs
    that record them, then those some runs do not record (runs made before an option existed
    ran with its default, which their results do not say)."""
    runs = [*base, *variant]
    keys = sorted({k for run in runs for k in run["config"]} - {"seed"})
    differ = [
        key
        for key in keys
        if len({json.dumps(run["config"][key]) for run in runs if key in run["config"]}) > 1
    ]
    unrecorded = [
        f"{key} (not recorded by every run)"
        for key in keys
        if key not in differ and any(key not in run["config"] for run in runs)
    ]
    return differ + unrecorded


def _tau_interval(taus: Sequence[float]) -> tuple[float, float, float]:
    """Mean and 95% t interval of taus, the interval clipped to tau's range [-1, 1]."""
    if not taus:
        return math.nan, math.nan, math.nan
    mean, low, high = t_interval(taus)
    return mean, max(low, -1.0), min(high, 1.0)


def compare(
    base: Sequence[str | Path], variant: Sequence[str | Path]
) -> tuple[list[dict[str, Any]], list[int], list[str]]:
    """Per metric: each side's taus, their means with 95% t intervals, and the mean, 95% interval
    and verdict of tau(variant) - tau(base), over the world seeds both sides ran; also the
    paired seeds and the configuration fields that differ."""
    b = _by_seed([load_run(p) for p in base], "base")
    v = _by_seed([load_run(p) for p in variant], "variant")
    seeds = sorted(set(b) & set(v))
    rows = []
    for metric in METRICS:
        diff = [v[s]["tau"][metric] - b[s]["tau"][metric] for s in seeds]
        mean, low, high = t_interval(diff) if diff else (math.nan, math.nan, math.nan)
        low, high = max(low, -2.0), min(high, 2.0)  # a difference of taus lies in [-2, 2]
        verdict = "inconclusive"
        if low > 0:
            verdict = "better"
        elif high < 0:
            verdict = "worse"
        base_taus = [b[s]["tau"][metric] for s in seeds]
        variant_taus = [v[s]["tau"][metric] for s in seeds]
        rows.append({
            "metric": metric, "base": base_taus, "variant": variant_taus,
            "base_mean": _tau_interval(base_taus),
            "variant_mean": _tau_interval(variant_taus),
            "mean": mean, "low": low, "high": high, "verdict": verdict,
        })  # fmt: skip
    return rows, seeds, differences([b[s] for s in seeds], [v[s] for s in seeds])


def markdown(rows: Sequence[dict[str, Any]], seeds: Sequence[int], differ: Sequence[str]) -> str:
    """The comparison as a markdown table with a line on what was paired."""
    what = ", ".join(differ) if differ else "nothing but the runs"
    lines = [
        f"Kendall tau, variant - base, paired by world seed ({len(seeds)} worlds: "
        f"{', '.join(map(str, seeds))}); the configurations differ in: {what}.",
        "",
        "| metric | base per world | base mean [95% t] | variant per world | variant mean "
        "[95% t] | mean difference [95% t interval] | verdict |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        per = " | ".join(
            f"{' '.join(f'{x:.2f}' for x in r[side])} | {m:.2f} [{lo:.2f}, {hi:.2f}]"
            for side, (m, lo, hi) in (("base", r["base_mean"]), ("variant", r["variant_mean"]))
        )
        lines.append(
            f"| {LABELS[r['metric']]} | {per} | "
            f"{r['mean']:+.3f} [{r['low']:+.3f}, {r['high']:+.3f}] | {r['verdict']} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="recgym bench fidelity-compare",
        description=(
            "Compare two configurations of `recgym bench fidelity` run on the same worlds "
            "(--seed): per metric, the mean and 95% t interval of the Kendall tau difference "
            "(variant - base) paired by world seed, and a verdict (better / worse / "
            "inconclusive)."
        ),
    )
    parser.add_argument("--base", nargs="+", required=True, metavar="DIR",
                        help="the base configuration's run directories (their --out)")  # fmt: skip
    parser.add_argument("--variant", nargs="+", required=True, metavar="DIR",
                        help="the variant's run directories, one per world seed")  # fmt: skip
    parser.add_argument("--out", default=None, metavar="DIR",
                        help="also write the table to DIR/comparison.md")  # fmt: skip
    args = parser.parse_args(argv)
    out = ensure_writable_dir(args.out) if args.out else None  # before any work
    try:
        text = markdown(*compare(args.base, args.variant))
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if out is not None:
        (out / "comparison.md").write_text(text)
    print(text, end="")
    if out is not None:
        print(f"wrote {out / 'comparison.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
