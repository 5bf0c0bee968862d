"""Great Expectations suites for the marts, defined in code (no ``gx/`` folder).

Each suite is first described as plain data (:class:`SuiteSpec` holding :class:`ExpectationSpec`), built
from the live DuckDB connection: concept columns of the wide feature tables are discovered from the
table schema, and expected row counts are computed with SQL on the ``raw`` tables. :func:`to_gx_suite`
turns a spec into a GE 1.x ``ExpectationSuite``; GE is imported lazily (its import costs ~2 s).

Concept names are data (they may contain spaces or quotes): they are only ever passed to GE as column
names of a pandas DataFrame, never interpolated into SQL. Table names go through :func:`quote_ident`.

Some gates are not about a table's own rows but about a derived frame (rates per annotator version or
per LLM model, decisive labels without features, domains with weights, rank groups): their
:class:`SuiteDefinition` has a ``frame`` builder returning a :class:`FrameQuery` (parameterised SQL) or a
:class:`Skip` with the reason the gate does not apply (recorded, never silently passed). Every threshold
lives in :class:`QualityThresholds`; ``None`` disables a gate.
"""

from __future__ import annotations

import contextlib
import functools
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any

import duckdb

from pipelines.core.config import dbt_project_vars

if TYPE_CHECKING:  # pragma: no cover
    import great_expectations as gx

MARTS = "marts"
RAW = "raw"

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


#: thresholds shared with the dbt tests are dbt vars (one owner: dbt_project.yml)
_DBT_VARS = dbt_project_vars()


@dataclass(frozen=True)
class QualityThresholds:
    """Tunable bounds and switches of the suites.

    ``max_abs_lift_pct`` bounds ``|shared/deviation/global_lift_pct|`` of ``fct_concept_effects``. Global
    lift is ``50 * weight`` (py_models/lift.py), so the default (dbt var ``max_abs_lift_pct``, 500) means
    ``|weight| <= 10``. Real
    strong concepts reach weights of 2-4 on the sample (lift 100-200%); 10 on a ternary feature means
    near-perfect separation or a numerical blow-up, which must not be published. ``max_local_lift_pct``
    is the upper bound of ``local_lift_pct`` (``None``: none; it is a relative change in P(a), so it is
    >= -100 always but unbounded above).
    ``annotator``/``annotator_version`` name the active annotator; when ``None`` it is taken from the
    ``(annotator, annotator_version)`` pairs present in ``marts.fct_pair_concepts``.
    """

    max_abs_lift_pct: float | None = float(_DBT_VARS["max_abs_lift_pct"])  # type: ignore[arg-type]
    max_local_lift_pct: float | None = None
    annotator: str | None = None
    annotator_version: str | None = None
    single_annotator: bool = True
    feature_nulls_allowed: bool = False
    feature_columns_match_concepts: bool = True
    #: py_models/fit_job.py predicts 'tie' when prob_a == 0.5 exactly (scored as 0.5 accuracy credit)
    predicted_winner_values: tuple[str, ...] = ("a", "b", "tie")
    #: decisive raw.labels rows (winner a/b) allowed to have no annotation of the active annotator
    #: (so no row in the feature tables); ``None`` disables the gate
    max_labels_without_features: int | None = 0
    #: a domain needs this many decisive pairs to receive domain-specific weights (dbt var ``min_domain_pairs``)
    min_domain_pairs: int | None = int(_DBT_VARS["min_domain_pairs"])  # type: ignore[call-overload]
    #: per annotator version in use: share of swap-checked cells (``is_consistent`` not null) that were inconsistent
    max_swap_inconsistency_rate: float | None = 0.35
    #: per LLM model in use: share of annotation calls in ``raw.llm_cache`` that failed to parse
    max_parse_failure_rate: float | None = 0.05
    #: ``raw.llm_cache.error`` outcomes that count as parse failures (``None``: every ``status = 'failed'`` row)
    parse_failure_outcomes: tuple[str, ...] | None = ("malformed", "truncated", "incomplete", "refusal", "invalid")
    #: ``raw.llm_cache.stage`` values of the annotation calls (``None``: every stage, discovery included)
    llm_annotation_stages: tuple[str, ...] | None = ("relevance", "comp_ab", "comp_ba", "score", "score_a", "score_b")
    #: annotator names whose versions are LLM annotators (version ``llm-<prompt>:<model>``)
    llm_annotators: tuple[str, ...] = ("llm",)
    #: models whose calls count; ``None``: inferred from the LLM annotator versions in use
    llm_models: tuple[str, ...] | None = None
    #: ``rpt_top_concepts`` keeps at most this many ranks per group (dbt var ``top_k``); ``None``: no upper bound
    top_k: int | None = int(_DBT_VARS["top_k"])  # type: ignore[call-overload]
    #: ``dim_concepts.definition`` must match this (Python ``re.match`` semantics); ``None`` disables
    definition_regex: str | None = r"^A high score indicates \S.*; A low score indicates \S.*$"


