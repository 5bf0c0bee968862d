"""The gates added on derived frames and on the newer marts, each fed data that violates it.

Same fixture build DB as test_quality.py (consistent: every suite passes), then one mutation at a time.
Each run is restricted to the suite under test (``only=``) to keep the GE runs short.
"""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest
import yaml

from pipelines.build.quality import SUITES, QualityThresholds, run_quality_checks
from pipelines.build.quality.gates import models_of_versions
from tests.quality_db import build_fixture_db, mutate

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def build_db(tmp_path: Path) -> Path:
    return build_fixture_db(tmp_path / "preflens.duckdb")


def _fails(report, suite: str) -> list:  # noqa: ANN001
    return [f for f in report.failures() if f.suite == suite]


def test_new_suites_pass_or_skip_with_a_reason_on_the_consistent_fixture(build_db: Path) -> None:
    report = run_quality_checks(build_db)
    assert report.success, report.format_failures()
    names = {s.name for s in SUITES}
    assert {
        "labelled_pairs_have_features",
        "domain_weights_min_pairs",
        "swap_consistency",
        "llm_parse_failures",
        "concepts",
        "top_concepts",
        "top_concepts_ranks",
        "builds",
    } <= names
    assert {r.suite for r in report.results} == names
    # offline annotations carry no swap check and no LLM annotator is in use: both skipped, with the reason stored
    assert report.skip_reasons == {
        "swap_consistency": "no swap-checked annotations for the annotator(s) in use (the offline annotator has none)",
        "llm_parse_failures": "no LLM annotator in use",
        # this fixture has no measure-rep table and no baseline view (optional tables)
        "features_measure": "table marts.fct_pair_features_measure does not exist",
        "beats_length_only": "table marts.rpt_model_baselines does not exist",
    }
    frame = report.to_frame()
    skipped = frame[frame["expectation_type"] == "suite_skipped"]
    assert set(skipped["suite"]) == set(report.skip_reasons)
    assert skipped["observed"].str.startswith("skipped: ").all() and skipped["success"].all()
    assert (
        "skipped: features_measure, swap_consistency, llm_parse_failures, beats_length_only" in report.format_failures()
    )


def test_defaults_match_the_dbt_vars() -> None:
    dbt_vars = yaml.safe_load((REPO / "dbt_project" / "dbt_project.yml").read_text())["vars"]
    th = QualityThresholds()
    assert th.min_domain_pairs == dbt_vars["min_domain_pairs"]
    assert th.top_k == dbt_vars["top_k"]
    assert th.max_abs_lift_pct == dbt_vars["max_abs_lift_pct"]
    # the dbt test on fct_concept_effects reads the same var, never a number of its own
    marts_yml = (REPO / "dbt_project" / "models" / "marts" / "_marts__models.yml").read_text()
    assert "abs(global_lift_pct) <= {{ var('max_abs_lift_pct') }}" in marts_yml


# ------------------------------------------------------------------ every decisive labelled pair has features

NEW_LABEL_ON_UNANNOTATED = (
    "insert into raw.labels values ('l8', 'i6', 'judge:gpt-4', 'judge', 'b', null, null, 'f', 8, 'ing2', now())"
)


def test_decisive_label_without_features_fails(build_db: Path) -> None:
    mutate(build_db, NEW_LABEL_ON_UNANNOTATED)
    report = run_quality_checks(build_db, only=["labelled_pairs_have_features"])
    (f,) = report.failures()
    assert (f.table, f.expectation_type) == ("raw.labels", "expect_table_row_count_to_be_between")
    assert f.observed.startswith("1;") and "l8" in f.observed and "i6" in f.observed
    # the tie on the same unannotated item (l4) is not flagged; another annotator's rows (llm on i6) don't count
    assert "l4" not in f.observed


def test_labels_without_features_allowance_is_configurable(build_db: Path) -> None:
    mutate(build_db, NEW_LABEL_ON_UNANNOTATED)
    assert run_quality_checks(
        build_db, only=["labelled_pairs_have_features"], thresholds={"max_labels_without_features": 1}
    ).success
    report = run_quality_checks(
        build_db, only=["labelled_pairs_have_features"], thresholds={"max_labels_without_features": None}
    )
    assert report.success and "gate disabled" in report.skip_reasons["labelled_pairs_have_features"]


