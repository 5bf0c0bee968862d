"""The suites on the marts' own rows: keys, value sets, bounds and expected row counts per table.

Each ``*_expectations(con, columns, thresholds)`` returns the :class:`ExpectationSpec` list of one table's
suite. Concept columns of the wide feature tables are discovered from the table schema; expected row counts
are computed with SQL on the ``raw`` tables.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import duckdb

from pipelines.build.quality.specs import (
    MARTS,
    RAW,
    ExpectationSpec,
    active_annotator_filter,
    expect,
    not_null,
    qualified,
)
from pipelines.build.quality.thresholds import QualityThresholds

WINNERS: tuple[str, ...] = ("a", "b")
COMP_VALUES: tuple[int, ...] = (-1, 0, 1)
SCORE_DIFF_VALUES: tuple[int, ...] = tuple(range(-6, 7))
SCORE_VALUES: tuple[int, ...] = tuple(range(0, 8))

#: Non-concept columns of the wide feature tables; every other column is a concept.
FEATURE_KEY_COLUMNS: tuple[str, ...] = ("label_id", "item_id", "mechanism", "mechanism_type", "domain", "winner")
PAIR_CONCEPT_KEY: tuple[str, ...] = ("item_id", "concept", "annotator", "annotator_version")
EFFECTS_KEY: tuple[str, ...] = ("fit_id", "mechanism", "representation", "control", "domain", "concept")
PREDICTIONS_KEY: tuple[str, ...] = ("fit_id", "label_id", "representation")
LOCAL_EXPLANATIONS_KEY: tuple[str, ...] = ("fit_id", "label_id", "representation", "concept")
DIM_CONCEPTS_KEY: tuple[str, ...] = ("concept", "annotator", "annotator_version")
TOP_CONCEPTS_GROUP: tuple[str, ...] = ("fit_id", "mechanism", "representation", "domain")
BUILD_STATUSES: tuple[str, ...] = ("running", "success", "failed")


def _row_count_from_sql(con: duckdb.DuckDBPyConnection, sql: str, params: list[Any], what: str) -> ExpectationSpec:
    """``ExpectTableRowCountToEqual`` with the value computed by ``sql``, or an errored spec."""
    try:
        (value,) = con.execute(sql, params).fetchall()[0]
    except duckdb.Error as exc:
        return ExpectationSpec(
            "ExpectTableRowCountToEqual", {}, error=f"could not compute expected row count ({what}): {exc}"
        )
    return expect("ExpectTableRowCountToEqual", value=int(value))


def expected_pair_concept_rows(con: duckdb.DuckDBPyConnection, th: QualityThresholds) -> ExpectationSpec:
    """Rows of ``fct_pair_concepts`` == rows of ``raw.annotations`` for the active annotator."""
    pred, params = active_annotator_filter(th, "r")
    sql = f"select count(*) from {qualified(RAW, 'annotations')} r where {pred}"
    return _row_count_from_sql(con, sql, params, "raw.annotations of the active annotator")


def expected_feature_rows(con: duckdb.DuckDBPyConnection, th: QualityThresholds) -> ExpectationSpec:
    """Rows of a wide feature table == decisive labels (winner a/b) whose item has annotations."""
    pred, params = active_annotator_filter(th, "r")
    sql = f"""
        select count(*) from {qualified(RAW, "labels")} l
        where l.winner in ('a', 'b')
          and exists (select 1 from {qualified(RAW, "annotations")} r where r.item_id = l.item_id and {pred})
    """
    return _row_count_from_sql(con, sql, params, "decisive raw.labels with annotations")


def _mart_concepts(con: duckdb.DuckDBPyConnection) -> list[str]:
    rows = con.execute(f"select distinct concept from {qualified(MARTS, 'fct_pair_concepts')} order by 1").fetchall()
    return [r[0] for r in rows]


def annotations_expectations(
    con: duckdb.DuckDBPyConnection, columns: Sequence[str], th: QualityThresholds
) -> list[ExpectationSpec]:
    """``marts.fct_pair_concepts``: key, value sets, row count vs ``raw.annotations``."""
    out = not_null([*PAIR_CONCEPT_KEY, "comp_value", "score_a", "score_b", "score_diff", "is_relevant"])
    out += [
        expect("ExpectCompoundColumnsToBeUnique", column_list=list(PAIR_CONCEPT_KEY)),
        expect("ExpectColumnValuesToBeInSet", column="comp_value", value_set=list(COMP_VALUES)),
        expect("ExpectColumnValuesToBeInSet", column="score_a", value_set=list(SCORE_VALUES)),
        expect("ExpectColumnValuesToBeInSet", column="score_b", value_set=list(SCORE_VALUES)),
        expect("ExpectColumnValuesToBeInSet", column="score_diff", value_set=list(SCORE_DIFF_VALUES)),
    ]
    if th.single_annotator:
        out += [
            expect("ExpectColumnUniqueValueCountToBeBetween", column="annotator", min_value=0, max_value=1),
            expect("ExpectColumnUniqueValueCountToBeBetween", column="annotator_version", min_value=0, max_value=1),
        ]
    if th.annotator is not None:
        out.append(expect("ExpectColumnValuesToBeInSet", column="annotator", value_set=[th.annotator]))
    if th.annotator_version is not None:
        out.append(expect("ExpectColumnValuesToBeInSet", column="annotator_version", value_set=[th.annotator_version]))
    out.append(expected_pair_concept_rows(con, th))
    return out


def _features_expectations(
    value_set: Sequence[int] | None, bound: float | None = None, match_concepts: bool = True
) -> Callable[..., list[ExpectationSpec]]:
    """Wide feature-table checks: keys, one row per decisive pair, concept columns in ``value_set`` (or within
    +-``bound``), and (``match_concepts``) exactly the catalog's concepts as columns."""

    def build(con: duckdb.DuckDBPyConnection, columns: Sequence[str], th: QualityThresholds) -> list[ExpectationSpec]:
        concepts = [c for c in columns if c not in FEATURE_KEY_COLUMNS]
        out = not_null(FEATURE_KEY_COLUMNS)
        out += [
            expect("ExpectColumnValuesToBeUnique", column="label_id"),
            expect("ExpectColumnValuesToBeInSet", column="winner", value_set=list(WINNERS)),
            # at least one concept column
            expect("ExpectTableColumnCountToBeBetween", min_value=len(FEATURE_KEY_COLUMNS) + 1),
        ]
        if th.feature_columns_match_concepts and match_concepts:
            try:
                expected_cols = [*FEATURE_KEY_COLUMNS, *_mart_concepts(con)]
                out.append(expect("ExpectTableColumnsToMatchSet", column_set=expected_cols, exact_match=True))
            except duckdb.Error as exc:
                out.append(
                    ExpectationSpec(
                        "ExpectTableColumnsToMatchSet", {}, error=f"could not list concepts of fct_pair_concepts: {exc}"
                    )
                )
        for c in concepts:
            if value_set is not None:
                out.append(expect("ExpectColumnValuesToBeInSet", column=c, value_set=list(value_set)))
            elif bound is not None:
                out.append(expect("ExpectColumnValuesToBeBetween", column=c, min_value=-bound, max_value=bound))
            if not th.feature_nulls_allowed:
                out.append(expect("ExpectColumnValuesToNotBeNull", column=c))
        out.append(expected_feature_rows(con, th))
        return out

    return build


