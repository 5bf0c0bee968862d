"""The command line: help for every command, clear errors, exit codes."""

from __future__ import annotations

import subprocess
from pathlib import Path

import duckdb
import pytest

from pipelines.cli import build_parser, main
from tests.conftest import env_with, preflens, venv_bin

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
    "export",
    "judge",
    "apply",
    "score",
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
    assert "preflens run" in capsys.readouterr().err


def test_unknown_annotator_is_a_usage_error(warehouse: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["annotate", "--annotator", "gpt-9"]) == 2


# ------------------------------------------------------------------ --warehouse anywhere, and its default (issue 11.10)


def _help(*command: str, capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit) as exc:
        main([*command, "--help"])
    assert exc.value.code == 0
    return capsys.readouterr().out


@pytest.mark.parametrize("command", [*COMMANDS, "apply guide", "apply tiebreak"])
def test_every_help_lists_the_warehouse_option(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    out = _help(*command.split(), capsys=capsys)
    assert "--warehouse DIR" in out and "./warehouse" in " ".join(out.split())


def test_warehouse_option_before_or_after_the_subcommand(
    warehouse: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    other = tmp_path / "other"
    missing = str(other / "serve" / "preflens.duckdb")
    for argv in (["summary", "--warehouse", str(other)], ["--warehouse", str(other), "summary"]):
        assert main(argv) == 1, argv
        err = " ".join(capsys.readouterr().err.split())
        assert f"no served copy at {missing}" in err, argv
    assert main(["apply", "guide", "--judge", "j", "--domain", "d", "--warehouse", str(other), "--dry-run"]) == 1
    assert "no served copy" in capsys.readouterr().err


def test_default_warehouse_is_warehouse_in_the_current_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pipelines.core.config import default_paths

    monkeypatch.setenv("PREFLENS_WAREHOUSE", "restored-after-the-test")
    monkeypatch.delenv("PREFLENS_WAREHOUSE")
    monkeypatch.chdir(tmp_path)
    assert default_paths().warehouse == tmp_path / "warehouse"
    env = env_with()
    env.pop("PREFLENS_WAREHOUSE", None)
    proc = subprocess.run(
        [venv_bin("preflens"), "summary"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 1
    assert f"no served copy at {tmp_path / 'warehouse' / 'serve' / 'preflens.duckdb'}" in proc.stderr


# ------------------------------------------------------------------ messages: literal, one line, no class names


def test_errors_show_no_python_class_names(warehouse: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["ingest", str(warehouse / "nope.jsonl")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("preflens: ") and "nope.jsonl" in err and "IngestError" not in err
    # an error raised by a library (DuckDB) keeps its message, not its class name
    serve = warehouse / "serve"
    serve.mkdir()
    con = duckdb.connect(str(serve / "preflens.duckdb"))
    con.execute("create schema marts; create table marts.fct_model_metrics (fit_id varchar)")
    con.close()
    assert main(["summary"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("preflens: ") and "Exception" not in err and "representation" in err


def test_llm_table_in_a_message_is_printed_literally(
    warehouse: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for var in ("PREFLENS_LLM_MODEL", "PREFLENS_LLM_BASE_URL", "PREFLENS_CONFIG"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.chdir(tmp_path)
    assert main(["annotate", "--annotator", "llm"]) == 2
    assert "or an [llm] table in preflens.toml" in " ".join(capsys.readouterr().err.split())


def test_markup_in_a_path_is_printed_literally(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    wh = tmp_path / "wh [bold]x[/bold] [link=http://evil.example]y"
    assert main(["--warehouse", str(wh), "summary"]) == 1
    assert f"no served copy at {wh / 'serve' / 'preflens.duckdb'}" in " ".join(capsys.readouterr().err.split())


def _piped(wh: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`preflens` with stdout and stderr piped and no COLUMNS: what cron sees."""
    env = env_with(PREFLENS_WAREHOUSE=str(wh))
    env.pop("COLUMNS", None)
    return subprocess.run([venv_bin("preflens"), *args], env=env, capture_output=True, text=True, timeout=300)


def test_a_failure_reason_stays_on_one_line_when_piped(tmp_path: Path) -> None:
    from pipelines.core.lock import BuildLock

    missing = tmp_path / ("a-folder-with-a-rather-long-name-" * 3) / "missing-input-file.jsonl"
    proc = _piped(tmp_path / "wh", "run", str(missing))
    assert proc.returncode == 1
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("preflens: ") and str(missing) in lines[0], proc.stderr
    wh = tmp_path / ("warehouse-with-a-long-folder-name-" * 3)
    with BuildLock(wh / ".build.lock"):
        proc = _piped(wh, "build")
    assert proc.returncode == 3
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "build already running" in lines[0] and str(wh) in lines[0], proc.stderr


# ------------------------------------------------------------------ report options (issue 11.14)


@pytest.mark.parametrize(
    ("args", "option"),
    [
        (["--top", "0"], "--top"),
        (["--top", "-3"], "--top"),
        (["--max-domains", "-1"], "--max-domains"),
        (["--max-domains", "two"], "--max-domains"),
        (["--contrast-domains", "-1"], "--contrast-domains"),
    ],
)
def test_report_rejects_counts_out_of_range(
    warehouse: Path, args: list[str], option: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["report", *args])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert f"argument {option}: " in err and ("at least" in err or "whole number" in err), err


def test_explain_rejects_a_zero_top(warehouse: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["explain", "abcdef12", "--top", "0"])
    assert exc.value.code == 2 and "argument --top: " in capsys.readouterr().err
