"""An ingest killed mid-run (issue 11): the next ingest closes its `raw.ingest_runs` row as interrupted, with what the
warehouse shows of it, and only when no live process holds the build lock.

Real processes: `preflens ingest` started as a console script on two files, killed with SIGKILL once the first file
is committed (seen from outside: the DuckDB write-ahead log holds the first file's rows), then `preflens ingest` or
`preflens run` started the same way.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import duckdb
import pytest

from pipelines.core.lock import BuildLock
from pipelines.core.warehouse import connect
from pipelines.ingest import ingest_paths
from pipelines.ingest.runs import DIED
from tests.conftest import env_with, preflens, venv_bin

SAFETY_TIMEOUT_S = 300  # only a guard against hanging forever, never a performance assertion
FIRST, SECOND = 500, 40_000  # rows: the first file is committed in a blink, the second takes seconds
#: the write-ahead log is this large once the first file's rows are committed (the running row alone: < 1 kB)
FIRST_COMMITTED_WAL_BYTES = 100_000


def rec(i: int, tag: str) -> dict[str, Any]:
    return {
        "prompt": f"prompt {tag} {i}",
        "response_a": f"answer a {tag} {i} " * 8,
        "response_b": f"answer b {tag} {i} " * 8,
        "winner": "ab"[i % 2],
        "mechanism": "human:raters",
        "mechanism_type": "human",
        "domain": "coding",
    }


def jsonl(path: Path, n: int) -> Path:
    path.write_text("".join(json.dumps(rec(i, path.stem)) + "\n" for i in range(n)))
    return path


def _no_llm_env(**kw: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFLENS_LLM")}
    env.update(COLUMNS="200", **kw)
    return env


def _start_ingest(wh: Path, *files: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [venv_bin("preflens"), "ingest", *map(str, files)],
        env=env_with(PREFLENS_WAREHOUSE=str(wh)),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


def _wait_first_file_committed(wh: Path, proc: subprocess.Popen[bytes]) -> None:
    wal = wh / "preflens.duckdb.wal"
    deadline = time.monotonic() + SAFETY_TIMEOUT_S
    while not (wal.exists() and wal.stat().st_size > FIRST_COMMITTED_WAL_BYTES):
        assert proc.poll() is None, "the ingest ended before it could be caught mid-run"
        assert time.monotonic() < deadline, "safety timeout: the first file was never committed"
        time.sleep(0.002)


def _runs(db: Path) -> list[tuple]:
    """(ingest_id, status, finished_at is null, rows_read, rows_loaded, rows_duplicate, rows_quarantined, reason)."""
    con = duckdb.connect(str(db), read_only=True)
    try:
        return con.execute(
            """select ingest_id, status, finished_at is null, rows_read, rows_loaded, rows_duplicate,
                      rows_quarantined, reason
               from raw.ingest_runs order by started_at"""
        ).fetchall()
    finally:
        con.close()


def _state_after_the_kill(wh: Path, scratch: Path) -> tuple[list[tuple], int]:
    """The killed run's rows and its labels, read from a copy (opening the file itself would replay its log)."""
    scratch.mkdir()
    for name in ("preflens.duckdb", "preflens.duckdb.wal"):
        shutil.copy2(wh / name, scratch / name)
    con = duckdb.connect(str(scratch / "preflens.duckdb"))
    try:
        runs = con.execute("select ingest_id, status, finished_at is null from raw.ingest_runs").fetchall()
        labels = con.execute("select count(*) from raw.labels").fetchone()
        return runs, int(labels[0]) if labels else -1
    finally:
        con.close()


#: kills tried until one falls between the two files' commits; each waits a little longer after the log has grown
KILL_ATTEMPTS, EXTRA_WAIT_S = 6, 0.05


@pytest.fixture
def killed(tmp_path: Path) -> tuple[Path, Path, Path, str]:
    """A warehouse whose `preflens ingest first second` was killed with SIGKILL after the first file's commit.

    The log's size says when the first file is being committed, not that its commit is done, so a kill can come a
    moment early on a busy machine: such an attempt is thrown away and the next waits a little longer."""
    first, second = jsonl(tmp_path / "first.jsonl", FIRST), jsonl(tmp_path / "second.jsonl", SECOND)
    seen = []
    for attempt in range(KILL_ATTEMPTS):
        wh = tmp_path / f"warehouse{attempt}"
        connect(wh / "preflens.duckdb").close()  # schemas in place and checkpointed: the log starts empty
        proc = _start_ingest(wh, first, second)
        try:
            _wait_first_file_committed(wh, proc)
            time.sleep(attempt * EXTRA_WAIT_S)
            os.killpg(proc.pid, signal.SIGKILL)
        finally:
            proc.wait(timeout=SAFETY_TIMEOUT_S)
        assert proc.returncode == -signal.SIGKILL
        runs, labels = _state_after_the_kill(wh, tmp_path / f"after_kill{attempt}")
        (run,) = runs
        assert run[1:] == ("running", True), runs  # the defect: left running for good, unless someone closes it
        if labels == FIRST:
            return wh, first, second, run[0]
        seen.append(labels)
    raise AssertionError(f"no kill fell between the two files' commits in {KILL_ATTEMPTS} attempts (labels: {seen})")