@dataclass(frozen=True)
class ExpectationSpec:
    """One expectation: a GE class name from ``great_expectations.expectations`` and its kwargs.

    ``error`` is set when the expectation could not even be built (e.g. the SQL computing an expected
    row count failed); the runner then records it as a failure without calling GE.
    """

    type: str
    kwargs: dict[str, Any] = field(default_factory=dict)
    error: str | None = None

    @property
    def column(self) -> str | None:
        """The column (or comma-joined column list) the expectation is about, if any."""
        if "column" in self.kwargs:
            return str(self.kwargs["column"])
        if "column_list" in self.kwargs:
            return ", ".join(map(str, self.kwargs["column_list"]))
        if "column_A" in self.kwargs:
            return f"{self.kwargs['column_A']}, {self.kwargs['column_B']}"
        return None


@dataclass(frozen=True)
class SuiteSpec:
    """A suite over one table (``schema.table``)."""

    name: str
    schema: str
    table: str
    expectations: tuple[ExpectationSpec, ...]

    @property
    def qualified_table(self) -> str:
        return f"{self.schema}.{self.table}"


@dataclass(frozen=True)
class FrameQuery:
    """The frame a suite validates when it is not the whole table: ``con.execute(sql, params).df()``."""

    sql: str
    params: tuple[Any, ...] = ()


@dataclass(frozen=True)
class Skip:
    """A suite that does not apply to this build, and why (recorded in the report and the results table)."""

    reason: str


FrameBuilder = Callable[[duckdb.DuckDBPyConnection, QualityThresholds], "FrameQuery | Skip"]


@dataclass(frozen=True)
class SuiteDefinition:
    """How to build the suite of one table once its columns are known.

    ``frame`` (optional) turns the suite into a check on a derived frame (an aggregate or the violating
    rows) instead of ``select * from table``; it may return :class:`Skip`. ``optional_table``: a missing
    table skips the suite instead of failing it. ``row_label`` names a frame column that identifies each
    row; failing expectations then list the labels of the offending rows.
    """

    name: str
    schema: str
    table: str
    build: Callable[[duckdb.DuckDBPyConnection, Sequence[str], QualityThresholds], list[ExpectationSpec]]
    frame: FrameBuilder | None = None
    optional_table: bool = False
    row_label: str | None = None
    #: False: failures are recorded (raw.quality_results.blocking = false) and shown, but do not stop publication
    blocking: bool = True

    def spec(
        self, con: duckdb.DuckDBPyConnection, columns: Sequence[str], thresholds: QualityThresholds
    ) -> SuiteSpec:
        return SuiteSpec(self.name, self.schema, self.table, tuple(self.build(con, columns, thresholds)))


# --------------------------------------------------------------------------------------------- helpers


def quote_ident(name: str) -> str:
    """Quote an SQL identifier: double quotes, embedded double quotes doubled."""
    return '"' + name.replace('"', '""') + '"'


def qualified(schema: str, table: str) -> str:
    """``"schema"."table"``, both quoted."""
    return f"{quote_ident(schema)}.{quote_ident(table)}"


def table_columns(con: duckdb.DuckDBPyConnection, schema: str, table: str) -> list[str] | None:
    """Column names of ``schema.table`` (table or view) in the current catalog, or ``None`` if absent."""
    rows = con.execute(
        """
        select column_name from information_schema.columns
        where table_catalog = current_database() and table_schema = ? and table_name = ?
        order by ordinal_position
        """,
        [schema, table],
    ).fetchall()
    return [r[0] for r in rows] or None


def _e(type_: str, **kwargs: Any) -> ExpectationSpec:
    return ExpectationSpec(type_, kwargs)


def _not_null(columns: Sequence[str]) -> list[ExpectationSpec]:
    return [_e("ExpectColumnValuesToNotBeNull", column=c) for c in columns]


def _active_annotator_filter(th: QualityThresholds, alias: str) -> tuple[str, list[Any]]:
    """SQL predicate selecting the active annotator's rows of ``raw.annotations`` aliased ``alias``."""
    if th.annotator is not None:
        sql, params = f"{alias}.annotator = ?", [th.annotator]
        if th.annotator_version is not None:
            sql += f" and {alias}.annotator_version = ?"
            params.append(th.annotator_version)
        return sql, params
    mart = qualified(MARTS, "fct_pair_concepts")
    # Inferred from the mart. An empty mart means "no annotator": then every raw row is expected,
    # so an empty mart over non-empty raw annotations fails the row count.
    return (
        f"((select count(*) from {mart}) = 0 or ({alias}.annotator, {alias}.annotator_version) in "
        f"(select distinct annotator, annotator_version from {mart}))",
        [],
    )


