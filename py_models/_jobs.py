"""Run independent fits in this process and in worker processes; results do not depend on the number of workers.

``n_jobs`` is the number of processes working in all: this one plus ``n_jobs - 1`` worker processes (loky, as
joblib's; they do not re-run the parent's main module, dbt's for the fit). The calling process takes calls itself
while the workers start, so their start-up (imports, about 3 s) overlaps useful work; with workers, every call
runs with one BLAS thread and one solver thread wherever it runs, as joblib sets them in its workers. Workers
import the modules named in ``preload`` once and then freeze the garbage collector's view of them: a full
collection no longer walks every object of numpy, pandas, scipy, scikit-learn and numba (loky collects after
calls when psutil is absent: about 0.3 s each on this machine, some seconds per fit stage before).
"""

from __future__ import annotations

import contextlib
import gc
import importlib
import os
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future
from contextlib import contextmanager
from typing import Any, TypeVar

R = TypeVar("R")

__all__ = ["map_jobs", "WorkerPool", "effective_jobs"]

ONE_THREAD_ENV = {
    "OMP_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "NUMBA_NUM_THREADS": "1",
    "NUMEXPR_NUM_THREADS": "1",
}
"""The workers' thread limits (joblib's, for the same reason: the processes already use the cores)."""


def effective_jobs(n_jobs: int) -> int:
    """joblib's convention: ``n_jobs >= 1`` as is, ``-1`` every core, ``-2`` all but one, ...; 0 is an error."""
    n_jobs = int(n_jobs)
    if n_jobs == 0:
        raise ValueError("n_jobs must not be 0")
    if n_jobs > 0:
        return n_jobs
    return max(1, (os.cpu_count() or 1) + 1 + n_jobs)


def _worker_init(modules: tuple[str, ...]) -> None:
    """In each worker: import ``modules`` once, then freeze the collector's view of everything imported."""
    for name in modules:
        importlib.import_module(name)
    gc.collect()
    gc.freeze()


def _ready() -> int:
    return os.getpid()


@contextmanager
def _one_thread() -> Iterator[None]:
    """One BLAS/OpenMP thread and one solver thread in this process for the block, as in the workers (the
    processes already use the cores)."""
    from threadpoolctl import threadpool_limits

    from py_models._cd import threads

    with threadpool_limits(limits=1), threads(1):
        yield


class WorkerPool:
    """``n_jobs - 1`` worker processes, started at construction (they import ``preload`` while this process
    goes on); :meth:`map` shares calls between them and this process. Use as a context manager (the workers
    stop at its end). ``n_jobs`` of 1 (or less than 2 after :func:`effective_jobs`) starts no process."""

    def __init__(self, n_jobs: int, preload: Sequence[str] = ()) -> None:
        self.n_jobs = effective_jobs(n_jobs)
        self._executor: Any = None
        self._ready: list[Future[int]] = []
        if self.n_jobs > 1:
            from joblib.externals.loky.backend.context import get_context
            from joblib.externals.loky.process_executor import ProcessPoolExecutor

            self._executor = ProcessPoolExecutor(
                max_workers=self.n_jobs - 1,
                context=get_context("loky"),
                initializer=_worker_init,
                initargs=(tuple(preload),),
                env=ONE_THREAD_ENV,
            )
            self._ready = [self._executor.submit(_ready) for _ in range(self.n_jobs - 1)]  # start them now

    def __enter__(self) -> WorkerPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop the workers (waits for running calls; none run outside :meth:`map`)."""
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None

    def map(
        self,
        func: Callable[..., R],
        args: Sequence[tuple[Any, ...]],
        *,
        costs: Sequence[float] | None = None,
        **kwargs: Any,
    ) -> list[R]:
        """``[func(*a, **kwargs) for a in args]``, shared by this process and the workers; with ``costs`` the
        costliest calls start first. Results come back in the order of ``args``; the first error is raised."""
        order = list(range(len(args)))
        if costs is not None:
            order.sort(key=lambda i: -costs[i])
        out: list[Any] = [None] * len(args)
        if self._executor is None or len(args) < 2:
            with _one_thread() if self._executor is not None else contextlib.nullcontext():
                for i in order:
                    out[i] = func(*args[i], **kwargs)
            return out
        lock = threading.Lock()
        pending = list(reversed(order))  # pop() takes the costliest next
        failed: list[BaseException] = []

        def take() -> int | None:
            with lock:
                return pending.pop() if pending and not failed else None

        def run(call: Callable[[int], R]) -> None:
            while (i := take()) is not None:
                try:
                    out[i] = call(i)
                except BaseException as exc:  # re-raised below, in the calling thread
                    with lock:
                        failed.append(exc)

        def remote(i: int) -> R:
            return self._executor.submit(func, *args[i], **kwargs).result()

        feeders = [threading.Thread(target=run, args=(remote,), daemon=True) for _ in range(self.n_jobs - 1)]
        for t in feeders:
            t.start()
        with _one_thread():
            run(lambda i: func(*args[i], **kwargs))
        for t in feeders:
            t.join()
        if failed:
            raise failed[0]
        return out


def map_jobs(
    func: Callable[..., R],
    args: Sequence[tuple[Any, ...]],
    n_jobs: int,
    *,
    costs: Sequence[float] | None = None,
    pool: WorkerPool | None = None,
    **kwargs: Any,
) -> list[R]:
    """``[func(*a, **kwargs) for a in args]`` on ``n_jobs`` processes (this one included) when ``n_jobs != 1``
    and there are several calls; on ``pool`` when one is given (its ``n_jobs`` then applies). With ``costs`` the
    costliest calls start first (so the longest fits do not start last); results come in the order of ``args``."""
    if pool is not None:
        return pool.map(func, args, costs=costs, **kwargs)
    if effective_jobs(n_jobs) == 1 or len(args) < 2:
        return WorkerPool(1).map(func, args, costs=costs, **kwargs)
    with WorkerPool(n_jobs, preload=(func.__module__,)) as fresh:
        return fresh.map(func, args, costs=costs, **kwargs)
