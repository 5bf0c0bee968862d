"""Quality suites on a small, consistent fixture build DB (real DuckDB files), then one violation at a time."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pandas as pd
import pytest

from pipelines.build.quality import SUITES, QualityThresholds, quote_ident, run_quality_checks
from tests.quality_db import N_OFFLINE_ANNOTATIONS, WEIRD, build_fixture_db, mutate


@pytest.fixture
def build_db(tmp_path: Path) -> Path:
    return build_fixture_db(tmp_path / "preflens.duckdb")


def test_fixture_is_what_the_tests_assume(build_db: Path) -> None:
    con = duckdb.connect(str(build_db), read_only=True)
    try:
        # decisive labels on annotated items: l1, l2, l5 (i1), l6 (i4), l7 (i5)
        assert con.execute("select count(*) from marts.fct_pair_features_comp").fetchall() == [(5,)]
        assert con.execute("select count(*) from marts.fct_pair_concepts").fetchall() == [(N_OFFLINE_ANNOTATIONS,)]
        cols = [r[0] for r in con.sql("describe marts.fct_pair_features_score").fetchall()]
        assert WEIRD in cols
    finally:
        con.close()


def test_all_suites_pass_on_consistent_fixture(build_db: Path) -> None:
    report = run_quality_checks(build_db)
    assert report.success, report.format_failures()
    assert {r.suite for r in report.results} == {s.name for s in SUITES}
    assert "all" in report.format_failures()
    # the concept with quotes and spaces was checked as a column, by its real name
    assert any(r.column == WEIRD and r.table == "marts.fct_pair_features_comp" for r in report.results)
    counts = [r for r in report.results if r.expectation_type == "expect_table_row_count_to_equal"]
    assert {(r.table, r.observed) for r in counts} == {
        ("marts.fct_pair_concepts", str(N_OFFLINE_ANNOTATIONS)),
        ("marts.fct_pair_features_comp", "5"),
        ("marts.fct_pair_features_score", "5"),
    }
    df = report.to_frame()
    assert isinstance(df, pd.DataFrame) and len(df) == len(report.results) and df["success"].all()
    con = duckdb.connect()
    con.register("q", df)
    assert con.execute("create table t as select * from q").execute("select count(*) from t").fetchall() == [(len(df),)]


def test_accepts_an_open_connection_and_explicit_annotator(build_db: Path) -> None:
    con = duckdb.connect(str(build_db), read_only=True)
    try:
        report = run_quality_checks(con, thresholds=QualityThresholds(annotator="offline", annotator_version="v1"))
    finally:
        con.close()
    assert report.success, report.format_failures()


Q = quote_ident(WEIRD)

VIOLATIONS: list[tuple[str, str, str, str | None, str]] = [
    # (id, mutation sql, table, column, expectation type)
    (
        "prob_a_1.3",
        "update marts.fct_predictions set prob_a = 1.3 where label_id = 'l1'",
        "marts.fct_predictions",
        "prob_a",
        "expect_column_values_to_be_between",
    ),
    (
        "comp_value_2_wide",
        f"update marts.fct_pair_features_comp set {Q} = 2 where label_id = 'l2'",
        "marts.fct_pair_features_comp",
        WEIRD,
        "expect_column_values_to_be_in_set",
    ),
    (
        "comp_value_2_long",
        "update marts.fct_pair_concepts set comp_value = 2 where item_id = 'i1' and concept = 'safety'",
        "marts.fct_pair_concepts",
        "comp_value",
        "expect_column_values_to_be_in_set",
    ),
    (
        "score_7_wide",
        f"update marts.fct_pair_features_score set {Q} = 7 where label_id = 'l2'",
        "marts.fct_pair_features_score",
        WEIRD,
        "expect_column_values_to_be_in_set",
    ),
    (
        "duplicate_prediction_key",
        "insert into marts.fct_predictions select * from marts.fct_predictions limit 1",
        "marts.fct_predictions",
        "fit_id, label_id, representation",
        "expect_compound_columns_to_be_unique",
    ),
    (
        "duplicate_feature_key",
        "insert into marts.fct_pair_features_comp select * from marts.fct_pair_features_comp limit 1",
        "marts.fct_pair_features_comp",
        "label_id",
        "expect_column_values_to_be_unique",
    ),
    (
        "null_effect_key",
        "update marts.fct_concept_effects set concept = null where domain = 'code' and concept = 'safety'",
        "marts.fct_concept_effects",
        "concept",
        "expect_column_values_to_not_be_null",
    ),
    (
        "null_feature_concept",
        f"update marts.fct_pair_features_comp set {Q} = null where label_id = 'l1'",
        "marts.fct_pair_features_comp",
        WEIRD,
        "expect_column_values_to_not_be_null",
    ),
    (
        "rowcount_pair_concepts",
        "delete from marts.fct_pair_concepts where item_id = 'i5' and concept = 'clarity'",
        "marts.fct_pair_concepts",
        None,
        "expect_table_row_count_to_equal",
    ),
    (
        "rowcount_features_vs_raw",
        "insert into raw.labels values ('l9', 'i2', 'human:crowd', 'human', 'a', null, null, 'f', 9, 'ing2', now())",
        "marts.fct_pair_features_score",
        None,
        "expect_table_row_count_to_equal",
    ),
    (
        "lift_out_of_bounds",
        "update marts.fct_concept_effects set global_lift_pct = 650 where concept = 'clarity'",
        "marts.fct_concept_effects",
        "global_lift_pct",
        "expect_column_values_to_be_between",
    ),
    (
        "accuracy_above_1",
        "update marts.fct_model_metrics set accuracy = 1.2",
        "marts.fct_model_metrics",
        "accuracy",
        "expect_column_values_to_be_between",
    ),
    (
        "n_pairs_zero",
        "update marts.fct_model_metrics set n_pairs = 0",
        "marts.fct_model_metrics",
        "n_pairs",
        "expect_column_values_to_be_between",
    ),
    (
        "winner_tie_in_predictions",
        "update marts.fct_predictions set actual_winner = 'tie' where label_id = 'l2'",
        "marts.fct_predictions",
        "actual_winner",
        "expect_column_values_to_be_in_set",
    ),
    ("missing_table", "drop table marts.fct_model_metrics", "marts.fct_model_metrics", None, "table_exists"),
    (
        "extra_concept_column",
        'alter table marts.fct_pair_features_comp add column "bogus" integer default 0',
        "marts.fct_pair_features_comp",
        None,
        "expect_table_columns_to_match_set",
    ),
    (
        "raw_tables_missing",
        "drop table raw.labels",
        "marts.fct_pair_features_comp",
        None,
        "expect_table_row_count_to_equal",
    ),
]


@pytest.mark.parametrize(
    ("sql", "table", "column", "etype"), [v[1:] for v in VIOLATIONS], ids=[v[0] for v in VIOLATIONS]
)
def test_violation_fails_with_a_message_naming_it(
    build_db: Path, sql: str, table: str, column: str | None, etype: str
) -> None:
    mutate(build_db, sql)
    report = run_quality_checks(build_db)
    assert not report.success
    hits = [f for f in report.failures() if f.table == table and f.expectation_type == etype and f.column == column]
    assert hits, report.format_failures()
    text = report.format_failures()
    assert table in text and etype in text and (column is None or column in text)
    assert hits[0].observed or hits[0].error  # says what was seen
    frame = report.to_frame()
    assert (~frame["success"]).sum() == len(report.failures())


def test_message_shows_observed_values(build_db: Path) -> None:
    mutate(build_db, "update marts.fct_predictions set prob_a = 1.3 where label_id = 'l1'")
    mutate(build_db, "delete from marts.fct_pair_concepts where item_id = 'i5' and concept = 'clarity'")
    text = run_quality_checks(build_db).format_failures()
    assert "1.3" in text
    assert f"observed {N_OFFLINE_ANNOTATIONS - 1}" in text and f"value={N_OFFLINE_ANNOTATIONS}" in text


def test_lift_bound_is_configurable(build_db: Path) -> None:
    mutate(build_db, "update marts.fct_concept_effects set global_lift_pct = 650 where concept = 'clarity'")
    assert not run_quality_checks(build_db).success
    report = run_quality_checks(build_db, thresholds=QualityThresholds(max_abs_lift_pct=700))
    assert report.success, report.format_failures()
    assert run_quality_checks(build_db, thresholds={"max_abs_lift_pct": None}).success  # a dict works too
    with pytest.raises(ValueError, match="bogus"):
        run_quality_checks(build_db, thresholds={"bogus": 1})


def test_local_lift_bounds(build_db: Path) -> None:
    mutate(build_db, "update marts.fct_local_explanations set local_lift_pct = 250 where concept = 'clarity'")
    assert run_quality_checks(build_db).success  # relative change in P(a): unbounded above by default
    report = run_quality_checks(build_db, thresholds={"max_local_lift_pct": 200.0})
    assert [f.column for f in report.failures()] == ["local_lift_pct"]
    mutate(build_db, "update marts.fct_local_explanations set local_lift_pct = -100.5 where concept = 'safety'")
    assert [f.column for f in run_quality_checks(build_db).failures()] == ["local_lift_pct"]


def test_report_frame_is_typed_for_duckdb_even_when_all_null(build_db: Path) -> None:
    df = run_quality_checks(build_db).to_frame()
    assert df["error"].isna().all()
    con = duckdb.connect()
    con.register("q", df)
    types = dict(con.execute("select column_name, column_type from (describe select * from q)").fetchall())
    assert types == {
        "suite": "VARCHAR",
        "table": "VARCHAR",
        "expectation_type": "VARCHAR",
        "column": "VARCHAR",
        "success": "BOOLEAN",
        "expected": "VARCHAR",
        "observed": "VARCHAR",
        "unexpected_count": "BIGINT",
        "unexpected_percent": "DOUBLE",
        "error": "VARCHAR",
        "blocking": "BOOLEAN",
    }


def test_optional_missing_table_is_skipped(build_db: Path) -> None:
    mutate(build_db, "drop table marts.fct_local_explanations")
    report = run_quality_checks(build_db, optional=["local_explanations"])
    assert report.success, report.format_failures()
    assert "local_explanations" in report.skipped
    assert report.skip_reasons["local_explanations"] == "table marts.fct_local_explanations does not exist"
    row = next(r for r in report.results if r.suite == "local_explanations")
    assert row.skipped and row.success and row.expectation_type == "suite_skipped"


def test_other_annotator_rows_in_mart_fail(build_db: Path) -> None:
    mutate(
        build_db,
        "insert into marts.fct_pair_concepts select item_id, concept, annotator, annotator_version, "
        "comp_value, score_a, score_b, score_diff, is_relevant "
        "from raw.annotations where annotator = 'llm'",
    )
    report = run_quality_checks(build_db)
    failed = {(f.column, f.expectation_type) for f in report.failures()}
    assert ("annotator", "expect_column_unique_value_count_to_be_between") in failed


def test_empty_mart_over_nonempty_raw_fails(build_db: Path) -> None:
    mutate(build_db, "delete from marts.fct_pair_concepts")
    report = run_quality_checks(build_db, only=["annotations"])
    assert [f.expectation_type for f in report.failures()] == ["expect_table_row_count_to_equal"]


def test_importing_quality_does_not_import_gx() -> None:
    import subprocess
    import sys

    code = "import sys, pipelines.build.quality, pipelines.build.publish; print('great_expectations' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