def _row_count_from_sql(con: duckdb.DuckDBPyConnection, sql: str, params: list[Any], what: str) -> ExpectationSpec:
    """``ExpectTableRowCountToEqual`` with the value computed by ``sql``, or an errored spec."""
    try:
        (value,) = con.execute(sql, params).fetchall()[0]
    except duckdb.Error as exc:
        return ExpectationSpec(
            "ExpectTableRowCountToEqual", {}, error=f"could not compute expected row count ({what}): {exc}"
        )
    return _e("ExpectTableRowCountToEqual", value=int(value))


def expected_pair_concept_rows(con: duckdb.DuckDBPyConnection, th: QualityThresholds) -> ExpectationSpec:
    """Rows of ``fct_pair_concepts`` == rows of ``raw.annotations`` for the active annotator."""
    pred, params = _active_annotator_filter(th, "r")
    sql = f"select count(*) from {qualified(RAW, 'annotations')} r where {pred}"
    return _row_count_from_sql(con, sql, params, "raw.annotations of the active annotator")


def expected_feature_rows(con: duckdb.DuckDBPyConnection, th: QualityThresholds) -> ExpectationSpec:
    """Rows of a wide feature table == decisive labels (winner a/b) whose item has annotations."""
    pred, params = _active_annotator_filter(th, "r")
    sql = f"""
        select count(*) from {qualified(RAW, 'labels')} l
        where l.winner in ('a', 'b')
          and exists (select 1 from {qualified(RAW, 'annotations')} r where r.item_id = l.item_id and {pred})
    """
    return _row_count_from_sql(con, sql, params, "decisive raw.labels with annotations")


def _mart_concepts(con: duckdb.DuckDBPyConnection) -> list[str]:
    rows = con.execute(f"select distinct concept from {qualified(MARTS, 'fct_pair_concepts')} order by 1").fetchall()
    return [r[0] for r in rows]


# ---------------------------------------------------------------------------------------------- suites


def annotations_expectations(
    con: duckdb.DuckDBPyConnection, columns: Sequence[str], th: QualityThresholds
) -> list[ExpectationSpec]:
    """``marts.fct_pair_concepts``: key, value sets, row count vs ``raw.annotations``."""
    out = _not_null([*PAIR_CONCEPT_KEY, "comp_value", "score_a", "score_b", "score_diff", "is_relevant"])
    out += [
        _e("ExpectCompoundColumnsToBeUnique", column_list=list(PAIR_CONCEPT_KEY)),
        _e("ExpectColumnValuesToBeInSet", column="comp_value", value_set=list(COMP_VALUES)),
        _e("ExpectColumnValuesToBeInSet", column="score_a", value_set=list(SCORE_VALUES)),
        _e("ExpectColumnValuesToBeInSet", column="score_b", value_set=list(SCORE_VALUES)),
        _e("ExpectColumnValuesToBeInSet", column="score_diff", value_set=list(SCORE_DIFF_VALUES)),
    ]
    if th.single_annotator:
        out += [
            _e("ExpectColumnUniqueValueCountToBeBetween", column="annotator", min_value=0, max_value=1),
            _e("ExpectColumnUniqueValueCountToBeBetween", column="annotator_version", min_value=0, max_value=1),
        ]
    if th.annotator is not None:
        out.append(_e("ExpectColumnValuesToBeInSet", column="annotator", value_set=[th.annotator]))
    if th.annotator_version is not None:
        out.append(_e("ExpectColumnValuesToBeInSet", column="annotator_version", value_set=[th.annotator_version]))
    out.append(expected_pair_concept_rows(con, th))
    return out


def _features_expectations(
    value_set: Sequence[int] | None, bound: float | None = None, match_concepts: bool = True
) -> Callable[..., list[ExpectationSpec]]:
    """Wide feature-table checks: keys, one row per decisive pair, concept columns in ``value_set`` (or within
    +-``bound``), and (``match_concepts``) exactly the catalog's concepts as columns."""

    def build(con: duckdb.DuckDBPyConnection, columns: Sequence[str], th: QualityThresholds) -> list[ExpectationSpec]:
        concepts = [c for c in columns if c not in FEATURE_KEY_COLUMNS]
        out = _not_null(FEATURE_KEY_COLUMNS)
        out += [
            _e("ExpectColumnValuesToBeUnique", column="label_id"),
            _e("ExpectColumnValuesToBeInSet", column="winner", value_set=list(WINNERS)),
            # at least one concept column
            _e("ExpectTableColumnCountToBeBetween", min_value=len(FEATURE_KEY_COLUMNS) + 1),
        ]
        if th.feature_columns_match_concepts and match_concepts:
            try:
                expected_cols = [*FEATURE_KEY_COLUMNS, *_mart_concepts(con)]
                out.append(_e("ExpectTableColumnsToMatchSet", column_set=expected_cols, exact_match=True))
            except duckdb.Error as exc:
                out.append(
                    ExpectationSpec(
                        "ExpectTableColumnsToMatchSet", {}, error=f"could not list concepts of fct_pair_concepts: {exc}"
                    )
                )
        for c in concepts:
            if value_set is not None:
                out.append(_e("ExpectColumnValuesToBeInSet", column=c, value_set=list(value_set)))
            else:
                out.append(_e("ExpectColumnValuesToBeBetween", column=c, min_value=-bound, max_value=bound))
            if not th.feature_nulls_allowed:
                out.append(_e("ExpectColumnValuesToNotBeNull", column=c))
        out.append(expected_feature_rows(con, th))
        return out

    return build


