"""Child processes that die with the build, even when the build is killed with ``kill -9``.

:func:`start_tied` does not start the command itself but this file as a small guard process (``python -I
tied_process.py <parent pid> -- <command>``), the leader of a new process group; the command and everything it
starts (dbt's fit workers) run in that group. The guard asks the kernel for SIGTERM when its parent dies
(``prctl(PR_SET_PDEATHSIG)``, Linux) and also checks its parent twice a second (any POSIX system). When the
parent is gone, or on SIGTERM/SIGHUP, it kills the whole group with SIGKILL, so no dbt process outlives a
killed build, holds the DuckDB file's lock or finishes the dead build's fit. When the command exits, whatever
it left in the group is terminated, and the guard exits with the command's code (128 + N for signal N).

:func:`stop_tied` kills the group from the parent (an exception or Ctrl-C in the build) and waits until it is
gone. This file runs as a script with the standard library only: nothing of ``pipelines`` is imported there.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from typing import Any

_GUARD = os.path.abspath(__file__)
_PR_SET_PDEATHSIG = 1
_POLL_S = 0.5


def _prctl() -> Any:
    """libc's ``prctl`` (resolved before any fork), or None off Linux."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):  # pragma: no cover - a libc without prctl
        return None


_PRCTL = _prctl()


def _die_with_parent(parent_pid: int) -> None:
    """``preexec_fn`` of the guard: SIGTERM when the parent dies; exit now if it already has."""
    if _PRCTL is not None:
        _PRCTL(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    if os.getppid() != parent_pid:  # died between fork and prctl
        os._exit(1)


def start_tied(cmd: Sequence[str], **popen_kwargs: Any) -> subprocess.Popen[str]:
    """Start ``cmd`` (with ``subprocess.Popen`` keyword arguments) under a guard, in its own process group.

    The returned process is the guard: its ``pid`` is the group id, its exit code the command's, and its
    stdout/stderr are the command's (inherited).
    """
    parent = os.getpid()
    return subprocess.Popen(
        [sys.executable, "-I", _GUARD, str(parent), "--", *cmd],
        process_group=0,
        preexec_fn=lambda: _die_with_parent(parent),
        **popen_kwargs,
    )


def stop_tied(proc: subprocess.Popen[str], timeout_s: float = 10.0) -> None:
    """Kill the process group of a running :func:`start_tied` guard and wait until it is gone (a no-op once the
    guard has exited: it ends its group itself)."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()
    deadline = time.monotonic() + timeout_s
    while _group_runs(proc.pid) and time.monotonic() < deadline:  # they were the guard's children, not ours
        time.sleep(0.01)


def _group_runs(pgid: int) -> bool:
    """Whether a process of group ``pgid`` still runs (a zombie has exited: its file locks are released)."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    proc = "/proc"
    if not os.path.isdir(proc):
        return True
    for entry in os.listdir(proc):
        if not entry.isdigit():
            continue
        try:
            with open(f"{proc}/{entry}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":  # fields: state, ppid, pgrp, ...
            return True
    return False


# ------------------------------------------------------------------------------------------- the guard


def _kill_group(*_: object) -> None:
    os.killpg(0, signal.SIGKILL)  # this guard included


def _guard(parent_pid: int, cmd: list[str]) -> int:
    """Run ``cmd`` in this process group until it exits, or kill the group when the parent is gone."""
    if os.getpgrp() != os.getpid():  # never signal a group this guard does not lead
        return subprocess.call(cmd)
    signal.signal(signal.SIGTERM, _kill_group)
    signal.signal(signal.SIGHUP, _kill_group)
    signal.signal(signal.SIGINT, lambda *_: None)  # Ctrl-C is the parent's to handle (it then kills the group)
    if os.getppid() != parent_pid:
        _kill_group()
    child = subprocess.Popen(cmd)
    while True:
        try:
            code = child.wait(timeout=_POLL_S)
            break
        except subprocess.TimeoutExpired:
            if os.getppid() != parent_pid:
                _kill_group()
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    os.killpg(0, signal.SIGTERM)  # what the command left behind
    return code if code >= 0 else 128 - code


if __name__ == "__main__":
    sys.exit(_guard(int(sys.argv[1]), sys.argv[3:]))
