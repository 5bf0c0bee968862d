"""Private helpers for HMDR: label encoding, Eq. 1 objective, augmented design.

The augmented-design reformulation (method.md §4.5, Daumé 2007 feature copy)
turns the HMDR objective into one L1 logistic regression without intercept:

* columns ``[b-block | s^(1)-block | ... | s^(K)-block]`` where the b-block holds
  the shared-mask columns scaled by ``c = lambda_domain / lambda_shared`` and the
  s^(k)-block holds the domain-mask columns of weighted domain k (unscaled);
* each instance i of a weighted domain d gives one row ``[c x | x in block d]``
  with weight w_i (domain-specific loss) and, if alpha > 0, one row ``[c x | 0]``
  with weight alpha * w_i (shared loss);
* each instance of a domain *without* domain weights (s_d = 0) gives a single
  row ``[c x | 0]`` with weight (1 + alpha) * w_i.

With theta the coefficients on that design, b = c * theta_b (note: multiply; a
column scaled by c carries coefficient b / c) and s = theta_s, so
``lambda_shared*||b||_1 + lambda_domain*sum||s||_1 = lambda_domain*||theta||_1``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import scipy.sparse as sp
from numpy.typing import ArrayLike, NDArray
from scipy.special import expit

__all__ = ["encode_labels", "hmdr_objective", "build_design", "sigmoid"]


def sigmoid(z: ArrayLike) -> NDArray[np.float64]:
    """Numerically stable logistic function."""
    return expit(np.asarray(z, dtype=np.float64))


def encode_labels(y: ArrayLike) -> tuple[NDArray[np.float64], NDArray]:
    """Map binary labels to +-1 with +1 = "response a wins".

    Positive class: ``'a'`` for {'a','b'} (case-insensitive), ``True`` for
    booleans, otherwise the larger of the two sorted values (1 in {0,1} and
    {-1,+1}). Returns ``(y_pm, classes)`` with ``classes = [negative, positive]``
    so that, as in scikit-learn's binary convention, ``classes[1]`` is the class
    predicted for a positive decision function.
    """
    y_arr = np.asarray(y)
    if y_arr.ndim != 1:
        y_arr = y_arr.ravel()
    uniq = list(dict.fromkeys(y_arr.tolist()))
    if len(uniq) != 2:
        raise ValueError(
            f"HMDR needs exactly 2 classes in y, got {len(uniq)}: {uniq[:5]!r}"
        )
    lowered = {str(u).lower() for u in uniq}
    if lowered == {"a", "b"} and all(isinstance(u, str) for u in uniq):
        pos = next(u for u in uniq if str(u).lower() == "a")
        neg = next(u for u in uniq if u is not pos and u != pos)
    else:
        try:
            neg, pos = sorted(uniq)
        except TypeError as exc:  # mixed, unorderable types
            raise ValueError(f"unorderable class labels {uniq!r}") from exc
    classes = np.empty(2, dtype=y_arr.dtype if y_arr.dtype != bool else bool)
    classes[0], classes[1] = neg, pos
    y_pm = np.where(y_arr == pos, 1.0, -1.0)
    return y_pm, classes


def hmdr_objective(
    X: NDArray[np.float64],
    y_pm: NDArray[np.float64],
    dom_idx: NDArray[np.intp],
    b: NDArray[np.float64],
    S: NDArray[np.float64],
    alpha: float,
    lambda_shared: float,
    lambda_domain: float,
    sample_weight: NDArray[np.float64] | None = None,
    symmetrize: bool = False,
) -> float:
    """Mean-normalised Eq. 1.

    ``(1/N) sum_i w_i [l(y_i,(b+s_d)'x_i) + alpha*l(y_i,b'x_i)]
    + lambda_shared*||b||_1 + lambda_domain*sum_d ||s_d||_1`` with
    N = sum_i w_i over the (optionally symmetrised) instances. ``dom_idx[i]`` is
    the row of ``S`` used for instance i, or -1 for "no domain weights".
    """
    X = np.asarray(X, dtype=np.float64)
    y_pm = np.asarray(y_pm, dtype=np.float64)
    w = np.ones(len(y_pm)) if sample_weight is None else np.asarray(sample_weight, float)
    dom_idx = np.asarray(dom_idx, dtype=np.intp)
    if symmetrize:
        X = np.vstack([X, -X])
        y_pm = np.concatenate([y_pm, -y_pm])
        w = np.concatenate([w, w])
        dom_idx = np.concatenate([dom_idx, dom_idx])
    S = np.asarray(S, dtype=np.float64).reshape(-1, X.shape[1])
    S_ext = np.vstack([S, np.zeros((1, X.shape[1]))])  # index -1 -> zero row
    z_shared = X @ b
    z_full = z_shared + np.einsum("ij,ij->i", X, S_ext[dom_idx])
    loss = np.logaddexp(0.0, -y_pm * z_full) + alpha * np.logaddexp(0.0, -y_pm * z_shared)
    data = float(np.dot(w, loss) / w.sum())
    return data + lambda_shared * float(np.abs(b).sum()) + lambda_domain * float(np.abs(S).sum())


def build_design(
    X: NDArray[np.float64],
    y_pm: NDArray[np.float64],
    w: NDArray[np.float64],
    dom_idx: NDArray[np.intp],
    shared_cols: NDArray[np.intp],
    domain_cols: Sequence[NDArray[np.intp]],
    scale_shared: float,
    alpha: float,
) -> tuple[sp.csr_matrix, NDArray[np.float64], NDArray[np.float64], NDArray[np.intp]]:
    """Build the augmented (rows, columns) design. See module docstring.

    ``dom_idx[i]`` in ``0..K-1`` indexes ``domain_cols`` (weighted domains) or is
    -1. Returns ``(A, y, weights, offsets)``; ``offsets[k]`` is the first column
    of block k+1 (``offsets[0]`` = width of the b-block), ``offsets[-1]`` = width.
    """
    n = X.shape[0]
    has_dom = dom_idx >= 0
    widths = [len(shared_cols)] + [len(c) for c in domain_cols]
    offsets = np.cumsum(widths).astype(np.intp)
    n_cols = int(offsets[-1])

    Xb = sp.csr_matrix(X[:, shared_cols] * scale_shared)
    rows_l, cols_l, vals_l = [], [], []
    for k, cols in enumerate(domain_cols):
        idx = np.flatnonzero(dom_idx == k)
        if idx.size == 0 or len(cols) == 0:
            continue
        sub = X[np.ix_(idx, cols)]
        r, c = np.nonzero(sub)
        rows_l.append(idx[r])
        cols_l.append(offsets[k] + c)
        vals_l.append(sub[r, c])
    n_dom_cols = n_cols - int(offsets[0])
    if rows_l:
        Sblk = sp.csr_matrix(
            (np.concatenate(vals_l), (np.concatenate(rows_l), np.concatenate(cols_l) - offsets[0])),
            shape=(n, n_dom_cols),
        )
    else:
        Sblk = sp.csr_matrix((n, n_dom_cols))
    top = sp.hstack([Xb, Sblk], format="csr")
    w_top = np.where(has_dom, w, (1.0 + alpha) * w)
    blocks, ys, ws = [top], [y_pm], [w_top]
    if alpha > 0 and has_dom.any():
        bottom = sp.hstack([Xb[has_dom], sp.csr_matrix((int(has_dom.sum()), n_dom_cols))], format="csr")
        blocks.append(bottom)
        ys.append(y_pm[has_dom])
        ws.append(alpha * w[has_dom])
    A = sp.vstack(blocks, format="csr")
    return A, np.concatenate(ys), np.concatenate(ws), offsets
