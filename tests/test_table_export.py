"""`preflens export --format csv|parquet --table NAME` (pipelines/serve/table_export.py) on a hand-made served copy."""

from __future__ import annotations

import csv
from pathlib import Path

import duckdb
import pytest

from tests.conftest import preflens

HOSTILE = 'Length, "quoted"\nnewline; drop table x --'
ROWS = [
    ("fit1", "judge:a", "human:b", "__all__", HOSTILE, -21.0, -65.7, -3.0, True),
    ("fit1", "judge:a", "human:b", "__all__", "Paragraphs", -126.8, -192.2, 0.0, False),
]


@pytest.fixture
def served(tmp_path: Path) -> Path:
    wh = tmp_path / "warehouse"
    (wh / "serve").mkdir(parents=True)
    con = duckdb.connect(str(wh / "serve" / "preflens.duckdb"))
    con.execute("create schema marts")
    con.execute(
        "create table marts.fct_mechanism_contrasts (fit_id varchar, mechanism_a varchar, mechanism_b varchar, "
        "domain varchar, concept varchar, contrast_lift_pct double, contrast_lift_ci_low double, "
        "contrast_lift_ci_high double, distinguishable boolean)"
    )
    con.executemany("insert into marts.fct_mechanism_contrasts values (?, ?, ?, ?, ?, ?, ?, ?, ?)", ROWS)
    con.execute("create view marts.rpt_concept_drift as select fit_id, concept from marts.fct_mechanism_contrasts")
    con.close()
    return wh


def test_a_mart_exports_as_csv_with_every_value_intact(served: Path, tmp_path: Path) -> None:
    out = tmp_path / "out" / "contrasts.csv"
    proc = preflens(served, "export", str(out), "--format", "csv", "--table", "fct_mechanism_contrasts")
    assert proc.returncode == 0, proc.stderr
    assert "2 rows" in proc.stdout
    with out.open(newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["concept"] for r in rows] == [HOSTILE, "Paragraphs"]
    assert [float(r["contrast_lift_ci_low"]) for r in rows] == [-65.7, -192.2]
    assert [r["distinguishable"] for r in rows] == ["true", "false"]
    assert [p.name for p in out.parent.iterdir()] == ["contrasts.csv"]  # no temporary file left


def test_a_view_exports_as_parquet(served: Path, tmp_path: Path) -> None:
    out = tmp_path / "drift.parquet"
    proc = preflens(served, "export", str(out), "--format", "parquet", "--table", "rpt_concept_drift")
    assert proc.returncode == 0, proc.stderr
    got = duckdb.sql(f"select concept from read_parquet('{out}') order by concept").fetchall()
    assert sorted(r[0] for r in got) == sorted([HOSTILE, "Paragraphs"])


@pytest.mark.parametrize("table", ["fct_nothing", 'fct_mechanism_contrasts"; drop table marts.x; --'])
def test_an_unknown_table_is_refused_with_the_tables_there_are(served: Path, tmp_path: Path, table: str) -> None:
    out = tmp_path / "x.csv"
    proc = preflens(served, "export", str(out), "--format", "csv", "--table", table)
    assert proc.returncode == 1
    assert f"no table marts.{table}" in proc.stderr and "fct_mechanism_contrasts, rpt_concept_drift" in proc.stderr
    assert not out.exists()
    con = duckdb.connect(str(served / "serve" / "preflens.duckdb"), read_only=True)
    assert con.execute("select count(*) from marts.fct_mechanism_contrasts").fetchall() == [(2,)]


def test_a_table_format_needs_a_table(served: Path, tmp_path: Path) -> None:
    proc = preflens(served, "export", str(tmp_path / "x.csv"), "--format", "csv")
    assert proc.returncode == 1 and "--table NAME" in proc.stderr
