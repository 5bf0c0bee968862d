"""The command line: help for every command, clear errors, exit codes."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipelines.cli import build_parser, main
from tests.conftest import preflens

COMMANDS = [
    "run",
    "ingest",
    "annotate",
    "build",
    "check",
    "summary",
    "discover",
    "evaluate",
    "report",
    "explain",
    "judge",
    "apply",
]


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main([command, "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert "usage: preflens" in out and len(out.splitlines()) > 3


def test_every_documented_command_is_a_real_subcommand() -> None:
    import argparse

    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    assert set(sub.choices) == set(COMMANDS)


def test_missing_input_file_fails_with_one_line(warehouse: Path) -> None:
    proc = preflens(warehouse, "ingest", str(warehouse / "nope.jsonl"), timeout=120)
    assert proc.returncode == 1
    assert "nope.jsonl" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_summary_without_a_build_says_what_to_do(warehouse: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["summary"]) == 1
    assert "preflens run" in capsys.readouterr().out


def test_unknown_annotator_is_a_usage_error(warehouse: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["annotate", "--annotator", "gpt-9"]) == 2
