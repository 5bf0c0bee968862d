"""Publish the marts: a read-only served DuckDB copy (old-DuckDB compatible) plus Parquet exports.

The served copy is built in a temporary file next to ``serve_db`` with a storage compatibility
version DuckDB 1.x clients can open (DuckDB 2.0 writes a format 1.x cannot read; ecosystem.md TL;DR 2),
then moved over ``serve_db`` with ``os.replace``. On POSIX this is atomic: a reader holding the old
file keeps reading the old, consistent snapshot and never blocks publication; new readers see the new
file. (On Windows ``os.replace`` fails while a reader holds the file.) Views are materialised as tables.

:func:`check_and_publish` is the quality gate and the one path ``preflens run`` takes: it runs the checks
(:func:`~pipelines.build.quality.run_quality_checks`: the dbt quality gates, then the Great Expectations
publication contract), records the results (``ops.quality_results`` and the HTML page) when given a build id, and
publishes only if every blocking check passed. The contract and the copy read one attachment of the build database
(so what was checked is what is published); dbt runs the gates before it, with the file free.

Publication-time writes to the build database (``record``: the build's final row) happen in a transaction
the copy reads from, committed only after the swap: the served copy shows them, and the build database
never claims a publication that did not happen. A killed publisher leaves ``.tmp-*`` files behind;
:func:`remove_stale_temporaries` (called by the next build, under the build lock) removes them.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb

from pipelines.build.quality import (
    BuildFile,
    BuildHandle,
    QualityReport,
    QualityResult,
    QualityThresholds,
    attach_build,
    quote_ident,
    record_quality_run,
    run_quality_checks,
    write_quality_report,
)

DEFAULT_STORAGE_VERSION = "v1.4.0"
_SERVE_ALIAS = "__preflens_serve"
_MANIFEST = "_manifest.json"

#: writes to the build database that the served copy must show but that count only once it is swapped in
PublishRecord = Callable[[duckdb.DuckDBPyConnection], None]


class PublishError(RuntimeError):
    """Publication could not be completed; the served copy and exports are untouched."""


class QualityGateFailed(RuntimeError):
    """Raised by ``check_and_publish(..., raise_on_failure=True)`` when a blocking check failed."""

    def __init__(self, report: QualityReport) -> None:
        super().__init__(report.format_failures())
        self.report = report


@dataclass(frozen=True)
class PublishedTable:
    """One relation of the served copy."""

    schema: str
    name: str
    source_kind: str  # 'table' or 'view' in the build DB (always a table in the served copy)
    rows: int
    parquet_path: Path


@dataclass(frozen=True)
class PublishResult:
    """What was published and where."""

    serve_db: Path
    exports_dir: Path
    storage_version: str | None
    storage_tag: str | None  # what DuckDB reported for the new file, e.g. 'v1.4.0+'
    tables: tuple[PublishedTable, ...] = field(default_factory=tuple)

    @property
    def row_counts(self) -> dict[str, int]:
        """``{"schema.table": rows}``."""
        return {f"{t.schema}.{t.name}": t.rows for t in self.tables}


# --------------------------------------------------------------------------------------------- helpers


def _sql_str(s: str | os.PathLike[str]) -> str:
    return "'" + str(s).replace("'", "''") + "'"


def _check_storage_version(v: str | None) -> None:
    if v is not None and not re.fullmatch(r"v\d+\.\d+\.\d+", v):
        raise ValueError(f"storage_version must look like 'v1.4.0', got {v!r}")


def _remove(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextlib.contextmanager
def open_build(build_db: Path, *, read_only: bool = True) -> Iterator[duckdb.DuckDBPyConnection]:
    """In-memory connection with ``build_db`` attached (READ_ONLY by default) under its file stem and made current."""
    con = attach_build(Path(build_db), read_only=read_only)
    try:
        yield con
    finally:
        con.close()


def _relations(con: duckdb.DuckDBPyConnection, catalog: str, schemas: Sequence[str]) -> list[tuple[str, str, str]]:
    found = con.execute(
        "select distinct schema_name from duckdb_schemas() where database_name = ?", [catalog]
    ).fetchall()
    missing = set(schemas) - {r[0] for r in found}
    if missing:
        raise PublishError(f"schema(s) not in the build database: {sorted(missing)}")
    rows = con.execute(
        f"""
        select table_schema, table_name, case when table_type = 'VIEW' then 'view' else 'table' end
        from information_schema.tables
        where table_catalog = ? and table_schema in ({", ".join("?" * len(schemas))})
        order by table_schema, table_name
        """,
        [catalog, *schemas],
    ).fetchall()
    names = [r[1] for r in rows]
    dupes = {n for n in names if names.count(n) > 1}
    if dupes:
        raise PublishError(f"table names repeated across schemas (Parquet exports are flat): {sorted(dupes)}")
    bad = [n for n in names if "/" in n or "\\" in n or n.startswith(".")]
    if bad:
        raise PublishError(f"table names unusable as file names: {bad}")
    return [(r[0], r[1], r[2]) for r in rows]


def _is_read_only(con: duckdb.DuckDBPyConnection) -> bool:
    """True for a connection opened with ``read_only=True`` (it cannot attach a writable file)."""
    return con.execute("select current_setting('access_mode')").fetchall()[0][0] == "read_only"


def _build_served_copy(
    con: duckdb.DuckDBPyConnection,
    catalog: str,
    relations: list[tuple[str, str, str]],
    schemas: Sequence[str],
    tmp_db: Path,
    storage_version: str | None,
    via_arrow: bool,
) -> tuple[dict[tuple[str, str], int], str | None]:
    """Copy ``relations`` from ``catalog`` into a fresh file ``tmp_db``, checkpoint and detach it.

    The file is attached to ``con`` itself (SQL copy), or, ``via_arrow``, rows stream through Arrow into a
    private in-memory connection: a read-only ``con`` cannot attach a writable file, and a transaction that
    has written the build database cannot write a second one.
    """
    target = duckdb.connect() if via_arrow else con
    opts = f" (storage_version {_sql_str(storage_version)})" if storage_version else ""
    s = quote_ident(_SERVE_ALIAS)
    target.execute(f"attach {_sql_str(tmp_db)} as {s}{opts}")
    try:
        (tags,) = target.execute(
            "select tags from duckdb_databases() where database_name = ?", [_SERVE_ALIAS]
        ).fetchall()[0]
        tag = (tags or {}).get("storage_version")
        counts: dict[tuple[str, str], int] = {}
        for schema in schemas:
            target.execute(f"create schema if not exists {s}.{quote_ident(schema)}")
        for schema, name, _kind in relations:
            src = f"{quote_ident(catalog)}.{quote_ident(schema)}.{quote_ident(name)}"
            dst = f"{s}.{quote_ident(schema)}.{quote_ident(name)}"
            if via_arrow:
                target.register("__preflens_src", con.sql(f"select * from {src}").arrow())
                try:
                    target.execute(f"create table {dst} as select * from __preflens_src")
                finally:
                    target.unregister("__preflens_src")
            else:
                target.execute(f"create table {dst} as select * from {src}")
            (n,) = target.execute(f"select count(*) from {dst}").fetchall()[0]
            counts[(schema, name)] = int(n)
        target.execute(f"checkpoint {s}")
    finally:
        target.execute(f"detach {s}")
        if via_arrow:
            target.close()
    return counts, tag


def _write_parquet_tmp(tmp_db: Path, relations: list[tuple[str, str, str]], exports_dir: Path, suffix: str) -> None:
    """Export each table of the (closed) served copy to ``<exports_dir>/<table>.parquet<suffix>``."""
    con = duckdb.connect()
    try:
        con.execute(f"attach {_sql_str(tmp_db)} as src (read_only)")
        for schema, name, _ in relations:
            target = exports_dir / f"{name}.parquet{suffix}"
            con.execute(
                f"copy (select * from src.{quote_ident(schema)}.{quote_ident(name)}) "
                f"to {_sql_str(target)} (format parquet)"
            )
    finally:
        con.close()


def _publish_from(
    con: duckdb.DuckDBPyConnection,
    catalog: str,
    serve_db: Path,
    exports_dir: Path,
    schemas: Sequence[str],
    storage_version: str | None,
    record: PublishRecord | None = None,
) -> PublishResult:
    serve_db = Path(serve_db).resolve()
    exports_dir = Path(exports_dir).resolve()
    serve_db.parent.mkdir(parents=True, exist_ok=True)
    exports_dir.mkdir(parents=True, exist_ok=True)
    suffix = f".tmp-{os.getpid()}"
    tmp_db = serve_db.with_name(f".{serve_db.name}{suffix}")
    tmp_wal = tmp_db.with_name(tmp_db.name + ".wal")
    relations = _relations(con, catalog, schemas)
    tmp_parquets = [exports_dir / f"{name}.parquet{suffix}" for _, name, _ in relations]
    for p in (tmp_db, tmp_wal, *tmp_parquets):
        _remove(p)
    in_transaction = False
    try:
        if record is not None:
            con.execute("begin transaction")
            in_transaction = True
            record(con)
        via_arrow = in_transaction or _is_read_only(con)
        counts, tag = _build_served_copy(con, catalog, relations, schemas, tmp_db, storage_version, via_arrow)
        if tmp_wal.exists():  # checkpoint + detach should leave none
            raise PublishError(f"temporary copy left a WAL behind: {tmp_wal}")
        _write_parquet_tmp(tmp_db, relations, exports_dir, suffix)
        for p in (tmp_db, *tmp_parquets):
            _fsync_file(p)
        # Everything is built: swap in. Each os.replace is atomic; the DB goes first.
        _remove(serve_db.with_name(serve_db.name + ".wal"))  # a stale WAL must never meet the new file
        os.replace(tmp_db, serve_db)
        _fsync_dir(serve_db.parent)
        if in_transaction:  # the served copy is in place: now the build database may say so
            in_transaction = False
            con.execute("commit")
        old_manifest = _read_manifest(exports_dir)
        published: list[PublishedTable] = []
        for (schema, name, kind), tmp_p in zip(relations, tmp_parquets, strict=True):
            final = exports_dir / f"{name}.parquet"
            os.replace(tmp_p, final)
            published.append(PublishedTable(schema, name, kind, counts[(schema, name)], final))
        for stale in set(old_manifest) - {t.parquet_path.name for t in published}:
            _remove(exports_dir / stale)
        _write_manifest(exports_dir, published, suffix)
        _fsync_dir(exports_dir)
    except BaseException:
        if in_transaction:
            con.execute("rollback")
        for p in (tmp_db, tmp_wal, *tmp_parquets):
            _remove(p)
        raise
    return PublishResult(serve_db, exports_dir, storage_version, tag, tuple(published))


def _read_manifest(exports_dir: Path) -> list[str]:
    try:
        data = json.loads((exports_dir / _MANIFEST).read_text())
        return [str(f) for f in data.get("files", []) if "/" not in str(f)]
    except (FileNotFoundError, ValueError, AttributeError):
        return []


def _write_manifest(exports_dir: Path, tables: list[PublishedTable], suffix: str) -> None:
    tmp = exports_dir / f"{_MANIFEST}{suffix}"
    body = {
        "files": [t.parquet_path.name for t in tables],
        "tables": {f"{t.schema}.{t.name}": {"file": t.parquet_path.name, "rows": t.rows} for t in tables},
    }
    tmp.write_text(json.dumps(body, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, exports_dir / _MANIFEST)


# ---------------------------------------------------------------------------------------------- public


def publish(
    build_db: Path | duckdb.DuckDBPyConnection,
    serve_db: Path,
    exports_dir: Path,
    *,
    schemas: Iterable[str] = ("marts",),
    storage_version: str | None = DEFAULT_STORAGE_VERSION,
) -> PublishResult:
    """Copy every table/view of ``schemas`` into a new served DuckDB file and Parquet exports.

    ``build_db`` is a path (attached read-only to a private in-memory connection) or an open
    connection whose current catalog is the build DB (use this when the calling process already holds
    the file: DuckDB 2.0 refuses to attach one file twice in a process). A read-write connection gets
    the temp copy attached to it; a read-only one is copied through Arrow.
    ``storage_version=None`` writes DuckDB's latest format. Parquet files are ``<table>.parquet`` in
    ``exports_dir``; ``_manifest.json`` there lists them, and files of tables that disappeared are removed.
    Raises :class:`PublishError` (nothing swapped) if a schema is missing.
    """
    _check_storage_version(storage_version)
    schemas = tuple(schemas)
    serve_db = Path(serve_db).resolve()
    if isinstance(build_db, duckdb.DuckDBPyConnection):
        (catalog,) = build_db.execute("select current_database()").fetchall()[0]
        return _publish_from(build_db, catalog, serve_db, Path(exports_dir), schemas, storage_version)
    if Path(build_db).resolve() == serve_db:
        raise PublishError("build_db and serve_db are the same file")
    with open_build(Path(build_db)) as con:
        (catalog,) = con.execute("select current_database()").fetchall()[0]
        return _publish_from(con, catalog, serve_db, Path(exports_dir), schemas, storage_version)


def check_and_publish(
    build_db: Path | BuildHandle,
    serve_db: Path,
    exports_dir: Path,
    *,
    thresholds: QualityThresholds | Mapping[str, Any] | None = None,
    schemas: Iterable[str] = ("marts",),
    storage_version: str | None = DEFAULT_STORAGE_VERSION,
    raise_on_failure: bool = False,
    build_id: str | None = None,
    report_page: Path | None = None,
    on_checked: Callable[[QualityReport], None] | None = None,
    record: PublishRecord | None = None,
    build_results: Sequence[QualityResult] = (),
) -> tuple[QualityReport, PublishResult | None]:
    """Run the quality checks, record them, and publish only if every blocking check passed.

    ``build_db`` is the path of ``<warehouse>/preflens.duckdb`` or a
    :class:`~pipelines.build.quality.handle.BuildHandle` that owns a connection to it (the build context of
    ``preflens run``): dbt needs the file to itself while it runs the gates, so a bare connection will not do. A
    path is attached once after dbt, for the contract, the records and the copy, so the published data is exactly
    the validated data (the holder also keeps any writer out meanwhile); read-only unless something is to be
    written (``build_id``, ``record``). ``build_results``: the data tests the build's ``dbt build`` already ran and
    recorded (:func:`~pipelines.build.quality.recorded_dbt_tests`); they count and are shown, not stored again.

    In order:

    1. the checks run (:func:`~pipelines.build.quality.run_quality_checks`: the gates, then the contract);
    2. with ``build_id``, their results are appended to ``ops.quality_results``, and with ``report_page`` the
       HTML page is written there (both whatever the outcome);
    3. ``on_checked(report)`` is called (it may raise, e.g. to stop a failed build, and then nothing is
       published);
    4. on failure the served copy and exports are untouched and ``(report, None)`` is returned, or
       :class:`QualityGateFailed` is raised when ``raise_on_failure``;
    5. otherwise the marts are published; ``record(con)`` runs in a transaction the copy reads from and is
       committed only after the served copy was swapped in (rolled back if publication fails).

    Publication errors propagate.
    """
    _check_storage_version(storage_version)
    serve_db = Path(serve_db).resolve()
    if isinstance(build_db, duckdb.DuckDBPyConnection):
        raise TypeError(
            "check_and_publish runs dbt on the build file, which a connection held here would lock: pass the path "
            "of the build database or a BuildHandle (e.g. the build context)"
        )
    gate = _Gate(thresholds, build_id, report_page, on_checked, raise_on_failure, tuple(build_results))
    if not isinstance(build_db, str | os.PathLike):
        if build_db.paths.build_db.resolve() == serve_db:
            raise PublishError("build_db and serve_db are the same file")
        return gate.run(build_db, serve_db, Path(exports_dir), tuple(schemas), storage_version, record)
    if Path(build_db).resolve() == serve_db:
        raise PublishError("build_db and serve_db are the same file")
    writes = build_id is not None or record is not None
    handle = BuildFile.at(Path(build_db), read_only=not writes)
    try:
        return gate.run(handle, serve_db, Path(exports_dir), tuple(schemas), storage_version, record)
    finally:
        handle.close()


@dataclass(frozen=True)
class _Gate:
    """The check-and-record half of :func:`check_and_publish`, then publication if it passed."""

    thresholds: QualityThresholds | Mapping[str, Any] | None
    build_id: str | None
    report_page: Path | None
    on_checked: Callable[[QualityReport], None] | None
    raise_on_failure: bool
    build_results: tuple[QualityResult, ...]

    def run(
        self,
        handle: BuildHandle,
        serve_db: Path,
        exports_dir: Path,
        schemas: tuple[str, ...],
        storage_version: str | None,
        record: PublishRecord | None,
    ) -> tuple[QualityReport, PublishResult | None]:
        report = run_quality_checks(handle, thresholds=self.thresholds, build_id=self.build_id or "checks")
        report.build_results = list(self.build_results)
        con = handle.con
        if self.build_id is not None:
            record_quality_run(con, report, build_id=self.build_id, page=self.report_page)
        elif self.report_page is not None:
            write_quality_report(report, self.report_page)
        if self.on_checked is not None:
            self.on_checked(report)
        if not report.success:
            if self.raise_on_failure:
                raise QualityGateFailed(report)
            return report, None
        (catalog,) = con.execute("select current_database()").fetchall()[0]
        return report, _publish_from(con, catalog, serve_db, exports_dir, schemas, storage_version, record)


def remove_stale_temporaries(serve_db: Path, exports_dir: Path) -> list[Path]:
    """Remove the ``.tmp-*`` files (and their ``.wal``) a killed publisher left; returns what was removed.

    Only safe while no publication runs: call it under the build lock.
    """
    serve_db, exports_dir = Path(serve_db), Path(exports_dir)
    stale = [*serve_db.parent.glob(f".{serve_db.name}.tmp-*")]
    if exports_dir.is_dir():
        stale += [*exports_dir.glob("*.parquet.tmp-*"), *exports_dir.glob(f"{_MANIFEST}.tmp-*")]
    for p in stale:
        _remove(p)
    return stale
