"""Bootstrap uncertainty for HMDR (pure, no I/O).

Pairs are resampled with replacement *within domains* (each domain keeps its size). A resample is a vector of
multiplicities used as sample weights on the design built once (exactly the same as fitting the duplicated rows,
since the loss is a weighted mean), at the hyperparameters of the fitted estimator. Which domains have their own
weights is fixed from the full fit. Percentile intervals; the selection frequency of a concept is the share of
resamples in which its weight (b_j on ``__shared__``, b_j + s_dj on a domain) is exactly non-zero.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike

from py_models.hmdr import HMDRClassifier

__all__ = ["DEFAULT_N_BOOTSTRAP", "bootstrap_hmdr", "BOOTSTRAP_COLUMNS"]

DEFAULT_N_BOOTSTRAP = 200
SHARED_DOMAIN = "__shared__"
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
) -> pd.DataFrame:
    """CIs and selection frequencies for a fitted ``est`` (its fitted lambdas/alpha are reused).

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
    for r in range(B):
        counts = np.zeros(design.n)
        for g in groups:
            if len(g):
                np.add.at(counts, rng.choice(g, size=len(g), replace=True), 1.0)
        res = design.solve(m.lambda_shared_, m.lambda_domain_, counts * w, tol=float(m.tol), max_iter=int(m.max_iter))
        bs[r], Ss[r] = design.unpack(res["beta"], meta["n_domains"], meta["weighted_rows"])
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