features_comp_expectations = _features_expectations(COMP_VALUES)
features_score_expectations = _features_expectations(SCORE_DIFF_VALUES)
#: measure-rep: transformed differences are finite and bounded (log1p of counts <= ~25, identity of 0..100 scores);
#: only concepts with a raw measurement are columns, so the catalog match does not apply
MEASURE_DIFF_BOUND = 1000.0
features_measure_expectations = _features_expectations(None, bound=MEASURE_DIFF_BOUND, match_concepts=False)


def measure_features_frame(con: duckdb.DuckDBPyConnection, th: QualityThresholds) -> FrameQuery | Skip | None:
    """The measure-rep table as is, or skipped when no concept has a raw measurement (LLM annotations)."""
    cols = table_columns(con, MARTS, "fct_pair_features_measure") or []
    if not [c for c in cols if c not in FEATURE_KEY_COLUMNS]:
        return Skip("no concept has a raw measurement (measure-rep not fitted)")
    return None


def baselines_frame(con: duckdb.DuckDBPyConnection, th: QualityThresholds) -> FrameQuery | Skip:
    """Per mechanism and representation of the latest fit: does the concept model beat length alone?"""
    if table_columns(con, MARTS, "rpt_model_baselines") is None:
        return Skip("rpt_model_baselines does not exist")
    return FrameQuery(
        f"""
        select mechanism, representation, accuracy, accuracy_length_only, beats_length_only,
               mechanism || ' / ' || representation || ': ' || cast(round(100 * accuracy, 1) as varchar)
                 || '% vs length only ' || coalesce(cast(round(100 * accuracy_length_only, 1) as varchar), '?')
                 || '%' as row_label
        from {qualified(MARTS, 'rpt_model_baselines')}
        where accuracy_length_only is not null
        """
    )


def baselines_expectations(
    con: duckdb.DuckDBPyConnection, columns: Sequence[str], th: QualityThresholds
) -> list[ExpectationSpec]:
    """Recorded, not blocking: the explanation should predict better than response length alone."""
    return [_e("ExpectColumnValuesToBeInSet", column="beats_length_only", value_set=[True])]


def _lift_bounds(columns: Sequence[str], th: QualityThresholds) -> list[ExpectationSpec]:
    b = th.max_abs_lift_pct
    if b is None:
        return []
    return [_e("ExpectColumnValuesToBeBetween", column=c, min_value=-b, max_value=b) for c in columns]


def coerce_thresholds(th: QualityThresholds | Mapping[str, Any] | None) -> QualityThresholds:
    """``QualityThresholds`` from itself, a mapping of its fields (unknown keys raise), or ``None``."""
    if th is None:
        return QualityThresholds()
    if isinstance(th, QualityThresholds):
        return th
    unknown = set(th) - {f.name for f in fields(QualityThresholds)}
    if unknown:
        raise ValueError(f"unknown quality threshold(s): {sorted(unknown)}")
    return QualityThresholds(**th)


def effects_expectations(
    con: duckdb.DuckDBPyConnection, columns: Sequence[str], th: QualityThresholds
) -> list[ExpectationSpec]:
    """``marts.fct_concept_effects``: key not null/unique, lifts within ``±max_abs_lift_pct``."""
    out = _not_null(EFFECTS_KEY)
    out.append(_e("ExpectCompoundColumnsToBeUnique", column_list=list(EFFECTS_KEY)))
    out += _lift_bounds(("global_lift_pct", "shared_lift_pct", "deviation_lift_pct"), th)
    out.append(_e("ExpectColumnValuesToBeBetween", column="n_pairs", min_value=0))
    return out


