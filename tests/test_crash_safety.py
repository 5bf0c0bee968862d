"""A build killed mid-run leaves the published copy untouched, and the next build recovers.

Real processes throughout: `preflens build` started as a console script and killed with SIGKILL, dbt and its fit
workers included, and the next build run the same way.
"""

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

from pipelines.build.context import INTERRUPTED
from tests.conftest import CHEAP_BUILD_ARGS, cheap_build_args, env_with, preflens, venv_bin

pytestmark = pytest.mark.slow


#: settings that make the killed and the recovering builds quick (the fit is not what these tests are about); every
#: stage still runs and every fit mart is built (conftest ``CHEAP_BUILD``)
QUICK = CHEAP_BUILD_ARGS


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


#: every mart that reads fit output, and the stores that keep every fit
FIT_MARTS = (
    "fct_concept_effects",
    "fct_model_metrics",
    "fct_fit_configs",
    "fct_predictions",
    "fct_local_explanations",
    "fct_fit_skips",
    "dim_latest_fit",
)
FIT_STORES = (
    "int_hmdr_fits",
    "int_fit_history_concept_effects",
    "int_fit_history_model_metrics",
    "int_fit_history_fit_configs",
)
SAFETY_TIMEOUT_S = 900  # only a guard against hanging forever, never a performance assertion


def _start_build(wh: Path, *args: str) -> subprocess.Popen[bytes]:
    """`preflens build` in its own session (the test can kill its whole process group)."""
    return subprocess.Popen(
        [venv_bin("preflens"), "build", *(args or QUICK)],
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


def _fit_ids(db: Path, schema: str, relations: tuple[str, ...]) -> dict[str, set[str]]:
    """The fit ids each relation of ``schema`` holds (relations the file does not have are left out)."""
    con = duckdb.connect(str(db), read_only=True)
    try:
        present = {
            r[0]
            for r in con.execute("select table_name from duckdb_tables() where schema_name = ?", [schema]).fetchall()
        }
        present |= {
            r[0] for r in con.execute("select view_name from duckdb_views() where schema_name = ?", [schema]).fetchall()
        }
        return {
            name: {r[0] for r in con.execute(f"select distinct fit_id from {schema}.{name}").fetchall()}
            for name in relations
            if name in present
        }
    finally:
        con.close()


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie, dead but not yet reaped by whoever adopted it, does not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _descendants(pid: int) -> set[int]:
    """Every running process below ``pid`` in the process tree."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError):
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    out, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in out and _alive(child):
                out.add(child)
                todo.append(child)
    return out


def _wait_gone(pids: set[int], timeout_s: float = SAFETY_TIMEOUT_S) -> float:
    """Wait until none of ``pids`` runs; returns the seconds it took (reported, never asserted)."""
    t0 = time.monotonic()
    while any(_alive(p) for p in pids):
        assert time.monotonic() - t0 < timeout_s, "safety timeout: processes of the killed build still run"
        time.sleep(0.05)
    return time.monotonic() - t0


def _dbt_log_shows(log: Path, offset: int, *needles: str) -> bool:
    """Whether a line of ``log`` after byte ``offset`` contains every needle."""
    if not log.exists():
        return False
    with log.open("rb") as fh:
        # dbt rotates dbt.log at 10 MB: a file shorter than the offset is a new one, read from its start
        fh.seek(offset if log.stat().st_size >= offset else 0)
        return any(all(n.encode() in line for n in needles) for line in fh)


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
    assert builds[1][2:] == ("dbt build", INTERRUPTED, False)


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
    # the killed build's fit was complete, but it was never published: no fit mart shows it, in the build file
    # or in the served copy; the history store keeps it apart
    for db, schema in ((wh / "preflens.duckdb", "marts"), (serve, "marts")):
        shown = _fit_ids(db, schema, FIT_MARTS)
        assert set(shown) == set(FIT_MARTS), f"{db}: fit marts missing: {set(FIT_MARTS) - set(shown)}"
        for name, ids in shown.items():
            assert killed[0] not in ids, f"{db}: {schema}.{name} shows the unpublished fit {killed[0]}"
        assert shown["fct_concept_effects"] == {first_build, builds[2][0]}
    kept = _fit_ids(wh / "preflens.duckdb", "intermediate", ("int_fit_history_concept_effects",))
    assert kept == {"int_fit_history_concept_effects": {first_build, killed[0], builds[2][0]}}


def test_kill_minus_9_of_preflens_during_the_fit_takes_dbt_with_it(sample_copy: Path) -> None:
    """SIGKILL to the `preflens` process alone, while dbt fits: dbt and its workers die too, so the dead build's
    fit never lands, the next build never meets a raw DuckDB lock error, and it records the dead one as
    interrupted in ``fit``."""
    wh = sample_copy
    db, serve = wh / "preflens.duckdb", wh / "serve" / "preflens.duckdb"
    before = _digest(serve)
    (first_build,) = [b[0] for b in _builds(db)]
    log = wh / "dbt_target" / "logs" / "dbt.log"
    offset = log.stat().st_size if log.exists() else 0

    # bootstrap resamples keep the fit running long enough to be caught in it (the build is killed there anyway)
    proc = _start_build(wh, *cheap_build_args(hmdr_n_bootstrap="200"))
    tree: set[int] = set()
    try:
        _wait_until(proc, lambda: _dbt_log_shows(log, offset, '"NodeExecuting"', '"node_name": "int_hmdr_fits"'))
        tree = _descendants(proc.pid)
        assert tree, "no child process of preflens while the fit runs"
        os.kill(proc.pid, signal.SIGKILL)  # preflens only: its process group is not signalled
        proc.wait()
        # the next build starts at once: it gets the lock, or exit 3 while the dead build's processes go away
        nxt = subprocess.Popen(
            [venv_bin("preflens"), "build", *QUICK],
            env=env_with(PREFLENS_WAREHOUSE=str(wh), COLUMNS="200"),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        seconds = _wait_gone(tree)
        out, err = nxt.communicate(timeout=SAFETY_TIMEOUT_S)
        at_once = subprocess.CompletedProcess(nxt.args, nxt.returncode, out, err)
    finally:
        for pid in tree:  # never leave an orphan behind, whatever happened
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
    print(f"processes of the killed build gone {seconds:.2f}s after the kill (measured, not asserted)")
    assert "IOException" not in at_once.stderr and "Could not set lock" not in at_once.stderr, at_once.stderr
    assert at_once.returncode in (0, 3), at_once.stderr[-2000:]
    if at_once.returncode == 3:
        assert "build already running" in at_once.stderr
        again = preflens(wh, "build", *QUICK)
        assert again.returncode == 0, again.stderr[-2000:]

    builds = _builds(db)
    assert [b[1] for b in builds] == ["success", "failed", "success"]
    killed = builds[1]
    assert killed[2:] == ("fit", INTERRUPTED, False)
    # the dead build's fit never landed, not even in the stores that keep every fit
    stores = _fit_ids(db, "intermediate", FIT_STORES)
    assert set(stores) == set(FIT_STORES)
    for name, ids in stores.items():
        assert killed[0] not in ids, f"intermediate.{name} holds the fit of the killed build"
    for name, ids in _fit_ids(serve, "marts", FIT_MARTS).items():
        assert killed[0] not in ids, name
    assert _digest(serve) != before and _builds(serve, "marts.fct_builds") == builds
    assert first_build in _fit_ids(serve, "marts", ("fct_concept_effects",))["fct_concept_effects"]
