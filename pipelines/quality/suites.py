"""Great Expectations suites for the marts, defined in code (no ``gx/`` folder).

Each suite is first described as plain data (:class:`SuiteSpec` holding :class:`ExpectationSpec`), built
from the live DuckDB connection: concept columns of the wide feature tables are discovered from the
table schema, and expected row counts are computed with SQL on the ``raw`` tables. :func:`to_gx_suite`
turns a spec into a GE 1.x ``ExpectationSuite``; GE is imported lazily (its import costs ~2 s).

Concept names are data (they may contain spaces or quotes): they are only ever passed to GE as column
names of a pandas DataFrame, never interpolated into SQL. Table names go through :func:`quote_ident`.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any

import duckdb

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
EFFECTS_KEY: tuple[str, ...] = ("fit_id", "mechanism", "representation", "domain", "concept")
PREDICTIONS_KEY: tuple[str, ...] = ("fit_id", "label_id", "representation")
LOCAL_EXPLANATIONS_KEY: tuple[str, ...] = ("fit_id", "label_id", "representation", "concept")


@dataclass(frozen=True)
class QualityThresholds:
    """Tunable bounds and switches of the suites.

    ``max_abs_lift_pct`` bounds ``|shared/deviation/global_lift_pct|`` of ``fct_concept_effects``. Global
    lift is ``50 * weight`` (py_models/explain.py), so 100 means ``|weight| <= 2``: a strong but real
    concept can reach it; raise it (or pass ``None`` to disable) if that happens. ``max_local_lift_pct``
    is the upper bound of ``local_lift_pct`` (``None``: none; it is a relative change in P(a), so it is
    >= -100 always but unbounded above).
    ``annotator``/``annotator_version`` name the active annotator; when ``None`` it is taken from the
    ``(annotator, annotator_version)`` pairs present in ``marts.fct_pair_concepts``.
    """

    max_abs_lift_pct: float | None = 100.0
    max_local_lift_pct: float | None = None
    annotator: str | None = None
    annotator_version: str | None = None
    single_annotator: bool = True
    feature_nulls_allowed: bool = False
    feature_columns_match_concepts: bool = True
    #: py_models/fit_job.py predicts 'tie' when prob_a == 0.5 exactly (scored as 0.5 accuracy credit)
    predicted_winner_values: tuple[str, ...] = ("a", "b", "tie")


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
class SuiteDefinition:
    """How to build the suite of one table once its columns are known."""

    name: str
    schema: str
    table: str
    build: Callable[[duckdb.DuckDBPyConnection, Sequence[str], QualityThresholds], list[ExpectationSpec]]

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


def _features_expectations(value_set: Sequence[int]) -> Callable[..., list[ExpectationSpec]]:
    def build(con: duckdb.DuckDBPyConnection, columns: Sequence[str], th: QualityThresholds) -> list[ExpectationSpec]:
        concepts = [c for c in columns if c not in FEATURE_KEY_COLUMNS]
        out = _not_null(FEATURE_KEY_COLUMNS)
        out += [
            _e("ExpectColumnValuesToBeUnique", column="label_id"),
            _e("ExpectColumnValuesToBeInSet", column="winner", value_set=list(WINNERS)),
            # at least one concept column
            _e("ExpectTableColumnCountToBeBetween", min_value=len(FEATURE_KEY_COLUMNS) + 1),
        ]
        if th.feature_columns_match_concepts:
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
            out.append(_e("ExpectColumnValuesToBeInSet", column=c, value_set=list(value_set)))
            if not th.feature_nulls_allowed:
                out.append(_e("ExpectColumnValuesToNotBeNull", column=c))
        out.append(expected_feature_rows(con, th))
        return out

    return build


features_comp_expectations = _features_expectations(COMP_VALUES)
features_score_expectations = _features_expectations(SCORE_DIFF_VALUES)


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


SUITES: tuple[SuiteDefinition, ...] = (
    SuiteDefinition("annotations", MARTS, "fct_pair_concepts", annotations_expectations),
    SuiteDefinition("features_comp", MARTS, "fct_pair_features_comp", features_comp_expectations),
    SuiteDefinition("features_score", MARTS, "fct_pair_features_score", features_score_expectations),
    SuiteDefinition("concept_effects", MARTS, "fct_concept_effects", effects_expectations),
    SuiteDefinition("predictions", MARTS, "fct_predictions", predictions_expectations),
    SuiteDefinition("model_metrics", MARTS, "fct_model_metrics", metrics_expectations),
    SuiteDefinition("local_explanations", MARTS, "fct_local_explanations", local_explanations_expectations),
)
"""Every suite, in run order. Suite names are the keys of ``optional`` / ``only`` in the runner."""


# ------------------------------------------------------------------------------------------ GE bridge


def import_gx() -> Any:
    """Import Great Expectations quietly (no analytics, no INFO logs)."""
    import logging

    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
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
