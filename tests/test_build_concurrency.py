"""Builds and readers at the same time, through the real `preflens` console script on the bundled sample.

One scenario on a copy of the shared sample run (conftest ``sample_run``): another process holds a read-only
connection to the served copy and keeps querying it while a full `preflens run` (the cheapest build that runs every
stage, conftest ``CHEAP_BUILD``) goes on, and a `preflens build` is started while that run holds the build lock.
Three tests read what happened:

1. The reader test: the run succeeds, every read of that connection sees the same snapshot, and a new connection
   afterwards sees the new build.
2. The build started during the run exits 3 with "build already running" and the holder's pid, and the run it
   collided with still succeeds, leaving no build stuck 'running'.
3. `preflens check` started during the run (the run frozen with SIGSTOP meanwhile, so the check surely meets it)
   exits 3 the same way, leaves the quality page alone, and the run still succeeds and is recorded as itself.

No wall-clock assertions: ordering is established through the lock file and a stop-file handshake.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pytest

from tests.conftest import CHEAP_BUILD_ARGS, SampleRun, env_with, preflens, venv_bin

pytestmark = pytest.mark.slow

SAFETY_TIMEOUT_S = 1200  # only a guard against hanging forever, never a performance assertion

SNAPSHOT_SQL = """
select
    (select count(*) from marts.fct_builds),
    (select count(*) from marts.fct_builds where status = 'success'),
    (select max(fit_id) from marts.fct_concept_effects),
    (select count(distinct fit_id) from marts.fct_concept_effects),
    (select count(*) from marts.fct_concept_effects),
    (select count(*) from marts.fct_predictions),
    (select count(*) from marts.fct_pair_concepts)
"""

# Holds one read-only connection for its whole life and re-reads the snapshot until the stop file appears.
READER = textwrap.dedent(
    """
    import json, os, sys, time, duckdb
    serve, stop, sql = sys.argv[1], sys.argv[2], sys.argv[3]
    con = duckdb.connect(serve, read_only=True)
    first = list(con.execute(sql).fetchall()[0])
    print(json.dumps({"first": first}), flush=True)
    n, differing = 0, []
    while not os.path.exists(stop):
        snap = list(con.execute(sql).fetchall()[0])
        n += 1
        if snap != first and len(differing) < 5:
            differing.append(snap)
        time.sleep(0.05)
    last = list(con.execute(sql).fetchall()[0])
    con.close()
    print(json.dumps({"reads": n + 1, "differing": differing, "last": last}), flush=True)
    """
)


def snapshot(serve: Path) -> list:
    """A fresh connection (new process: DuckDB caches instances per file within a process)."""
    code = (
        "import json, sys, duckdb; c = duckdb.connect(sys.argv[1], read_only=True); "
        "print(json.dumps(list(c.execute(sys.argv[2]).fetchall()[0]), default=str))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(serve), SNAPSHOT_SQL],
        capture_output=True,
        text=True,
        check=True,
        timeout=SAFETY_TIMEOUT_S,
    )
    return json.loads(out.stdout)


def latest_build(build_db: Path) -> tuple[str, str, bool]:
    con = duckdb.connect(str(build_db), read_only=True)
    try:
        return con.execute(
            "select build_id, status, published from ops.builds order by started_at desc, build_id desc limit 1"
        ).fetchone()
    finally:
        con.close()


@dataclass
class Collision:
    """What the scenario saw: the served snapshot before, the run, the refused build, the reader, and after."""

    warehouse: Path
    before: list
    reader_first: list
    run_pid: int
    run: subprocess.CompletedProcess[str]
    refused: subprocess.CompletedProcess[str]
    refused_check: subprocess.CompletedProcess[str]
    page_before_check: tuple[int, int, bytes]
    page_after_check: tuple[int, int, bytes]
    reader_alive_after_run: bool
    reader_returncode: int
    reader_result: dict
    reader_stderr: str
    after: list


def _wait_for_lock_holder(lock: Path, run: subprocess.Popen[str]) -> None:
    """Until the lock file names the run's pid (an old pid may be left in it from the copied build)."""
    deadline = time.monotonic() + SAFETY_TIMEOUT_S
    while (lock.read_text().strip() if lock.exists() else "") != str(run.pid):
        assert run.poll() is None, "the run ended before it was seen holding the lock:\n" + run.stderr.read()  # type: ignore[union-attr]
        assert time.monotonic() < deadline, "safety timeout: the run never took the lock"
        time.sleep(0.02)


def _page_state(page: Path) -> tuple[int, int, bytes]:
    """The quality page's modification time, size and bytes (it exists: the copied sample run wrote it)."""
    st = page.stat()
    return st.st_mtime_ns, st.st_size, page.read_bytes()


