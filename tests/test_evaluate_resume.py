"""`preflens evaluate` killed with kill -9 continues where it stopped, a re-run of a finished evaluation is
idempotent, and the results reach the served copy and the report (issue 10; issue 11 item 12)."""

from __future__ import annotations

import hashlib
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import duckdb
import pandas as pd
import pytest

from py_models.eval_protocols import EVAL_COLUMNS
from tests.conftest import SampleRun, env_with, preflens, venv_bin

pytestmark = pytest.mark.slow

MECHANISMS = ("--mechanism", "judge:gpt-4", "--mechanism", "human:mt-bench-experts")
ARGS = ("evaluate", "--splits", "4", "--seeds", "1", *MECHANISMS)
KEY = ["representation", "mechanism", "variant", "protocol", "split", "held_out_domain", "domain"]


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _results(db: Path) -> pd.DataFrame:
    con = duckdb.connect(str(db), read_only=True)
    try:
        df = con.execute(f"select {', '.join(EVAL_COLUMNS)} from ops.eval_results").df()
    finally:
        con.close()
    return df.sort_values(KEY, na_position="first").reset_index(drop=True)


def _scalars(db: Path, *queries: str) -> list:
    con = duckdb.connect(str(db), read_only=True)
    try:
        return [con.execute(q).fetchall()[0][0] for q in queries]
    finally:
        con.close()


def _group_gone(pgid: int, timeout_s: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.05)
    return False


@pytest.fixture(scope="module")
def reference(sample_run: SampleRun, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same evaluation run once, uninterrupted, in this process's way of running it: no worker processes."""
    wh = sample_run.copy_to(tmp_path_factory.mktemp("eval_reference") / "warehouse")
    proc = preflens(wh, *ARGS, "--jobs", "1")
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    return wh


def test_kill_minus_9_then_resume_gives_the_uninterrupted_results(sample_copy: Path, reference: Path) -> None:
    wh = sample_copy
    db, serve = wh / "preflens.duckdb", wh / "serve" / "preflens.duckdb"
    served_before = _digest(serve)
    proc = subprocess.Popen(
        [venv_bin("preflens"), *ARGS, "--jobs", "2"],
        env=env_with(PREFLENS_WAREHOUSE=str(wh), COLUMNS="200"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group: its workers are found (and must die) by it
    )
    assert proc.stderr is not None
    # Finished units are written at most 2 s apart, each write before the next progress line: once a line that
    # came >= 3 s into the run is followed by another one, some units are in the build DB.
    seen, armed = [], False
    for line in proc.stderr:
        seen.append(line)
        m = re.search(r"\] .*, (\d+)s elapsed$", line.strip())
        if m and armed:
            break
        armed = armed or bool(m and int(m.group(1)) >= 3)
    else:
        pytest.fail("the evaluation finished before it could be killed:\n" + "".join(seen))
    os.kill(proc.pid, signal.SIGKILL)  # the evaluate process only: its worker processes must die with it
    proc.wait()
    proc.stderr.close()
    assert _group_gone(proc.pid), "worker processes outlived the killed evaluation"

    status, pending, results = _scalars(
        db,
        "select string_agg(status, ',') from ops.eval_runs",
        "select count(*) from ops.eval_pending",
        "select count(*) from ops.eval_results",
    )
    assert status == "running" and pending > 0
    assert results == 0  # nothing of an unfinished evaluation reaches eval_results (nor the marts built on it)
    assert _digest(serve) == served_before

    again = preflens(wh, *ARGS, "--jobs", "2")
    assert again.returncode == 0, again.stdout[-2000:] + again.stderr[-2000:]
    m = re.search(r"resumed, ([\d,]+) of ([\d,]+) units done before", again.stderr)
    assert m, again.stderr
    done_before, total = (int(g.replace(",", "")) for g in m.groups())
    assert 0 < done_before < total
    ran = re.search(r"evaluate: ([\d,]+) units run", again.stderr)
    assert ran and int(ran.group(1).replace(",", "")) == total - done_before  # finished units are not redone
    got, want = _results(db), _results(reference / "preflens.duckdb")
    assert len(want) > 0
    pd.testing.assert_frame_equal(got, want)  # same rows as the uninterrupted run (which used no workers)

    third = preflens(wh, *ARGS, "--jobs", "2")
    assert third.returncode == 0, third.stderr[-2000:]
    assert "complete already" in third.stderr
    runs, n_pending = _scalars(
        db, "select string_agg(status, ',') from ops.eval_runs", "select count(*) from ops.eval_pending"
    )
    assert runs == "complete" and n_pending == 0
    pd.testing.assert_frame_equal(_results(db), want)  # idempotent: no second copy of the rows


def test_results_reach_the_served_copy_and_the_report(reference: Path) -> None:
    n_results, eval_id = _scalars(
        reference / "preflens.duckdb",
        "select count(*) from ops.eval_results",
        "select max(eval_id) from ops.eval_results",
    )
    served = reference / "serve" / "preflens.duckdb"
    n_served, n_rpt = _scalars(
        served,
        "select count(*) from marts.fct_eval_results",
        f"select count(*) from marts.rpt_model_comparison where eval_id = '{eval_id}'",
    )
    assert n_results > 0 and n_served == n_results and n_rpt > 0
    out = reference / "report.html"
    rep = preflens(reference, "report", "--output", str(out))
    assert rep.returncode == 0, rep.stderr[-2000:]
    html = out.read_text(encoding="utf-8")
    assert "Mean accuracy (%) over splits" in html and "rpt_model_comparison is empty" not in html
    assert "hmdr_paper" in html and "human:mt-bench-experts" in html


def test_not_published_when_the_evaluated_build_is_not_the_latest(sample_copy: Path) -> None:
    """A later build failed: the build DB's marts were never validated, so evaluate publishes nothing and says so."""
    wh = sample_copy
    db, serve = wh / "preflens.duckdb", wh / "serve" / "preflens.duckdb"
    before = _digest(serve)
    con = duckdb.connect(str(db))
    try:  # what a build that failed after the published one leaves in ops.builds
        con.execute(
            "insert into ops.builds (build_id, started_at, finished_at, status, failed_stage, message, published) "
            "values ('29990101T000000Z-failed', now() + interval 1 second, now() + interval 2 second, 'failed', "
            "'fit', 'dbt failed', false)"
        )
    finally:
        con.close()
    ev = preflens(wh, "evaluate", "--splits", "1", "--protocol", "in_domain", "--jobs", "1", *MECHANISMS[2:])
    assert ev.returncode == 0, ev.stdout[-2000:] + ev.stderr[-2000:]
    assert "not published" in ev.stdout and "`preflens build`" in ev.stdout
    assert _digest(serve) == before
    (n_marts,) = _scalars(db, "select count(*) from marts.fct_eval_results")
    assert n_marts > 0  # the results are in the build DB's marts all the same
