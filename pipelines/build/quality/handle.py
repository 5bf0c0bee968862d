"""Who holds the build database while it is checked: a :class:`BuildHandle`.

The checks run dbt (a subprocess that opens the build file for writing: it stores the failing rows of its tests)
and then read the same file in this process. DuckDB lets one process write a file only while no other holds it, so
the checks need a connection they can close while dbt runs and get back after: the build context of ``preflens
run`` (:class:`~pipelines.build.context.BuildContext`) is one, and :class:`BuildFile` is one for a bare path.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

import duckdb

from pipelines.build.quality.specs import quote_ident
from pipelines.core.config import Paths

_RESERVED_CATALOGS = {"memory", "system", "temp", "main", "__preflens_serve"}


class BuildHandle(Protocol):
    """The owner of a connection to ``paths.build_db``: hands it out, and closes it while dbt runs."""

    paths: Paths

    @property
    def con(self) -> duckdb.DuckDBPyConnection: ...

    def dbt_running(self) -> contextlib.AbstractContextManager[None]: ...


def catalog_alias(build_db: Path) -> str:
    """The name the build DB is attached under: its file stem, as dbt names it (dbt may catalog-qualify views)."""
    stem = build_db.stem
    return stem if stem and stem.lower() not in _RESERVED_CATALOGS else "preflens_build"


def attach_build(build_db: Path, *, read_only: bool = True) -> duckdb.DuckDBPyConnection:
    """An in-memory connection with ``build_db`` attached (READ_ONLY by default) under its file stem, made current."""
    build_db = Path(build_db).resolve()
    if not build_db.exists():
        raise FileNotFoundError(build_db)
    con = duckdb.connect()
    try:
        alias = quote_ident(catalog_alias(build_db))
        path = "'" + str(build_db).replace("'", "''") + "'"
        con.execute(f"attach {path} as {alias}{' (read_only)' if read_only else ''}")
        con.execute(f"use {alias}")
    except BaseException:
        con.close()
        raise
    return con


class BuildFile:
    """A :class:`BuildHandle` for the build database of a warehouse, attached lazily (read-only unless
    ``read_only=False``), closed while dbt runs and reattached after. Close it with :meth:`close`."""

    def __init__(self, paths: Paths, *, read_only: bool = True) -> None:
        self.paths = paths
        self.read_only = read_only
        self._con: duckdb.DuckDBPyConnection | None = None
        self._dbt_running = False

    @classmethod
    def at(cls, build_db: Path, *, read_only: bool = True) -> BuildFile:
        """The handle of ``<warehouse>/preflens.duckdb`` (dbt builds that name, with its target beside it)."""
        build_db = Path(build_db).resolve()
        paths = Paths(warehouse=build_db.parent)
        if paths.build_db != build_db:
            raise ValueError(f"{build_db}: a build database is named {paths.build_db.name} (dbt builds that file)")
        if not build_db.exists():
            raise FileNotFoundError(build_db)
        return cls(paths, read_only=read_only)

    @property
    def con(self) -> duckdb.DuckDBPyConnection:
        if self._dbt_running:
            raise RuntimeError("the build database is closed while dbt runs")
        if self._con is None:
            self._con = attach_build(self.paths.build_db, read_only=self.read_only)
        return self._con

    @contextlib.contextmanager
    def dbt_running(self) -> Iterator[None]:
        self.close()
        self._dbt_running = True
        try:
            yield
        finally:
            self._dbt_running = False

    def close(self) -> None:
        if self._con is not None:
            self._con.close()
            self._con = None
