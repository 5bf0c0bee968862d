"""The build lock: one writer at a time, released when the holder dies; a build DB another process holds open
is refused the same way (exit 3), never with a raw DuckDB lock error."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest

from pipelines.core.lock import BuildAlreadyRunning, BuildLock, connect_build_db
from tests.conftest import REPO, preflens


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


# ------------------------------------------------------------------ the other readers of the build file (issue 11)


def _holding_the_lock(lock: Path) -> subprocess.Popen[str]:
    """Another process that holds the build lock (a build, as far as anyone can tell) until it is killed."""
    code = (
        "import sys; from pipelines.core.lock import BuildLock\n"
        f"l = BuildLock({str(lock)!r}).__enter__(); print('held', flush=True); sys.stdin.readline()"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
    return proc


def _filled_build_db(warehouse: Path) -> Path:
    from pipelines.core.warehouse import connect

    db = warehouse / "preflens.duckdb"
    con = connect(db)
    con.execute("insert into raw.domains values ('coding', 'input', 'ing1')")
    con.close()
    return db


@pytest.mark.parametrize("holder", ["build lock", "build file"])
def test_the_spark_flow_export_refuses_a_build_in_progress_with_exit_3(
    warehouse: Path, tmp_path: Path, holder: str
) -> None:
    """`python -m pipelines.build.spark_flow` exports raw.* and ops.* of the build file to Parquet: under the build
    lock, so while a build runs (or another process has the file open) it exits 3 and writes nothing."""
    db = _filled_build_db(warehouse)
    proc = (
        _holding_the_lock(warehouse / ".build.lock")
        if holder == "build lock"
        else subprocess.Popen(
            [sys.executable, "-c", HOLD_DB, str(db)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
    )
    try:
        if holder == "build file":
            assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
        spark = tmp_path / "spark"
        flow = subprocess.run(
            [
                sys.executable,
                "-m",
                "pipelines.build.spark_flow",
                "--warehouse",
                str(warehouse),
                "--spark-dir",
                str(spark),
            ],
            capture_output=True,
            text=True,
            timeout=300,
        )
    finally:
        proc.kill()
        proc.wait()
    assert flow.returncode == 3, flow.stdout[-2000:] + flow.stderr[-2000:]
    assert flow.stderr.startswith("preflens: build already running") and str(proc.pid) in flow.stderr, flow.stderr
    assert "IOException" not in flow.stderr and "Traceback" not in flow.stderr
    assert not list(spark.rglob("*.parquet"))  # nothing exported


def test_the_spark_flow_export_reads_the_build_file_when_no_build_runs(warehouse: Path, tmp_path: Path) -> None:
    from pipelines.build.spark_flow import export_raw_parquet

    db = _filled_build_db(warehouse)
    counts = export_raw_parquet(db, tmp_path / "landing")
    assert counts["domains"] == 1 and (tmp_path / "landing" / "domains.parquet").exists()
    with BuildLock(warehouse / ".build.lock"):  # released by the export: taken again at once
        pass


def _make_docs_checkout(root: Path) -> Path:
    """A folder that runs the repo's own Makefile (linked, not copied) with the repo's venv and dbt project, so
    `make docs` there works on ``root/warehouse`` and never on the repo's warehouse."""
    for name in ("Makefile", ".venv", "dbt_project", "pyproject.toml"):
        (root / name).symlink_to(REPO / name)
    return root / "warehouse"


def _make_docs(root: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PREFLENS_WAREHOUSE", "MAKEFLAGS", "MFLAGS")}
    return subprocess.run(
        ["make", "--no-print-directory", "-C", str(root), "-o", ".venv/.preflens-installed", "docs"],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )


@pytest.mark.parametrize("holder", ["build lock", "build file"])
def test_make_docs_refuses_a_build_in_progress_before_dbt_starts(tmp_path: Path, holder: str) -> None:
    wh = _make_docs_checkout(tmp_path)
    db = _filled_build_db(wh)
    proc = (
        _holding_the_lock(wh / ".build.lock")
        if holder == "build lock"
        else subprocess.Popen(
            [sys.executable, "-c", HOLD_DB, str(db)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
    )
    try:
        if holder == "build file":
            assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
        made = _make_docs(tmp_path)
    finally:
        proc.kill()
        proc.wait()
    assert made.returncode != 0, made.stdout[-2000:] + made.stderr[-2000:]
    assert "preflens: build already running" in made.stderr and str(proc.pid) in made.stderr, made.stderr
    assert "Could not set lock" not in made.stdout + made.stderr
    assert not (wh / "dbt_target" / "catalog.json").exists()  # dbt never ran


@pytest.mark.slow
def test_make_docs_generates_the_docs_of_the_warehouse_it_runs_in(tmp_path: Path) -> None:
    wh = _make_docs_checkout(tmp_path)
    _filled_build_db(wh)
    made = _make_docs(tmp_path)
    assert made.returncode == 0, made.stdout[-3000:] + made.stderr[-3000:]
    assert (wh / "dbt_target" / "catalog.json").exists() and (wh / "dbt_target" / "index.html").exists()
    assert f"--target-path {wh}/dbt_target" in made.stdout
    catalog = json.loads((wh / "dbt_target" / "catalog.json").read_text())
    domains = catalog["sources"]["source.preflens.raw.domains"]  # read from this warehouse's build file
    assert "domain" in {name.lower() for name in domains["columns"]}
    with BuildLock(wh / ".build.lock"):  # released
        pass
