"""The spec types of the suites, and the SQL helpers their builders share.

A suite is first described as plain data (:class:`SuiteSpec` holding :class:`ExpectationSpec`), built from
the live DuckDB connection by a :class:`SuiteDefinition`. Some gates are not about a table's own rows but
about a derived frame: their definition has a ``frame`` builder returning a :class:`FrameQuery`
(parameterised SQL) or a :class:`Skip` with the reason the gate does not apply (recorded, never silently
passed).

Concept names are data (they may contain spaces or quotes): they are only ever passed to GE as column
names of a pandas DataFrame, never interpolated into SQL. Table names go through :func:`quote_ident`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import duckdb

from pipelines.build.quality.thresholds import QualityThresholds

MARTS = "marts"
RAW = "raw"


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


#: ``None``: check the whole table after all (e.g. the frame builder only decides whether to skip)
FrameBuilder = Callable[[duckdb.DuckDBPyConnection, QualityThresholds], "FrameQuery | Skip | None"]


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
    #: False: failures are recorded (ops.quality_results.blocking = false) and shown, but do not stop publication
    blocking: bool = True

    def spec(self, con: duckdb.DuckDBPyConnection, columns: Sequence[str], thresholds: QualityThresholds) -> SuiteSpec:
        return SuiteSpec(self.name, self.schema, self.table, tuple(self.build(con, columns, thresholds)))


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


def expect(type_: str, **kwargs: Any) -> ExpectationSpec:
    """An :class:`ExpectationSpec` of GE class ``type_`` with ``kwargs``."""
    return ExpectationSpec(type_, kwargs)


def not_null(columns: Sequence[str]) -> list[ExpectationSpec]:
    """One not-null expectation per column."""
    return [expect("ExpectColumnValuesToNotBeNull", column=c) for c in columns]


def active_annotator_filter(th: QualityThresholds, alias: str) -> tuple[str, list[Any]]:
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
