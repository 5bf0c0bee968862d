"""An LLM run killed outright (SIGKILL) cannot close its own ``raw.llm_runs`` row: the next LLM run that holds the
build lock closes it as ``interrupted`` with the figures the ledger shows; a run without the lock leaves it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pytest

from pipelines.annotate.llm import annotate_llm
from pipelines.core.warehouse import connect
from pipelines.ingest import ingest_paths
from pipelines.llm.config import LLMConfig
from tests.llm_server import LLMTestServer
from tests.planted import write_planted_pairs

REPO = Path(__file__).resolve().parent.parent


def _killed_annotate(tmp_path: Path, llm_server: LLMTestServer) -> Path:
    """A warehouse whose `preflens annotate --annotator llm` was SIGKILLed after some calls were answered."""
    data = tmp_path / "pairs.jsonl"
    write_planted_pairs(data, n=40)
    db = tmp_path / "wh" / "preflens.duckdb"
    con = connect(db)
    ingest_paths(con, [data])
    con.close()
    llm_server.state.latency_s = 0.2  # slow enough that the kill lands mid-run, after the writer committed a batch
    env = {
        **os.environ,
        "PREFLENS_WAREHOUSE": str(db.parent),
        "PREFLENS_LLM_BASE_URL": llm_server.base_url,
        "PREFLENS_LLM_MODEL": "test-model",
        "PREFLENS_LLM_CONCURRENCY": "2",
    }
    env.pop("PREFLENS_CONFIG", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "pipelines.cli", "annotate", "--annotator", "llm"],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 300
        # the run holds the file, so wait on the server's count, then give the writer thread time to commit a batch
        while llm_server.stats()["requests"] < 8 and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(1.0)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the annotate run ended before it was killed"
    llm_server.state.latency_s = 0.0
    return db


def _runs(db: Path) -> list[tuple]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        return con.execute(
            "select run_id, status, finished_at, calls, prompt_tokens, completion_tokens, cost_usd, cache_hits, message,"
            " (select count(*) from raw.llm_ledger l where l.run_id = r.run_id),"
            " (select coalesce(sum(prompt_tokens), 0) from raw.llm_ledger l where l.run_id = r.run_id)"
            " from raw.llm_runs r order by started_at"
        ).fetchall()
    finally:
        con.close()


@pytest.mark.slow
def test_next_locked_llm_run_closes_a_killed_runs_row(tmp_path: Path, llm_server: LLMTestServer) -> None:
    db = _killed_annotate(tmp_path, llm_server)
    [killed] = _runs(db)
    assert killed[1] == "running"  # what the kill left behind
    env = {
        **os.environ,
        "PREFLENS_WAREHOUSE": str(db.parent),
        "PREFLENS_LLM_BASE_URL": llm_server.base_url,
        "PREFLENS_LLM_MODEL": "test-model",
    }
    env.pop("PREFLENS_CONFIG", None)
    done = subprocess.run(
        [sys.executable, "-m", "pipelines.cli", "annotate", "--annotator", "llm"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    first, second = _runs(db)
    run_id, status, finished_at, calls, prompt_tokens, completion_tokens, cost, hits, message, n_ledger, ledger_pt = (
        first
    )
    assert run_id == killed[0] and status == "interrupted"
    assert finished_at is None and hits is None  # not known: left NULL, not invented
    assert n_ledger > 0 and calls == n_ledger and prompt_tokens == ledger_pt and completion_tokens > 0
    assert cost is not None
    assert "process died" in message and second[0] in message
    assert second[1] == "completed"


def test_a_run_without_the_lock_leaves_a_running_row_alone(tmp_path: Path, llm_server: LLMTestServer) -> None:
    """Without the build lock a ``running`` row may be a live run's: it is not touched."""
    data = tmp_path / "pairs.jsonl"
    write_planted_pairs(data, n=6)
    db = tmp_path / "wh" / "preflens.duckdb"
    con = connect(db)
    ingest_paths(con, [data])
    con.execute(
        "insert into raw.llm_runs (run_id, command, model, started_at, status) "
        "values ('other-live-run', 'annotate', 'm', now(), 'running')"
    )
    annotate_llm(con, LLMConfig(base_url=llm_server.base_url, model="test-model", backoff_base_s=0.01))
    rows = dict(con.execute("select run_id, status from raw.llm_runs").fetchall())
    con.close()
    assert rows.pop("other-live-run") == "running"
    assert list(rows.values()) == ["completed"]
