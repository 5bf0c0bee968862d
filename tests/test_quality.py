"""The row and column invariants are dbt tests: each one, run by real dbt on the fixture build DB (a real DuckDB
file), passes on the consistent fixture and fails on data that breaks it, with its failing rows in schema audit and
its result recorded in ops.quality_results. Then the publication contract (Great Expectations) on the same file.

dbt runs are slow, so the violations are applied together to one copy of the fixture (each breaks a different
rule) and checked against one dbt run; a last test proves no other test failed, so no violation hides another.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pandas as pd
import pytest

from pipelines.build.dbt_runner import DbtError, run_dbt
from pipelines.build.quality import (
    QualityReport,
    QualityResult,
    check_contract,
    published_relations,
    quote_ident,
    recorded_dbt_tests,
)
from pipelines.core.config import Paths
from tests.quality_db import N_OFFLINE_ANNOTATIONS, WEIRD, audit_rows, build_fixture_db, dbt_test, mutate

REPO = Path(__file__).resolve().parent.parent
#: every data test of the published marts and every singular test that is not a gate
INVARIANTS = ("path:models/marts", "path:data-tests")
Q = quote_ident(WEIRD)


def _new_db(tmp_path_factory: pytest.TempPathFactory, name: str) -> Path:
    return build_fixture_db(tmp_path_factory.mktemp(name) / "warehouse" / "preflens.duckdb")


@pytest.fixture(scope="module")
def clean(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[QualityResult]]:
    db = _new_db(tmp_path_factory, "clean")
    return db, dbt_test(db, *INVARIANTS)


def test_fixture_is_what_the_tests_assume(clean: tuple[Path, list[QualityResult]]) -> None:
    db, _ = clean
    con = duckdb.connect(str(db), read_only=True)
    try:
        # decisive labels on annotated items: l1, l2, l5 (i1), l6 (i4), l7 (i5)
        assert con.execute("select count(*) from marts.fct_pair_features_comp").fetchall() == [(5,)]
        assert con.execute("select count(*) from marts.fct_pair_concepts").fetchall() == [(N_OFFLINE_ANNOTATIONS,)]
        cols = [r[0] for r in con.sql("describe marts.fct_pair_features_score").fetchall()]
        assert WEIRD in cols
    finally:
        con.close()


def test_every_invariant_passes_on_the_consistent_fixture(clean: tuple[Path, list[QualityResult]]) -> None:
    db, results = clean
    failed = [r.describe() for r in results if not r.success]
    assert not failed, failed
    assert all(r.engine == "dbt" and r.unexpected_count == 0 for r in results)
    # severity error blocks; the one warn-severity invariant (duplicate quality rows) is recorded only
    assert [(r.suite, r.expectation_type) for r in results if not r.blocking] == [
        ("fct_quality_results", "unique_combination")
    ]
    assert "severity warn" in next(r for r in results if not r.blocking).expected
    # the rules that moved here from the Great Expectations suites are all there, the gates are not
    kinds = {(r.suite, r.expectation_type) for r in results}
    assert {
        ("fct_pair_features_comp", "concept_values"),
        ("fct_pair_features_comp", "concept_columns_match"),
        ("fct_pair_features_score", "concept_values"),
        ("fct_pair_features_measure", "concept_values"),
        ("fct_pair_concepts_match_raw_annotations", "fct_pair_concepts_match_raw_annotations"),
        ("fct_pair_concepts_of_the_active_annotator", "fct_pair_concepts_of_the_active_annotator"),
        ("fct_pair_features_match_decisive_labels", "fct_pair_features_match_decisive_labels"),
        ("dim_concepts", "matches_regex"),
        ("fct_builds", "expression_is_true"),
    } <= kinds
    assert not {r.suite for r in results} & {"domain_weights_min_pairs", "swap_consistency", "top_concepts_ranks"}
    # each test kept its (empty) failing rows where the result says
    con = duckdb.connect(str(db), read_only=True)
    try:
        audit = {
            r[0] for r in con.execute("select table_name from duckdb_tables() where schema_name = 'audit'").fetchall()
        }
    finally:
        con.close()
    assert {r.observed.rsplit(".", 1)[-1] for r in results} <= audit


# ------------------------------------------------------------------ every invariant broken, one at a time

BUILD_SELECT = (
    "build_id, status, failed_stage, message, quality_success, published, n_items, n_labels, n_annotations, "
    "annotator, annotator_version, package_version, dbt_version, started_at, finished_at, "
    "date_diff('second', started_at, finished_at) as duration_seconds"
)

#: (id, mutation, the failing test as (suite, check, column), what its failing rows hold (or None))
VIOLATIONS: list[tuple[str, str, tuple[str, str, str | None], tuple | None]] = [
    (
        "prob_a_1.3",
        "update marts.fct_predictions set prob_a = 1.3 where label_id = 'l1' and representation = 'comp'",
        ("fct_predictions", "expression_is_true", "prob_a"),
        None,
    ),
    (
        "comp_value_2_wide",
        f"update marts.fct_pair_features_comp set {Q} = 2 where label_id = 'l2'",
        ("fct_pair_features_comp", "concept_values", None),
        ("l2", WEIRD, 2.0),
    ),
    (
        "null_feature_concept",
        f"update marts.fct_pair_features_comp set {Q} = null where label_id = 'l1'",
        ("fct_pair_features_comp", "concept_values", None),
        ("l1", WEIRD, None),
    ),
    (
        "comp_value_2_long",
        "update marts.fct_pair_concepts set comp_value = 2 where item_id = 'i1' and concept = 'safety'",
        ("fct_pair_concepts", "accepted_values", "comp_value"),
        (2, 1),
    ),
    (
        "score_7_wide",
        f"update marts.fct_pair_features_score set {Q} = 7 where label_id = 'l2'",
        ("fct_pair_features_score", "concept_values", None),
        ("l2", WEIRD, 7.0),
    ),
    (
        "measure_beyond_its_bound",
        f"update marts.fct_pair_features_measure set {Q} = 1500 where label_id = 'l2'",
        ("fct_pair_features_measure", "concept_values", None),
        ("l2", WEIRD, 1500.0),
    ),
    (
        "duplicate_prediction_key",
        "insert into marts.fct_predictions select * from marts.fct_predictions where label_id = 'l5' limit 1",
        ("fct_predictions", "unique_combination", None),
        None,
    ),
    (
        "duplicate_feature_key",  # relabelled, not inserted: the row count stays right
        "update marts.fct_pair_features_comp set label_id = 'l7' where label_id = 'l6'",
        ("fct_pair_features_comp", "unique", "label_id"),
        ("l7", 2),
    ),
    (
        "null_effect_key",
        "update marts.fct_concept_effects set concept = null where domain = 'code' and concept = 'safety'",
        ("fct_concept_effects", "not_null", "concept"),
        None,
    ),
    (
        "null_effect_key_reaches_the_report",  # rpt_top_concepts reads fct_concept_effects
        "",
        ("rpt_top_concepts", "not_null", "concept"),
        None,
    ),
    (
        "rowcount_pair_concepts",
        "delete from marts.fct_pair_concepts where item_id = 'i5' and concept = 'clarity'",
        ("fct_pair_concepts_match_raw_annotations", "fct_pair_concepts_match_raw_annotations", None),
        (N_OFFLINE_ANNOTATIONS - 1 + 2, N_OFFLINE_ANNOTATIONS),  # the two rows of another annotator: below
    ),
    (
        "other_annotator_rows_in_mart",
        "insert into marts.fct_pair_concepts select item_id, concept, annotator, annotator_version, comp_value, "
        "score_a, score_b, score_diff, is_relevant from raw.annotations where annotator = 'llm'",
        ("fct_pair_concepts_of_the_active_annotator", "fct_pair_concepts_of_the_active_annotator", None),
        ("i1", "clarity", "llm", "v2"),
    ),
    (
        "rowcount_features_vs_raw",
        "insert into raw.labels values ('l9', 'i2', 'human:crowd', 'human', 'a', null, null, 'f', 9, 'ing2', now())",
        ("fct_pair_features_match_decisive_labels", "fct_pair_features_match_decisive_labels", None),
        ("fct_pair_features_comp", 5, 6),
    ),
    (
        "lift_out_of_bounds",
        "update marts.fct_concept_effects set global_lift_pct = 650 where concept = 'clarity'",
        ("fct_concept_effects", "expression_is_true", "global_lift_pct"),
        None,
    ),
    (
        "accuracy_above_1",
        "update marts.fct_model_metrics set accuracy = 1.2 where domain = 'code'",
        ("fct_model_metrics", "expression_is_true", "accuracy"),
        None,
    ),
    (
        "n_pairs_zero",
        "update marts.fct_model_metrics set n_pairs = 0 where domain = 'chat'",
        ("fct_model_metrics", "expression_is_true", "n_pairs"),
        None,
    ),
    (
        "winner_tie_in_predictions",
        "update marts.fct_predictions set actual_winner = 'tie' where label_id = 'l2'",
        ("fct_predictions", "accepted_values", "actual_winner"),
        ("tie", 2),
    ),
    (
        "extra_concept_column",
        'alter table marts.fct_pair_features_comp add column "bogus" integer default 0',
        ("fct_pair_features_comp", "concept_columns_match", None),
        ("bogus", "a column that is no concept"),
    ),
    (
        "local_lift_below_minus_100",
        "update marts.fct_local_explanations set local_lift_pct = -100.5 where concept = 'safety'",
        ("fct_local_explanations", "expression_is_true", "local_lift_pct"),
        None,
    ),
    (
        "duplicate_local_explanation",
        "insert into marts.fct_local_explanations select * from marts.fct_local_explanations "
        "where label_id = 'l1' and concept = 'clarity' limit 1",
        ("fct_local_explanations", "unique_combination", None),
        None,
    ),
    (
        "definition_not_paper_style",
        "update marts.dim_concepts set definition = 'Clear answers' where concept = 'safety'",
        ("dim_concepts", "matches_regex", "definition"),
        None,
    ),
    (
        "definition_half_missing",
        "update marts.dim_concepts set definition = 'A high score indicates x; ' where concept = 'clarity'",
        ("dim_concepts", "matches_regex", "definition"),
        None,
    ),
    (
        "duplicate_concept",
        "insert into marts.dim_concepts select * from marts.dim_concepts where concept = 'safety'",
        ("dim_concepts", "unique", "concept"),
        ("safety", 2),
    ),
    (
        "duplicate_concept_key",
        "",
        ("dim_concepts", "unique_combination", None),
        None,
    ),
    (
        "null_definition_hash",
        "update marts.dim_concepts set definition_hash = null where concept = 'clarity'",
        ("dim_concepts", "not_null", "definition_hash"),
        None,
    ),
    (
        "rank_above_top_k_and_duplicate_rank",
        "create or replace view marts.rpt_top_concepts as select fit_id, mechanism, mechanism_type, representation, "
        "domain, case when mechanism = 'human:crowd' then 1 when concept = 'safety' then 11 else row_number() over "
        "(partition by fit_id, mechanism, representation, domain order by abs(global_lift_pct) desc, concept) end "
        "as concept_rank, concept, case when global_lift_pct > 0 then 'rewards' else 'penalises' end as direction, "
        "global_lift_pct, shared_lift_pct, deviation_lift_pct, n_pairs, has_domain_weights "
        "from preflens.marts.fct_concept_effects",
        ("rpt_top_concepts", "expression_is_true", "concept_rank"),
        None,
    ),
    (
        "duplicate_rank",
        "",
        ("rpt_top_concepts", "unique_combination", None),  # the one on concept_rank, see test_each_violation
        None,
    ),
    (
        "duplicate_build",
        f"create or replace view marts.fct_builds as select {BUILD_SELECT} from preflens.ops.builds "
        f"union all select {BUILD_SELECT} from preflens.ops.builds where build_id = 'b1'",
        ("fct_builds", "unique", "build_id"),
        ("b1", 2),
    ),
    (
        "unknown_build_status",
        "update ops.builds set status = 'exploded' where build_id = 'fit1'",
        ("fct_builds", "accepted_values", "status"),
        ("exploded", 1),
    ),
    (
        "build_ends_before_start",
        "update ops.builds set finished_at = started_at - interval 1 hour where build_id = 'b1'",
        ("fct_builds", "expression_is_true", "duration_seconds"),
        None,
    ),
]


@dataclass(frozen=True)
class BrokenRun:
    db: Path
    results: list[QualityResult]
    error: str


@pytest.fixture(scope="module")
def broken(tmp_path_factory: pytest.TempPathFactory) -> BrokenRun:
    """Every violation applied to one fixture DB, then the invariants run as `preflens run` runs and records a dbt
    build (recorded_dbt_tests around the dbt run, build id 'fit1')."""
    db = _new_db(tmp_path_factory, "broken")
    for _, sql, _, _ in VIOLATIONS:
        if sql:
            mutate(db, sql)
    paths = Paths(warehouse=db.parent)
    recorded: list[QualityResult] = []
    opened: list[duckdb.DuckDBPyConnection] = []

    def connect() -> duckdb.DuckDBPyConnection:
        opened.append(duckdb.connect(str(db)))
        return opened[-1]

    with pytest.raises(DbtError) as exc:
        with recorded_dbt_tests(connect, "fit1", paths.dbt_target_dir, recorded):
            run_dbt(["test", "--resource-type", "test", "--select", *INVARIANTS], paths, "fit1")
    for con in opened:
        con.close()
    return BrokenRun(db, recorded, str(exc.value))


def _hits(results: list[QualityResult], suite: str, check: str, column: str | None) -> list[QualityResult]:
    return [r for r in results if (r.suite, r.expectation_type, r.column) == (suite, check, column) and not r.success]


@pytest.mark.parametrize(("failing", "rows"), [v[2:] for v in VIOLATIONS], ids=[v[0] for v in VIOLATIONS])
def test_each_violation_fails_its_test_with_the_failing_rows_in_audit(
    broken: BrokenRun, failing: tuple[str, str, str | None], rows: tuple | None
) -> None:
    hits = _hits(broken.results, *failing)
    if failing == ("rpt_top_concepts", "unique_combination", None):
        hits = [h for h in hits if "concept_rank" in h.expected]
    assert hits, [r.describe() for r in broken.results if not r.success]
    (hit,) = hits
    assert hit.blocking and hit.engine == "dbt" and not hit.error
    assert hit.unexpected_count and hit.unexpected_count > 0
    assert re.fullmatch(rf"{hit.unexpected_count} failing rows in audit\.\w+", hit.observed), hit.observed
    stored = audit_rows(broken.db, hit)
    assert len(stored) == hit.unexpected_count
    if rows is not None:
        assert any(tuple(row[-len(rows) :]) == rows or tuple(row[: len(rows)]) == rows for row in stored), stored
    assert failing[0] in hit.describe() and "FAILED" in hit.describe()


def test_no_other_test_fails(broken: BrokenRun) -> None:
    expected = {v[2] for v in VIOLATIONS}
    failed = {(r.suite, r.expectation_type, r.column) for r in broken.results if not r.success}
    assert failed == expected
    assert not [r for r in broken.results if r.error]  # failures, not errors
    assert "dbt test failed" in broken.error


def test_a_failing_test_s_rows_are_in_audit_and_its_result_in_ops_quality_results(broken: BrokenRun) -> None:
    (hit,) = _hits(broken.results, "fct_predictions", "expression_is_true", "prob_a")
    assert hit.unexpected_count == 1
    relation = hit.observed.rsplit(" in ", 1)[-1]
    con = duckdb.connect(str(broken.db), read_only=True)
    try:
        # the failing row itself, as the test saw it
        assert con.execute(f"select label_id, representation, prob_a from {relation}").fetchall() == [
            ("l1", "comp", 1.3)
        ]
        stored = con.execute(
            """select suite, "table", expectation_type, "column", success, blocking, unexpected_count, observed
               from ops.quality_results where build_id = 'fit1'"""
        ).fetchall()
    finally:
        con.close()
    assert len(stored) == len(broken.results)
    assert (
        "fct_predictions",
        "marts.fct_predictions",
        "expression_is_true",
        "prob_a",
        False,
        True,
        1,
        hit.observed,
    ) in stored
    n_failed = sum(not r.success for r in broken.results)
    assert sum(not row[4] for row in stored) == n_failed


# ------------------------------------------------------------------ missing inputs, configurable bounds


@pytest.fixture(scope="module")
def without_raw_labels(tmp_path_factory: pytest.TempPathFactory) -> list[QualityResult]:
    db = _new_db(tmp_path_factory, "nolabels")
    mutate(db, "drop table raw.labels")
    mutate(db, "delete from marts.fct_pair_concepts")
    mutate(db, "update marts.fct_concept_effects set global_lift_pct = 650 where concept = 'clarity'")
    return dbt_test(
        db,
        "fct_pair_features_match_decisive_labels",
        "fct_pair_concepts_match_raw_annotations",
        "fct_concept_effects",
        dbt_vars={"max_abs_lift_pct": 700},
    )


def test_missing_raw_table_is_a_failure_naming_it(without_raw_labels: list[QualityResult]) -> None:
    (r,) = [r for r in without_raw_labels if r.suite == "fct_pair_features_match_decisive_labels"]
    assert not r.success and r.blocking and "labels" in (r.error or "")


def test_empty_mart_over_nonempty_raw_fails(without_raw_labels: list[QualityResult]) -> None:
    (r,) = [r for r in without_raw_labels if r.suite == "fct_pair_concepts_match_raw_annotations"]
    assert not r.success and r.unexpected_count == 1


def test_lift_bound_is_the_build_s_dbt_var(without_raw_labels: list[QualityResult]) -> None:
    # 650 fails the default bound (test_each_violation: lift_out_of_bounds) and passes a build's bound of 700
    lift = [
        r for r in without_raw_labels if r.column == "global_lift_pct" and r.expectation_type == "expression_is_true"
    ]
    assert [r.success for r in lift] == [True] and "700" not in lift[0].expected  # the var, not a copied number
    marts_yml = (REPO / "dbt_project" / "models" / "marts" / "_marts__models.yml").read_text()
    assert "abs(global_lift_pct) <= {{ var('max_abs_lift_pct') }}" in marts_yml


# ------------------------------------------------------------------ results as stored rows


def test_report_frame_is_typed_for_duckdb_even_when_all_null(clean: tuple[Path, list[QualityResult]]) -> None:
    df = QualityReport(results=clean[1]).to_frame()
    assert isinstance(df, pd.DataFrame) and len(df) == len(clean[1]) and df["error"].isna().all()
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


# ------------------------------------------------------------------ the publication contract (Great Expectations)


def _manifest(db: Path) -> dict:
    return json.loads((Paths(warehouse=db.parent).dbt_target_dir / "manifest.json").read_text())


def test_contract_names_every_published_mart_and_docs_list_them(clean: tuple[Path, list[QualityResult]]) -> None:
    relations = {r.name: r for r in published_relations(_manifest(clean[0]))}
    documented = set(re.findall(r"^\| `(\w+)`", (REPO / "docs" / "tables.md").read_text(), re.M))
    documented |= set(re.findall(r"`(fct_pair_features_\w+)`", (REPO / "docs" / "tables.md").read_text()))
    assert set(relations) <= documented, set(relations) - documented
    assert {"fct_concept_effects", "dim_latest_fit", "rpt_top_concepts", "fct_builds"} <= set(relations)
    assert "stg_raw__items" not in relations and "int_hmdr_fits" not in relations
    assert relations["fct_builds"].non_empty and not relations["fct_eval_results"].non_empty
    assert {"fit_id", "global_lift_pct", "control"} <= set(relations["fct_concept_effects"].columns)


def test_contract_passes_on_the_consistent_fixture(clean: tuple[Path, list[QualityResult]]) -> None:
    db, _ = clean
    relations = published_relations(_manifest(db))
    con = duckdb.connect(str(db), read_only=True)
    try:
        results = check_contract(con, relations)
    finally:
        con.close()
    assert all(r.success for r in results), [r.describe() for r in results if not r.success]
    assert {r.suite for r in results} == {r.name for r in relations}
    assert all(r.engine == "great_expectations" for r in results)
    counts = {r.table: r.observed for r in results if r.expectation_type == "expect_table_row_count_to_be_between"}
    assert counts["marts.fct_pair_concepts"] == str(N_OFFLINE_ANNOTATIONS)  # read whole: the real count


@pytest.mark.parametrize(
    ("sql", "failing"),
    [
        # the view over it cannot be read either
        (
            "drop table marts.fct_model_metrics",
            [("fct_model_metrics", "table_exists"), ("rpt_model_baselines", "table_readable")],
        ),
        ("delete from ops.builds", [("fct_builds", "expect_table_row_count_to_be_between")]),
        (
            "alter table marts.fct_predictions drop column prob_a",
            [("fct_predictions", "expect_table_columns_to_match_set")],
        ),
    ],
    ids=["missing_relation", "no_build_row", "documented_column_missing"],
)
def test_contract_violation_fails(
    clean: tuple[Path, list[QualityResult]], tmp_path: Path, sql: str, failing: list[tuple[str, str]]
) -> None:
    db = build_fixture_db(tmp_path / "warehouse" / "preflens.duckdb")
    mutate(db, sql)
    con = duckdb.connect(str(db), read_only=True)
    try:
        results = check_contract(con, published_relations(_manifest(clean[0])))
    finally:
        con.close()
    failed = [r for r in results if not r.success]
    assert [(r.suite, r.expectation_type) for r in failed] == failing, [r.describe() for r in failed]
    assert all(r.blocking and (r.observed or r.error) for r in failed)
    if failing[0][1] == "expect_table_columns_to_match_set":
        assert failed[0].observed == 'missing ["prob_a"]'
    if failing[0][1] == "table_exists":
        assert failed[0].observed == "missing" and "fct_model_metrics" in (failed[1].error or "")


def test_importing_quality_does_not_import_gx() -> None:
    import subprocess
    import sys

    code = "import sys, pipelines.build.quality, pipelines.build.publish; print('great_expectations' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
