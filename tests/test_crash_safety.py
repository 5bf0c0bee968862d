"""A build killed mid-run leaves the published copy untouched, and the next build recovers."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import time
from pathlib import Path

import duckdb
import pytest

from tests.conftest import env_with, venv_bin
from tests.test_pipeline_e2e import preflens

pytestmark = pytest.mark.slow


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_kill_minus_9_mid_build_keeps_the_served_copy(tmp_path: Path) -> None:
    wh = tmp_path / "wh"
    first = preflens(wh, "run")
    assert first.returncode == 0, first.stderr[-2000:]
    serve = wh / "serve" / "preflens.duckdb"
    before = _digest(serve)

    proc = subprocess.Popen(
        [venv_bin("preflens"), "build"],
        env=env_with(PREFLENS_WAREHOUSE=str(wh)),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    # wait until dbt is running inside the build (its log appears), then kill the whole process group
    log = wh / "dbt_target" / "logs" / "dbt.log"
    size0 = log.stat().st_size if log.exists() else 0
    for _ in range(600):
        if proc.poll() is not None or (log.exists() and log.stat().st_size > size0):
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the build finished before it could be killed"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()

    assert _digest(serve) == before  # readers never see a half-built copy
    again = preflens(wh, "build")
    assert again.returncode == 0, again.stderr[-2000:]
    con = duckdb.connect(str(wh / "preflens.duckdb"), read_only=True)
    try:
        statuses = [r[0] for r in con.execute("select status from raw.builds order by build_id").fetchall()]
        messages = [r[0] for r in con.execute("select message from raw.builds where status = 'failed'").fetchall()]
    finally:
        con.close()
    assert statuses == ["success", "failed", "success"]
    assert any("interrupted" in (m or "") for m in messages)
