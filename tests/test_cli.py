"""The `recgym` command: help for every command, simulator training, clear errors on bad input."""

from __future__ import annotations

import importlib.metadata
import json
from dataclasses import replace
from pathlib import Path

import pytest

from recgym.cli import main


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["world", "generate"],
        ["data", "inspect"],
        ["simulator", "train"],
        ["bench"],
        ["bench", "throughput"],
        ["bench", "rliv-ua"],
        ["demo"],
    ],
)
def test_every_command_has_help(argv: list[str], capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main([*argv, "--help"])
    assert exit_info.value.code == 0
    assert "usage:" in capsys.readouterr().out


def test_simulator_train_writes_a_checkpoint_and_prints_the_report(
    tiny_logs: Path, tmp_path: Path, capsys
) -> None:
    out = tmp_path / "sim"
    assert main(["simulator", "train", "--data", str(tiny_logs), "--out", str(out),
                 "--epochs", "1", "--quiet"]) == 0  # fmt: skip
    printed = capsys.readouterr().out
    assert "click AUC" in printed and "saved to" in printed
    for name in ("model.pt", "config.json", "fidelity.json", "fidelity.md"):
        assert (out / name).stat().st_size > 0
    assert json.loads((out / "config.json").read_text())["config"]["epochs"] == 1


def test_simulator_train_on_bad_data_exits_2_with_one_line(tmp_path: Path, capsys) -> None:
    bad = tmp_path / "logs"
    bad.mkdir()
    (bad / "log_standard_4_08_to_4_21_pure.csv").write_text("user_id,video_id\n1,2\n")
    assert main(["simulator", "train", "--data", str(bad), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and len(err.strip().splitlines()) == 1


def test_version_prints_the_package_version(capsys) -> None:
    import recgym

    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.strip() == f"recgym {recgym.__version__}"
    # pyproject.toml's version (the installed metadata) says the same
    assert importlib.metadata.version("recgym") == recgym.__version__


WRITING_COMMANDS = {
    "world generate": ["world", "generate", "--users", "20", "--items", "50", "--days", "1",
                       "--quiet", "--out"],
    "world calibrate": ["world", "calibrate", "--real", "{logs}", "--users", "20", "--items",
                        "50", "--days", "1", "--n-boot", "10", "--out"],
    "demo": ["demo", "--quiet", "--out"],
    "simulator train": ["simulator", "train", "--epochs", "1", "--quiet", "--data", "{logs}",
                        "--out"],
    "bench throughput": ["bench", "throughput", "--quick", "--only", "world_step", "--out"],
    "bench rliv-ua": ["bench", "rliv-ua", "--quick", "--quiet", "--work", "{tmp}/work", "--out"],
    "bench fidelity": ["bench", "fidelity", "--tiny", "--quiet", "--work", "{tmp}/work", "--out"],
    "bench fidelity-compare": ["bench", "fidelity-compare", "--base", "{tmp}", "--variant",
                               "{tmp}", "--out"],
    "bench ruie": ["bench", "ruie", "--tiny", "--quiet", "--work", "{tmp}/work", "--out"],
    "bench mtf": ["bench", "mtf", "--quick", "--quiet", "--out"],
    "bench rdrsr": ["bench", "rdrsr", "--dataset", "world", "--seeds", "0", "--epochs", "1",
                    "--models", "gru4rec", "--out"],
    "bench gpu": ["bench", "gpu", "--quick", "--only", "vector_env", "--vector-n", "8", "--out"],
    "bench sweep": ["bench", "sweep", "--modes", "serial", "--agents", "random", "--seeds", "0",
                    "--episodes", "1", "--out"],
}  # fmt: skip
"""Every command that writes, with options that would make it do little; `--out` goes last."""


def test_every_bench_suite_is_in_the_unwritable_out_test() -> None:
    from recgym.cli import BENCH_SUITES

    assert {f"bench {name}" for name in BENCH_SUITES} <= set(WRITING_COMMANDS)


@pytest.mark.parametrize("blocker", ["parent is a file", "path is a file"])
@pytest.mark.parametrize("command", list(WRITING_COMMANDS))
def test_an_unwritable_out_is_one_line_naming_the_path_and_exit_2(
    command: str, blocker: str, tiny_logs: Path, tmp_path: Path, capsys
) -> None:
    """Root ignores chmod, so the unwritable paths are ones no user can create: below a file,
    or an existing file. Each command must refuse before doing any work (the tiny budgets are
    a backstop: a command that trained first would still finish, and then fail the line test)."""
    a_file = tmp_path / "a_file"
    a_file.write_text("not a directory\n")
    out = a_file / "out" if blocker == "parent is a file" else a_file
    argv = [a.format(logs=tiny_logs, tmp=tmp_path) for a in WRITING_COMMANDS[command]]
    assert main([*argv, str(out)]) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and str(out) in lines[0], lines
    assert "Traceback" not in captured.err + captured.out
    assert a_file.read_text() == "not a directory\n"


def test_bench_rliv_ua_refuses_an_unwritable_work_dir(tmp_path: Path, capsys) -> None:
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    argv = ["bench", "rliv-ua", "--quick", "--quiet", "--out", str(tmp_path / "out"),
            "--work", str(a_file / "work")]  # fmt: skip
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(a_file / "work") in err[0]


def _ml100k_like(path: Path) -> Path:
    """A tiny hand-made MovieLens-100k directory (u.data: user, item, rating, timestamp)."""
    path.mkdir()
    rows = [(1, 10, 5, 881250949), (2, 20, 3, 891717742), (1, 20, 4, 878887116)]
    (path / "u.data").write_text("".join(f"{u}\t{i}\t{r}\t{t}\n" for u, i, r, t in rows))
    return path


ML_100K = Path(__file__).resolve().parents[2] / "shared" / "data" / "ml-100k"


@pytest.mark.parametrize("source", ["hand-made ml-100k", "real ml-100k"])
def test_simulator_train_refuses_data_that_is_not_kuairand_logs(
    source: str, tmp_path: Path, capsys
) -> None:
    if source == "real ml-100k":
        if not ML_100K.is_dir():
            pytest.skip(f"{ML_100K} not available")
        data = ML_100K
    else:
        data = _ml100k_like(tmp_path / "ml")
    out = tmp_path / "sim"
    assert main(["simulator", "train", "--data", str(data), "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:")
    assert "KuaiRand-format logs" in err[0] and "found ml-100k data" in err[0]
    assert not out.exists()  # refused before anything was written


def test_kuairand_logs_without_behaviour_are_refused(tiny_logs: Path) -> None:
    from recgym.data import DataError, load
    from recgym.simulators.train import check_kuairand_logs

    dataset = load(tiny_logs)
    check_kuairand_logs(dataset)  # the real thing passes
    no_clicks = dataset.interactions.assign(is_click=0)
    with pytest.raises(DataError, match="is_click is 0 on all"):
        check_kuairand_logs(replace(dataset, interactions=no_clicks))
    with pytest.raises(DataError, match="no column.*long_view"):
        check_kuairand_logs(replace(dataset, interactions=no_clicks.drop(columns="long_view")))
    with pytest.raises(DataError, match="found kuaisar data"):
        check_kuairand_logs(replace(dataset, format="kuaisar"))


@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_default_world_simulator_meets_the_readme_fidelity_targets(tmp_path: Path) -> None:
    """The README's claim, with the commands it names at their defaults: `recgym world generate`
    (1,000 users, 14 days) then `recgym simulator train` meet both fidelity targets (click AUC
    >= 0.75 on held-out data, session-length mean within 10%). About 45 s and 1 GB on 2 cores."""
    logs, sim = tmp_path / "world", tmp_path / "sim"
    assert main(["world", "generate", "--out", str(logs), "--quiet"]) == 0
    assert main(["simulator", "train", "--data", str(logs), "--out", str(sim), "--quiet"]) == 0
    targets = json.loads((sim / "fidelity.json").read_text())["targets"]
    assert set(targets) == {"click_auc", "session_length_mean_relative_error"}
    assert all(t["met"] for t in targets.values()), targets


def test_world_generate_takes_dynamics_and_refuses_unknown_ones(tmp_path: Path, capsys) -> None:
    from recgym.simulators.world_state import load_world

    base = ["world", "generate", "--users", "30", "--items", "300", "--days", "1", "--quiet"]
    out = tmp_path / "pressed"
    assert main([*base, "--out", str(out), "--dynamics", "patience_per_minute=0.18"]) == 0
    assert load_world(out).dynamics.patience_per_minute == 0.18
    capsys.readouterr()
    for bad, says in (("patience_per_hour=1", "unknown constant 'patience_per_hour'"),
                      ("patience_per_minute=fast", "'fast' is not a number"),
                      ("patience_per_minute", "is not NAME=VALUE")):  # fmt: skip
        assert main([*base, "--out", str(tmp_path / "bad"), "--dynamics", bad]) == 2
        err = capsys.readouterr().err
        assert says in err and err.count("\n") == 1, err
    assert not (tmp_path / "bad").exists()  # refused before anything is written
