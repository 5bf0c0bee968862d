"""`preflens export --format csv|parquet --table NAME`: one published table of the served copy as a file.

Every mart is already in the served copy and, as Parquet, beside it (``serve/parquet``); this writes one of them
where a user wants it, e.g. ``fct_mechanism_contrasts`` or ``rpt_concept_drift`` as CSV for a spreadsheet. The name
must be a table or view of schema ``marts`` (it is checked against the catalog and quoted, never spliced as SQL);
the file is written aside and renamed, so a reader never sees half of it.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from pipelines.serve.served import connect_served

#: the file formats of a table export, as DuckDB's COPY names them
TABLE_FORMATS = ("csv", "parquet")


class TableExportError(Exception):
    """The table cannot be exported (no served copy, unknown table)."""


@dataclass(frozen=True)
class TableExport:
    """What was written."""

    table: str
    path: Path
    rows: int

    def lines(self) -> list[str]:
        return [f"wrote marts.{self.table}: {self.rows} rows to {self.path}"]


def _identifier(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def export_table(serve_db: Path, table: str, path: Path, fmt: str) -> TableExport:
    """Write ``marts.<table>`` of the served copy to ``path`` as ``fmt`` (csv with a header, or parquet)."""
    if fmt not in TABLE_FORMATS:
        raise TableExportError(f"unknown table format {fmt!r}; choose one of {', '.join(TABLE_FORMATS)}")
    con = connect_served(serve_db, error=TableExportError)
    try:
        names = [
            str(r[0])
            for r in con.execute(
                "select table_name from information_schema.tables where table_schema = 'marts' order by table_name"
            ).fetchall()
        ]
        if table not in names:
            raise TableExportError(f"no table marts.{table} in the served copy; it has: {', '.join(names)}")
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
        os.close(fd)
        try:
            options = "format csv, header true" if fmt == "csv" else "format parquet"
            con.execute(f"copy (select * from marts.{_identifier(table)}) to {_literal(tmp)} ({options})")
            rows = int(con.execute(f"select count(*) from marts.{_identifier(table)}").fetchall()[0][0])
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    finally:
        con.close()
    return TableExport(table=table, path=path, rows=rows)