@pytest.fixture(scope="module")
def collision(sample_run: SampleRun, tmp_path_factory: pytest.TempPathFactory) -> Collision:
    """A reader holds the served copy open while a full run publishes, and a build is started during that run."""
    wh = sample_run.copy_to(tmp_path_factory.mktemp("concurrency"))
    serve = wh / "serve" / "preflens.duckdb"
    stop = tmp_path_factory.mktemp("reader") / "stop"
    before = snapshot(serve)
    reader = subprocess.Popen(
        [sys.executable, "-c", READER, str(serve), str(stop), SNAPSHOT_SQL],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    run: subprocess.Popen[str] | None = None
    try:
        first_line = reader.stdout.readline()  # type: ignore[union-attr]
        assert first_line, reader.stderr.read()  # type: ignore[union-attr]
        run = subprocess.Popen(
            [venv_bin("preflens"), "run", *CHEAP_BUILD_ARGS],
            env=env_with(PREFLENS_WAREHOUSE=str(wh), COLUMNS="200"),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        _wait_for_lock_holder(wh / ".build.lock", run)
        refused = preflens(wh, "build", timeout=SAFETY_TIMEOUT_S)
        page = wh / "quality" / "index.html"
        os.kill(run.pid, signal.SIGSTOP)  # the run holds the lock, frozen in whatever stage it is
        try:
            page_before = _page_state(page)
            refused_check = preflens(wh, "check", timeout=SAFETY_TIMEOUT_S)
            page_after = _page_state(page)
        finally:
            os.kill(run.pid, signal.SIGCONT)
        out, err = run.communicate(timeout=SAFETY_TIMEOUT_S)
        reader_alive = reader.poll() is None
        stop.touch()
        reader_out, reader_err = reader.communicate(timeout=SAFETY_TIMEOUT_S)
    finally:
        for proc in (run, reader):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait()
    lines = reader_out.strip().splitlines()
    return Collision(
        warehouse=wh,
        before=before,
        reader_first=json.loads(first_line)["first"],
        run_pid=run.pid,
        run=subprocess.CompletedProcess(run.args, run.returncode, out, err),
        refused=refused,
        refused_check=refused_check,
        page_before_check=page_before,
        page_after_check=page_after,
        reader_alive_after_run=reader_alive,
        reader_returncode=reader.returncode,
        reader_result=json.loads(lines[-1]) if lines else {},
        reader_stderr=reader_err,
        after=snapshot(serve),
    )


def test_reader_keeps_its_snapshot_while_a_full_run_publishes(collision: Collision) -> None:
    c = collision
    assert c.reader_first == c.before
    assert c.run.returncode == 0, c.run.stdout[-3000:] + c.run.stderr[-3000:]
    assert c.reader_alive_after_run, c.reader_stderr  # it held the served file open through the whole run
    assert c.reader_returncode == 0, c.reader_stderr
    result = c.reader_result
    assert result["reads"] >= 2
    assert result["differing"] == [] and result["last"] == c.reader_first  # one consistent snapshot throughout

    build_id, status, published = latest_build(c.warehouse / "preflens.duckdb")
    assert status == "success" and published
    n_builds, n_success, max_fit, *_ = c.after  # a new connection sees the new build
    assert max_fit == build_id != c.before[2]
    assert n_builds == c.before[0] + 1 and n_success == c.before[1] + 1


def test_build_started_during_a_run_is_refused_with_exit_3(collision: Collision) -> None:
    c = collision
    assert c.refused.returncode == 3, c.refused.stdout[-2000:] + c.refused.stderr[-2000:]
    assert "build already running" in c.refused.stderr
    assert str(c.run_pid) in c.refused.stderr  # names the holder
    assert c.run.returncode == 0, c.run.stdout[-3000:] + c.run.stderr[-3000:]  # the refused build did not disturb it
    build_id, status, published = latest_build(c.warehouse / "preflens.duckdb")
    assert status == "success" and published
    # the refused build left no row behind: the last build is the run's, and no build is stuck 'running'
    con = duckdb.connect(str(c.warehouse / "preflens.duckdb"), read_only=True)
    try:
        assert con.execute("select count(*) from ops.builds where status = 'running'").fetchone() == (0,)
    finally:
        con.close()


def test_check_started_during_a_run_is_refused_and_leaves_the_run_alone(collision: Collision) -> None:
    c = collision
    assert c.refused_check.returncode == 3, c.refused_check.stdout[-2000:] + c.refused_check.stderr[-2000:]
    assert "build already running" in c.refused_check.stderr and str(c.run_pid) in c.refused_check.stderr
    assert "IOException" not in c.refused_check.stderr
    assert c.page_after_check == c.page_before_check  # quality/index.html untouched mid-build
    assert c.run.returncode == 0, c.run.stdout[-3000:] + c.run.stderr[-3000:]
    con = duckdb.connect(str(c.warehouse / "preflens.duckdb"), read_only=True)
    try:
        rows = con.execute("select status, message from ops.builds order by started_at").fetchall()
    finally:
        con.close()
    assert rows[-1] == ("success", None)  # the run, recorded as itself
    assert all(message != "interrupted: the process died mid-build" for _, message in rows)
