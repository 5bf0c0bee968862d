"""Bootstrap uncertainty for HMDR (pure, no I/O).

Pairs are resampled with replacement *within domains* (each domain keeps its size). A resample is a vector of
multiplicities used as sample weights on the design built once (exactly the same as fitting the duplicated rows,
since the loss is a weighted mean), at the hyperparameters of the fitted estimator. Which domains have their own
weights is fixed from the full fit. Percentile intervals; the selection frequency of a concept is the share of
resamples in which its weight (b_j on ``__shared__``, b_j + s_dj on a domain) is exactly non-zero.

With the ``cd`` solver every resample starts from the full fit (its solution and its strong-rule working set) and
the resamples run on ``py_models._cd.solver_threads()`` threads (``n_threads`` overrides; 1 = none). The resamples
are drawn in order from one generator in the calling thread, so the result does not depend on the thread count.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike, NDArray

from py_models._cd import DomainDesign, map_threads, solver_threads
from py_models.hmdr import HMDRClassifier
from py_models.mart_keys import SHARED_DOMAIN

__all__ = ["DEFAULT_N_BOOTSTRAP", "bootstrap_hmdr", "BOOTSTRAP_COLUMNS"]

DEFAULT_N_BOOTSTRAP = 200
BOOTSTRAP_COLUMNS = [
    "domain",
    "concept",
    "n_bootstrap",
    "total_weight_ci_low",
    "total_weight_ci_high",
    "global_lift_ci_low",
    "global_lift_ci_high",
    "selection_frequency",
]


def bootstrap_hmdr(
    est: HMDRClassifier,
    X: ArrayLike,
    y: ArrayLike,
    domains: ArrayLike,
    concept_names: list[str],
    *,
    n_bootstrap: int = DEFAULT_N_BOOTSTRAP,
    seed: int = 0,
    level: float = 0.95,
    sample_weight: ArrayLike | None = None,
    n_threads: int | None = None,
) -> pd.DataFrame:
    """CIs and selection frequencies for a fitted ``est`` (its fitted lambdas/alpha and solver are reused);
    ``n_threads``: threads for the resamples (None: ``solver_threads()``; the ``cd`` solver only).

    Returns one row per (domain incl. ``__shared__``, concept) with BOOTSTRAP_COLUMNS; empty frame when
    ``n_bootstrap`` is 0.
    """
    if n_bootstrap <= 0:
        return pd.DataFrame(columns=BOOTSTRAP_COLUMNS)
    m = est.fixed_estimator()  # est may be a subclass (HMDRClassifierCV): a plain HMDR at its fitted configuration
    design, w, meta = m._prepare(X, y, domains, sample_weight)
    inv = meta["inv"]
    rng = np.random.default_rng(seed)
    groups = [np.flatnonzero((inv == k) & (w > 0)) for k in range(meta["n_domains"])]
    B = int(n_bootstrap)
    bs = np.zeros((B, design.p))
    Ss = np.zeros((B, meta["n_domains"], design.p))
    lb, ls, tol, max_iter = m.lambda_shared_, m.lambda_domain_, float(m.tol), int(m.max_iter)
    cd = isinstance(design, DomainDesign)
    full: dict[str, Any] | None = None
    if cd:  # the full fit on this design (from est's own solution when it has one: then a single certifying pass)
        prev = getattr(est, "_solution", None)
        full = design.solve(lb, ls, w, warm=prev, tol=tol, max_iter=max_iter)

    # one resample: within each domain (in order) len(g) draws with replacement, as rng.choice(g, len(g)) per
    # domain would give them (integers with per-draw bounds use the generator as consecutive per-domain calls)
    sizes = np.array([len(g) for g in groups if len(g)], dtype=np.int64)
    flat = np.concatenate([g for g in groups if len(g)]) if len(sizes) else np.zeros(0, dtype=np.intp)
    high = np.repeat(sizes, sizes)
    offset = np.repeat(np.cumsum(sizes) - sizes, sizes)

    def draw() -> NDArray[np.float64]:
        """One resample's multiplicities times the weights."""
        if not len(sizes):
            return np.zeros(design.n)
        return np.bincount(flat[offset + rng.integers(0, high)], minlength=design.n) * w

    def replicate(w_r: NDArray[np.float64]) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        res = design.solve(lb, ls, w_r, warm=full, tol=tol, max_iter=max_iter)
        return design.unpack(res["beta"], meta["n_domains"], meta["weighted_rows"])

    threads = (solver_threads() if n_threads is None else int(n_threads)) if cd else 1
    work = int(design.indices.size) if isinstance(design, DomainDesign) else None
    chunk = 16 * max(threads, 1)
    for start in range(0, B, chunk):
        stop = min(B, start + chunk)
        weights = [draw() for _ in range(start, stop)]
        for r, (b, S) in zip(range(start, stop), map_threads(replicate, weights, threads, work=work)):
            bs[r], Ss[r] = b, S
    q = [(1 - level) / 2 * 100, (1 + level) / 2 * 100]
    total = np.concatenate([bs[:, None, :], bs[:, None, :] + Ss], axis=1)  # (B, 1 + nd, p)
    lo, hi = np.percentile(total, q, axis=0)
    freq = (total != 0).mean(axis=0)
    doms = [SHARED_DOMAIN] + [str(d) for d in m.domains_.tolist()]
    nd, p = len(doms), design.p
    return pd.DataFrame(
        {
            "domain": np.repeat(np.asarray(doms, dtype=object), p),
            "concept": np.tile(np.asarray(concept_names, dtype=object), nd),
            "n_bootstrap": B,
            "total_weight_ci_low": lo.ravel(),
            "total_weight_ci_high": hi.ravel(),
            "global_lift_ci_low": 50.0 * lo.ravel(),
            "global_lift_ci_high": 50.0 * hi.ravel(),
            "selection_frequency": freq.ravel(),
        }
    )[BOOTSTRAP_COLUMNS]
