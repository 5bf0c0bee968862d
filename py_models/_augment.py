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
from typing import Any

import numpy as np
import scipy.sparse as sp
from numpy.typing import ArrayLike, NDArray
from scipy.special import expit

__all__ = ["encode_labels", "hmdr_objective", "sigmoid", "AugmentedDesign", "UNPENALIZED_FACTOR"]

# Penalty factor of an "unpenalised" covariate: the solver scales columns by lambda_domain / lambda_j, so a factor
# of exactly 0 is not representable; 1e-4 leaves 0.01% of the penalty (far below the solver's tolerance effect).
UNPENALIZED_FACTOR = 1e-4


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
            f"Only binary classification is supported. HMDR needs exactly 2 classes in y, got {len(uniq)}: {uniq[:5]!r}"
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
    shared_penalty_factor: NDArray[np.float64] | None = None,
) -> float:
    """Mean-normalised Eq. 1.

    ``(1/N) sum_i w_i [l(y_i,(b+s_d)'x_i) + alpha*l(y_i,b'x_i)]
    + lambda_shared*||b||_1 + lambda_domain*sum_d ||s_d||_1`` with
    N = sum_i w_i over the (optionally symmetrised) instances. ``dom_idx[i]`` is
    the row of ``S`` used for instance i, or -1 for "no domain weights".
    """
    y_pm = np.asarray(y_pm, dtype=np.float64)
    w = np.ones(len(y_pm)) if sample_weight is None else np.asarray(sample_weight, float)
    dom_idx = np.asarray(dom_idx, dtype=np.intp)
    X = X if sp.issparse(X) else np.asarray(X, dtype=np.float64)
    # the mirror instance (-x, -y) has the same loss as (x, y): symmetrising leaves the mean unchanged
    del symmetrize
    S = np.asarray(S, dtype=np.float64).reshape(-1, X.shape[1])
    z_shared = np.asarray(X @ b).ravel()
    z_full = z_shared + rowwise_dot(X, S, dom_idx)
    loss = np.logaddexp(0.0, -y_pm * z_full) + alpha * np.logaddexp(0.0, -y_pm * z_shared)
    data = float(np.dot(w, loss) / w.sum())
    fb = np.ones(len(b)) if shared_penalty_factor is None else np.asarray(shared_penalty_factor, dtype=np.float64)
    return data + lambda_shared * float(np.dot(fb, np.abs(b))) + lambda_domain * float(np.abs(S).sum())


def rowwise_dot(X, S: NDArray[np.float64], dom_idx: NDArray[np.intp]) -> NDArray[np.float64]:
    """``z_i = x_i' S[dom_idx[i]]`` (0 where dom_idx is -1), for dense or sparse X."""
    z = np.zeros(X.shape[0])
    for k in np.unique(dom_idx[dom_idx >= 0]):
        rows = np.flatnonzero(dom_idx == k)
        z[rows] = np.asarray(X[rows] @ S[k]).ravel()
    return z


def _binary_entropy(r: NDArray[np.float64]) -> NDArray[np.float64]:
    r = np.clip(r, 1e-300, 1.0)
    q = np.clip(1.0 - r, 1e-300, 1.0)
    return -(r * np.log(r) + q * np.log(q))


