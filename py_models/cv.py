"""Cross-validation primitives shared by every fit and selection: the fold splitter and the scorer (pure).

* ``stratified_folds`` -- the one fold assignment: stratified by domain and, within a domain, by label.
* ``pair_credit`` / ``pair_log_loss`` / ``score`` -- the one scorer of a predicted P(a wins): accuracy credit
  1 right, 0 wrong and 0.5 at P = 0.5 exactly (a tie prediction scores chance level), and the log-loss with P
  clipped to [1e-15, 1 - 1e-15]; ``score_rows`` the same for several predictions of the same pairs at once.
"""

from __future__ import annotations

import zlib

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = ["stratified_folds", "pair_credit", "pair_log_loss", "score", "score_rows"]


def stratified_folds(
    domains: ArrayLike, y: ArrayLike, n_folds: int, seed: int, order: ArrayLike | None = None
) -> NDArray[np.int64]:
    """Fold id per row, stratified by domain and, within a domain, by label.

    Per domain (in name order) the rows are put in ``order`` (e.g. label ids, so the assignment does not depend
    on the input row order; None: the row order), permuted by a generator seeded with ``seed`` and the domain
    name (so adding a domain does not reshuffle the others), grouped by label (stable) and dealt round-robin,
    the deal continuing from one domain to the next.
    """
    dom = np.asarray(domains, dtype=object).astype(str)
    labels = np.asarray(y).astype(str)
    keys = None if order is None else np.asarray(order).astype(str)
    if len(labels) != len(dom) or (keys is not None and len(keys) != len(dom)):
        raise ValueError(
            f"domains, y and order lengths differ: {len(dom)}, {len(labels)}, {len(dom) if keys is None else len(keys)}"
        )
    folds = np.empty(len(dom), dtype=np.int64)
    counter = 0
    for d in sorted(set(dom.tolist())):
        rng = np.random.default_rng([seed, zlib.crc32(d.encode("utf-8"))])
        idx = np.flatnonzero(dom == d)
        if keys is not None:
            idx = idx[np.argsort(keys[idx], kind="stable")]
        idx = idx[rng.permutation(len(idx))]
        idx = idx[np.argsort(labels[idx], kind="stable")]
        folds[idx] = (counter + np.arange(len(idx))) % n_folds
        counter += len(idx)
    return folds


def pair_credit(y_pos: NDArray[np.bool_], prob: NDArray[np.float64]) -> NDArray[np.float64]:
    """Per-pair accuracy credit of P(a wins) ``prob`` against "a won" ``y_pos``: 1 right, 0 wrong, 0.5 at 0.5."""
    return np.where(prob == 0.5, 0.5, ((prob > 0.5) == y_pos).astype(float))


def pair_log_loss(y_pos: NDArray[np.bool_], prob: NDArray[np.float64]) -> NDArray[np.float64]:
    """Per-pair log-loss of P(a wins) ``prob`` against "a won" ``y_pos`` (P clipped to [1e-15, 1 - 1e-15])."""
    p = np.clip(prob, 1e-15, 1 - 1e-15)
    return -np.where(y_pos, np.log(p), np.log1p(-p))


def score(y_pos: NDArray[np.bool_], prob: NDArray[np.float64]) -> tuple[float, float]:
    """(mean accuracy credit, mean log-loss) of ``prob`` against ``y_pos``."""
    return float(pair_credit(y_pos, prob).mean()), float(pair_log_loss(y_pos, prob).mean())


def score_rows(y_pos: NDArray[np.bool_], probs: NDArray[np.float64]) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """``score`` of every row of ``probs`` (predictions x pairs) against ``y_pos``: (accuracy credits, log-losses),
    one per row, equal to ``score(y_pos, probs[r])`` (same terms, each row summed alone)."""
    P = np.ascontiguousarray(np.atleast_2d(np.asarray(probs, dtype=np.float64)))
    y = np.asarray(y_pos, dtype=bool)[None, :]
    credit = np.where(P == 0.5, 0.5, ((P > 0.5) == y).astype(float))
    p = np.clip(P, 1e-15, 1 - 1e-15)
    loss = -np.where(y, np.log(p), np.log1p(-p))
    return np.array([row.mean() for row in credit]), np.array([row.mean() for row in loss])
