"""The spec types of the Great Expectations suites, and the SQL helpers the checks share.

A suite is first described as plain data (:class:`SuiteSpec` holding :class:`ExpectationSpec`), then turned
into a GE suite (:mod:`.gx_shim`). Table names go through :func:`quote_ident`; names from data are never
interpolated into SQL.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import duckdb

MARTS = "marts"


@dataclass(frozen=True)
class ExpectationSpec:
    """One expectation: a GE class name from ``great_expectations.expectations`` and its kwargs."""

    type: str
    kwargs: dict[str, Any] = field(default_factory=dict)

    @property
    def column(self) -> str | None:
        """The column (or comma-joined column list) the expectation is about, if any."""
        if "column" in self.kwargs:
            return str(self.kwargs["column"])
        if "column_list" in self.kwargs:
            return ", ".join(map(str, self.kwargs["column_list"]))
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


def expect(type_: str, **kwargs: Any) -> ExpectationSpec:
    """An :class:`ExpectationSpec` of GE class ``type_`` with ``kwargs``."""
    return ExpectationSpec(type_, kwargs)


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
