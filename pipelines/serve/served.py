"""The one way readers open the served copy, and the lookups every reader shares (which tables and columns it has,
which fit is the latest)."""

from __future__ import annotations

from pathlib import Path

import duckdb


class NoServedCopy(FileNotFoundError):
    """There is no served copy to read yet."""


def connect_served(
    serve_db: Path,
    *,
    error: type[Exception] = NoServedCopy,
    hint: str = "run `preflens run` first",
) -> duckdb.DuckDBPyConnection:
    """A read-only connection on a published DuckDB file; ``error(…)`` naming the path and ``hint`` when it is
    missing (each command raises its own error type, so its exit code and message stay its own)."""
    serve_db = Path(serve_db)
    if not serve_db.is_file():
        raise error(f"no served copy at {serve_db}; {hint}")
    return duckdb.connect(str(serve_db), read_only=True)


def table_columns(con: duckdb.DuckDBPyConnection, table: str, schema: str = "marts") -> list[str]:
    """Column names of ``schema.table`` in order; empty when the table does not exist."""
    rows = con.execute(
        """select column_name from information_schema.columns
           where table_schema = ? and table_name = ? order by ordinal_position""",
        [schema, table],
    ).fetchall()
    return [r[0] for r in rows]


def latest_fit_id(con: duckdb.DuckDBPyConnection, table: str = "fct_concept_effects") -> str | None:
    """The latest fit of a served copy: ``marts.dim_latest_fit`` (ordered by the time the fit ran). Every reader
    of the served copy takes "latest" from here. Served copies published before that model existed have no
    fitted_at to order by; for those the largest fit id of ``table`` is used (build ids sort by time)."""
    if table_columns(con, "dim_latest_fit"):
        sql = "select fit_id from marts.dim_latest_fit"
    else:
        sql = f"select max(fit_id) from marts.{table}"
    row = con.execute(sql).fetchone()
    return None if row is None else row[0]
