"""The build database's schemas: inputs in ``raw``, the package's own records in ``ops``, and the move of an older
warehouse's operational tables from ``raw`` to ``ops`` (rows kept, idempotent)."""

from __future__ import annotations

from pathlib import Path

import duckdb

from pipelines.core.warehouse import OPS_DDL, RAW_DDL, connect


def _tables(con: duckdb.DuckDBPyConnection, schema: str) -> set[str]:
    return {
        r[0] for r in con.execute("select table_name from duckdb_tables() where schema_name = ?", [schema]).fetchall()
    }


def test_connect_creates_every_table_in_its_schema(tmp_path: Path) -> None:
    con = connect(tmp_path / "b.duckdb")
    assert _tables(con, "raw") == set(RAW_DDL)
    assert _tables(con, "ops") == set(OPS_DDL)
    assert {"builds", "quality_results", "eval_results", "app_guide_runs", "app_tiebreak_results"} <= set(OPS_DDL)
    assert not set(RAW_DDL) & set(OPS_DDL)


def test_legacy_raw_operational_tables_move_to_ops(tmp_path: Path) -> None:
    db = tmp_path / "old.duckdb"
    old = duckdb.connect(str(db))
    old.execute("create schema raw")
    # a build record and a quality result as an older release wrote them (quality_results without `blocking`)
    old.execute(
        "create table raw.builds (build_id varchar primary key, started_at timestamp not null, "
        "status varchar not null, published boolean)"
    )
    old.execute("insert into raw.builds values ('20260101T000000Z-aaaaaa', '2026-01-01', 'success', true)")
    old.execute(
        "create table raw.quality_results (build_id varchar not null, suite varchar not null, "
        '"table" varchar not null, expectation_type varchar not null, success boolean not null)'
    )
    old.execute(
        "insert into raw.quality_results values ('20260101T000000Z-aaaaaa', 'items', 'raw.items', "
        "'expect_table_row_count_to_be_between', true)"
    )
    old.close()
    for _ in range(2):  # idempotent
        con = connect(db)
        assert "builds" not in _tables(con, "raw") and "quality_results" not in _tables(con, "raw")
        assert con.execute("select build_id, status, published, failed_stage from ops.builds").fetchall() == [
            ("20260101T000000Z-aaaaaa", "success", True, None)
        ]
        assert con.execute("select suite, success, blocking from ops.quality_results").fetchall() == [
            ("items", True, True)
        ]
        con.close()