class BlockLayout:
    """The column layout both designs share: ``[b-block | s-block of weighted domain 0 | ...]``.

    ``starts`` holds the block offsets; ``shared_penalty_factor`` is per b-block column (1, or
    ``UNPENALIZED_FACTOR`` for a control covariate such as length, which the L1 penalty must leave alone);
    ``col_concept`` and ``col_block`` (-1 = b) describe every design column.
    """

    shared_cols: NDArray[np.intp]
    domain_cols: list[NDArray[np.intp]]
    starts: NDArray[np.intp]
    width: int
    n_shared_cols: int
    shared_penalty_factor: NDArray[np.float64]
    col_concept: NDArray[np.intp]
    col_block: NDArray[np.intp]

    def _set_layout(
        self,
        shared_cols: NDArray[np.intp],
        domain_cols: Sequence[NDArray[np.intp]],
        shared_penalty_factor: NDArray[np.float64] | None,
    ) -> list[int]:
        """Set the layout attributes; the block widths."""
        self.shared_cols = np.asarray(shared_cols, dtype=np.intp)
        self.domain_cols = [np.asarray(c, dtype=np.intp) for c in domain_cols]
        widths = [len(self.shared_cols)] + [len(c) for c in self.domain_cols]
        self.starts = np.concatenate([[0], np.cumsum(widths)]).astype(np.intp)
        self.width = int(self.starts[-1])
        self.n_shared_cols = widths[0]
        self.shared_penalty_factor = (
            np.ones(widths[0])
            if shared_penalty_factor is None
            else np.asarray(shared_penalty_factor, dtype=np.float64)[self.shared_cols]
        )
        self.col_concept = np.concatenate([self.shared_cols, *self.domain_cols]) if self.width else np.zeros(0, np.intp)
        self.col_block = np.concatenate(
            [np.full(widths[0], -1)] + [np.full(len(c), k) for k, c in enumerate(self.domain_cols)]
        ).astype(np.intp)
        return widths