def test_annotations_of_another_annotator_do_not_count_as_features(build_db: Path) -> None:
    # i6 has 'llm' annotations only; with 'llm' named as the active annotator, l8 has features
    mutate(build_db, NEW_LABEL_ON_UNANNOTATED)
    th = QualityThresholds(annotator="llm", annotator_version="v2")
    report = run_quality_checks(build_db, only=["labelled_pairs_have_features"], thresholds=th)
    # now the offline-only items i2, i4, i5 (l2, l6, l7) lack the active annotator's features instead
    (f,) = report.failures()
    assert all(x in f.observed for x in ("l2", "l6", "l7")) and "l8" not in f.observed


# ------------------------------------------------------------------------- domain weights need enough pairs


@pytest.mark.parametrize(
    ("sql", "column"),
    [
        ("update marts.fct_concept_effects set n_pairs = 5 where domain = 'code'", "n_pairs"),
        (
            "update marts.fct_concept_effects set has_domain_weights = false "
            "where domain = 'chat' and concept = 'safety'",
            "has_domain_weights",
        ),
        ("update marts.fct_concept_effects set n_pairs = null where domain = 'chat'", "n_pairs"),
    ],
    ids=["too_few_pairs", "deviation_without_domain_weights", "unknown_pair_count"],
)
def test_domain_weights_on_a_small_domain_fail(build_db: Path, sql: str, column: str) -> None:
    mutate(build_db, sql)
    report = run_quality_checks(build_db, only=["domain_weights_min_pairs"])
    fails = report.failures()
    assert fails and {f.column for f in fails} == {column}, report.format_failures()
    assert all(f.table == "marts.fct_concept_effects" for f in fails)
    assert "rows: " in fails[0].observed  # names the mechanism / representation / domain


def test_small_domain_without_domain_weights_is_fine_and_minimum_is_configurable(build_db: Path) -> None:
    # a small domain that got b alone (deviation 0, no domain weights) is exactly what the gate wants
    mutate(
        build_db,
        "update marts.fct_concept_effects set n_pairs = 5, domain_deviation = 0, "
        "has_domain_weights = false where domain = 'code'",
    )
    assert run_quality_checks(build_db, only=["domain_weights_min_pairs"]).success
    # 25 pairs per domain in the fixture: a minimum of 30 fails the domains that kept their weights
    report = run_quality_checks(build_db, only=["domain_weights_min_pairs"], thresholds={"min_domain_pairs": 30})
    (f,) = report.failures()
    assert f.column == "n_pairs" and "/ chat (25 pairs)" in f.observed and "code" not in f.observed


def test_shared_rows_are_not_domain_weights(build_db: Path) -> None:
    mutate(
        build_db,
        """
        insert into marts.fct_concept_effects
        select fit_id, mechanism, mechanism_type, representation, '__shared__', concept, shared_weight, 0.0,
               shared_weight, shared_lift_pct, 0.0, shared_lift_pct, 3, false, control, feature_scale
        from marts.fct_concept_effects where domain = 'code'
    """,
    )
    assert run_quality_checks(build_db, only=["domain_weights_min_pairs"]).success


# ------------------------------------------------------------------------------------ swap inconsistency


def test_swap_inconsistency_under_the_threshold_passes_then_over_fails(build_db: Path) -> None:
    mutate(build_db, "update raw.annotations set is_consistent = (item_id <> 'i1') where annotator = 'offline'")
    report = run_quality_checks(build_db, only=["swap_consistency"])  # 3 of 15 = 0.2 <= 0.35
    assert report.success and not report.skipped, report.format_failures()
    (res,) = [r for r in report.results if r.suite == "swap_consistency"]
    assert res.column == "swap_inconsistency_rate" and "max_value=0.35" in res.expected

    report = run_quality_checks(build_db, only=["swap_consistency"], thresholds={"max_swap_inconsistency_rate": 0.1})
    (f,) = report.failures()
    assert f.table == "raw.annotations" and "0.2" in f.observed and "offline v1" in f.observed


