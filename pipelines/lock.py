"""A non-blocking build lock so two scheduled builds never write the warehouse at once."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from types import TracebackType


class BuildAlreadyRunning(RuntimeError):
    """Another process holds the build lock."""


class BuildLock:
    """``with BuildLock(path):`` holds an exclusive flock; released on exit or process death."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._fh = None

    def __enter__(self) -> "BuildLock":
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

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if self._fh is not None:
            fcntl.flock(self._fh.fileno(), fcntl.LOCK_UN)
            self._fh.close()
            self._fh = None
