"""The `recgym` command: help for every command, simulator training, clear errors on bad input."""

from __future__ import annotations

import json
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
