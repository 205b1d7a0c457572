"""The benchmark engine: stage keys (config + code + deps), reuse, atomic resume, rows, CLI."""

from __future__ import annotations

import dataclasses
import importlib
import json
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import pytest

from recgym.benchmarks.engine import (
    ROWS,
    Engine,
    Stage,
    StageContext,
    code_files,
    make_row,
    read_rows,
    stage_log,
    tree_provenance,
)
from recgym.benchmarks.engine_cli import config_from_args, config_parser, field_docs
from recgym.outdir import OutputError


@dataclass(kw_only=True, frozen=True)
class Cfg:
    value: int = 1


def _write(ctx: StageContext) -> dict:
    upstream = sum(json.loads((d.dir / "out.json").read_text()) for d in ctx.deps.values())
    total = ctx.config.value + upstream
    (ctx.dir / "out.json").write_text(json.dumps(total))
    ctx.write_rows(
        [ctx.row(env="e", agent=ctx.name, backend="b", seed=0, metric="ctr", value=total / 100)]
    )
    return {"total": total}


def _pipeline(a: int = 1, b: int = 2, c: int = 3, d: int = 4) -> list[Stage]:
    """a -> b -> c, and d on its own."""
    return [
        Stage("a", Cfg(value=a), _write),
        Stage("b", Cfg(value=b), _write, deps=("a",)),
        Stage("c", Cfg(value=c), _write, deps=("b",)),
        Stage("d", Cfg(value=d), _write),
    ]


def _actions(out: Path, since: int) -> dict[str, str]:
    return {line["stage"]: line["action"] for line in stage_log(out)[since:]}


def test_changed_setting_reruns_that_stage_and_downstream_only(tmp_path: Path) -> None:
    engine = Engine(tmp_path, progress=False)
    first = engine.run(_pipeline())
    assert first["c"].result == {"total": 6} and not any(r.reused for r in first.values())
    n = len(stage_log(tmp_path))
    again = engine.run(_pipeline())
    assert _actions(tmp_path, n) == dict.fromkeys("abcd", "reused")
    assert {k: r.key for k, r in again.items()} == {k: r.key for k, r in first.items()}

    n = len(stage_log(tmp_path))
    changed = Engine(tmp_path, progress=False).run(_pipeline(b=20))
    assert _actions(tmp_path, n) == {"a": "reused", "b": "ran", "c": "ran", "d": "reused"}
    assert changed["c"].result == {"total": 24}
    assert changed["c"].key != first["c"].key and changed["a"].key == first["a"].key
    # both versions stay on disk, each under its own key
    assert {p.name for p in (tmp_path / "b").iterdir()} == {first["b"].key, changed["b"].key}


def test_rows_carry_stage_key_and_provenance(tmp_path: Path) -> None:
    res = Engine(tmp_path, progress=False).run(_pipeline())
    rows = res["c"].rows()
    assert len(rows) == 1 and rows[0]["stage_key"] == res["c"].key
    prov = rows[0]["provenance"]
    for key in ("git_commit", "dirty_tree", "machine", "python", "numpy", "torch", "date"):
        assert key in prov, key
    assert json.loads((res["c"].dir / "stage.json").read_text())["deps"] == {"b": res["b"].key}


def test_crash_mid_stage_leaves_nothing_done_and_resume_equals_clean_run(tmp_path: Path) -> None:
    calls = {"n": 0}

    def flaky(ctx: StageContext) -> dict:
        (ctx.dir / "half.txt").write_text("written before the crash")
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("killed mid-stage")
        return _write(ctx)

    stages = _pipeline()
    stages[1] = dataclasses.replace(stages[1], fn=flaky)
    crashed = tmp_path / "crashed"
    with pytest.raises(RuntimeError, match="killed"):
        Engine(crashed, progress=False).run(stages)
    # stage a finished; b left no directory that could look done (and no temporary leftovers)
    assert [p.name for p in (crashed / "b").iterdir()] == []
    assert _actions(crashed, 0) == {"a": "ran"}
    n = len(stage_log(crashed))
    resumed = Engine(crashed, progress=False).run(stages)
    assert _actions(crashed, n) == {"a": "reused", "b": "ran", "c": "ran", "d": "ran"}

    clean = Engine(tmp_path / "clean", progress=False).run(stages)
    for name in "abcd":
        assert resumed[name].key == clean[name].key
        assert resumed[name].result == clean[name].result
        got = (resumed[name].dir / "out.json").read_text()
        assert got == (clean[name].dir / "out.json").read_text()


