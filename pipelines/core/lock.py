"""A non-blocking build lock so two scheduled builds never write the warehouse at once."""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, TextIO

import duckdb

if TYPE_CHECKING:  # pragma: no cover
    from pipelines.core.config import Paths


class BuildAlreadyRunning(RuntimeError):
    """Another process holds the build lock."""


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
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._fh is not None:
            fcntl.flock(self._fh.fileno(), fcntl.LOCK_UN)
            self._fh.close()
            self._fh = None


@contextmanager
def locked_build_db(paths: Paths) -> Iterator[duckdb.DuckDBPyConnection]:
    """Hold the build lock and a read-write connection to the build DB; release both on exit."""
    from pipelines.core.warehouse import connect

    with BuildLock(paths.lock_file):
        con = connect(paths.build_db)
        try:
            yield con
        finally:
            con.close()
