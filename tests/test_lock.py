"""The build lock: one writer at a time, released when the holder dies; a build DB another process holds open
is refused the same way (exit 3), never with a raw DuckDB lock error."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest

from pipelines.core.lock import BuildAlreadyRunning, BuildLock, connect_build_db
from tests.conftest import preflens


def test_second_lock_is_refused_then_granted_after_release(tmp_path: Path) -> None:
    path = tmp_path / ".build.lock"
    with BuildLock(path):
        with pytest.raises(BuildAlreadyRunning, match="build already running"):
            with BuildLock(path):
                pass
    with BuildLock(path):
        pass


def test_lock_held_by_another_process_names_its_pid_and_dies_with_it(tmp_path: Path) -> None:
    path = tmp_path / ".build.lock"
    code = (
        "import sys; from pipelines.core.lock import BuildLock\n"
        f"l = BuildLock({str(path)!r}).__enter__(); print('held', flush=True); sys.stdin.readline()"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
        with pytest.raises(BuildAlreadyRunning, match=str(proc.pid)):
            with BuildLock(path):
                pass
    finally:
        proc.kill()
        proc.wait()
    with BuildLock(path):  # the kernel released the dead holder's lock
        pass


HOLD_DB = "import sys, duckdb\ncon = duckdb.connect(sys.argv[1])\nprint('held', flush=True)\nsys.stdin.readline()\n"


@pytest.fixture
def foreign_holder(warehouse: Path) -> Iterator[subprocess.Popen[str]]:
    """A process that is no preflens command (a DuckDB shell, say) holding the build DB open, not the build lock."""
    from pipelines.core.warehouse import connect

    connect(warehouse / "preflens.duckdb").close()
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD_DB, str(warehouse / "preflens.duckdb")],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
        yield proc
    finally:
        proc.kill()
        proc.wait()


def test_a_build_db_held_by_another_process_is_refused_as_build_already_running(
    warehouse: Path, foreign_holder: subprocess.Popen[str]
) -> None:
    with pytest.raises(BuildAlreadyRunning, match=rf"build already running .*pid {foreign_holder.pid}"):
        connect_build_db(warehouse / "preflens.duckdb")
    with pytest.raises(BuildAlreadyRunning, match=str(foreign_holder.pid)):
        connect_build_db(warehouse / "preflens.duckdb", read_only=True)


@pytest.mark.parametrize("command", [["build", "--n-bootstrap", "0"], ["check"], ["annotate"]])
def test_commands_meet_a_held_build_db_with_exit_3_not_a_raw_lock_error(
    warehouse: Path, foreign_holder: subprocess.Popen[str], command: list[str]
) -> None:
    proc = preflens(warehouse, *command, timeout=300)
    assert proc.returncode == 3, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "build already running" in proc.stderr and str(foreign_holder.pid) in proc.stderr
    assert "IOException" not in proc.stderr and "Could not set lock" not in proc.stderr
    # nothing was recorded: no build row left 'running' for the next build to call interrupted
    foreign_holder.kill()
    foreign_holder.wait()
    con = duckdb.connect(str(warehouse / "preflens.duckdb"), read_only=True)
    try:
        assert con.execute("select count(*) from ops.builds").fetchone() == (0,)
    finally:
        con.close()
    assert not (warehouse / "quality" / "index.html").exists()


def test_the_duckdb_fit_runner_takes_the_build_lock(warehouse: Path) -> None:
    """`python -m pipelines.build.fit_runner --engine duckdb` writes the build file: never while a build runs."""
    from pipelines.core.warehouse import connect

    connect(warehouse / "preflens.duckdb").close()
    with BuildLock(warehouse / ".build.lock"):
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "pipelines.build.fit_runner",
                "--engine",
                "duckdb",
                "--db",
                str(warehouse / "preflens.duckdb"),
            ],
            capture_output=True,
            text=True,
            timeout=300,
        )
    assert proc.returncode == 3, proc.stderr[-2000:]
    assert "build already running" in proc.stderr
