"""The build context: settling builds a dead process left running, stage bookkeeping, the connection rule."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from pipelines.build.context import INTERRUPTED, BuildContext, RunResult, StageFailed
from pipelines.core.config import Paths
from pipelines.core.warehouse import connect


def _rows(db: Path) -> dict[str, tuple]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        rows = con.execute(
            "select build_id, status, failed_stage, message, published, finished_at is not null from ops.builds"
        ).fetchall()
    finally:
        con.close()
    return {r[0]: r[1:] for r in rows}


def _insert_running(db: Path, build_id: str, stage: str) -> None:
    con = connect(db)
    try:
        con.execute(
            "insert into ops.builds (build_id, started_at, status, failed_stage) values (?, now(), 'running', ?)",
            [build_id, stage],
        )
    finally:
        con.close()


def _begin(paths: Paths, build_id: str = "new") -> None:
    """What a new build does first, under the lock: settle dead builds, record itself as running."""
    ctx = BuildContext(paths, RunResult(build_id=build_id))
    try:
        ctx.begin()
    finally:
        ctx.close()


@pytest.fixture
def paths(tmp_path: Path) -> Paths:
    paths = Paths(warehouse=tmp_path / "warehouse")
    con = connect(paths.build_db)
    try:
        con.execute("create schema marts")
        con.execute("create view marts.fct_builds as select * from ops.builds")
    finally:
        con.close()
    return paths


def test_begin_marks_a_dead_build_interrupted_in_the_stage_it_had_entered(paths: Paths) -> None:
    _insert_running(paths.build_db, "dead", "fit")
    _begin(paths)
    rows = _rows(paths.build_db)
    assert rows["dead"] == ("failed", "fit", INTERRUPTED, False, False)
    assert rows["new"][:2] == ("running", None)


def test_begin_takes_the_final_row_from_the_served_copy_when_the_swap_happened(paths: Paths) -> None:
    # a publisher killed after the swap but before its commit: the served copy shows the build published
    _insert_running(paths.build_db, "swapped", "publish")
    paths.serve_dir.mkdir(parents=True)
    served = duckdb.connect(str(paths.serve_db))
    try:
        served.execute(f"attach '{paths.build_db}' as build (read_only)")
        served.execute("create schema marts")
        served.execute("""create table marts.fct_builds as select * replace (
                              'success' as status, null::varchar as failed_stage, true as published,
                              now()::timestamp as finished_at)
                          from build.ops.builds where build_id = 'swapped'""")
    finally:
        served.close()
    _insert_running(paths.build_db, "lost", "publish")  # not in the served copy
    assert _rows(paths.build_db)["swapped"][0] == "running"

    _begin(paths)
    rows = _rows(paths.build_db)
    assert rows["swapped"] == ("success", None, None, True, True)
    assert rows["lost"] == ("failed", "publish", INTERRUPTED, False, False)


def test_begin_removes_stale_temporary_files_of_a_killed_publisher(paths: Paths) -> None:
    paths.exports_dir.mkdir(parents=True)
    stale = [
        paths.serve_dir / ".preflens.duckdb.tmp-999",
        paths.serve_dir / ".preflens.duckdb.tmp-999.wal",
        paths.exports_dir / "fct_builds.parquet.tmp-999",
    ]
    for p in stale:
        p.write_bytes(b"x")
    _begin(paths)
    assert not any(p.exists() for p in stale)


def test_stages_are_recorded_timed_and_name_their_failure(paths: Paths) -> None:
    result = RunResult(build_id="new")
    ctx = BuildContext(paths, result)
    try:
        ctx.begin()
        with ctx.stage("ingest"):
            assert _con_stage(ctx) == "ingest"
        with pytest.raises(StageFailed) as exc, ctx.stage("checks"):
            ctx.enter("publish")
            assert _con_stage(ctx) == "publish"
            raise OSError("disk full")
        assert (exc.value.stage, exc.value.reason) == ("publish", "disk full")
        ctx.fail(exc.value.stage, exc.value.reason)
    finally:
        ctx.close()
    assert set(result.stage_seconds) == {"ingest", "checks", "publish"}
    assert _rows(paths.build_db)["new"] == ("failed", "publish", "disk full", False, True)


def _con_stage(ctx: BuildContext) -> str:
    return ctx.con.execute("select failed_stage from ops.builds where build_id = ?", [ctx.build_id]).fetchall()[0][0]


def test_the_connection_is_closed_while_dbt_runs(paths: Paths) -> None:
    ctx = BuildContext(paths, RunResult(build_id="new"))
    try:
        ctx.con.execute("select 1")
        with ctx.dbt_running():
            # another process (dbt) can now open the build file for writing
            other = duckdb.connect(str(paths.build_db))
            other.close()
            with pytest.raises(RuntimeError, match="dbt"):
                _ = ctx.con
        assert ctx.con.execute("select 1").fetchall() == [(1,)]
    finally:
        ctx.close()


def test_checks_then_publish_with_the_build_s_vars_and_final_row(tmp_path: Path) -> None:
    from pipelines.build.run import _check_and_publish
    from tests.quality_db import build_fixture_db

    paths = Paths(warehouse=tmp_path / "warehouse")
    build_fixture_db(paths.build_db)  # its running build is 'fit1'; domains have 25 pairs and domain weights

    def checks(extra_vars: dict[str, str]) -> RunResult:
        result = RunResult(build_id="fit1", annotator="offline", annotator_version="v1")
        ctx = BuildContext(paths, result)
        try:
            with ctx.stage("checks"):
                _check_and_publish(ctx, None, extra_vars)
        finally:
            ctx.close()
        return result

    # a build whose dbt var asks 30 pairs per domain is checked against 30, not the default 20
    with pytest.raises(StageFailed, match="domain_weights_min_pairs") as exc:
        checks({"min_domain_pairs": "30"})
    assert exc.value.stage == "checks" and not paths.serve_db.exists()
    assert _rows(paths.build_db)["fit1"][:2] == ("running", "checks")

    result = checks({})
    assert result.published and set(result.stage_seconds) == {"checks", "publish"}
    final = ("success", None, None, True, True)
    assert _rows(paths.build_db)["fit1"] == final
    served = duckdb.connect(str(paths.serve_db), read_only=True)
    try:
        row = served.execute(
            "select status, failed_stage, message, published, finished_at is not null "
            "from marts.fct_builds where build_id = 'fit1'"
        ).fetchall()
    finally:
        served.close()
    assert row == [final]
    assert "fit1" in paths.quality_report.read_text()


def test_begin_under_the_lock_closes_ingest_and_llm_runs_a_dead_process_left_running(paths: Paths) -> None:
    """A build may be the first command after a killed ingest or LLM run: it closes their rows too (only under the
    build lock, as every build runs; without it a running row may be a live one's)."""
    from pipelines.core.lock import BuildLock

    con = connect(paths.build_db)
    try:
        con.execute(
            "insert into raw.ingest_runs (ingest_id, started_at, status, files) values ('ing-dead', now(), 'running', ['a.jsonl'])"
        )
        con.execute(
            "insert into raw.llm_runs (run_id, command, model, started_at, status) "
            "values ('llm-dead', 'annotate', 'm', now(), 'running')"
        )
    finally:
        con.close()
    _begin(paths, "unlocked")  # no lock held: a live process may own them, left alone
    con = duckdb.connect(str(paths.build_db), read_only=True)
    assert con.execute("select status from raw.ingest_runs").fetchall() == [("running",)]
    assert con.execute("select status from raw.llm_runs").fetchall() == [("running",)]
    con.close()
    with BuildLock(paths.lock_file):
        _begin(paths, "locked")
    con = duckdb.connect(str(paths.build_db), read_only=True)
    try:
        ingest_status, ingest_reason = con.execute("select status, reason from raw.ingest_runs").fetchone()
        llm_status, calls, message = con.execute("select status, calls, message from raw.llm_runs").fetchone()
    finally:
        con.close()
    assert ingest_status == "interrupted" and "build locked" in ingest_reason
    assert llm_status == "interrupted" and calls == 0 and "build locked" in message
