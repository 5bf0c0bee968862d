"""Publication: served compat-version copy, atomic swap under a reader in another process, Parquet, and the one
check-then-publish path (the dbt quality gates and the publication contract, recorded, then the copy)."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import duckdb
import pytest

from pipelines.build.publish import (
    PublishError,
    QualityGateFailed,
    check_and_publish,
    publish,
    remove_stale_temporaries,
)
from pipelines.build.quality import BuildFile
from pipelines.core.config import Paths
from tests.conftest import SampleRun
from tests.quality_db import WEIRD, build_fixture_db, mutate

#: every relation of schema marts in the fixture: the dbt models, and a view of its own (rpt_accuracy)
MARTS = {
    "dim_annotators",
    "dim_concepts",
    "dim_domains",
    "dim_items",
    "dim_latest_fit",
    "dim_mechanisms",
    "fct_builds",
    "fct_concept_effects",
    "fct_eval_results",
    "fct_fit_configs",
    "fct_fit_skips",
    "fct_local_explanations",
    "fct_mechanism_contrasts",
    "fct_model_metrics",
    "fct_pair_concepts",
    "fct_pair_features_comp",
    "fct_pair_features_measure",
    "fct_pair_features_score",
    "fct_predictions",
    "fct_quality_results",
    "fct_score_agreement",
    "fct_scored_explanations",
    "fct_scored_pairs",
    "rpt_accuracy",
    "rpt_annotation_quality",
    "rpt_concept_drift",
    "rpt_domain_specificity",
    "rpt_mechanism_agreement",
    "rpt_mechanism_contrast",
    "rpt_model_baselines",
    "rpt_model_comparison",
    "rpt_top_concepts",
}
#: a gate violation: domain weights on 5 pairs (the fixture's minimum is the dbt var, 20)
SMALL_DOMAIN = "update marts.fct_concept_effects set n_pairs = 5 where domain = 'code'"

READER = textwrap.dedent(
    """
    import json, sys, duckdb
    con = duckdb.connect(sys.argv[1], read_only=True)
    def snap():
        rows = con.execute(
            "select count(*), sum(n_pairs)::bigint, (select count(*) from marts.fct_predictions) "
            "from marts.fct_model_metrics"
        ).fetchall()
        return list(rows[0])
    print(json.dumps(snap()), flush=True)
    sys.stdin.readline()          # hold the file open until told to go on
    print(json.dumps(snap()), flush=True)
    con.close()
    """
)


@pytest.fixture
def paths(tmp_path: Path) -> tuple[Path, Path, Path]:
    build = build_fixture_db(tmp_path / "warehouse" / "preflens.duckdb")
    serve = tmp_path / "warehouse" / "serve" / "preflens.duckdb"
    exports = tmp_path / "warehouse" / "serve" / "parquet"
    return build, serve, exports


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _snapshot(serve: Path, exports: Path) -> dict[str, str]:
    out = {"db": _digest(serve)}
    out.update({p.name: _digest(p) for p in sorted(exports.iterdir())})
    return out


def _read_only_query(path: Path, sql: str) -> list[tuple]:
    """Query the served copy from a fresh connection (closed again: DuckDB caches open instances)."""
    con = duckdb.connect(str(path), read_only=True)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def _leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.rglob("*") if ".tmp-" in p.name)


def test_publish_materialises_marts_as_tables_in_compat_storage(paths: tuple[Path, Path, Path]) -> None:
    build, serve, exports = paths
    result = publish(build, serve, exports)

    assert result.serve_db == serve.resolve()
    assert {t.name for t in result.tables} == MARTS
    assert result.storage_tag == "v1.4.0+"
    kinds = {t.name: t.source_kind for t in result.tables}
    assert kinds["rpt_accuracy"] == "view" and kinds["fct_predictions"] == "table"

    con = duckdb.connect(str(serve), read_only=True)
    try:
        rel = con.execute(
            "select table_name, table_type from information_schema.tables where table_schema = 'marts'"
        ).fetchall()
        assert {r[0] for r in rel} == MARTS
        assert {r[1] for r in rel} == {"BASE TABLE"}  # views were materialised
        assert con.execute(
            "select tags from duckdb_databases() where not internal and path is not null"
        ).fetchall() == [({"storage_version": "v1.4.0+"},)]
        for t in result.tables:
            assert con.execute(f'select count(*) from marts."{t.name}"').fetchall() == [(t.rows,)]
        cols = [r[0] for r in con.execute("describe marts.fct_pair_features_comp").fetchall()]
        assert WEIRD in cols
        assert not con.execute(
            "select count(*) from information_schema.schemata where schema_name in ('raw', 'ops')"
        ).fetchall()[0][0]
    finally:
        con.close()
    # file header: storage version number DuckDB 1.x accepts (1.5 reads 64..68; 2.0's own format is beyond)
    header = serve.read_bytes()[:20]
    assert header[8:12] == b"DUCK"
    assert 64 <= int.from_bytes(header[12:20], "little") <= 68
    assert _leftovers(serve.parent) == []


def test_publish_defaults_to_latest_storage_when_asked(paths: tuple[Path, Path, Path]) -> None:
    build, serve, exports = paths
    result = publish(build, serve, exports, storage_version=None)
    assert result.storage_tag is not None and not result.storage_tag.startswith("v1.")
    with pytest.raises(ValueError):
        publish(build, serve, exports, storage_version="1.4'; drop table x; --")


@pytest.mark.skipif(
    not os.environ.get("PREFLENS_DUCKDB1_PYTHON"),
    reason="set PREFLENS_DUCKDB1_PYTHON to a python with duckdb 1.x installed",
)
def test_duckdb_1x_client_reads_served_copy(paths: tuple[Path, Path, Path]) -> None:
    build, serve, exports = paths
    result = publish(build, serve, exports)
    code = (
        "import sys, duckdb; c = duckdb.connect(sys.argv[1], read_only=True); "
        "print(duckdb.__version__, c.execute('select count(*) from marts.fct_predictions').fetchall()[0][0])"
    )
    out = subprocess.run(
        [os.environ["PREFLENS_DUCKDB1_PYTHON"], "-c", code, str(serve)], capture_output=True, text=True, check=True
    )
    version, rows = out.stdout.split()
    assert version.startswith("1.") and int(rows) == result.row_counts["marts.fct_predictions"]


def test_parquet_exports_match_row_counts(paths: tuple[Path, Path, Path]) -> None:
    build, serve, exports = paths
    result = publish(build, serve, exports)
    for t in result.tables:
        assert t.parquet_path == exports.resolve() / f"{t.name}.parquet" and t.parquet_path.exists()
        mem = duckdb.connect()
        assert mem.execute("select count(*) from read_parquet(?)", [str(t.parquet_path)]).fetchall() == [(t.rows,)]
        mem.close()
    manifest = json.loads((exports / "_manifest.json").read_text())
    assert {k: v["rows"] for k, v in manifest["tables"].items()} == result.row_counts
    # a table that disappears from the build loses its export on the next publish; foreign files stay
    (exports / "notes.txt").write_text("mine")
    mutate(build, "drop view marts.rpt_accuracy")
    publish(build, serve, exports)
    assert not (exports / "rpt_accuracy.parquet").exists()
    assert (exports / "notes.txt").exists()
    assert _leftovers(exports) == []


def test_reader_in_another_process_does_not_block_and_keeps_old_snapshot(
    paths: tuple[Path, Path, Path],
) -> None:
    build, serve, exports = paths
    publish(build, serve, exports)
    before = _read_only_query(serve, "select count(*), sum(n_pairs)::bigint from marts.fct_model_metrics")[0]

    reader = subprocess.Popen(
        [sys.executable, "-c", READER, str(serve)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        first = reader.stdout.readline()  # type: ignore[union-attr]
        assert first, reader.stderr.read()  # type: ignore[union-attr]
        old = json.loads(first)
        assert old[:2] == list(before)

        # new build content, republished while the reader holds the served file open read-only
        mutate(
            build,
            """
            insert into marts.fct_model_metrics
            values ('fit2', 'judge:gpt-4', 'judge', 'comp', 'hmdr', 'code', 'cv', 3, 0.99, 0.4)
        """,
        )
        result = publish(build, serve, exports)
        assert result.row_counts["marts.fct_model_metrics"] == before[0] + 1

        out, err = reader.communicate("go\n", timeout=60)
        assert reader.returncode == 0, err
        assert json.loads(out.strip()) == old  # same, consistent old snapshot
    finally:
        if reader.poll() is None:
            reader.kill()
            reader.wait()

    # a new reader (new process) sees the new data
    code = (
        "import sys, duckdb; c = duckdb.connect(sys.argv[1], read_only=True); "
        "print(c.execute('select count(*), sum(n_pairs)::bigint from marts.fct_model_metrics').fetchall()[0])"
    )
    fresh = subprocess.run([sys.executable, "-c", code, str(serve)], capture_output=True, text=True, check=True)
    assert fresh.stdout.strip() == str((before[0] + 1, before[1] + 3))
    assert _leftovers(serve.parent) == []


def test_failing_gate_blocks_publication(paths: tuple[Path, Path, Path]) -> None:
    build, serve, exports = paths
    report, result = check_and_publish(build, serve, exports)
    assert report.success and result is not None
    snap = _snapshot(serve, exports)

    mutate(build, SMALL_DOMAIN)
    report, result = check_and_publish(build, serve, exports)
    assert not report.success and result is None
    assert [f.suite for f in report.failures()] == ["domain_weights_min_pairs"]
    assert _snapshot(serve, exports) == snap  # served copy and exports byte-for-byte unchanged

    with pytest.raises(QualityGateFailed, match="domain_weights_min_pairs") as exc:
        check_and_publish(build, serve, exports, raise_on_failure=True)
    assert not exc.value.report.success
    assert _snapshot(serve, exports) == snap


def test_gate_failure_before_first_publish_creates_nothing(paths: tuple[Path, Path, Path]) -> None:
    build, serve, exports = paths
    mutate(build, "drop table marts.fct_model_metrics")
    report, result = check_and_publish(build, serve, exports)
    assert result is None and not serve.exists()
    # the publication contract misses it (and the view over it cannot be read), the gate on that view errors
    assert ("fct_model_metrics", "table_exists") in {(f.suite, f.expectation_type) for f in report.failures()}
    assert "fct_model_metrics" in report.format_failures()


@pytest.mark.parametrize("read_only", [False, True], ids=["rw", "ro"])
def test_publish_from_open_connection(paths: tuple[Path, Path, Path], read_only: bool) -> None:
    build, serve, exports = paths
    con = duckdb.connect(str(build), read_only=read_only)
    try:
        result = publish(con, serve, exports)
        con.execute("select 1").fetchall()  # connection still usable
        expected = {t: con.execute(f'select count(*) from marts."{t}"').fetchall()[0][0] for t in MARTS}
        # the checks run dbt on the file, which this connection locks: refused, nothing published again
        with pytest.raises(TypeError, match="BuildHandle"):
            check_and_publish(con, serve, exports)  # type: ignore[arg-type]
    finally:
        con.close()
    assert result.row_counts == {f"marts.{t}": n for t, n in expected.items()}
    assert result.storage_tag == "v1.4.0+"
    assert _read_only_query(serve, "select count(*) from marts.rpt_accuracy") == [(expected["rpt_accuracy"],)]


def test_missing_schema_is_an_error_and_swaps_nothing(paths: tuple[Path, Path, Path]) -> None:
    build, serve, exports = paths
    publish(build, serve, exports)
    snap = _snapshot(serve, exports)
    with pytest.raises(PublishError, match="nope"):
        publish(build, serve, exports, schemas=("marts", "nope"))
    assert _snapshot(serve, exports) == snap
    with pytest.raises(PublishError):
        publish(build, build, exports)


# ------------------------------------------------------------------ the one check-then-publish path of `preflens run`


def _finish_build(con: duckdb.DuckDBPyConnection) -> None:
    """A publication record: the running fixture build ends as published."""
    con.execute(
        "update ops.builds set status = 'success', published = true, finished_at = now() where build_id = 'fit1'"
    )


def _build_row(db: Path, build_id: str = "fit1", table: str = "ops.builds") -> tuple:
    return _read_only_query(db, f"select status, published from {table} where build_id = '{build_id}'")[0]


def test_check_and_publish_records_results_then_publishes_with_the_record(
    paths: tuple[Path, Path, Path],
    tmp_path: Path,
) -> None:
    build, serve, exports = paths
    page = tmp_path / "quality" / "index.html"
    seen: list[bool] = []
    report, result = check_and_publish(
        build,
        serve,
        exports,
        build_id="fit1",
        report_page=page,
        on_checked=lambda r: seen.append(r.success),
        record=_finish_build,
    )
    assert report.success and result is not None and seen == [True]
    # the results and the page are recorded under the build id
    n_rows = _read_only_query(build, "select count(*) from ops.quality_results where build_id = 'fit1'")[0][0]
    assert n_rows == len(report.results)
    assert "fit1" in page.read_text()
    # the served copy shows the record (it was written in the transaction the copy read from), and so does
    # the build DB, now that the swap happened
    assert _build_row(serve, table="marts.fct_builds") == ("success", True)
    assert _build_row(build) == ("success", True)
    assert _leftovers(serve.parent) == []


def test_a_failed_gate_records_results_and_never_runs_the_record(paths: tuple[Path, Path, Path]) -> None:
    build, serve, exports = paths
    mutate(build, SMALL_DOMAIN)
    records: list[str] = []
    report, result = check_and_publish(
        build, serve, exports, build_id="fit1", record=lambda con: records.append("called")
    )
    assert not report.success and result is None and records == [] and not serve.exists()
    failed = _read_only_query(
        build, "select count(*) from ops.quality_results where build_id = 'fit1' and not success"
    )[0][0]
    assert failed == len(report.failures()) > 0
    assert _build_row(build) == ("running", None)


def test_on_checked_can_stop_publication(paths: tuple[Path, Path, Path]) -> None:
    build, serve, exports = paths

    def stop(_report: object) -> None:
        raise RuntimeError("stopped by the caller")

    with pytest.raises(RuntimeError, match="stopped"):
        check_and_publish(build, serve, exports, on_checked=stop, record=_finish_build)
    assert not serve.exists() and _build_row(build) == ("running", None)


def test_a_failed_publication_rolls_the_record_back(paths: tuple[Path, Path, Path]) -> None:
    build, serve, exports = paths
    publish(build, serve, exports)
    snap = _snapshot(serve, exports)

    def record_then_fail(con: duckdb.DuckDBPyConnection) -> None:
        _finish_build(con)
        raise PublishError("the copy failed")

    with pytest.raises(PublishError, match="the copy failed"):
        check_and_publish(build, serve, exports, record=record_then_fail)
    # the build DB never says published, the served copy and exports are untouched, no temporary file stays
    assert _build_row(build) == ("running", None)
    assert _snapshot(serve, exports) == snap
    assert _leftovers(serve.parent) == []


def test_record_through_a_build_handle_that_stays_open(paths: tuple[Path, Path, Path]) -> None:
    """The build context's way: its connection is closed while dbt runs, then the checks, records and copy use it."""
    build, serve, exports = paths
    handle = BuildFile(Paths(warehouse=build.parent), read_only=False)
    try:
        report, result = check_and_publish(handle, serve, exports, build_id="fit1", record=_finish_build)
        assert report.success and result is not None
        assert handle.con.execute("select status, published from ops.builds where build_id = 'fit1'").fetchall() == [
            ("success", True)
        ]
        n_recorded = handle.con.execute("select count(*) from ops.quality_results where build_id = 'fit1'").fetchall()
        assert n_recorded == [(len(report.results),)]
    finally:
        handle.close()
    assert _build_row(serve, table="marts.fct_builds") == ("success", True)
    assert result.storage_tag == "v1.4.0+"