def predictions_expectations(
    con: duckdb.DuckDBPyConnection, columns: Sequence[str], th: QualityThresholds
) -> list[ExpectationSpec]:
    """``marts.fct_predictions``: key not null/unique, ``prob_a`` in [0, 1], actual winner in {a, b}."""
    out = _not_null([*PREDICTIONS_KEY, "prob_a", "predicted_winner", "actual_winner"])
    out += [
        _e("ExpectCompoundColumnsToBeUnique", column_list=list(PREDICTIONS_KEY)),
        _e("ExpectColumnValuesToBeBetween", column="prob_a", min_value=0.0, max_value=1.0),
        _e("ExpectColumnValuesToBeInSet", column="predicted_winner", value_set=list(th.predicted_winner_values)),
        _e("ExpectColumnValuesToBeInSet", column="actual_winner", value_set=list(WINNERS)),
    ]
    return out


def metrics_expectations(
    con: duckdb.DuckDBPyConnection, columns: Sequence[str], th: QualityThresholds
) -> list[ExpectationSpec]:
    """``marts.fct_model_metrics``: accuracy in [0, 1], ``n_pairs`` > 0, ``log_loss`` >= 0."""
    out = _not_null(["fit_id", "mechanism", "representation", "n_pairs", "accuracy"])
    out += [
        _e("ExpectColumnValuesToBeBetween", column="accuracy", min_value=0.0, max_value=1.0),
        _e("ExpectColumnValuesToBeBetween", column="n_pairs", min_value=0, strict_min=True),
        _e("ExpectColumnValuesToBeBetween", column="log_loss", min_value=0.0),
    ]
    return out


def local_explanations_expectations(
    con: duckdb.DuckDBPyConnection, columns: Sequence[str], th: QualityThresholds
) -> list[ExpectationSpec]:
    """``marts.fct_local_explanations``: key not null/unique, ``local_lift_pct`` >= -100 (and <= bound)."""
    out = _not_null(LOCAL_EXPLANATIONS_KEY)
    out.append(_e("ExpectCompoundColumnsToBeUnique", column_list=list(LOCAL_EXPLANATIONS_KEY)))
    bounds: dict[str, Any] = {"min_value": -100.0}
    if th.max_local_lift_pct is not None:
        bounds["max_value"] = th.max_local_lift_pct
    out.append(_e("ExpectColumnValuesToBeBetween", column="local_lift_pct", **bounds))
    return out


# ----------------------------------------------------------------------------- gates on derived frames

DIM_CONCEPTS_KEY: tuple[str, ...] = ("concept", "annotator", "annotator_version")
TOP_CONCEPTS_GROUP: tuple[str, ...] = ("fit_id", "mechanism", "representation", "domain")
BUILD_STATUSES: tuple[str, ...] = ("running", "success", "failed")
SHARED_DOMAIN = "__shared__"


def _disabled(what: str) -> Skip:
    return Skip(f"{what} threshold is None (gate disabled)")


def labels_without_features_frame(con: duckdb.DuckDBPyConnection, th: QualityThresholds) -> FrameQuery | Skip:
    """Decisive ``raw.labels`` rows whose item has no annotation of the active annotator (expected: none)."""
    if th.max_labels_without_features is None:
        return _disabled("max_labels_without_features")
    pred, params = _active_annotator_filter(th, "r")
    return FrameQuery(
        f"""
        select l.label_id, l.item_id, l.mechanism, l.winner,
               l.mechanism || ' / ' || l.label_id || ' (item ' || l.item_id || ')' as row_label
        from {qualified(RAW, 'labels')} l
        where l.winner in ('a', 'b')
          and not exists (select 1 from {qualified(RAW, 'annotations')} r where r.item_id = l.item_id and {pred})
        order by l.mechanism, l.label_id
        """,
        tuple(params),
    )


def labels_without_features_expectations(
    con: duckdb.DuckDBPyConnection, columns: Sequence[str], th: QualityThresholds
) -> list[ExpectationSpec]:
    """Every decisive labelled pair has features: the frame of those that don't has <= the allowed rows."""
    return [_e("ExpectTableRowCountToBeBetween", min_value=0, max_value=int(th.max_labels_without_features or 0))]


def domain_weights_frame(con: duckdb.DuckDBPyConnection, th: QualityThresholds) -> FrameQuery | Skip:
    """Rows of ``fct_concept_effects`` that carry (or claim) domain-specific weights."""
    if th.min_domain_pairs is None:
        return _disabled("min_domain_pairs")
    return FrameQuery(
        f"""
        select fit_id, mechanism, representation, domain, concept, domain_deviation, n_pairs, has_domain_weights,
               mechanism || ' / ' || representation || ' / ' || domain || ' (' || coalesce(cast(n_pairs as varchar), 'null')
                 || ' pairs)' as row_label
        from {qualified(MARTS, 'fct_concept_effects')}
        where domain <> ? and (domain_deviation <> 0 or has_domain_weights)
        """,
        (SHARED_DOMAIN,),
    )


