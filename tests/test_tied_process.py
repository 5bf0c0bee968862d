"""Tied child processes (pipelines/build/tied_process.py, how dbt runs): they die with their parent, even with one
killed by SIGKILL, grandchildren included; a normal exit passes the command's code through. Real processes only."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from pipelines.build.tied_process import start_tied, stop_tied
from tests.conftest import env_with

SAFETY_TIMEOUT_S = 60  # only a guard against hanging forever, never a performance assertion

#: a command that starts a grandchild, prints both pids, then sleeps
FAMILY = textwrap.dedent(
    """
    import os, subprocess, sys, time
    grandchild = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    print(os.getpid(), grandchild.pid, flush=True)
    time.sleep(600)
    """
)

#: a parent (think `preflens build`) that starts FAMILY tied to itself and reports every pid
PARENT = textwrap.dedent(
    """
    import subprocess, sys, time
    from pipelines.build.tied_process import start_tied
    guard = start_tied([sys.executable, "-c", sys.argv[1]], stdout=subprocess.PIPE, text=True)
    print(guard.pid, guard.stdout.readline().strip(), flush=True)
    time.sleep(600)
    """
)


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie does not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _wait_gone(pids: list[int]) -> bool:
    deadline = time.monotonic() + SAFETY_TIMEOUT_S
    while any(_alive(p) for p in pids):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def _kill_all(pids: list[int]) -> None:
    for pid in pids:
        if _alive(pid):
            os.kill(pid, signal.SIGKILL)


def test_sigkill_of_the_parent_takes_the_command_and_its_children_with_it() -> None:
    parent = subprocess.Popen(
        [sys.executable, "-c", PARENT, FAMILY],
        stdout=subprocess.PIPE,
        text=True,
        env=env_with(PYTHONPATH=os.pathsep.join(sys.path)),
    )
    pids: list[int] = []
    try:
        assert parent.stdout is not None
        pids = [int(p) for p in parent.stdout.readline().split()]
        guard, command, grandchild = pids
        assert all(_alive(p) for p in pids)
        assert os.getpgid(command) == os.getpgid(grandchild) == guard != os.getpgid(parent.pid)
        parent.kill()  # SIGKILL: the parent runs no cleanup at all
        parent.wait()
        assert _wait_gone(pids), f"still running after their parent was killed: {[p for p in pids if _alive(p)]}"
    finally:
        _kill_all(pids)
        if parent.poll() is None:
            parent.kill()
            parent.wait()


def test_a_normal_exit_passes_the_code_through_and_ends_what_the_command_left() -> None:
    code = "import subprocess, sys; g = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)']);"
    code += " print(g.pid, flush=True); sys.exit(7)"
    proc = start_tied([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    leftover = int(proc.stdout.readline())
    try:
        assert proc.wait(timeout=SAFETY_TIMEOUT_S) == 7
        assert _wait_gone([leftover])
    finally:
        _kill_all([leftover])
        proc.stdout.close()


def test_stop_tied_kills_the_whole_group_from_the_parent() -> None:
    proc = start_tied([sys.executable, "-c", FAMILY], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    pids = [int(p) for p in proc.stdout.readline().split()]
    try:
        stop_tied(proc)
        assert proc.returncode == -signal.SIGKILL
        assert _wait_gone([proc.pid, *pids])
    finally:
        _kill_all(pids)
        proc.stdout.close()