class AugmentedDesign(BlockLayout):
    """The §4.5 augmented design in *original* parameters, built once from a CSR matrix.

    Columns: ``[b-block (shared_cols) | s-block of weighted domain 0 | ...]``, unscaled, so ``A @ beta``
    with ``beta = [b[shared], s_0[cols_0], ...]`` gives the logits. Rows: one "domain loss" row per instance
    (weight w_i, or (1+alpha) w_i for a domain without own weights, whose s_d is 0) and, when alpha > 0, one
    "shared loss" row (b-block only, weight alpha w_i) per instance of a weighted domain.

    :meth:`solve` picks instances by weight (0 = left out; used for CV folds and bootstrap resamples without
    rebuilding anything), rescales the b-block by lambda_domain/lambda_shared, optionally restricts the
    columns (strong-rule screening from a previous solution), calls liblinear, and certifies the result on
    the *full* column set with the KKT conditions and a duality gap.

    Symmetrisation is analytic: with no intercept, the mirror instance (-x, -y) has exactly the same loss
    as (x, y), so the mean-normalised objective on the symmetrised set equals the one on the original set
    and the mirror rows are never materialised (half the rows of the literal recipe).
    """

    def __init__(
        self,
        X: sp.csr_matrix,
        y_pm: NDArray[np.float64],
        dom_idx: NDArray[np.intp],
        shared_cols: NDArray[np.intp],
        domain_cols: Sequence[NDArray[np.intp]],
        alpha: float,
        shared_penalty_factor: NDArray[np.float64] | None = None,
    ) -> None:
        X = sp.csr_matrix(X, dtype=np.float64)
        X.eliminate_zeros()
        n, p = X.shape
        self.n, self.p, self.alpha = n, p, float(alpha)
        self.y_pm = np.asarray(y_pm, dtype=np.float64)
        self.dom_idx = np.asarray(dom_idx, dtype=np.intp)
        widths = self._set_layout(shared_cols, domain_cols, shared_penalty_factor)
        K = len(self.domain_cols)

        # rows grouped by domain (stable), so each domain's entries are one contiguous CSR slice
        order = np.argsort(self.dom_idx, kind="stable")
        Xs = X[order]
        ds = self.dom_idx[order]
        Xb = Xs[:, self.shared_cols] if widths[0] else sp.csr_matrix((n, 0))
        indptr, indices, data = Xs.indptr, Xs.indices, Xs.data
        new_idx = np.full(len(indices), -1, dtype=np.intp)
        bounds = np.searchsorted(ds, np.arange(-1, K + 1))  # rows of domain k: bounds[k+1]..bounds[k+2]
        for k, cols in enumerate(self.domain_cols):
            lo, hi = indptr[bounds[k + 1]], indptr[bounds[k + 2]]
            table = np.full(p, -1, dtype=np.intp)
            table[cols] = np.arange(len(cols))
            new_idx[lo:hi] = table[indices[lo:hi]]
        keep = new_idx >= 0
        row_of = np.repeat(np.arange(n, dtype=np.intp), np.diff(indptr))
        row_nnz = np.bincount(row_of[keep], minlength=n)
        s_indptr = np.concatenate([[0], np.cumsum(row_nnz)])
        # column offsets of each domain block inside the s-part
        blk_off = np.zeros(len(indices), dtype=np.intp)
        for k in range(K):
            lo, hi = indptr[bounds[k + 1]], indptr[bounds[k + 2]]
            blk_off[lo:hi] = self.starts[k + 1] - widths[0]
        Sblk = sp.csr_matrix((data[keep], (new_idx + blk_off)[keep], s_indptr), shape=(n, self.width - widths[0]))
        top = sp.hstack([Xb, Sblk], format="csr")
        # instance -> design row
        self.top_row = np.empty(n, dtype=np.intp)
        self.top_row[order] = np.arange(n)
        self.alpha_row = np.full(n, -1, dtype=np.intp)
        w_lo = int(bounds[1])  # first row with a weighted domain in sorted order
        if self.alpha > 0 and w_lo < n:
            self.alpha_row[order[w_lo:]] = n + np.arange(n - w_lo)
            Xa = Xb[w_lo:]
            Xa = sp.csr_matrix((Xa.data, Xa.indices, Xa.indptr), shape=(n - w_lo, self.width))
            self.A = sp.vstack([top, Xa], format="csr")
        else:
            self.A = top
        self._alpha_inst = np.flatnonzero(self.alpha_row >= 0)

    # ---------------------------------------------------------------------------------------------
    def rows(self, w_inst: NDArray[np.float64]) -> tuple[NDArray[np.intp], NDArray[np.float64], NDArray[np.float64]]:
        """Design rows, their labels and weights for instance weights ``w_inst`` (zeros are dropped)."""
        top = np.flatnonzero(w_inst > 0)
        ar = self.alpha_row[top]
        has = ar >= 0
        rows = np.concatenate([self.top_row[top], ar[has]])
        wt = w_inst[top]
        wa = np.concatenate([np.where(has, wt, (1.0 + self.alpha) * wt), self.alpha * wt[has]])
        ya = np.concatenate([self.y_pm[top], self.y_pm[top][has]])
        return rows, ya, wa

    def penalties(self, lambda_shared: float, lambda_domain: float) -> NDArray[np.float64]:
        lam = np.full(self.width, float(lambda_domain))
        lam[: self.n_shared_cols] = float(lambda_shared) * self.shared_penalty_factor
        return lam

    def diagnostics(
        self, A: sp.csr_matrix, ya: NDArray, wa: NDArray, N: float, beta: NDArray, lam: NDArray
    ) -> dict[str, Any]:
        """Objective, gradient, KKT violation (relative to lambda) and duality gap at ``beta``."""
        z = A @ beta
        m = ya * z
        r = expit(-m)
        loss = float(np.dot(wa, np.logaddexp(0.0, -m)) / N)
        g = -(A.T @ (wa * ya * r)) / N
        primal = loss + float(np.dot(lam, np.abs(beta)))
        nz = beta != 0
        viol = np.where(nz, np.abs(g + lam * np.sign(beta)), np.maximum(np.abs(g) - lam, 0.0)) / lam
        scale = min(1.0, 1.0 / max(float(np.max(np.abs(g) / lam)) if len(g) else 0.0, 1e-300))
        dual = float(np.dot(wa, _binary_entropy(r * scale)) / N)
        return {
            "objective": primal,
            "gradient": g,
            "kkt_violation": float(viol.max()) if len(viol) else 0.0,
            "duality_gap": max(primal - dual, 0.0),
        }

    def solve(
        self,
        lambda_shared: float,
        lambda_domain: float,
        w_inst: NDArray[np.float64],
        *,
        warm: dict[str, Any] | None = None,
        tol: float = 1e-6,
        max_iter: int = 1000,
        kkt_tol: float = 1e-3,
        sub: tuple | None = None,
    ) -> dict[str, Any]:
        """Minimise mean-normalised Eq. 1 on the instances with positive weight.

        ``warm`` is a previous result on the same instances (another grid point): its gradient screens out
        columns with the sequential strong rule |g_j| < 2 lambda_j - lambda_j_prev, and its non-zeros are kept.
        Screened-out columns are checked against the KKT conditions afterwards and added back (with a re-solve)
        if violated, so the result is the same optimum as an unscreened solve. ``sub`` is a cached
        ``(A_rows, ya, wa)`` for these instances (see :meth:`subset`).
        """
        from sklearn.linear_model import LogisticRegression

        A, ya, wa = sub if sub is not None else self.subset(w_inst)
        N = float(np.sum(w_inst))
        lam = self.penalties(lambda_shared, lambda_domain)
        beta = np.zeros(self.width)
        if self.width == 0 or len(np.unique(ya)) < 2:
            d = self.diagnostics(A, ya, wa, N, beta, lam)
            return {**d, "beta": beta, "n_iter": 0, "n_screened": 0, "n_kkt_readded": 0, "lam": lam}
        if warm is not None and "gradient" in warm:
            lam_prev = warm["lam"]
            keep = (np.abs(warm["gradient"]) >= 2.0 * lam - lam_prev) | (warm["beta"] != 0)
        else:
            keep = np.ones(self.width, dtype=bool)
        colscale = float(lambda_domain) / lam  # column j scaled by c_j = lam_s/lam_j, beta_j = c_j * theta_j
        n_iter, readded = 0, 0
        for _ in range(20):
            cols = np.flatnonzero(keep)
            As = A[:, cols] if len(cols) < self.width else A
            As = As @ sp.diags(colscale[cols]) if np.any(colscale[cols] != 1.0) else As
            lr = LogisticRegression(
                l1_ratio=1.0,
                C=1.0 / (float(lambda_domain) * N),
                solver="liblinear",
                fit_intercept=False,
                tol=float(tol),
                max_iter=int(max_iter),
                random_state=0,
            )
            if len(cols):
                lr.fit(As, ya, sample_weight=wa)
                theta = lr.coef_.ravel()
                if lr.classes_[1] != 1.0:
                    theta = -theta
                n_iter += int(np.max(lr.n_iter_))
            else:
                theta = np.zeros(0)
            beta = np.zeros(self.width)
            beta[cols] = theta * colscale[cols]
            d = self.diagnostics(A, ya, wa, N, beta, lam)
            if keep.all():
                break
            viol = (~keep) & (np.abs(d["gradient"]) > lam * (1.0 + kkt_tol))
            if not viol.any():
                break
            keep |= viol
            readded += int(viol.sum())
        return {
            **d,
            "beta": beta,
            "n_iter": n_iter,
            "n_screened": int((~keep).sum()),
            "n_kkt_readded": readded,
            "lam": lam,
        }

    def subset(self, w_inst: NDArray[np.float64]) -> tuple[sp.csr_matrix, NDArray, NDArray]:
        rows, ya, wa = self.rows(np.asarray(w_inst, dtype=np.float64))
        return self.A[rows], ya, wa

    def unpack(self, beta: NDArray[np.float64], n_domains_total: int, weighted_rows: NDArray[np.intp]):
        """beta -> (b (p,), S (n_domains_total, p)); ``weighted_rows[k]`` is the S row of block k."""
        b = np.zeros(self.p)
        S = np.zeros((n_domains_total, self.p))
        b[self.shared_cols] = beta[: self.n_shared_cols]
        for k, cols in enumerate(self.domain_cols):
            S[weighted_rows[k], cols] = beta[self.starts[k + 1] : self.starts[k + 2]]
        return b, S