@pytest.mark.parametrize("command", ["ingest", "run"])
def test_the_next_ingest_closes_a_killed_ingest_as_interrupted(
    killed: tuple[Path, Path, Path, str], tmp_path: Path, command: str
) -> None:
    wh, first, second, killed_id = killed
    third = jsonl(tmp_path / "third.jsonl", 10)
    if command == "ingest":
        proc = preflens(wh, "ingest", str(third), timeout=SAFETY_TIMEOUT_S)
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    else:  # the ingest stage of `preflens run`; the run then stops in annotate (no LLM configured), no dbt needed
        proc = subprocess.run(
            [venv_bin("preflens"), "run", str(third), "--annotator", "llm"],
            env=_no_llm_env(PREFLENS_WAREHOUSE=str(wh)),
            capture_output=True,
            text=True,
            timeout=SAFETY_TIMEOUT_S,
        )
        assert proc.returncode == 1 and "annotate failed" in proc.stderr, proc.stdout[-2000:] + proc.stderr[-2000:]
    runs = {r[0]: r[1:] for r in _runs(wh / "preflens.duckdb")}
    assert len(runs) == 2
    status, no_end, read, loaded, duplicate, quarantined, reason = runs.pop(killed_id)
    assert status == "interrupted"
    # what the warehouse shows of it: the first file's rows; what it does not show stays unknown (NULL)
    assert (loaded, quarantined) == (FIRST, 0)
    assert (read, duplicate, no_end) == (None, None, True)
    ((new_id, new),) = runs.items()
    assert new[0] == "completed" and new[3] == 10
    # `preflens run` closes it as its build begins, before its own ingest stage
    finder = f"found by ingest {new_id}" if command == "ingest" else "found by build "
    assert reason.startswith(DIED) and finder in reason, reason
    assert f"committed before it: {first.resolve()} ({FIRST} loaded, 0 quarantined)" in reason, reason
    assert f"no row committed from: {second.resolve()}" in reason, reason


def test_a_live_ingest_holding_the_lock_is_never_marked_interrupted(tmp_path: Path) -> None:
    """An ingest frozen mid-run (SIGSTOP) holds the build lock: a second ingest meets it with exit 3 and closes
    nothing; resumed, the first completes, recorded as itself."""
    wh = tmp_path / "warehouse"
    connect(wh / "preflens.duckdb").close()
    first, second = jsonl(tmp_path / "first.jsonl", FIRST), jsonl(tmp_path / "second.jsonl", 2_000)
    proc = _start_ingest(wh, first, second)
    try:
        _wait_first_file_committed(wh, proc)
        os.killpg(proc.pid, signal.SIGSTOP)
        try:
            refused = preflens(wh, "ingest", str(jsonl(tmp_path / "third.jsonl", 10)), timeout=SAFETY_TIMEOUT_S)
        finally:
            os.killpg(proc.pid, signal.SIGCONT)
        assert proc.wait(timeout=SAFETY_TIMEOUT_S) == 0
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert refused.returncode == 3 and "build already running" in refused.stderr, refused.stderr
    ((_, status, no_end, read, loaded, *_),) = _runs(wh / "preflens.duckdb")
    assert (status, no_end, read, loaded) == ("completed", False, FIRST + 2_000, FIRST + 2_000)


def test_only_a_process_holding_the_build_lock_closes_a_running_row(tmp_path: Path) -> None:
    """Without the build lock (a library caller's own connection) a `running` row may be a live ingest's: left as it
    is. Under the lock it is a dead one's: closed."""
    wh = tmp_path / "warehouse"
    db = wh / "preflens.duckdb"
    con = connect(db)
    try:
        con.execute(
            "insert into raw.ingest_runs (ingest_id, started_at, files, status) "
            "values ('dead', now(), ['/x/a.jsonl'], 'running')"
        )
        ingest_paths(con, [jsonl(tmp_path / "one.jsonl", 5)])
        assert con.execute("select status from raw.ingest_runs where ingest_id = 'dead'").fetchone() == ("running",)
        with BuildLock(wh / ".build.lock"):
            ingest_paths(con, [jsonl(tmp_path / "two.jsonl", 5)])
        status, reason = con.execute("select status, reason from raw.ingest_runs where ingest_id = 'dead'").fetchone()
        assert status == "interrupted" and "no file had committed a row" in reason
        assert "no row committed from: /x/a.jsonl" in reason
    finally:
        con.close()
