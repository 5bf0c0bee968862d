"""One writer at a time: the build lock, and the build DB opened under it.

:class:`BuildLock` is a non-blocking flock on ``<warehouse>/.build.lock`` that every command writing the build
database takes (two scheduled builds never write the warehouse at once). DuckDB also locks the file itself, so a
process that holds it open without the build lock (a DuckDB shell, a notebook, a dbt process that outlived its
build) refuses us a connection: :func:`connect_build_db` reports that as :class:`BuildAlreadyRunning` too, with
the holder's pid, instead of a raw ``IOException``. Both end a command with exit code 3.
"""

from __future__ import annotations

import fcntl
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, TextIO

import duckdb

if TYPE_CHECKING:  # pragma: no cover
    from pipelines.core.config import Paths

#: DuckDB's message when another process holds the file: "... Conflicting lock is held in <exe> (PID <n>) ..."
_FILE_LOCK_ERROR = re.compile(r"Could not set lock on file")
_FILE_LOCK_HOLDER = re.compile(r"Conflicting lock is held in (?P<exe>.*?) \(PID (?P<pid>\d+)\)")


class BuildAlreadyRunning(RuntimeError):
    """Another process holds the build lock, or has the build database open."""


#: the lock files this process holds now (resolved paths), for :func:`held_by_this_process`
_HELD: set[Path] = set()


def held_by_this_process(path: Path) -> bool:
    """Whether this process holds the build lock ``path`` now: then no other live process can (a row a writer left
    ``running`` in the build file is one whose process died)."""
    return Path(path).resolve() in _HELD


def _database_file(con: duckdb.DuckDBPyConnection) -> Path | None:
    """The file of the connection's current database (None in memory)."""
    row = con.execute("select path from duckdb_databases() where database_name = current_database()").fetchone()
    return Path(row[0]) if row and row[0] else None


def no_live_writer(con: duckdb.DuckDBPyConnection) -> bool:
    """Whether this process holds the build lock of the warehouse the connection's file is in, so that no other
    live process writes it: a row left ``running`` there (an ingest, an LLM run) is then one whose process died."""
    from pipelines.core.config import Paths  # config imports this module

    db = _database_file(con)
    return db is not None and held_by_this_process(Paths(warehouse=db.parent).lock_file)


class BuildLock:
    """``with BuildLock(path):`` holds an exclusive flock; released on exit or process death."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._fh: TextIO | None = None

    def __enter__(self) -> BuildLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fh = open(self.path, "a+")
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            holder = fh.read().strip() or "unknown"
            fh.close()
            raise BuildAlreadyRunning(f"build already running (lock {self.path}, held by pid {holder})") from None
        fh.seek(0)
        fh.truncate()
        fh.write(str(os.getpid()))
        fh.flush()
        self._fh = fh
        _HELD.add(self.path.resolve())
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._fh is not None:
            _HELD.discard(self.path.resolve())
            fcntl.flock(self._fh.fileno(), fcntl.LOCK_UN)
            self._fh.close()
            self._fh = None


def file_held(db_path: Path, exc: BaseException) -> BuildAlreadyRunning | None:
    """The :class:`BuildAlreadyRunning` to raise when ``exc`` is DuckDB refusing ``db_path`` because another
    process holds it (the message names that process's pid), else None."""
    text = str(exc)
    if not isinstance(exc, duckdb.IOException) or not _FILE_LOCK_ERROR.search(text):
        return None
    found = _FILE_LOCK_HOLDER.search(text)
    holder = f"pid {found['pid']} ({found['exe']})" if found else "another process"
    return BuildAlreadyRunning(f"build already running (build database {db_path} is open in {holder})")


def connect_build_db(db_path: Path, *, read_only: bool = False) -> duckdb.DuckDBPyConnection:
    """``warehouse.connect(db_path)``; a file held by another process raises :class:`BuildAlreadyRunning`."""
    from pipelines.core.warehouse import connect

    try:
        return connect(db_path, read_only=read_only)
    except duckdb.IOException as exc:
        refused = file_held(db_path, exc)
        if refused is None:
            raise
        raise refused from None


@contextmanager
def locked_build_db(paths: Paths, *, read_only: bool = False) -> Iterator[duckdb.DuckDBPyConnection]:
    """Hold the build lock and a connection to the build DB (read-write unless ``read_only``); release both."""
    with BuildLock(paths.lock_file):
        con = connect_build_db(paths.build_db, read_only=read_only)
        try:
            yield con
        finally:
            con.close()