def domain_weights_expectations(
    con: duckdb.DuckDBPyConnection, columns: Sequence[str], th: QualityThresholds
) -> list[ExpectationSpec]:
    """A non-zero deviation needs ``has_domain_weights``; domain weights need ``n_pairs >= min_domain_pairs``."""
    return [
        _e("ExpectColumnValuesToBeInSet", column="has_domain_weights", value_set=[True]),
        _e("ExpectColumnValuesToNotBeNull", column="n_pairs"),
        _e("ExpectColumnValuesToBeBetween", column="n_pairs", min_value=int(th.min_domain_pairs or 0)),
    ]


def swap_consistency_frame(con: duckdb.DuckDBPyConnection, th: QualityThresholds) -> FrameQuery | Skip:
    """Swap-inconsistency rate per annotator version in use (cells with ``is_consistent`` not null)."""
    if th.max_swap_inconsistency_rate is None:
        return _disabled("max_swap_inconsistency_rate")
    pred, params = _active_annotator_filter(th, "r")
    sql = f"""
        select r.annotator, r.annotator_version,
               count(*) as n_cells,
               count(r.is_consistent) as n_swap_checked,
               count(*) filter (where not r.is_consistent) as n_inconsistent,
               (count(*) filter (where not r.is_consistent))::double / count(r.is_consistent) as swap_inconsistency_rate,
               r.annotator || ' ' || r.annotator_version as row_label
        from {qualified(RAW, 'annotations')} r
        where {pred}
        group by r.annotator, r.annotator_version
        having count(r.is_consistent) > 0
        order by 1, 2
    """
    n = con.execute(f"select count(*) from ({sql})", params).fetchall()[0][0]
    if n == 0:
        return Skip("no swap-checked annotations for the annotator(s) in use (the offline annotator has none)")
    return FrameQuery(sql, tuple(params))


def swap_consistency_expectations(
    con: duckdb.DuckDBPyConnection, columns: Sequence[str], th: QualityThresholds
) -> list[ExpectationSpec]:
    return [
        _e("ExpectColumnValuesToBeBetween", column="swap_inconsistency_rate", min_value=0.0,
           max_value=float(th.max_swap_inconsistency_rate or 0.0)),
    ]


def _llm_versions_in_use(con: duckdb.DuckDBPyConnection, th: QualityThresholds) -> list[str]:
    if th.annotator is not None:
        if th.annotator not in th.llm_annotators:
            return []
        if th.annotator_version is not None:
            return [th.annotator_version]
        rows = con.execute(
            f"select distinct annotator_version from {qualified(RAW, 'annotations')} where annotator = ?",
            [th.annotator],
        ).fetchall()
        return [r[0] for r in rows]
    rows = con.execute(
        f"select distinct annotator, annotator_version from {qualified(MARTS, 'fct_pair_concepts')}"
    ).fetchall()
    return [v for a, v in rows if a in th.llm_annotators]


def models_of_versions(versions: Sequence[str]) -> list[str]:
    """Model names (as sanitised in the version) of LLM annotator versions ``llm-<prompt>:<model>``."""
    return sorted({v.split(":", 1)[1] for v in versions if ":" in v})


def parse_failures_frame(con: duckdb.DuckDBPyConnection, th: QualityThresholds) -> FrameQuery | Skip:
    """Parse-failure rate of the LLM annotation calls per model in use, from ``raw.llm_cache``."""
    if th.max_parse_failure_rate is None:
        return _disabled("max_parse_failure_rate")
    if th.llm_models is not None:
        models, model_expr = list(th.llm_models), "c.model"
    else:
        versions = _llm_versions_in_use(con, th)
        if not versions:
            return Skip("no LLM annotator in use")
        models = models_of_versions(versions)
        # the annotator version carries the model name with unsafe characters replaced (pipelines/annotate/llm.py)
        model_expr = "regexp_replace(c.model, '[^A-Za-z0-9_.:/+-]', '_', 'g')"
    if not models:
        return Skip("no LLM model in use")
    params: list[Any] = list(models)
    where = [f"{model_expr} in ({', '.join('?' * len(models))})"]
    if th.llm_annotation_stages is not None:
        where.append(f"c.stage in ({', '.join('?' * len(th.llm_annotation_stages))})")
        params += list(th.llm_annotation_stages)
    failed = "c.status = 'failed'"
    if th.parse_failure_outcomes is not None:
        failed += f" and split_part(coalesce(c.error, ''), ':', 1) in ({', '.join('?' * len(th.parse_failure_outcomes))})"
    sql = f"""
        select c.model, count(*) as n_calls,
               count(*) filter (where {failed}) as n_parse_failures,
               (count(*) filter (where {failed}))::double / count(*) as parse_failure_rate,
               c.model as row_label
        from {qualified(RAW, 'llm_cache')} c
        where {' and '.join(where)}
        group by c.model
        order by c.model
    """
    # parameters in textual order: the failure filter appears first (twice), then the where clause
    fparams = list(th.parse_failure_outcomes or ())
    all_params = [*fparams, *fparams, *params]
    n = con.execute(f"select count(*) from ({sql})", all_params).fetchall()[0][0]
    if n == 0:
        return Skip(f"no LLM annotation calls in raw.llm_cache for model(s) {', '.join(models)}")
    return FrameQuery(sql, tuple(all_params))