features_comp_expectations = _features_expectations(COMP_VALUES)
features_score_expectations = _features_expectations(SCORE_DIFF_VALUES)
#: measure-rep: transformed differences are finite and bounded (log1p of counts <= ~25, identity of 0..100 scores);
#: only concepts with a raw measurement are columns, so the catalog match does not apply
MEASURE_DIFF_BOUND = 1000.0
features_measure_expectations = _features_expectations(None, bound=MEASURE_DIFF_BOUND, match_concepts=False)


def _lift_bounds(columns: Sequence[str], th: QualityThresholds) -> list[ExpectationSpec]:
    b = th.max_abs_lift_pct
    if b is None:
        return []
    return [expect("ExpectColumnValuesToBeBetween", column=c, min_value=-b, max_value=b) for c in columns]


def effects_expectations(
    con: duckdb.DuckDBPyConnection, columns: Sequence[str], th: QualityThresholds
) -> list[ExpectationSpec]:
    """``marts.fct_concept_effects``: key not null/unique, lifts within ``±max_abs_lift_pct``."""
    out = not_null(EFFECTS_KEY)
    out.append(expect("ExpectCompoundColumnsToBeUnique", column_list=list(EFFECTS_KEY)))
    out += _lift_bounds(("global_lift_pct", "shared_lift_pct", "deviation_lift_pct"), th)
    out.append(expect("ExpectColumnValuesToBeBetween", column="n_pairs", min_value=0))
    return out


def predictions_expectations(
    con: duckdb.DuckDBPyConnection, columns: Sequence[str], th: QualityThresholds
) -> list[ExpectationSpec]:
    """``marts.fct_predictions``: key not null/unique, ``prob_a`` in [0, 1], actual winner in {a, b}."""
    out = not_null([*PREDICTIONS_KEY, "prob_a", "predicted_winner", "actual_winner"])
    out += [
        expect("ExpectCompoundColumnsToBeUnique", column_list=list(PREDICTIONS_KEY)),
        expect("ExpectColumnValuesToBeBetween", column="prob_a", min_value=0.0, max_value=1.0),
        expect("ExpectColumnValuesToBeInSet", column="predicted_winner", value_set=list(th.predicted_winner_values)),
        expect("ExpectColumnValuesToBeInSet", column="actual_winner", value_set=list(WINNERS)),
    ]
    return out