def test_leftover_temporary_directory_is_not_taken_as_done(tmp_path: Path) -> None:
    engine = Engine(tmp_path, progress=False)
    key = engine.key(_pipeline()[0], {})
    (tmp_path / "a" / key).mkdir(parents=True)  # e.g. a process killed by SIGKILL mid-rename
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True).stdout.strip()  # fmt: skip
    (tmp_path / "a" / f".tmp-{key}-{dead}").mkdir()  # the temp dir of a killed run
    res = engine.run(_pipeline()[:1])
    assert not res["a"].reused and res["a"].result == {"total": 1}
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == [key]


def test_fresh_discards_everything(tmp_path: Path) -> None:
    Engine(tmp_path, progress=False).run(_pipeline())
    n = len(stage_log(tmp_path))
    Engine(tmp_path, progress=False, fresh=True).run(_pipeline())
    assert _actions(tmp_path, n) == dict.fromkeys("abcd", "ran")


def test_stage_order_and_names_are_checked(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="needs"):
        Engine(tmp_path, progress=False).run(list(reversed(_pipeline())))
    with pytest.raises(ValueError, match="unique"):
        Engine(tmp_path, progress=False).run(_pipeline()[:1] * 2)


def test_code_change_reruns_the_stage_that_imports_it(tmp_path: Path, monkeypatch) -> None:
    pkg = tmp_path / "src" / "fakebench"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "helper.py").write_text("def bonus():\n    return 1\n")
    (pkg / "unrelated.py").write_text("X = 1\n")
    (pkg / "stages.py").write_text(
        textwrap.dedent(
            """
            import json

            def compute(ctx):
                from fakebench.helper import bonus  # an import inside a function body
                (ctx.dir / "out.json").write_text(json.dumps(bonus()))
                return {"bonus": bonus()}

            def other(ctx):
                return {}
            """
        )
    )
    monkeypatch.syspath_prepend(str(pkg.parent))
    stages = importlib.import_module("fakebench.stages")
    assert set(code_files(["fakebench.stages"], pkg, "fakebench")) == {
        "fakebench",
        "fakebench.stages",
        "fakebench.helper",
    }

    def run() -> dict:
        engine = Engine(tmp_path / "out", progress=False, code_root=pkg, package="fakebench")
        return engine.run([Stage("compute", Cfg(), stages.compute)])

    first = run()
    assert run()["compute"].reused
    (pkg / "unrelated.py").write_text("X = 2\n")  # not imported: no rerun
    assert run()["compute"].reused
    (pkg / "helper.py").write_text("def bonus():\n    return 2\n")
    importlib.reload(importlib.import_module("fakebench.helper"))
    second = run()
    assert not second["compute"].reused and second["compute"].key != first["compute"].key
    assert second["compute"].result == {"bonus": 2}
    sys.modules.pop("fakebench.stages", None)
    sys.modules.pop("fakebench.helper", None)
    sys.modules.pop("fakebench", None)


def test_recgym_code_closure_follows_lazy_imports() -> None:
    files = code_files(["recgym.benchmarks.claims"])
    assert {
        "recgym.benchmarks.claims",
        "recgym.benchmarks.metrics",
        "recgym.benchmarks.report",
    } <= set(files)
    assert "recgym.envs.evaluation" in files and "recgym" in files


def _git(cwd: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True)