def test_swap_inconsistency_over_default_threshold_fails(build_db: Path) -> None:
    mutate(
        build_db,
        "update raw.annotations set is_consistent = item_id not in ('i1', 'i2', 'i3') where annotator = 'offline'",
    )  # 9 of 15 = 0.6
    report = run_quality_checks(build_db, only=["swap_consistency"])
    (f,) = report.failures()
    assert f.column == "swap_inconsistency_rate" and "0.6" in f.observed


def test_swap_inconsistency_of_an_annotator_not_in_use_is_ignored(build_db: Path) -> None:
    mutate(build_db, "update raw.annotations set is_consistent = false where annotator = 'llm'")
    report = run_quality_checks(build_db, only=["swap_consistency"])
    assert report.success and "swap_consistency" in report.skipped


# ----------------------------------------------------------------------------------- LLM parse failures

LLM_VERSION = "llm-p1:gpt_4o"  # pipelines/annotate/llm.py: 'llm-' + prompt version + ':' + sanitised model


def _llm_calls(path: Path, model: str, ok: int, failures: list[tuple[str, str]]) -> None:
    """``ok`` good annotation calls and ``(stage, error)`` failed ones for ``model`` in raw.llm_cache."""
    rows = [(f"{model}-ok-{i}", "comp_ab", "ok", None) for i in range(ok)]
    rows += [(f"{model}-bad-{i}", stage, "failed", err) for i, (stage, err) in enumerate(failures)]
    con = duckdb.connect(str(path))
    try:
        con.executemany(
            """insert into raw.llm_cache (cache_key, stage, template, template_version, model, params_json, item_id,
                   status, raw_response, parsed_json, error, prompt_tokens, completion_tokens, latency_ms, attempts,
                   run_id, created_at)
               values (?, ?, 't', 'v1', ?, '{}', 'i1', ?, 'raw', null, ?, 10, 5, 1.0, 1, 'r1', now())""",
            [(key, stage, model, status, err) for key, stage, status, err in rows],
        )
    finally:
        con.close()


LLM_ACTIVE = QualityThresholds(annotator="llm", annotator_version=LLM_VERSION)


def test_parse_failure_rate_over_threshold_fails(build_db: Path) -> None:
    _llm_calls(
        build_db,
        "gpt 4o",
        ok=18,
        failures=[("comp_ab", "malformed: not JSON"), ("score", "truncated: finish_reason=length")],
    )  # 2/20 = 0.1
    report = run_quality_checks(build_db, only=["llm_parse_failures"], thresholds=LLM_ACTIVE)
    (f,) = report.failures()
    assert (f.table, f.column) == ("raw.llm_cache", "parse_failure_rate")
    assert "0.1" in f.observed and "gpt 4o" in f.observed


def test_parse_failure_rate_counts_only_parse_failures_of_annotation_calls_of_the_model_in_use(build_db: Path) -> None:
    _llm_calls(
        build_db,
        "gpt 4o",
        ok=19,
        failures=[
            ("comp_ab", "malformed: not JSON"),  # counts: 1/24 < 0.05
            ("comp_ba", "http_503: HTTP 503"),  # transport failure, not a parse failure
            ("propose", "malformed: not JSON"),  # discovery stage, not annotation
            ("relevance", "connection: APIConnectionError"),
        ],
    )
    _llm_calls(build_db, "old-model", ok=1, failures=[("comp_ab", "malformed: x")] * 3)  # not in use
    report = run_quality_checks(build_db, only=["llm_parse_failures"], thresholds=LLM_ACTIVE)
    assert report.success and not report.skipped, report.format_failures()
    # every failed status counts when no outcome list is given: 3/23 annotation calls of the model
    th = QualityThresholds(annotator="llm", annotator_version=LLM_VERSION, parse_failure_outcomes=None)
    assert not run_quality_checks(build_db, only=["llm_parse_failures"], thresholds=th).success
    # the old model's failures count once its calls are named explicitly
    report = run_quality_checks(build_db, only=["llm_parse_failures"], thresholds={"llm_models": ("old-model",)})
    (f,) = report.failures()
    assert "old-model" in f.observed and "0.75" in f.observed