def test_remove_stale_temporaries_removes_only_what_a_killed_publisher_left(paths: tuple[Path, Path, Path]) -> None:
    build, serve, exports = paths
    publish(build, serve, exports)
    stale = [
        serve.with_name(f".{serve.name}.tmp-4242"),
        serve.with_name(f".{serve.name}.tmp-4242.wal"),
        exports / "fct_builds.parquet.tmp-4242",
        exports / "_manifest.json.tmp-4242",
    ]
    for p in stale:
        p.write_bytes(b"left by a killed publisher")
    (exports / "notes.tmp-4242.txt").write_text("not ours")
    snap = {p.name: _digest(p) for p in (serve, *sorted(exports.glob("*.parquet")))}

    removed = remove_stale_temporaries(serve, exports)

    assert sorted(removed) == sorted(stale) and not any(p.exists() for p in stale)
    assert (exports / "notes.tmp-4242.txt").exists()
    assert {p.name: _digest(p) for p in (serve, *sorted(exports.glob("*.parquet")))} == snap


# ------------------------------------------------------------------ a real build: every check recorded, audit kept home


def test_a_real_build_records_every_check_and_does_not_publish_the_audit_schema(sample_run: SampleRun) -> None:
    paths = sample_run.paths
    con = duckdb.connect(str(paths.build_db), read_only=True)
    try:
        (build_id,) = con.execute(
            "select build_id from ops.builds where published order by started_at desc limit 1"
        ).fetchone()
        rows = con.execute(
            """select suite, expectation_type, success, blocking, observed from ops.quality_results
               where build_id = ?""",
            [build_id],
        ).fetchall()
        audit = {
            r[0] for r in con.execute("select table_name from duckdb_tables() where schema_name = 'audit'").fetchall()
        }
    finally:
        con.close()
    kinds = {(suite, check) for suite, check, *_ in rows}
    # the invariants dbt build tested (both dbt stages), the gates, the publication contract
    assert ("fct_pair_concepts", "accepted_values") in kinds  # prefit
    assert ("fct_concept_effects", "expression_is_true") in kinds  # fit
    assert ("fct_pair_features_match_decisive_labels", "fct_pair_features_match_decisive_labels") in kinds
    assert ("domain_weights_min_pairs", "domain_weights_min_pairs") in kinds
    assert ("fct_builds", "expect_table_row_count_to_be_between") in kinds
    assert all(success or not blocking for _, _, success, blocking, _ in rows)  # it was published
    # each dbt test's failing rows are in the build file's audit schema, which is not published
    stored = {observed.rsplit(".", 1)[-1] for _, check, _, _, observed in rows if " in audit." in observed}
    assert len(stored) > 100 and stored <= audit
    assert _read_only_query(
        paths.serve_db, "select count(*) from information_schema.tables where table_schema = 'audit'"
    ) == [(0,)]
    assert not list(paths.exports_dir.glob("not_null_*.parquet"))
    page = paths.quality_report.read_text(encoding="utf-8")
    assert build_id in page and "dbt test" in page and "Great Expectations" in page
