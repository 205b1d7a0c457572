"""Paired claims (reproduced / contradicted / inconclusive), bounded summaries, the report."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from recgym.benchmarks.claims import (
    CONTRADICTED,
    INCONCLUSIVE,
    REPRODUCED,
    Claim,
    headline,
    judge,
    judge_rows,
    per_seed_values,
    summarize,
    write_claims,
)
from recgym.benchmarks.engine import make_row
from recgym.benchmarks.report import cell, fmt, markdown_table, summaries, write_report

SEEDS = range(6)


def _values(rng: np.random.Generator, shift: float) -> tuple[dict, dict]:
    base = {s: 300 + 40 * rng.standard_normal() for s in SEEDS}  # seed-to-seed spread
    other = {s: v + shift + rng.standard_normal() for s, v in base.items()}  # paired noise
    return base, other


def test_identical_agents_give_zero_difference_and_inconclusive() -> None:
    a, _ = _values(np.random.default_rng(0), 0.0)
    v = judge(Claim(metric="watch_time_s", a="dqn", b="random"), a, dict(a))
    assert v.diff == 0.0 and v.low == 0.0 and v.high == 0.0
    assert v.verdict == INCONCLUSIVE and v.seeds == tuple(SEEDS)


def test_clear_shift_is_reproduced_and_reversed_is_contradicted() -> None:
    base, better = _values(np.random.default_rng(1), 10.0)
    claim = Claim(metric="watch_time_s", a="rl", b="myopic")
    up = judge(claim, better, base)
    assert up.verdict == REPRODUCED and up.low > 0 and up.diff == pytest.approx(10, abs=1.5)
    down = judge(claim, base, better)
    assert down.verdict == CONTRADICTED and down.high < 0
    less = Claim(metric="watch_time_s", a="rl", b="myopic", direction="less")
    assert judge(less, base, better).verdict == REPRODUCED
    assert judge(less, better, base).verdict == CONTRADICTED


def test_pairing_is_what_makes_a_small_shift_visible() -> None:
    # a 10 s shift under 40 s seed-to-seed spread: unpaired intervals overlap, paired one does not
    base, better = _values(np.random.default_rng(2), 10.0)
    sa, sb = summarize(better, "watch_time_s"), summarize(base, "watch_time_s")
    assert sa.low < sb.high  # the marginal intervals overlap
    assert judge(Claim(metric="watch_time_s", a="a", b="b"), better, base).verdict == REPRODUCED


def test_noise_only_is_inconclusive_and_one_seed_has_no_interval() -> None:
    rng = np.random.default_rng(3)
    a = {s: float(rng.normal()) for s in SEEDS}
    b = {s: float(rng.normal()) for s in SEEDS}
    assert judge(Claim(metric="watch_time_s", a="a", b="b"), a, b).verdict == INCONCLUSIVE
    one = judge(Claim(metric="watch_time_s", a="a", b="b"), {0: 5.0}, {0: 1.0, 1: 2.0})
    assert one.verdict == INCONCLUSIVE and one.seeds == (0,) and math.isnan(one.low)


def test_claim_checks_its_fields() -> None:
    with pytest.raises(ValueError, match="direction"):
        Claim(metric="ctr", a="a", b="b", direction="up")  # type: ignore[arg-type]
    with pytest.raises(KeyError, match="unknown metric"):
        Claim(metric="clicks", a="a", b="b")


def test_bounded_summaries_stay_in_range() -> None:
    follows = summarize([0.0, 0.0, 0.0, 1.0], "follows")
    assert follows.low == 0.0 and follows.high > follows.mean > 0
    ctr = summarize([0.99, 1.0, 0.95], "ctr")
    assert ctr.high == 1.0 and 0 < ctr.low < 1
    watch = summarize([10.0, 11.0, 12.0], "watch_time_s")  # inside its range: unclipped
    assert watch.low == pytest.approx(11 - 4.302652729911275 / math.sqrt(3))
    assert summarize({3: 2.0, 5: 4.0}, "ctr").per_seed == {3: 2.0, 5: 4.0}  # clipped mean only
    assert summarize({3: 2.0, 5: 4.0}, "ctr").mean == 1.0


def _rows(shift: float = 10.0) -> list[dict]:
    base, better = _values(np.random.default_rng(4), shift)
    rows = []
    for agent, values in (("random", base), ("dqn", better)):
        for seed, v in values.items():
            for backend in ("world", "learned"):
                common = {"env": "recgym/Session-v0", "agent": agent, "backend": backend}
                rows.append(make_row(**common, seed=seed, metric="watch_time_s", value=v,
                                     stage_key="k"))  # fmt: skip
                rows.append(make_row(**common, seed=seed, metric="ctr", value=0.3,
                                     stage_key="k"))  # fmt: skip
    return rows


def test_judge_rows_pairs_by_seed_per_backend(tmp_path: Path) -> None:
    claims = [
        Claim(metric="watch_time_s", a="dqn", b="random", source="demo"),
        Claim(metric="ctr", a="dqn", b="random"),
        Claim(metric="watch_time_s", a="dqn", b="absent"),
    ]
    verdicts = judge_rows(claims, _rows())
    assert [(v.backend, v.claim.metric, v.verdict) for v in verdicts] == [
        ("learned", "watch_time_s", REPRODUCED),
        ("learned", "ctr", INCONCLUSIVE),
        ("world", "watch_time_s", REPRODUCED),
        ("world", "ctr", INCONCLUSIVE),
    ]
    assert headline(verdicts) == "2 of 4 claims reproduced (0 contradicted, 2 inconclusive)"
    paths = write_claims(verdicts, tmp_path)
    assert "**reproduced**" in paths["markdown"].read_text()
    assert json.loads(paths["json"].read_text())["headline"].startswith("2 of 4")
    with pytest.raises(ValueError, match="two rows"):
        per_seed_values(_rows() + _rows()[:1])


def test_one_formatter_and_cells() -> None:
    assert [fmt(x) for x in (1234.5, 12.345, 0.12345, None, math.nan)] == [
        "1234", "12.35", "0.123", "n/a", "nan"
    ]  # fmt: skip
    s = summarize([1.0, 2.0, 3.0], "watch_time_s")
    assert cell(s) == "2.00 [0.000, 4.48]"  # the t interval's -0.484 clipped: watch time >= 0
    assert cell(summarize([5.0], "watch_time_s")) == "5.00" and cell(None) == "-"


def test_report_is_regenerated_from_rows(tmp_path: Path) -> None:
    rows = _rows()
    verdicts = judge_rows([Claim(metric="watch_time_s", a="dqn", b="random")], rows)
    labels = {"world": "ground-truth world", "watch_time_s": "watch time (s)"}
    rep = write_report(rows, tmp_path, title="toy", metrics=("watch_time_s", "ctr"),
                       verdicts=verdicts, labels=labels, agents=("random", "dqn"))  # fmt: skip
    md = (tmp_path / "results.md").read_text()
    assert "## On the ground-truth world" in md and "| agent | watch time (s) | ctr |" in md
    assert md.index("| random |") < md.index("| dqn |") and "claims reproduced" in md
    table = summaries(rows)
    assert "| dqn | 0.300 [0.300, 0.300] |" in markdown_table(table["world"], ["ctr"])
    js = json.loads((tmp_path / "results.json").read_text())
    assert js["results"]["world"]["dqn"]["ctr"]["mean"] == pytest.approx(0.3)
    assert len(js["results"]["world"]["dqn"]["watch_time_s"]["per_seed"]) == 6
    for name in ("watch_time_s.png", "ctr.png"):
        assert (tmp_path / name).read_bytes()[:4] == b"\x89PNG"
    # the same rows give the same files
    again = write_report(rows, tmp_path / "again", title="toy", metrics=("watch_time_s", "ctr"),
                         verdicts=verdicts, labels=labels, agents=("random", "dqn"),
                         plots=False)  # fmt: skip
    assert again["markdown"] == rep["markdown"]