def metrics_expectations(
    con: duckdb.DuckDBPyConnection, columns: Sequence[str], th: QualityThresholds
) -> list[ExpectationSpec]:
    """``marts.fct_model_metrics``: accuracy in [0, 1], ``n_pairs`` > 0, ``log_loss`` >= 0."""
    out = not_null(["fit_id", "mechanism", "representation", "n_pairs", "accuracy"])
    out += [
        expect("ExpectColumnValuesToBeBetween", column="accuracy", min_value=0.0, max_value=1.0),
        expect("ExpectColumnValuesToBeBetween", column="n_pairs", min_value=0, strict_min=True),
        expect("ExpectColumnValuesToBeBetween", column="log_loss", min_value=0.0),
    ]
    return out


def local_explanations_expectations(
    con: duckdb.DuckDBPyConnection, columns: Sequence[str], th: QualityThresholds
) -> list[ExpectationSpec]:
    """``marts.fct_local_explanations``: key not null/unique, ``local_lift_pct`` >= -100 (and <= bound)."""
    out = not_null(LOCAL_EXPLANATIONS_KEY)
    out.append(expect("ExpectCompoundColumnsToBeUnique", column_list=list(LOCAL_EXPLANATIONS_KEY)))
    bounds: dict[str, Any] = {"min_value": -100.0}
    if th.max_local_lift_pct is not None:
        bounds["max_value"] = th.max_local_lift_pct
    out.append(expect("ExpectColumnValuesToBeBetween", column="local_lift_pct", **bounds))
    return out


def dim_concepts_expectations(
    con: duckdb.DuckDBPyConnection, columns: Sequence[str], th: QualityThresholds
) -> list[ExpectationSpec]:
    """``marts.dim_concepts``: key unique, paper-style definition, hash present, relevance rate in [0, 1]."""
    out = not_null([*DIM_CONCEPTS_KEY, "definition", "definition_hash"])
    out.append(expect("ExpectCompoundColumnsToBeUnique", column_list=list(DIM_CONCEPTS_KEY)))
    if th.single_annotator:
        out.append(expect("ExpectColumnValuesToBeUnique", column="concept"))
    if th.definition_regex is not None:
        out.append(expect("ExpectColumnValuesToMatchRegex", column="definition", regex=th.definition_regex))
    if "scope" in columns:
        out.append(expect("ExpectColumnValuesToBeInSet", column="scope", value_set=["shared", "specific"]))
    if "relevance_rate" in columns:
        out.append(expect("ExpectColumnValuesToBeBetween", column="relevance_rate", min_value=0.0, max_value=1.0))
    return out


def top_concepts_expectations(
    con: duckdb.DuckDBPyConnection, columns: Sequence[str], th: QualityThresholds
) -> list[ExpectationSpec]:
    """``marts.rpt_top_concepts``: one concept per rank and one rank per concept in each group, ranks in 1..k."""
    out = not_null([*TOP_CONCEPTS_GROUP, "concept_rank", "concept"])
    out += [
        expect("ExpectCompoundColumnsToBeUnique", column_list=[*TOP_CONCEPTS_GROUP, "concept_rank"]),
        expect("ExpectCompoundColumnsToBeUnique", column_list=[*TOP_CONCEPTS_GROUP, "concept"]),
        expect(
            "ExpectColumnValuesToBeBetween",
            column="concept_rank",
            min_value=1,
            **({"max_value": int(th.top_k)} if th.top_k is not None else {}),
        ),
        expect("ExpectColumnValuesToBeInSet", column="direction", value_set=["rewards", "penalises"]),
    ]
    return out  # lift bounds are checked once, on fct_concept_effects


def builds_expectations(
    con: duckdb.DuckDBPyConnection, columns: Sequence[str], th: QualityThresholds
) -> list[ExpectationSpec]:
    """``marts.fct_builds``: at least the running build, key unique, known statuses, no negative durations."""
    out = not_null(["build_id", "status", "started_at"])
    out += [
        expect("ExpectTableRowCountToBeBetween", min_value=1),
        expect("ExpectColumnValuesToBeUnique", column="build_id"),
        expect("ExpectColumnValuesToBeInSet", column="status", value_set=list(BUILD_STATUSES)),
    ]
    if "duration_seconds" in columns:
        out.append(expect("ExpectColumnValuesToBeBetween", column="duration_seconds", min_value=0))
    for c in ("n_items", "n_labels", "n_annotations"):
        if c in columns:
            out.append(expect("ExpectColumnValuesToBeBetween", column=c, min_value=0))
    return out
