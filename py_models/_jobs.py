"""Run independent fits in worker processes (joblib); results do not depend on the number of workers."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

R = TypeVar("R")

__all__ = ["map_jobs"]


def map_jobs(
    func: Callable[..., R],
    args: Sequence[tuple[Any, ...]],
    n_jobs: int,
    *,
    costs: Sequence[float] | None = None,
    **kwargs: Any,
) -> list[R]:
    """``[func(*a, **kwargs) for a in args]``, in ``n_jobs`` processes when ``n_jobs != 1`` and there are several
    calls. With ``costs`` the costliest calls start first (so the longest fits do not start last); the results
    come back in the order of ``args``."""
    if n_jobs == 1 or len(args) < 2:
        return [func(*a, **kwargs) for a in args]
    from joblib import Parallel, delayed

    order = list(range(len(args)))
    if costs is not None:
        order.sort(key=lambda i: -costs[i])
    done = Parallel(n_jobs=n_jobs)(delayed(func)(*args[i], **kwargs) for i in order)
    out: list[Any] = [None] * len(args)
    for i, result in zip(order, done):
        out[i] = result
    return out