def test_parse_failure_gate_skips_cleanly(build_db: Path) -> None:
    # offline annotator in use (inferred from the marts)
    report = run_quality_checks(build_db, only=["llm_parse_failures"])
    assert report.success and report.skip_reasons == {"llm_parse_failures": "no LLM annotator in use"}
    # LLM annotator in use but no calls cached for its model
    report = run_quality_checks(build_db, only=["llm_parse_failures"], thresholds=LLM_ACTIVE)
    assert report.success and "no LLM annotation calls" in report.skip_reasons["llm_parse_failures"]
    # a warehouse from before the LLM layer: no raw.llm_cache table at all
    mutate(build_db, "drop table raw.llm_cache")
    report = run_quality_checks(build_db, only=["llm_parse_failures"], thresholds=LLM_ACTIVE)
    assert report.success and report.skip_reasons == {"llm_parse_failures": "table raw.llm_cache does not exist"}


def test_models_of_versions() -> None:
    assert models_of_versions(["llm-p1:gpt_4o", "llm-p2:ollama:llama3", "offline-1.0"]) == ["gpt_4o", "ollama:llama3"]


# ------------------------------------------------------------------------------------------ newer marts

NEW_MART_VIOLATIONS: list[tuple[str, str, str, str, str | None, str]] = [
    # (id, sql, suite, table, column, expectation type)
    (
        "definition_not_paper_style",
        "update marts.dim_concepts set definition = 'Clear answers' where concept = 'safety'",
        "concepts",
        "marts.dim_concepts",
        "definition",
        "expect_column_values_to_match_regex",
    ),
    (
        "definition_half_missing",
        "update marts.dim_concepts set definition = 'A high score indicates x; ' where concept = 'clarity'",
        "concepts",
        "marts.dim_concepts",
        "definition",
        "expect_column_values_to_match_regex",
    ),
    (
        "duplicate_concept",
        "insert into marts.dim_concepts select * from marts.dim_concepts where concept = 'safety'",
        "concepts",
        "marts.dim_concepts",
        "concept, annotator, annotator_version",
        "expect_compound_columns_to_be_unique",
    ),
    (
        "null_definition_hash",
        "update marts.dim_concepts set definition_hash = null",
        "concepts",
        "marts.dim_concepts",
        "definition_hash",
        "expect_column_values_to_not_be_null",
    ),
    (
        "duplicate_local_explanation",
        "insert into marts.fct_local_explanations select * from marts.fct_local_explanations limit 1",
        "local_explanations",
        "marts.fct_local_explanations",
        "fit_id, label_id, representation, concept",
        "expect_compound_columns_to_be_unique",
    ),
    (
        "rank_gap",
        "create or replace view marts.rpt_top_concepts as select * replace (concept_rank * 2 as concept_rank) "
        "from (select fit_id, mechanism, mechanism_type, representation, domain, row_number() over (partition by fit_id, "
        "mechanism, representation, domain order by abs(global_lift_pct) desc, concept) as concept_rank, concept, "
        "'rewards' as direction, global_lift_pct, shared_lift_pct, deviation_lift_pct, n_pairs, has_domain_weights "
        "from marts.fct_concept_effects)",
        "top_concepts_ranks",
        "marts.rpt_top_concepts",
        "max_rank, n_rows",
        "expect_column_pair_values_to_be_equal",
    ),
    (
        "rank_order_reversed",
        "create or replace view marts.rpt_top_concepts as select fit_id, mechanism, mechanism_type, "
        "representation, domain, row_number() over (partition by fit_id, mechanism, representation, domain "
        "order by abs(global_lift_pct) asc, concept) as concept_rank, concept, 'rewards' as direction, global_lift_pct, "
        "shared_lift_pct, deviation_lift_pct, n_pairs, has_domain_weights from marts.fct_concept_effects",
        "top_concepts_ranks",
        "marts.rpt_top_concepts",
        "n_out_of_order",
        "expect_column_values_to_be_in_set",
    ),
    (
        "rank_above_top_k",
        "create or replace view marts.rpt_top_concepts as select fit_id, mechanism, mechanism_type, "
        "representation, domain, 11 as concept_rank, concept, 'rewards' as direction, global_lift_pct, shared_lift_pct, "
        "deviation_lift_pct, n_pairs, has_domain_weights from marts.fct_concept_effects where concept = 'safety'",
        "top_concepts",
        "marts.rpt_top_concepts",
        "concept_rank",
        "expect_column_values_to_be_between",
    ),
    (
        "duplicate_rank",
        "create or replace view marts.rpt_top_concepts as select fit_id, mechanism, mechanism_type, "
        "representation, domain, 1 as concept_rank, concept, 'rewards' as direction, global_lift_pct, shared_lift_pct, "
        "deviation_lift_pct, n_pairs, has_domain_weights from marts.fct_concept_effects",
        "top_concepts",
        "marts.rpt_top_concepts",
        "fit_id, mechanism, representation, domain, concept_rank",
        "expect_compound_columns_to_be_unique",
    ),
    (
        "duplicate_build",
        "create or replace view marts.fct_builds as select * from ops.builds union all "
        "select * from ops.builds where build_id = 'b1'",
        "builds",
        "marts.fct_builds",
        "build_id",
        "expect_column_values_to_be_unique",
    ),
    (
        "unknown_build_status",
        "update ops.builds set status = 'exploded' where build_id = 'b1'",
        "builds",
        "marts.fct_builds",
        "status",
        "expect_column_values_to_be_in_set",
    ),
    (
        "build_ends_before_start",
        "update ops.builds set finished_at = started_at - interval 1 hour where build_id = 'b1'",
        "builds",
        "marts.fct_builds",
        "duration_seconds",
        "expect_column_values_to_be_between",
    ),
    (
        "no_build_row",
        "delete from ops.builds",
        "builds",
        "marts.fct_builds",
        None,
        "expect_table_row_count_to_be_between",
    ),
]


