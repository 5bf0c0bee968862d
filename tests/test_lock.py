"""The build lock: one writer at a time, released when the holder dies."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from pipelines.core.lock import BuildAlreadyRunning, BuildLock


def test_second_lock_is_refused_then_granted_after_release(tmp_path: Path) -> None:
    path = tmp_path / ".build.lock"
    with BuildLock(path):
        with pytest.raises(BuildAlreadyRunning, match="build already running"):
            with BuildLock(path):
                pass
    with BuildLock(path):
        pass


def test_lock_held_by_another_process_names_its_pid_and_dies_with_it(tmp_path: Path) -> None:
    path = tmp_path / ".build.lock"
    code = (
        "import sys; from pipelines.core.lock import BuildLock\n"
        f"l = BuildLock({str(path)!r}).__enter__(); print('held', flush=True); sys.stdin.readline()"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
        with pytest.raises(BuildAlreadyRunning, match=str(proc.pid)):
            with BuildLock(path):
                pass
    finally:
        proc.kill()
        proc.wait()
    with BuildLock(path):  # the kernel released the dead holder's lock
        pass
