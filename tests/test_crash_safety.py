"""A build killed mid-run leaves the published copy untouched, and the next build recovers."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import duckdb
import pytest

from tests.conftest import env_with, preflens, venv_bin

pytestmark = pytest.mark.slow


#: fit settings that make the killed and the recovering builds quick (the fit is not what these tests are about)
QUICK = ("--var", "hmdr_n_bootstrap=0", "--var", "hmdr_select=false")


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _start_build(wh: Path) -> subprocess.Popen[bytes]:
    """`preflens build` in its own process group (so dbt and fit workers die with it)."""
    return subprocess.Popen(
        [venv_bin("preflens"), "build", *QUICK],
        env=env_with(PREFLENS_WAREHOUSE=str(wh)),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


def _wait_until(proc: subprocess.Popen[bytes], ready: Callable[[], bool], timeout_s: float = 900) -> None:
    deadline = time.monotonic() + timeout_s
    while not ready():
        assert proc.poll() is None, "the build finished before it could be killed"
        assert time.monotonic() < deadline, "the build never reached the point where it is killed"
        time.sleep(0.005)


def _builds(db: Path, table: str = "ops.builds") -> list[tuple]:
    """(build_id, status, failed_stage, message, published) of every build, oldest first."""
    con = duckdb.connect(str(db), read_only=True)
    try:
        return con.execute(
            f"select build_id, status, failed_stage, message, published from {table} order by started_at, build_id"
        ).fetchall()
    finally:
        con.close()


def _temporaries(serve_dir: Path) -> list[str]:
    return sorted(p.name for p in serve_dir.rglob("*") if ".tmp-" in p.name)


def test_kill_minus_9_mid_build_keeps_the_served_copy(sample_copy: Path) -> None:
    wh = sample_copy
    serve = wh / "serve" / "preflens.duckdb"
    before = _digest(serve)

    proc = _start_build(wh)
    # wait until dbt is running inside the build (its log grows), then kill the whole process group
    log = wh / "dbt_target" / "logs" / "dbt.log"
    size0 = log.stat().st_size if log.exists() else 0
    _wait_until(proc, lambda: log.exists() and log.stat().st_size > size0)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()

    assert _digest(serve) == before  # readers never see a half-built copy
    again = preflens(wh, "build", *QUICK)
    assert again.returncode == 0, again.stderr[-2000:]
    builds = _builds(wh / "preflens.duckdb")
    assert [b[1] for b in builds] == ["success", "failed", "success"]
    # the interrupted build names the stage it died in
    assert builds[1][2:] == ("dbt build", "interrupted: the process died mid-build", False)


def test_kill_minus_9_during_publish_never_records_a_publication(sample_copy: Path) -> None:
    """Killed with the temporary served copy in place: the build DB does not claim the publication, the next
    build marks it interrupted in ``publish`` and removes the temporary files."""
    wh = sample_copy
    serve = wh / "serve" / "preflens.duckdb"
    before = _digest(serve)
    (first_build,) = [b[0] for b in _builds(wh / "preflens.duckdb")]

    proc = _start_build(wh)
    _wait_until(proc, lambda: bool(_temporaries(serve.parent)))
    os.killpg(proc.pid, signal.SIGSTOP)  # frozen with the temporary copy in place
    try:
        assert _temporaries(serve.parent) and _digest(serve) == before, "the swap happened before the kill"
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()

    assert _digest(serve) == before
    killed = _builds(wh / "preflens.duckdb")[-1]
    assert killed[1:3] == ("running", "publish") and not killed[4]  # never 'success' / published
    assert _temporaries(serve.parent)  # what a killed publisher leaves behind

    again = preflens(wh, "build", *QUICK)
    assert again.returncode == 0, again.stderr[-2000:]
    assert _temporaries(serve.parent) == []
    builds = _builds(wh / "preflens.duckdb")
    assert [b[0] for b in builds[:2]] == [first_build, killed[0]]
    assert builds[1][1:] == ("failed", "publish", "interrupted: the process died mid-build", False)
    assert builds[2][1] == "success" and builds[2][4]
    # the served copy tells the same story
    assert _builds(serve, "marts.fct_builds") == builds