@pytest.mark.parametrize(
    ("sql", "suite", "table", "column", "etype"),
    [v[1:] for v in NEW_MART_VIOLATIONS],
    ids=[v[0] for v in NEW_MART_VIOLATIONS],
)
def test_newer_mart_violation_fails(
    build_db: Path, sql: str, suite: str, table: str, column: str | None, etype: str
) -> None:
    mutate(build_db, sql)
    report = run_quality_checks(build_db, only=[suite])
    hits = [
        f
        for f in report.failures()
        if (f.suite, f.table, f.column, f.expectation_type) == (suite, table, column, etype)
    ]
    assert hits, report.format_failures()
    assert hits[0].observed or hits[0].error


def test_top_k_bound_is_configurable(build_db: Path) -> None:
    mutate(build_db, NEW_MART_VIOLATIONS[7][1])  # rank 11
    assert run_quality_checks(build_db, only=["top_concepts"], thresholds={"top_k": None}).success
    assert not run_quality_checks(build_db, only=["top_concepts"], thresholds={"top_k": 10}).success


def test_broken_frame_sql_is_a_failure_not_a_crash(build_db: Path) -> None:
    mutate(build_db, "alter table marts.fct_concept_effects drop column has_domain_weights")
    report = run_quality_checks(build_db, only=["domain_weights_min_pairs"])
    (f,) = report.failures()
    assert f.expectation_type == "suite_error" and "has_domain_weights" in (f.error or "")


def test_a_build_s_dbt_vars_set_the_shared_thresholds() -> None:
    from pipelines.build.quality import thresholds_from_dbt_vars

    # only the vars that are also gate thresholds, typed as the gates use them; an empty value keeps the default
    assert thresholds_from_dbt_vars({"top_k": "5", "min_domain_pairs": "8", "cv_folds": "3"}) == {
        "top_k": 5,
        "min_domain_pairs": 8,
    }
    assert thresholds_from_dbt_vars({"min_domain_pairs": ""}) == {}
    th = QualityThresholds(**thresholds_from_dbt_vars({"min_domain_pairs": "8"}))
    assert th.min_domain_pairs == 8 and th.top_k == QualityThresholds().top_k
