"""Rough edges a new user hit (issue 9): one progress bar per training stage (not one per epoch),
and summaries whose intervals stay inside what a metric can be. The CLI's edges (`--version`,
unwritable `--out`, non-KuaiRand data) are in test_cli.py."""

from __future__ import annotations

import io
import math
import re
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from recgym.envs.evaluation import METRICS, summarize, t_interval

WORLD = {"n_users": 30, "n_items": 120, "n_authors": 12, "seed": 3}
ENV_KWARGS = {"world_config": WORLD, "n_candidates": 10, "slate_size": 3, "max_steps": 6}
EPOCHS = 4  # Tianshou's own progress drew a bar per epoch: 4 epochs are 4+ lines


class FakeTerminal(io.StringIO):
    """stderr as a terminal: tqdm draws bars only on one (`agents.progress`)."""

    def isatty(self) -> bool:
        return True


def _dqn(tiny_logs: Path) -> tuple[str, int]:
    from recgym.agents.dqn import DQNConfig, train_dqn

    cfg = DQNConfig(env_steps=48, epochs=EPOCHS, warmup_steps=16, test_episodes=1,
                    hidden_sizes=(8,), collect_steps=4, n_envs=1)  # fmt: skip
    train_dqn(ENV_KWARGS, cfg, progress=True)
    return "DQN", 48


def _td3(tiny_logs: Path) -> tuple[str, int]:
    from recgym.agents.continuous import TD3Config, train_td3

    cfg = TD3Config(env_steps=48, epochs=EPOCHS, warmup_steps=16, test_episodes=1,
                    hidden_sizes=(8,), batch_size=16)  # fmt: skip
    train_td3(ENV_KWARGS, cfg, progress=True)
    return "TD3", 48


def _rliv_ua(tiny_logs: Path) -> tuple[str, int]:
    from recgym.agents.rliv_ua import RLIVUAConfig, train_rliv_ua
    from recgym.data.asa import asa_samples

    samples = asa_samples(tiny_logs)
    cfg = RLIVUAConfig(tasks=samples.tasks, epochs=EPOCHS, steps_per_epoch=5, batch_size=32,
                       hidden_sizes=(8,), embedding_dim=4)  # fmt: skip
    train_rliv_ua(samples.buffer, cfg, progress=True)
    return "RLIV-UA", EPOCHS * 5


TRAINERS: dict[str, Callable[[Path], tuple[str, int]]] = {
    "dqn": _dqn,
    "td3": _td3,
    "rliv_ua": _rliv_ua,
}


@pytest.mark.parametrize("trainer", list(TRAINERS))
def test_training_draws_one_bar_for_the_whole_run(
    trainer: str, tiny_logs: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On a terminal a run of several epochs ends as ONE finished bar line: its label and
    total/total. (Tianshou's `show_progress` drew a bar per epoch plus one per training step's
    gradient updates: the demo's DQN wrote ~2,900 lines.)"""
    terminal = FakeTerminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    label, total = TRAINERS[trainer](tiny_logs)
    text = terminal.getvalue()
    assert text.count("\n") == 1, text  # one bar, left on screen when closed
    last = re.split(r"[\r\n]", text.strip())[-1]
    assert last.startswith(label) and f"{total}/{total}" in last, last


def test_quiet_training_writes_nothing(capsys: pytest.CaptureFixture[str]) -> None:
    from recgym.agents.dqn import DQNConfig, train_dqn

    cfg = DQNConfig(env_steps=16, epochs=2, warmup_steps=8, test_episodes=1, hidden_sizes=(8,),
                    collect_steps=4, n_envs=1)  # fmt: skip
    train_dqn(ENV_KWARGS, cfg, progress=False)
    captured = capsys.readouterr()
    assert captured.err == "" and captured.out == ""


def test_summaries_never_leave_a_metrics_range() -> None:
    """The greedy ranker's follows in the demo: per-seed 0.05, 0.10, 0.30 -> t interval
    [-0.18, 0.48] for a count that cannot be negative; a CTR of 0.98, 0.99, 0.999 -> above 1."""
    per_seed = [
        {"session_length": 1.0, "watch_time_s": 0.5, "ctr": 0.98, "valid_consumption": 0.0,
         "diversity": 1.0, "follows": 0.05},
        {"session_length": 1.2, "watch_time_s": 40.0, "ctr": 0.99, "valid_consumption": 0.1,
         "diversity": 1.5, "follows": 0.10},
        {"session_length": 6.0, "watch_time_s": 90.0, "ctr": 0.999, "valid_consumption": 2.0,
         "diversity": 4.0, "follows": 0.30},
    ]  # fmt: skip
    from recgym.envs.evaluation import METRIC_RANGES

    raw = {name: t_interval([s[name] for s in per_seed]) for name in METRICS}
    assert raw["follows"][1] < 0 and raw["ctr"][2] > 1  # the case is real
    out = summarize(per_seed)
    for name in METRICS:
        low, high = METRIC_RANGES[name]
        mean, lo, hi = raw[name]
        s = out[name]
        assert low <= s["ci_low"] <= s["mean"] <= s["ci_high"] <= high, (name, s)
        assert s["mean"] == mean  # only the bounds move, and only onto the range
        assert s["ci_low"] == max(lo, low) and s["ci_high"] == min(hi, high)
    assert out["follows"]["ci_low"] == 0.0 and out["ctr"]["ci_high"] == 1.0


def test_one_seed_still_gives_nan_bounds() -> None:
    out = summarize([dict.fromkeys(METRICS, 0.5)])
    assert all(math.isnan(out[m]["ci_low"]) and math.isnan(out[m]["ci_high"]) for m in METRICS)


def _marked_tests() -> dict[str, set[str]]:
    """{mark: {"file::test"}} for the `pytest.mark.<mark>` decorators of every test function."""
    import ast

    marked: dict[str, set[str]] = {}
    for path in sorted(Path(__file__).parent.glob("test_*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.FunctionDef) or not node.name.startswith("test_"):
                continue
            for dec in node.decorator_list:
                dec = dec.func if isinstance(dec, ast.Call) else dec
                if isinstance(dec, ast.Attribute) and ast.unparse(dec.value) == "pytest.mark":
                    marked.setdefault(dec.attr, set()).add(f"{path.name}::{node.name}")
    return marked


def test_the_readme_slow_test_sentence_is_true() -> None:
    """README: the default run skips `slow` tests and still runs a real learning test;
    `pytest -m slow` runs the long ones. So some test is slow, some learning test is not,
    and pyproject's addopts deselect slow (a later `-m slow` replaces that)."""
    import tomllib

    root = Path(__file__).resolve().parents[1]
    readme = " ".join((root / "README.md").read_text().split())  # line breaks do not count
    assert "skips tests marked `slow`" in readme and "pytest -m slow` runs the long ones" in readme
    options = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["pytest"]
    assert "-m 'not slow'" in options["ini_options"]["addopts"]
    marked = _marked_tests()
    assert marked.get("slow"), "no test is marked slow: `pytest -m slow` would run nothing"
    assert marked.get("learning", set()) - marked["slow"], "no learning test in the default run"
