"""Builds and readers at the same time, through the real `preflens` console script on the bundled sample.

1. The reader test: another process holds a read-only connection to the served copy and keeps querying
   it while a full `preflens run` goes on. The run succeeds, every read of that connection sees the same
   snapshot, and a new connection afterwards sees the new build.
2. A `preflens build` started while a run holds the build lock exits 3 with "build already running",
   and the run it collided with still succeeds.

No wall-clock assertions: ordering is established through the lock file and a stop-file handshake.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import duckdb
import pytest

from tests.conftest import env_with, venv_bin

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


def preflens_cmd(*args: str) -> list[str]:
    return [venv_bin("preflens"), *args]


def env(warehouse: Path) -> dict[str, str]:
    return env_with(PREFLENS_WAREHOUSE=str(warehouse), COLUMNS="200")


def run_preflens(warehouse: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(preflens_cmd(*args), env=env(warehouse), capture_output=True, text=True,
                          timeout=SAFETY_TIMEOUT_S)


def snapshot(serve: Path) -> list:
    """A fresh connection (new process: DuckDB caches instances per file within a process)."""
    code = ("import json, sys, duckdb; c = duckdb.connect(sys.argv[1], read_only=True); "
            "print(json.dumps(list(c.execute(sys.argv[2]).fetchall()[0]), default=str))")
    out = subprocess.run([sys.executable, "-c", code, str(serve), SNAPSHOT_SQL], capture_output=True, text=True,
                         check=True, timeout=SAFETY_TIMEOUT_S)
    return json.loads(out.stdout)


def latest_build(build_db: Path) -> tuple[str, str, bool]:
    con = duckdb.connect(str(build_db), read_only=True)
    try:
        return con.execute(
            "select build_id, status, published from raw.builds order by started_at desc, build_id desc limit 1"
        ).fetchone()
    finally:
        con.close()


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A warehouse with one published build of the bundled sample."""
    wh = tmp_path_factory.mktemp("concurrency")
    proc = run_preflens(wh, "run")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert (wh / "serve" / "preflens.duckdb").exists()
    return wh


def test_reader_keeps_its_snapshot_while_a_full_run_publishes(built: Path, tmp_path: Path) -> None:
    wh = built
    serve = wh / "serve" / "preflens.duckdb"
    stop = tmp_path / "stop-reader"
    before = snapshot(serve)

    reader = subprocess.Popen([sys.executable, "-c", READER, str(serve), str(stop), SNAPSHOT_SQL],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        first_line = reader.stdout.readline()  # type: ignore[union-attr]
        assert first_line, reader.stderr.read()  # type: ignore[union-attr]
        first = json.loads(first_line)["first"]
        assert first == before

        # the full job, while the reader holds the served file open and keeps reading it
        run = run_preflens(wh, "run")
        assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
        assert reader.poll() is None, reader.stderr.read()  # type: ignore[union-attr]

        stop.touch()
        out, err = reader.communicate(timeout=SAFETY_TIMEOUT_S)
        assert reader.returncode == 0, err
    finally:
        if reader.poll() is None:
            reader.kill()
            reader.wait()
    result = json.loads(out.strip().splitlines()[-1])
    assert result["reads"] >= 2
    assert result["differing"] == [] and result["last"] == first  # one consistent snapshot throughout

    build_id, status, published = latest_build(wh / "preflens.duckdb")
    assert status == "success" and published
    after = snapshot(serve)  # a new connection sees the new build
    n_builds, n_success, max_fit, *_ = after
    assert max_fit == build_id != before[2]
    assert n_builds == before[0] + 1 and n_success == before[1] + 1


def test_build_started_during_a_run_is_refused_with_exit_3(built: Path) -> None:
    wh = built
    lock = wh / ".build.lock"
    run = subprocess.Popen(preflens_cmd("run"), env=env(wh), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           text=True)
    try:
        # wait until the run holds the lock: the lock file then names its pid (an old pid may be left from before)
        deadline = time.monotonic() + SAFETY_TIMEOUT_S
        while (lock.read_text().strip() if lock.exists() else "") != str(run.pid):
            assert run.poll() is None, "the run ended before it was seen holding the lock:\n" + run.stderr.read()
            assert time.monotonic() < deadline, "safety timeout: the run never took the lock"
            time.sleep(0.02)

        second = run_preflens(wh, "build")
        assert second.returncode == 3, second.stdout[-2000:] + second.stderr[-2000:]
        assert "build already running" in second.stderr
        assert str(run.pid) in second.stderr  # names the holder

        out, err = run.communicate(timeout=SAFETY_TIMEOUT_S)
    finally:
        if run.poll() is None:
            run.kill()
            run.wait()
    assert run.returncode == 0, out[-3000:] + err[-3000:]  # the refused build did not disturb the run
    build_id, status, published = latest_build(wh / "preflens.duckdb")
    assert status == "success" and published
    # the refused build left no row behind: the last build is the run's, and no build is stuck 'running'
    con = duckdb.connect(str(wh / "preflens.duckdb"), read_only=True)
    try:
        assert con.execute("select count(*) from raw.builds where status = 'running'").fetchone() == (0,)
    finally:
        con.close()