def parse_failures_expectations(
    con: duckdb.DuckDBPyConnection, columns: Sequence[str], th: QualityThresholds
) -> list[ExpectationSpec]:
    return [
        _e("ExpectColumnValuesToBeBetween", column="parse_failure_rate", min_value=0.0,
           max_value=float(th.max_parse_failure_rate or 0.0)),
    ]


def dim_concepts_expectations(
    con: duckdb.DuckDBPyConnection, columns: Sequence[str], th: QualityThresholds
) -> list[ExpectationSpec]:
    """``marts.dim_concepts``: key unique, paper-style definition, hash present, relevance rate in [0, 1]."""
    out = _not_null([*DIM_CONCEPTS_KEY, "definition", "definition_hash"])
    out.append(_e("ExpectCompoundColumnsToBeUnique", column_list=list(DIM_CONCEPTS_KEY)))
    if th.single_annotator:
        out.append(_e("ExpectColumnValuesToBeUnique", column="concept"))
    if th.definition_regex is not None:
        out.append(_e("ExpectColumnValuesToMatchRegex", column="definition", regex=th.definition_regex))
    if "scope" in columns:
        out.append(_e("ExpectColumnValuesToBeInSet", column="scope", value_set=["shared", "specific"]))
    if "relevance_rate" in columns:
        out.append(_e("ExpectColumnValuesToBeBetween", column="relevance_rate", min_value=0.0, max_value=1.0))
    return out


def top_concepts_expectations(
    con: duckdb.DuckDBPyConnection, columns: Sequence[str], th: QualityThresholds
) -> list[ExpectationSpec]:
    """``marts.rpt_top_concepts``: one concept per rank and one rank per concept in each group, ranks in 1..k."""
    out = _not_null([*TOP_CONCEPTS_GROUP, "concept_rank", "concept"])
    out += [
        _e("ExpectCompoundColumnsToBeUnique", column_list=[*TOP_CONCEPTS_GROUP, "concept_rank"]),
        _e("ExpectCompoundColumnsToBeUnique", column_list=[*TOP_CONCEPTS_GROUP, "concept"]),
        _e("ExpectColumnValuesToBeBetween", column="concept_rank", min_value=1,
           **({"max_value": int(th.top_k)} if th.top_k is not None else {})),
        _e("ExpectColumnValuesToBeInSet", column="direction", value_set=["rewards", "penalises"]),
    ]
    return out  # lift bounds are checked once, on fct_concept_effects


def top_concepts_ranks_frame(con: duckdb.DuckDBPyConnection, th: QualityThresholds) -> FrameQuery | Skip:
    """Per group of ``rpt_top_concepts``: ranks must be 1..n without gaps, ordered by descending |lift|."""
    t = qualified(MARTS, "rpt_top_concepts")
    g = ", ".join(TOP_CONCEPTS_GROUP)
    return FrameQuery(
        f"""
        with r as (
            select {g}, concept_rank, abs(global_lift_pct) as a,
                   lag(abs(global_lift_pct)) over (partition by {g} order by concept_rank) as prev_a
            from {t}
        )
        select {g},
               count(*) as n_rows,
               min(concept_rank) as min_rank,
               max(concept_rank) as max_rank,
               count(*) filter (where prev_a is not null and a > prev_a + 1e-9) as n_out_of_order,
               mechanism || ' / ' || representation || ' / ' || domain as row_label
        from r
        group by {g}
        order by {g}
        """
    )


def top_concepts_ranks_expectations(
    con: duckdb.DuckDBPyConnection, columns: Sequence[str], th: QualityThresholds
) -> list[ExpectationSpec]:
    return [
        _e("ExpectColumnValuesToBeInSet", column="min_rank", value_set=[1]),
        _e("ExpectColumnPairValuesToBeEqual", column_A="max_rank", column_B="n_rows"),
        _e("ExpectColumnValuesToBeInSet", column="n_out_of_order", value_set=[0]),
    ]


def builds_expectations(
    con: duckdb.DuckDBPyConnection, columns: Sequence[str], th: QualityThresholds
) -> list[ExpectationSpec]:
    """``marts.fct_builds``: at least the running build, key unique, known statuses, no negative durations."""
    out = _not_null(["build_id", "status", "started_at"])
    out += [
        _e("ExpectTableRowCountToBeBetween", min_value=1),
        _e("ExpectColumnValuesToBeUnique", column="build_id"),
        _e("ExpectColumnValuesToBeInSet", column="status", value_set=list(BUILD_STATUSES)),
    ]
    if "duration_seconds" in columns:
        out.append(_e("ExpectColumnValuesToBeBetween", column="duration_seconds", min_value=0))
    for c in ("n_items", "n_labels", "n_annotations"):
        if c in columns:
            out.append(_e("ExpectColumnValuesToBeBetween", column=c, min_value=0))
    return out


