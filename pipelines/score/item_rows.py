"""Rows of the build database that belong to a score run's items, copied into the run's own file."""

from __future__ import annotations

import duckdb


def copy_item_rows(
    build: duckdb.DuckDBPyConnection,
    con: duckdb.DuckDBPyConnection,
    table: str,
    where: str,
    params: list[object],
    *,
    columns: str = "*",
    verb: str = "insert or ignore",
) -> int:
    """Copy ``columns`` of the rows of ``raw.<table>`` (alias ``t``) of the build database whose item is one of the
    score file ``con``'s items and that match ``where``, into the same table of ``con``; the rows copied."""
    items = con.execute("select item_id from raw.items").df()
    build.register("_score_items", items)
    try:
        rows = build.sql(
            f"select {columns} from raw.{table} t join _score_items using (item_id) where {where}", params=params
        ).to_arrow_table()
    finally:
        build.unregister("_score_items")
    con.register("_build_rows", rows)
    try:
        con.execute(f"{verb} into raw.{table} by name select * from _build_rows")
    finally:
        con.unregister("_build_rows")
    return rows.num_rows