def test_dirty_tree_hash_sees_untracked_files(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    _git(repo, "init", "-q")
    (repo / "a.py").write_text("A = 1\n")
    _git(repo, "add", "a.py")
    _git(repo, "-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "init")
    tree_provenance.cache_clear()
    clean = tree_provenance(repo)
    assert clean["dirty_tree"] == "clean" and len(clean["git_commit"]) == 40
    (repo / "new.py").write_text("B = 1\n")  # untracked
    tree_provenance.cache_clear()
    one = tree_provenance(repo)["dirty_tree"]
    (repo / "new.py").write_text("B = 2\n")
    tree_provenance.cache_clear()
    two = tree_provenance(repo)["dirty_tree"]
    tree_provenance.cache_clear()
    assert one != "clean" and two != "clean" and one != two


def test_read_rows_names_the_bad_line(tmp_path: Path) -> None:
    path = tmp_path / ROWS
    row = make_row(env="e", agent="x", backend="b", seed=0, metric="ctr", value=0.5, stage_key="k")
    path.write_text(json.dumps(row) + "\n{not json\n")
    with pytest.raises(ValueError, match=r"rows.jsonl: line 2"):
        read_rows(path)
    path.write_text(json.dumps({"env": "e"}) + "\n")
    with pytest.raises(ValueError, match="line 1 lacks agent"):
        read_rows(path)


def test_unwritable_out_is_one_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(OutputError, match="cannot create output directory"):
        Engine(blocker / "out", progress=False).run(_pipeline())


# --------------------------------------------------------------------------- CLI from a dataclass
@dataclass(kw_only=True)
class BenchCfg:
    """A bench's settings."""

    users: int = 100
    """World users drawn for the table."""
    rate: float = 0.5
    """Learning rate of the agent (100% = 1)."""
    seeds: tuple[int, ...] = (0, 1, 2)
    """Training seeds; train seed i is evaluated with eval seed i."""
    mode: Literal["quick", "full"] = "full"
    """How big a run."""
    data: str | None = None
    """KuaiRand-format logs to use instead of the world."""
    plots: bool = True
    """Draw the PNG plots."""


def test_field_docs_are_read_from_the_source() -> None:
    docs = field_docs(BenchCfg)
    assert docs["users"] == "World users drawn for the table."
    assert docs["seeds"].startswith("Training seeds; train seed i")
    assert set(docs) == {f.name for f in dataclasses.fields(BenchCfg)}


def test_parser_from_dataclass_explains_and_parses_every_option() -> None:
    parser = config_parser(BenchCfg, prog="recgym bench toy")
    text = " ".join(parser.format_help().split())
    for flag, doc in [
        ("--users", "World users drawn for the table."),
        ("--rate", "Learning rate of the agent (100% = 1)."),
        ("--seeds", "Training seeds"),
        ("--mode", "How big a run."),
        ("--data", "KuaiRand-format logs"),
        ("--plots", "Draw the PNG plots."),
    ]:
        assert flag in text and doc in text, flag
    assert "--no-plots" in text and "{quick,full}" in text
    ns = parser.parse_args(
        ["--users", "7", "--rate", "0.1", "--seeds", "3", "4", "--mode", "quick", "--no-plots"]
    )
    cfg = config_from_args(BenchCfg, ns)
    assert cfg == BenchCfg(users=7, rate=0.1, seeds=(3, 4), mode="quick", plots=False)
    assert config_from_args(BenchCfg, parser.parse_args([])) == BenchCfg()
    assert config_from_args(BenchCfg, parser.parse_args(["--data", "d"])).data == "d"
    with pytest.raises(SystemExit):
        parser.parse_args(["--users", "many"])
    with pytest.raises(SystemExit):
        parser.parse_args(["--mode", "huge"])


def test_parser_with_presets_keeps_the_preset_for_options_not_given() -> None:
    presets = {"full": BenchCfg(), "quick": BenchCfg(users=10, seeds=(0,), mode="quick")}
    parser = config_parser(BenchCfg, presets=presets, exclude=("mode",),
                           choices={"data": ["a", "b"]})  # fmt: skip
    text = " ".join(parser.format_help().split())
    assert "(default: full 100, quick 10)" in text and "(default: 0.5)" in text
    assert "--mode" not in text
    quick = config_from_args(BenchCfg, parser.parse_args(["--rate", "0.2"]), base=presets["quick"])
    assert quick == BenchCfg(users=10, seeds=(0,), mode="quick", rate=0.2)
    with pytest.raises(SystemExit):
        parser.parse_args(["--data", "c"])
