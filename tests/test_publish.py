"""Publication: served compat-version copy, atomic swap under a reader in another process, Parquet, gate."""

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
)

try:
    from test_quality import WEIRD, build_fixture_db, mutate
except ImportError:  # pragma: no cover - if tests/ becomes a package
    from tests.test_quality import WEIRD, build_fixture_db, mutate

MARTS = {
    "fct_pair_concepts",
    "fct_pair_features_comp",
    "fct_pair_features_score",
    "fct_concept_effects",
    "fct_predictions",
    "fct_model_metrics",
    "fct_local_explanations",
    "rpt_accuracy",
    "dim_concepts",
    "rpt_top_concepts",
    "fct_builds",
}

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
        assert con.execute("select tags from duckdb_databases() where not internal and path is not null"
                           ).fetchall() == [({"storage_version": "v1.4.0+"},)]
        for t in result.tables:
            assert con.execute(f'select count(*) from marts."{t.name}"').fetchall() == [(t.rows,)]
        cols = [r[0] for r in con.execute("describe marts.fct_pair_features_comp").fetchall()]
        assert WEIRD in cols
        assert not con.execute("select count(*) from information_schema.schemata where schema_name = 'raw'"
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


@pytest.mark.skipif(not os.environ.get("PREFLENS_DUCKDB1_PYTHON"),
                    reason="set PREFLENS_DUCKDB1_PYTHON to a python with duckdb 1.x installed")
def test_duckdb_1x_client_reads_served_copy(paths: tuple[Path, Path, Path]) -> None:
    build, serve, exports = paths
    result = publish(build, serve, exports)
    code = (
        "import sys, duckdb; c = duckdb.connect(sys.argv[1], read_only=True); "
        "print(duckdb.__version__, c.execute('select count(*) from marts.fct_predictions').fetchall()[0][0])"
    )
    out = subprocess.run([os.environ["PREFLENS_DUCKDB1_PYTHON"], "-c", code, str(serve)],
                         capture_output=True, text=True, check=True)
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

    reader = subprocess.Popen([sys.executable, "-c", READER, str(serve)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        first = reader.stdout.readline()  # type: ignore[union-attr]
        assert first, reader.stderr.read()  # type: ignore[union-attr]
        old = json.loads(first)
        assert old[:2] == list(before)

        # new build content, republished while the reader holds the served file open read-only
        mutate(build, """
            insert into marts.fct_model_metrics
            values ('fit2', 'judge:gpt-4', 'judge', 'comp', 'hmdr', 'code', 'cv', 3, 0.99, 0.4)
        """)
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
    code = ("import sys, duckdb; c = duckdb.connect(sys.argv[1], read_only=True); "
            "print(c.execute('select count(*), sum(n_pairs)::bigint from marts.fct_model_metrics').fetchall()[0])")
    fresh = subprocess.run([sys.executable, "-c", code, str(serve)], capture_output=True, text=True, check=True)
    assert fresh.stdout.strip() == str((before[0] + 1, before[1] + 3))
    assert _leftovers(serve.parent) == []


def test_failing_gate_blocks_publication(paths: tuple[Path, Path, Path]) -> None:
    build, serve, exports = paths
    report, result = check_and_publish(build, serve, exports)
    assert report.success and result is not None
    snap = _snapshot(serve, exports)

    mutate(build, "update marts.fct_predictions set prob_a = 1.3 where label_id = 'l1'")
    report, result = check_and_publish(build, serve, exports)
    assert not report.success and result is None
    assert any(f.column == "prob_a" for f in report.failures())
    assert _snapshot(serve, exports) == snap  # served copy and exports byte-for-byte unchanged

    with pytest.raises(QualityGateFailed, match="prob_a") as exc:
        check_and_publish(build, serve, exports, raise_on_failure=True)
    assert not exc.value.report.success
    assert _snapshot(serve, exports) == snap


def test_gate_failure_before_first_publish_creates_nothing(paths: tuple[Path, Path, Path]) -> None:
    build, serve, exports = paths
    mutate(build, "drop table marts.fct_model_metrics")
    report, result = check_and_publish(build, serve, exports)
    assert result is None and not serve.exists()
    assert "fct_model_metrics" in report.format_failures()


@pytest.mark.parametrize("read_only", [False, True], ids=["rw", "ro"])
def test_publish_from_open_connection(paths: tuple[Path, Path, Path], read_only: bool) -> None:
    build, serve, exports = paths
    con = duckdb.connect(str(build), read_only=read_only)
    try:
        report, result = check_and_publish(con, serve, exports)
        assert report.success and result is not None
        con.execute("select 1").fetchall()  # connection still usable
        expected = {t: con.execute(f'select count(*) from marts."{t}"').fetchall()[0][0] for t in MARTS}
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