SUITES: tuple[SuiteDefinition, ...] = (
    SuiteDefinition("annotations", MARTS, "fct_pair_concepts", annotations_expectations),
    SuiteDefinition("features_comp", MARTS, "fct_pair_features_comp", features_comp_expectations),
    SuiteDefinition("features_score", MARTS, "fct_pair_features_score", features_score_expectations),
    SuiteDefinition("features_measure", MARTS, "fct_pair_features_measure", features_measure_expectations,
                    frame=measure_features_frame, optional_table=True),
    SuiteDefinition("concept_effects", MARTS, "fct_concept_effects", effects_expectations),
    SuiteDefinition("predictions", MARTS, "fct_predictions", predictions_expectations),
    SuiteDefinition("model_metrics", MARTS, "fct_model_metrics", metrics_expectations),
    SuiteDefinition("local_explanations", MARTS, "fct_local_explanations", local_explanations_expectations),
    SuiteDefinition("labelled_pairs_have_features", RAW, "labels", labels_without_features_expectations,
                    frame=labels_without_features_frame, row_label="row_label"),
    SuiteDefinition("domain_weights_min_pairs", MARTS, "fct_concept_effects", domain_weights_expectations,
                    frame=domain_weights_frame, row_label="row_label"),
    SuiteDefinition("swap_consistency", RAW, "annotations", swap_consistency_expectations,
                    frame=swap_consistency_frame, row_label="row_label"),
    SuiteDefinition("llm_parse_failures", RAW, "llm_cache", parse_failures_expectations,
                    frame=parse_failures_frame, optional_table=True, row_label="row_label"),
    SuiteDefinition("concepts", MARTS, "dim_concepts", dim_concepts_expectations),
    SuiteDefinition("top_concepts", MARTS, "rpt_top_concepts", top_concepts_expectations),
    SuiteDefinition("top_concepts_ranks", MARTS, "rpt_top_concepts", top_concepts_ranks_expectations,
                    frame=top_concepts_ranks_frame, row_label="row_label"),
    SuiteDefinition("builds", MARTS, "fct_builds", builds_expectations),
    SuiteDefinition("beats_length_only", MARTS, "rpt_model_baselines", baselines_expectations,
                    frame=baselines_frame, optional_table=True, row_label="row_label", blocking=False),
)
"""Every suite, in run order. Suite names are the keys of ``optional`` / ``only`` in the runner."""


# ------------------------------------------------------------------------------------------ GE bridge


@contextlib.contextmanager
def _without_unusable_spark_connect() -> Iterator[None]:
    """Hide ``pyspark.sql.connect`` from GE's optional import when Spark Connect cannot work anyway.

    GE's ``compatibility/pyspark.py`` imports ``pyspark.sql.connect`` if PySpark is installed (it is, for
    the optional Spark build). Without ``grpc``, PySpark 4's ``sql/connect/utils.py`` then calls
    ``sys.exit(0)`` whenever ``__main__`` has no ``__file__`` (``python -c``, pytest-xdist workers): the
    process silently ends. Marking the package unimportable for the duration of GE's import makes GE
    fall back to "Spark Connect not available", which it handles.
    """
    import importlib.util
    import sys

    name = "pyspark.sql.connect"
    hide = name not in sys.modules and importlib.util.find_spec("grpc") is None
    if hide:
        try:
            hide = importlib.util.find_spec("pyspark") is not None
        except (ImportError, ValueError):
            hide = False
    if not hide:
        yield
        return
    sys.modules[name] = None  # type: ignore[assignment]  # import raises ImportError
    try:
        yield
    finally:
        if sys.modules.get(name, 0) is None:
            del sys.modules[name]


@functools.cache
def import_gx() -> Any:
    """Import Great Expectations quietly (no analytics, no INFO logs)."""
    import logging

    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    with _without_unusable_spark_connect():
        import great_expectations

    for name in ("great_expectations", "great_expectations.core", "great_expectations.data_context"):
        logging.getLogger(name).setLevel(logging.ERROR)
    return great_expectations


def to_gx_suite(spec: SuiteSpec) -> gx.ExpectationSuite:
    """The GE 1.x ``ExpectationSuite`` for ``spec`` (errored expectations left out)."""
    gx_mod = import_gx()
    import great_expectations.expectations as gxe

    suite = gx_mod.ExpectationSuite(name=spec.name)
    for exp in spec.expectations:
        if exp.error is None:
            suite.add_expectation(getattr(gxe, exp.type)(**exp.kwargs))
    return suite
