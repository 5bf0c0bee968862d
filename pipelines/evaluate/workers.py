"""Run evaluation units on worker processes and hand back each unit's rows as soon as it is done.

Every worker receives the designs once (:func:`_init`), then single units; the parent only schedules and collects,
so ``n_jobs`` processes keep ``n_jobs`` cores busy. Workers are spawned (not forked: the parent holds a DuckDB
connection and thread pools), limited to one BLAS and one solver thread each (``n_jobs`` processes already use the
cores), and die with the parent (``PR_SET_PDEATHSIG`` on Linux, and a check before each unit), so a killed
evaluation leaves no worker running. ``n_jobs = 1`` runs every unit in this process. Results do not depend on
``n_jobs`` or on the order units finish in.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import time
import warnings
from collections.abc import Generator, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from multiprocessing import get_context
from typing import Any

from py_models.eval_protocols import EvalUnit, MechanismDesign, ProtocolSettings, run_unit

__all__ = ["DesignKey", "UnitResult", "resolve_jobs", "run_counted", "run_units"]

DesignKey = tuple[str, str]  # (representation, mechanism)
#: the unit, its rows, seconds it took, fits in it that stopped at their iteration limit (ConvergenceWarning), CPU
#: seconds it took (of the process running it: a worker runs one unit at a time on one thread; under load the
#: wall seconds grow with the load, the CPU seconds far less)
UnitResult = tuple[EvalUnit, list[dict[str, Any]], float, int, float]

#: per worker: futures handed to the pool ahead of the ones running (enough to keep it fed, few to cancel)
_AHEAD = 4
_PR_SET_PDEATHSIG = 1
#: one thread per worker for OpenMP/BLAS pools started later and for the HMDR solver's fold threads (read per solve)
_ONE_THREAD = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "PREFLENS_HMDR_THREADS")

_DESIGNS: dict[DesignKey, MechanismDesign] = {}
_SETTINGS: list[ProtocolSettings] = []
_PARENT: list[int] = []


def resolve_jobs(n_jobs: int) -> int:
    """Worker processes for ``n_jobs`` (<= 0: every core)."""
    return int(n_jobs) if n_jobs > 0 else max(1, os.cpu_count() or 1)


def _die_with_parent() -> None:
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        except (OSError, AttributeError):  # pragma: no cover - a libc without prctl
            pass


def _init(designs: Mapping[DesignKey, MechanismDesign], settings: ProtocolSettings, parent: int) -> None:
    """Worker start: die with the parent, one thread per pool, keep the designs and settings."""
    _die_with_parent()
    if os.getppid() != parent:  # the parent died before prctl
        os._exit(1)
    for var in _ONE_THREAD:
        os.environ[var] = "1"
    from threadpoolctl import threadpool_limits

    threadpool_limits(1)
    _DESIGNS.update(designs)
    _SETTINGS[:] = [settings]
    _PARENT[:] = [parent]


def run_counted(design: MechanismDesign, unit: EvalUnit, settings: ProtocolSettings) -> UnitResult:
    """``run_unit``, timed, with its ConvergenceWarnings counted instead of printed (a cron log would get one
    per fit; the count is reported at the end). Other warnings are shown as usual.

    scikit-learn's per-call checks of its own parameters and of finite inputs are skipped
    (``skip_parameter_validation``, ``assume_finite``): the designs were checked once (``prepare_mechanism``)
    and the variants' settings are fixed, while a unit of the previous baseline route
    (``baseline_solver="liblinear"``) makes up to ~800 small liblinear calls. The results are the same (the
    checks only raise)."""
    import sklearn
    from sklearn.exceptions import ConvergenceWarning

    t0, c0 = time.perf_counter(), time.process_time()
    with (
        warnings.catch_warnings(record=True) as caught,
        sklearn.config_context(skip_parameter_validation=True, assume_finite=True),
    ):
        warnings.simplefilter("always", ConvergenceWarning)
        rows = run_unit(design, unit, settings)
    n_conv = 0
    for w in caught:
        if issubclass(w.category, ConvergenceWarning):
            n_conv += 1
        else:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    return unit, rows, time.perf_counter() - t0, n_conv, time.process_time() - c0


def _run(unit: EvalUnit) -> UnitResult:
    if _PARENT and os.getppid() != _PARENT[0]:
        os._exit(1)
    return run_counted(_DESIGNS[(unit.representation, unit.mechanism)], unit, _SETTINGS[0])


def run_units(
    designs: Mapping[DesignKey, MechanismDesign],
    units: Sequence[EvalUnit],
    settings: ProtocolSettings,
    n_jobs: int,
) -> Generator[UnitResult, None, None]:
    """Run ``units`` (started in the given order) and yield ``(unit, rows, seconds, n_convergence_warnings,
    cpu_seconds)`` as each finishes.

    Closing the iterator (an error, Ctrl-C) cancels the units not yet started and stops the workers.
    """
    n = min(resolve_jobs(n_jobs), len(units))
    if n <= 1:
        for unit in units:
            yield run_counted(designs[(unit.representation, unit.mechanism)], unit, settings)
        return
    pool = ProcessPoolExecutor(
        max_workers=n,
        mp_context=get_context("spawn"),
        initializer=_init,
        initargs=(dict(designs), settings, os.getpid()),
    )
    todo = iter(units)
    running: set[Future[UnitResult]] = set()
    try:
        while True:
            for unit in todo:  # keep a few units queued per worker, no more: the order is the schedule
                running.add(pool.submit(_run, unit))
                if len(running) >= n * _AHEAD:
                    break
            if not running:
                return
            done, running = wait(running, return_when=FIRST_COMPLETED)
            for fut in done:
                yield fut.result()
    finally:
        for fut in running:
            fut.cancel()
        pool.shutdown(wait=True, cancel_futures=True)
