"""The quality gates are dbt singular tests (dbt_project/data-tests/gates/) that the checks stage runs with the
thresholds of QualityThresholds as dbt vars. Each gate runs with real dbt on the fixture build DB fed data that
violates it (and decoys it must not flag): its failing rows land in schema audit, a threshold moves its verdict,
a threshold of None skips it with the reason recorded.

dbt runs are slow: the violations of every gate are applied to one copy of the fixture and each threshold
setting is one run on it; the LLM annotator's gates get a second copy.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import duckdb
import pytest
import yaml

from pipelines.build.quality import (
    QualityResult,
    QualityThresholds,
    coerce_thresholds,
    run_gate_tests,
    run_quality_checks,
)
from pipelines.build.quality.dbt_tests import GateRun
from pipelines.core.config import Paths
from tests.quality_db import audit_rows, build_fixture_db, mutate

REPO = Path(__file__).resolve().parent.parent
GATES = {
    "labelled_pairs_have_features",
    "domain_weights_min_pairs",
    "swap_consistency",
    "llm_parse_failures",
    "top_concepts_ranks",
    "beats_length_only",
}


def _gate(run: GateRun, name: str) -> QualityResult:
    (result,) = [r for r in run.results if r.suite == name]
    return result


def test_every_gate_passes_on_the_consistent_fixture(tmp_path: Path) -> None:
    """The full check path (gates, then the publication contract), with the annotator read from the marts."""
    db = build_fixture_db(tmp_path / "warehouse" / "preflens.duckdb")
    report = run_quality_checks(db)
    assert report.success, report.format_failures()
    assert report.thresholds is not None
    assert (report.thresholds.annotator, report.thresholds.annotator_version) == ("offline", "v1")
    gates = {r.suite: r for r in report.results if r.engine == "dbt"}
    assert set(gates) == GATES and not report.skipped
    assert all(r.success and r.unexpected_count == 0 for r in gates.values())
    assert gates["beats_length_only"].blocking is False and gates["swap_consistency"].blocking
    assert gates["swap_consistency"].expected == "max_swap_inconsistency_rate=0.35"
    assert gates["labelled_pairs_have_features"].table == "raw.annotations, raw.labels"
    # then the contract: Great Expectations on every published mart
    contract = {r.suite for r in report.results if r.engine == "great_expectations"}
    assert {"fct_concept_effects", "fct_builds", "rpt_top_concepts", "dim_latest_fit"} <= contract
    assert "all" in report.format_failures()


# ------------------------------------------------------------------ every gate broken, three threshold settings

GATE_VIOLATIONS = [
    # a decisive label on an item (i6) that only another annotator annotated; the tie l4 on i6 needs no features
    "insert into raw.labels values ('l8', 'i6', 'judge:gpt-4', 'judge', 'b', null, null, 'f', 8, 'ing2', now())",
    # domain weights on 5 pairs; a deviation without has_domain_weights; domain weights on an unknown count
    "update marts.fct_concept_effects set n_pairs = 5 where domain = 'code' and mechanism = 'judge:gpt-4'",
    "update marts.fct_concept_effects set has_domain_weights = false where domain = 'chat' and concept = 'safety'",
    "update marts.fct_concept_effects set n_pairs = null "
    "where domain = 'chat' and mechanism = 'human:crowd' and concept = 'clarity'",
    # decoys: a small domain that got b alone, and shared rows (never domain weights) on few pairs
    "update marts.fct_concept_effects set n_pairs = 5, domain_deviation = 0, has_domain_weights = false "
    "where domain = 'code' and mechanism = 'human:crowd'",
    "insert into marts.fct_concept_effects by name select * replace ('__shared__' as domain, 3 as n_pairs) "
    "from marts.fct_concept_effects where domain = 'chat' and mechanism = 'judge:gpt-4'",
    # 9 of the 15 swap-checked cells of the active annotator inconsistent (0.6); another annotator's don't count
    "update raw.annotations set is_consistent = item_id not in ('i1', 'i2', 'i3') where annotator = 'offline'",
    "update raw.annotations set is_consistent = false where annotator = 'llm'",
    # ranks with a gap in one group, in reversed |lift| order in another
    """create or replace view marts.rpt_top_concepts as
       with ranked as (
           select *,
                  row_number() over (partition by fit_id, mechanism, representation, domain
                                     order by abs(global_lift_pct) desc, concept) as r,
                  row_number() over (partition by fit_id, mechanism, representation, domain
                                     order by abs(global_lift_pct) asc, concept) as r_reversed
           from preflens.marts.fct_concept_effects)
       select fit_id, mechanism, mechanism_type, representation, domain,
              case when mechanism = 'judge:gpt-4' and representation = 'comp' and domain = 'code' then r * 2
                   when mechanism = 'human:crowd' and representation = 'score' and domain = 'chat' then r_reversed
                   else r end as concept_rank,
              concept, case when global_lift_pct > 0 then 'rewards' else 'penalises' end as direction,
              global_lift_pct, shared_lift_pct, deviation_lift_pct, n_pairs, has_domain_weights
       from ranked""",
    # the concept model of one mechanism does no better than length alone
    "update marts.fct_model_metrics set accuracy = 0.4 "
    "where domain = '__all__' and variant = 'hmdr' and mechanism = 'judge:gpt-4' and representation = 'comp'",
]

RELAXED = {
    "max_labels_without_features": 1,
    "min_domain_pairs": 5,
    "max_swap_inconsistency_rate": None,
    "max_parse_failure_rate": None,
}
DISABLED = {"max_labels_without_features": None, "min_domain_pairs": None, "max_swap_inconsistency_rate": 0.7}


#: a gate run, and the failing rows of each gate that ran (read from audit before the next run replaces them)
Runs = dict[str, tuple[GateRun, dict[str, list[tuple]]]]


def _run(db: Path, thresholds: QualityThresholds) -> tuple[GateRun, dict[str, list[tuple]]]:
    run = run_gate_tests(Paths(warehouse=db.parent), thresholds, build_id="gates")
    return run, {r.suite: audit_rows(db, r) for r in run.results if r.observed and not r.error}


@pytest.fixture(scope="module")
def broken(tmp_path_factory: pytest.TempPathFactory) -> Runs:
    db = build_fixture_db(tmp_path_factory.mktemp("gates") / "warehouse" / "preflens.duckdb")
    for sql in GATE_VIOLATIONS:
        mutate(db, sql)
    offline = QualityThresholds(annotator="offline", annotator_version="v1")
    return {
        "default": _run(db, offline),
        "relaxed": _run(db, replace(offline, **RELAXED)),
        "disabled": _run(db, replace(offline, **DISABLED)),
    }


def test_each_gate_fails_with_its_failing_rows_at_the_default_thresholds(broken: Runs) -> None:
    run, rows = broken["default"]
    assert {r.suite for r in run.results} == GATES and not run.skipped
    failed = {r.suite for r in run.results if not r.success}
    assert failed == GATES - {"llm_parse_failures"}  # no LLM annotator in use: nothing to check
    assert all(not r.error for r in run.results)

    labels = _gate(run, "labelled_pairs_have_features")
    assert labels.blocking and labels.unexpected_count == 1 and labels.table == "raw.annotations, raw.labels"
    assert rows["labelled_pairs_have_features"] == [("l8", "i6", "judge:gpt-4", "b")]  # not the tie l4

    weights = rows["domain_weights_min_pairs"]
    by_rule: dict[str, set[tuple[str, str, str]]] = {}
    for row in weights:
        by_rule.setdefault(row[-1], set()).add((row[1], row[4], row[5]))  # mechanism, domain, concept
    assert by_rule == {
        "domain weights on fewer than 20 pairs": {
            ("judge:gpt-4", "code", c) for c in ("clarity", "safety", 'has "quotes" and spaces')
        },
        "a domain deviation without has_domain_weights": {
            ("judge:gpt-4", "chat", "safety"),
            ("human:crowd", "chat", "safety"),
        },
        "domain weights on an unknown number of pairs": {("human:crowd", "chat", "clarity")},
    }
    assert len(weights) == _gate(run, "domain_weights_min_pairs").unexpected_count == 12  # x 2 representations

    assert rows["swap_consistency"] == [("offline", "v1", 15, 15, 9, 0.6)]

    ranks = {row[:4]: row[4:] for row in rows["top_concepts_ranks"]}  # (n_rows, min, max, n_out_of_order)
    assert ranks == {
        ("fit1", "judge:gpt-4", "comp", "code"): (3, 2, 6, 0),
        ("fit1", "human:crowd", "score", "chat"): (3, 1, 3, 2),
    }

    baseline = _gate(run, "beats_length_only")
    assert not baseline.success and not baseline.blocking  # recorded, publication goes ahead
    assert rows["beats_length_only"] == [("judge:gpt-4", "comp", 0.4, 0.5, False)]


def test_thresholds_move_the_verdict_and_none_skips_the_gate(broken: Runs) -> None:
    (relaxed, relaxed_rows), (disabled, _) = broken["relaxed"], broken["disabled"]
    # one decisive label without features is allowed now: passes, and the row is still kept in audit
    labels = _gate(relaxed, "labelled_pairs_have_features")
    assert labels.success and labels.unexpected_count == 1
    assert labels.expected == "max_labels_without_features=1"
    assert relaxed_rows["labelled_pairs_have_features"] == [("l8", "i6", "judge:gpt-4", "b")]
    # 5 pairs are enough now; the rows that break the other two rules still fail
    weights = {row[-1] for row in relaxed_rows["domain_weights_min_pairs"]}
    assert weights == {"a domain deviation without has_domain_weights", "domain weights on an unknown number of pairs"}
    assert relaxed.skipped == {
        "swap_consistency": ("raw.annotations", "max_swap_inconsistency_rate threshold is None (gate disabled)"),
        "llm_parse_failures": (
            "raw.annotations, raw.llm_cache",
            "max_parse_failure_rate threshold is None (gate disabled)",
        ),
    }
    assert {r.suite for r in relaxed.results} == GATES - set(relaxed.skipped)

    assert set(disabled.skipped) == {"labelled_pairs_have_features", "domain_weights_min_pairs"}
    assert disabled.skipped["domain_weights_min_pairs"] == (
        "marts.fct_concept_effects",
        "min_domain_pairs threshold is None (gate disabled)",
    )
    assert _gate(disabled, "swap_consistency").success  # 0.6 <= 0.7


def test_a_skipped_gate_is_recorded_as_skipped_never_passed(tmp_path: Path) -> None:
    db = build_fixture_db(tmp_path / "warehouse" / "preflens.duckdb")
    report = run_quality_checks(db, thresholds={"max_swap_inconsistency_rate": None})
    assert report.success and report.skipped == ["swap_consistency"]
    (row,) = [r for r in report.results if r.suite == "swap_consistency"]
    assert row.skipped and row.expectation_type == "suite_skipped"
    assert row.observed == "skipped: max_swap_inconsistency_rate threshold is None (gate disabled)"
    frame = report.to_frame()
    assert frame.loc[frame["suite"] == "swap_consistency", "observed"].str.startswith("skipped: ").all()
    assert "skipped: swap_consistency" in report.format_failures()


# ------------------------------------------------------------------ the LLM annotator's gates

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


@pytest.fixture(scope="module")
def llm(tmp_path_factory: pytest.TempPathFactory) -> Runs:
    db = build_fixture_db(tmp_path_factory.mktemp("llm") / "warehouse" / "preflens.duckdb")
    # the LLM annotator (model "gpt 4o", sanitised gpt_4o in its version) annotated i1 and i6, swap-consistently
    mutate(
        db,
        f"update raw.annotations set annotator_version = '{LLM_VERSION}', is_consistent = true where annotator = 'llm'",
    )
    mutate(
        db, "insert into raw.labels values ('l8', 'i6', 'judge:gpt-4', 'judge', 'b', null, null, 'f', 8, 'ing2', now())"
    )
    _llm_calls(
        db,
        "gpt 4o",
        ok=18,
        failures=[
            ("comp_ab", "malformed: not JSON"),
            ("score", "truncated: finish_reason=length"),
            ("comp_ba", "http_503: HTTP 503"),  # a transport failure, not a parse failure
            ("propose", "malformed: not JSON"),  # discovery, not an annotation call
        ],
    )
    _llm_calls(db, "old-model", ok=1, failures=[("comp_ab", "malformed: x")] * 3)  # not in use
    inferred = _run(db, LLM_ACTIVE)
    # the models named explicitly, every failed call counted; and a gate whose SQL breaks
    mutate(db, "alter table marts.fct_concept_effects drop column has_domain_weights")
    explicit = _run(db, replace(LLM_ACTIVE, llm_models=("old-model", "gpt 4o"), parse_failure_outcomes=None))
    return {"inferred": inferred, "explicit": explicit}


def test_parse_failure_rate_counts_parse_failures_of_the_annotation_calls_of_the_model_in_use(
    llm: Runs,
) -> None:
    run, rows = llm["inferred"]
    gate = _gate(run, "llm_parse_failures")
    assert not gate.success and gate.blocking and gate.table == "raw.annotations, raw.llm_cache"
    # 2 parse failures in 21 annotation calls (the 503 counts as a call, the discovery call and the old model not)
    (model, n_calls, n_failures, rate) = rows["llm_parse_failures"][0]
    assert (model, n_calls, n_failures) == ("gpt 4o", 21, 2) and rate == pytest.approx(2 / 21)
    assert len(rows["llm_parse_failures"]) == 1


def test_annotations_of_another_annotator_do_not_count_as_features(
    llm: Runs,
) -> None:
    run, rows = llm["inferred"]
    # the LLM annotator is active: the offline-only items i2, i4, i5 (l2, l6, l7) lack its features, l8 (i6) not
    assert [r[0] for r in rows["labelled_pairs_have_features"]] == ["l2", "l6", "l7"]
    assert _gate(run, "swap_consistency").success  # its cells are all consistent; the offline ones don't count


def test_named_models_and_every_failed_call(llm: Runs) -> None:
    run, rows = llm["explicit"]
    by_model = {r[0]: r[1:3] for r in rows["llm_parse_failures"]}
    assert by_model == {"gpt 4o": (21, 3), "old-model": (4, 3)}  # the 503 counts now; the old model's calls too


def test_broken_gate_sql_is_a_failure_not_a_crash(llm: Runs) -> None:
    run, _ = llm["explicit"]
    gate = _gate(run, "domain_weights_min_pairs")
    assert not gate.success and gate.blocking and "has_domain_weights" in (gate.error or "")


def test_unsafe_annotator_is_refused_before_dbt(tmp_path: Path) -> None:
    db = build_fixture_db(tmp_path / "warehouse" / "preflens.duckdb")
    with pytest.raises(ValueError, match="annotator"):
        run_gate_tests(Paths(warehouse=db.parent), QualityThresholds(annotator="x' or 1=1 --"), build_id="x")
    assert not (db.parent / "dbt_target" / "run_results.json").exists()


# ------------------------------------------------------------------ thresholds: one owner, passed as dbt vars


def test_defaults_match_the_dbt_vars_and_every_gate_reads_its_threshold_var() -> None:
    dbt_vars = yaml.safe_load((REPO / "dbt_project" / "dbt_project.yml").read_text())["vars"]
    th = QualityThresholds()
    assert th.min_domain_pairs == dbt_vars["min_domain_pairs"]
    gate_vars = th.gate_vars()
    assert gate_vars["quality_gates"] is True and "annotator" not in gate_vars
    gates = REPO / "dbt_project" / "data-tests" / "gates"
    assert {p.stem for p in gates.glob("*.sql")} == GATES
    for name, threshold in [
        ("labelled_pairs_have_features", "max_labels_without_features"),
        ("domain_weights_min_pairs", "min_domain_pairs"),
        ("swap_consistency", "max_swap_inconsistency_rate"),
        ("llm_parse_failures", "max_parse_failure_rate"),
    ]:
        sql = (gates / f"{name}.sql").read_text()
        assert f"gate_enabled('{threshold}')" in sql and f"var('{threshold}'" in sql
        assert threshold in gate_vars
    # the values are never written into the SQL: the gates read the vars
    assert "0.35" not in (gates / "swap_consistency.sql").read_text()
    assert gate_vars["parse_failure_outcomes"] == list(th.parse_failure_outcomes or ())


def test_a_build_s_dbt_vars_set_the_shared_thresholds() -> None:
    from pipelines.build.quality import thresholds_from_dbt_vars

    # only the vars that are also gate thresholds, typed as the gates use them; an empty value keeps the default
    assert thresholds_from_dbt_vars({"top_k": "5", "min_domain_pairs": "8", "cv_folds": "3"}) == {"min_domain_pairs": 8}
    assert thresholds_from_dbt_vars({"min_domain_pairs": ""}) == {}
    th = QualityThresholds(**thresholds_from_dbt_vars({"min_domain_pairs": "8"}))
    assert th.min_domain_pairs == 8 and th.gate_vars()["min_domain_pairs"] == 8
    with pytest.raises(ValueError, match="bogus"):
        coerce_thresholds({"bogus": 1})


# ------------------------------------------------------------------ a failing gate states what it measured (issue 11)


def test_a_failing_rate_gate_states_the_rate_it_measured_against_its_threshold(broken: Runs) -> None:
    """Not "1 failing rows": the swap-inconsistency rate it measured (9 of the 15 swap-checked cells), the threshold
    it was held to, and whose rate it is, in the result and in the message that stops the build."""
    from pipelines.build.quality import QualityReport

    run, _ = broken["default"]
    swap = _gate(run, "swap_consistency")
    assert swap.observed == (
        "swap_inconsistency_rate 60.0% (9 of 15) > 35.0% (max_swap_inconsistency_rate) for offline v1; "
        "1 failing row in audit.swap_consistency"
    ), swap.observed
    assert swap.unexpected_count == 1
    message = QualityReport(results=run.results).format_failures()
    assert "swap_inconsistency_rate 60.0% (9 of 15) > 35.0% (max_swap_inconsistency_rate)" in message, message
    # a count gate states its count against the allowance
    labels = _gate(run, "labelled_pairs_have_features")
    assert labels.observed.startswith("1 decisive label without features > 0 allowed (max_labels_without_features)"), (
        labels.observed
    )
    # a gate that passed within its allowance keeps the plain count (nothing failed)
    relaxed = _gate(broken["relaxed"][0], "labelled_pairs_have_features")
    assert relaxed.success and relaxed.observed == "1 failing rows in audit.labelled_pairs_have_features"


def test_a_failing_parse_failure_gate_states_the_rate_per_model(llm: Runs) -> None:
    run, _ = llm["inferred"]
    gate = _gate(run, "llm_parse_failures")
    assert gate.observed.startswith("parse_failure_rate 9.5% (2 of 21) > 5.0% (max_parse_failure_rate) for gpt 4o; "), (
        gate.observed
    )
    two = _gate(llm["explicit"][0], "llm_parse_failures")  # two models over the rate, worst first
    assert two.observed.startswith(
        "parse_failure_rate 75.0% (3 of 4) > 5.0% (max_parse_failure_rate) for old-model; "
        "parse_failure_rate 14.3% (3 of 21) > 5.0% (max_parse_failure_rate) for gpt 4o; "
    ), two.observed
