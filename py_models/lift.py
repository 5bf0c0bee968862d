"""Lift-based explanations (method.md §5). Pure functions, no I/O.

* Local lift of concept j for a pair with logit z = (b + s_d)'x:
  ``lift_j = [sigma(z + dz_j) - sigma(z)] / sigma(z) * 100`` with the paper's
  ``dz_j = b_j + s_dj`` (effect of increasing concept j by ONE unit, all else fixed).
* Contribution ``(b_j + s_dj) * x_ij``: the additive share of concept j in z for
  that pair (what the pair's actual value of j adds to the logit). This is not the
  paper's lift; it is returned alongside it because it is sign-aware in x.
* Global lift ``50 * (b_j + s_dj)`` % (first-order expansion with E[sigma(z)] = 0.5
  under symmetric data and no intercept).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike, NDArray

__all__ = ["local_lift", "global_lift_pct", "concept_contributions"]


def local_lift(z: ArrayLike, delta_z: ArrayLike) -> NDArray[np.float64]:
    """Local lift in percent: 100 * [sigma(z + delta_z) - sigma(z)] / sigma(z) (broadcasts)."""
    z = np.asarray(z, dtype=np.float64)
    dz = np.asarray(delta_z, dtype=np.float64)
    # sigma(z+dz)/sigma(z) - 1 = (1 + e^{-z}) / (1 + e^{-z-dz}) - 1, computed in log space
    log_ratio = np.logaddexp(0.0, -z) - np.logaddexp(0.0, -(z + dz))
    return 100.0 * np.expm1(log_ratio)


def global_lift_pct(weights: ArrayLike) -> NDArray[np.float64]:
    """Global lift in percent: 50 * weight (weight = b_j, s_dj or b_j + s_dj)."""
    return 50.0 * np.asarray(weights, dtype=np.float64)


def concept_contributions(
    X: ArrayLike,
    W: ArrayLike,
    concept_names: Sequence[str],
    row_ids: ArrayLike | None = None,
) -> pd.DataFrame:
    """Long table of per-pair concept effects for rows of X with effective weights W.

    ``W[i]`` is ``b + s_{d_i}`` for pair i (see ``HMDRClassifier.effective_weights``).
    Returns one row per (pair, concept) with ``x_ij != 0`` and ``W_ij != 0`` and
    columns: row_id, concept, value (x_ij), weight (W_ij), z (pair logit),
    contribution (W_ij * x_ij) and local_lift_pct (paper: dz = W_ij).
    """
    X = np.asarray(X, dtype=np.float64)
    W = np.asarray(W, dtype=np.float64)
    if X.shape != W.shape or X.ndim != 2:
        raise ValueError(f"X and W must be 2-D of equal shape, got {X.shape} and {W.shape}")
    if len(concept_names) != X.shape[1]:
        raise ValueError("concept_names length must equal the number of columns of X")
    ids = np.arange(X.shape[0]) if row_ids is None else np.asarray(row_ids)
    if len(ids) != X.shape[0]:
        raise ValueError("row_ids length must equal the number of rows of X")
    z = np.einsum("ij,ij->i", X, W)
    r, c = np.nonzero((X != 0) & (W != 0))
    w = W[r, c]
    return pd.DataFrame(
        {
            "row_id": ids[r],
            "concept": np.asarray(concept_names, dtype=object)[c],
            "value": X[r, c],
            "weight": w,
            "z": z[r],
            "contribution": w * X[r, c],
            "local_lift_pct": local_lift(z[r], w),
        }
    )
