"""Mechanism contrasts as fitted parameters (pure, no I/O): one joint HMDR over several mechanisms.

The joint model is Eq. 1 with the *mechanism* as the grouping level (docs/contrasts.md): every verdict i of
mechanism m_i on a pair with concept vector x_i has the logit (b + delta_{m_i})' x_i, with weights b shared by
every mechanism and a sparse deviation delta_m per mechanism,

    F(b, delta) = (1/N) sum_i w_i [ l(y_i, (b + delta_{m_i})' x_i) + alpha * l(y_i, b' x_i) ]
                  + lambda_shared * ||b||_1 + lambda_domain * sum_m ||delta_m||_1,

solved by :class:`~py_models.hmdr.HMDRClassifier` (its ``cd`` kernel) with ``domains = mechanisms``, the
penalties chosen by :class:`~py_models.selection.HMDRClassifierCV` on folds that keep all of an item's verdicts
together. An item judged by several mechanisms appears once per mechanism. The contrast "A rewards concept c
more than B does" is delta_A,c - delta_B,c (= the difference of the mechanisms' total weights, whatever part of
it the fit put into b).

Inference resamples *items* (all of an item's verdicts together, within strata such as domains), which keeps the
pairing: a resample is a vector of item multiplicities used as sample weights on the design built once, solved at
the fitted penalties from the full fit. Per contrast: the percentile interval, the selection frequency (share of
resamples where the contrast is non-zero), and a two-sided p-value from the bootstrap standard error (the
percentile p-value cannot go below 2 / (B + 1), too coarse for a correction over tens of concepts).
:func:`benjamini_hochberg` adjusts those p-values for the number of concepts.
"""

from __future__ import annotations

from itertools import combinations
from numbers import Integral, Real
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import scipy.sparse as sp
from numpy.typing import ArrayLike, NDArray
from scipy.stats import norm
from sklearn.base import BaseEstimator
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted

from py_models._base import FINITE_MAX, DomainLinearClassifierMixin
from py_models._cd import DomainDesign, map_threads, solver_threads
from py_models.cv import stratified_folds
from py_models.hmdr import SOLVERS, HMDRClassifier, factorize_domains
from py_models.selection import GRIDS, SELECTION_RULES, HMDRClassifierCV

__all__ = [
    "MechanismContrast",
    "benjamini_hochberg",
    "bootstrap_p_values",
    "CONTRAST_COLUMNS",
    "CONTRAST_STATISTICS",
    "ZERO_TOL",
]

#: |contrast| at or below this counts as zero (the two deviations agree to the solver's precision)
ZERO_TOL = 1e-10
#: the per-concept statistics of one contrast (also the body of contrast_build.CONTRAST_OUTPUT_COLUMNS)
CONTRAST_STATISTICS = [
    "concept",
    "weight_a",
    "weight_b",
    "estimate",
    "ci_low",
    "ci_high",
    "standard_error",
    "selection_frequency",
    "p_value",
]
CONTRAST_COLUMNS = ["mechanism_a", "mechanism_b", *CONTRAST_STATISTICS, "n_bootstrap"]


def benjamini_hochberg(p_values: ArrayLike) -> NDArray[np.float64]:
    """Benjamini-Hochberg adjusted p-values (q-values) of one family: q_(k) = min_{j >= k} p_(j) * m / j,
    capped at 1, in the input order. A hypothesis is rejected at FDR level q* when its q-value is <= q*.
    NaN p-values are left out of the family and stay NaN."""
    p = np.asarray(p_values, dtype=np.float64).ravel()
    out = np.full(p.shape, np.nan)
    ok = np.flatnonzero(~np.isnan(p))
    if not len(ok):
        return out
    if np.any((p[ok] < 0) | (p[ok] > 1)):
        raise ValueError("p-values must lie in [0, 1]")
    m = len(ok)
    order = ok[np.argsort(p[ok], kind="stable")]
    scaled = p[order] * m / np.arange(1, m + 1)
    out[order] = np.minimum(1.0, np.minimum.accumulate(scaled[::-1])[::-1])
    return out


def bootstrap_p_values(estimate: ArrayLike, replicates: ArrayLike) -> NDArray[np.float64]:
    """Two-sided p-values of estimate = 0 from the bootstrap standard error: 2 * Phi(-|estimate| / se), with se
    the standard deviation of ``replicates`` (B, k) per column. An estimate of exactly zero has p = 1 (L1 set the
    contrast to zero: no evidence against it); a non-zero one with se = 0 has p = 0."""
    est = np.asarray(estimate, dtype=np.float64).ravel()
    reps = np.asarray(replicates, dtype=np.float64)
    se = reps.std(axis=0, ddof=1) if reps.shape[0] > 1 else np.zeros_like(est)
    zero = np.abs(est) <= ZERO_TOL
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.where(se > 0, np.abs(est) / np.where(se > 0, se, 1.0), np.inf)
    return np.where(zero, 1.0, 2.0 * norm.sf(z))


class MechanismContrast(DomainLinearClassifierMixin, BaseEstimator):
    """Joint HMDR over mechanisms (shared b, a sparse deviation per mechanism) with item-bootstrap contrasts.

    Parameters
    ----------
    select : bool
        Choose the penalties by CV (:class:`~py_models.selection.HMDRClassifierCV`, folds by item); False: the
        fixed ``alpha``, ``lambda_shared``, ``lambda_domain``.
    grid, rule, n_folds, seed, grid_domains, max_abs_weight
        The selection's, as :class:`~py_models.selection.HMDRClassifierCV` (``seed`` also seeds the bootstrap).
    alpha, lambda_shared, lambda_domain : float or None
        Fixed hyperparameters when ``select`` is False (None: the HMDR defaults for |mechanisms| groups); with
        ``select``, a fixed ``alpha`` for every configuration (None: the grid's).
    n_bootstrap : int >= 0
        Item-bootstrap resamples (0: estimates only, interval columns NaN).
    level : float in (0, 1)
        Coverage of the percentile intervals.
    tol, max_iter, solver
        As :class:`~py_models.hmdr.HMDRClassifier`.
    n_threads : int or None
        Threads for the resamples (None: ``py_models._cd.solver_threads()``; results do not depend on it).

    Attributes
    ----------
    mechanisms_ : ndarray
        Distinct mechanisms, sorted: the rows of ``coef_mechanism_``.
    estimator_ : HMDRClassifier
        The joint fit (its ``domains_`` are the mechanisms).
    coef_shared_ : ndarray (p,)
        b.
    coef_mechanism_ : ndarray (n_mechanisms, p)
        delta_m.
    n_items_ : int
        Distinct items in the fit.
    n_pairs_ : dict
        Verdicts per mechanism.
    bootstrap_deviations_ : ndarray (n_bootstrap, n_mechanisms, p)
        delta_m of every resample (b + delta_m - b: contrasts are differences of its rows).
    """

    _parameter_constraints: ClassVar[dict[str, list[Any]]] = {
        "select": ["boolean"],
        "grid": [StrOptions(set(GRIDS))],
        "rule": [StrOptions(set(SELECTION_RULES))],
        "n_folds": [Interval(Integral, 2, None, closed="left")],
        "seed": [Interval(Integral, 0, None, closed="left")],
        "grid_domains": [Interval(Integral, 1, None, closed="left"), None],
        "max_abs_weight": [Interval(Real, 0, np.inf, closed="right")],
        "alpha": [Interval(Real, 0, FINITE_MAX, closed="left"), None],
        "lambda_shared": [Interval(Real, 0, FINITE_MAX, closed="neither"), None],
        "lambda_domain": [Interval(Real, 0, FINITE_MAX, closed="neither"), None],
        "n_bootstrap": [Interval(Integral, 0, None, closed="left")],
        "level": [Interval(Real, 0, 1, closed="neither")],
        "tol": [Interval(Real, 0, FINITE_MAX, closed="neither")],
        "max_iter": [Interval(Integral, 1, None, closed="left")],
        "solver": [StrOptions(set(SOLVERS))],
        "n_threads": [Interval(Integral, 1, None, closed="left"), None],
        "relax": [Interval(Real, 0, 1, closed="right"), None],
    }

    def __init__(
        self,
        select: bool = True,
        grid: str = "pooling",
        rule: str = "min_log_loss",
        n_folds: int = 5,
        seed: int = 0,
        grid_domains: int | None = 8,
        max_abs_weight: float = 10.0,
        alpha: float | None = None,
        lambda_shared: float | None = None,
        lambda_domain: float | None = None,
        n_bootstrap: int = 200,
        level: float = 0.95,
        tol: float = 1e-6,
        max_iter: int = 1000,
        solver: str = "cd",
        n_threads: int | None = None,
        relax: float | None = 0.01,
    ) -> None:
        self.select = select
        self.grid = grid
        self.rule = rule
        self.n_folds = n_folds
        self.seed = seed
        self.grid_domains = grid_domains
        self.max_abs_weight = max_abs_weight
        self.alpha = alpha
        self.lambda_shared = lambda_shared
        self.lambda_domain = lambda_domain
        self.n_bootstrap = n_bootstrap
        self.level = level
        self.tol = tol
        self.max_iter = max_iter
        self.solver = solver
        self.n_threads = n_threads
        self.relax = relax

    # ------------------------------------------------------------------ fit
    def fit(
        self,
        X: ArrayLike,
        y: ArrayLike,
        *,
        mechanisms: ArrayLike,
        items: ArrayLike,
        strata: ArrayLike | None = None,
    ) -> MechanismContrast:
        """Fit the joint model on verdicts X (n, p), y, one mechanism and one item id per row, then the item
        bootstrap. ``strata``: one label per row, constant within an item (e.g. its domain): folds and
        resamples keep each stratum's number of items (None: one stratum)."""
        self._validate_params()
        mech = np.asarray(mechanisms, dtype=object).ravel()
        item = np.asarray(items, dtype=object).ravel()
        n = len(mech)
        strat = np.full(n, "", dtype=object) if strata is None else np.asarray(strata, dtype=object).ravel()
        if len(item) != n or len(strat) != n or np.asarray(y).ravel().shape[0] != n:
            raise ValueError(f"y, mechanisms, items and strata lengths differ from each other ({n} mechanisms)")
        self.mechanisms_, _ = factorize_domains(mech)
        if len(self.mechanisms_) < 2:
            raise ValueError(f"a contrast needs at least two mechanisms, got {self.mechanisms_.tolist()}")
        item_ids, item_of_row = factorize_domains(item)
        item_stratum = pd.Series(strat.astype(str)).groupby(item_of_row).agg(["first", "nunique"])
        if (item_stratum["nunique"] > 1).any():
            raise ValueError("strata must be constant within an item (all of an item's verdicts in one stratum)")
        stratum_of_item = item_stratum["first"].to_numpy(dtype=object)
        self.n_items_ = len(item_ids)
        self.n_pairs_ = dict(zip(*np.unique(mech, return_counts=True)))
        self.n_pairs_ = {str(k): int(v) for k, v in self.n_pairs_.items()}

        common: dict[str, Any] = {
            "min_domain_samples": 1,
            "tol": float(self.tol),
            "max_iter": int(self.max_iter),
            "solver": self.solver,
        }
        if self.select:
            fold_of_item = stratified_folds(
                stratum_of_item, np.zeros(len(item_ids)), int(self.n_folds), int(self.seed), order=item_ids
            )
            est: HMDRClassifier = HMDRClassifierCV(
                grid=self.grid,
                rule=self.rule,
                n_folds=int(self.n_folds),
                seed=int(self.seed),
                grid_domains=self.grid_domains,
                max_abs_weight=float(self.max_abs_weight),
                alpha=self.alpha,
                **common,
            ).fit(X, y, domains=mech, folds=fold_of_item[item_of_row])
        else:
            est = HMDRClassifier(
                alpha=self.alpha, lambda_shared=self.lambda_shared, lambda_domain=self.lambda_domain, **common
            ).fit(X, y, domains=mech)
        self.estimator_ = est
        self.classes_ = est.classes_
        self.n_features_in_ = est.n_features_in_
        if hasattr(est, "feature_names_in_"):
            self.feature_names_in_ = est.feature_names_in_
        self.__dict__.pop("_relax_inputs", None)
        self.selection_coef_shared_, self.selection_coef_mechanism_ = est.coef_shared_, est.coef_domain_
        self.coef_shared_, self.coef_mechanism_ = self._relaxed(
            X, y, mech, np.ones(n), est.coef_shared_, est.coef_domain_
        )
        self.bootstrap_deviations_ = self._bootstrap(X, y, mech, item_of_row, stratum_of_item)
        self.__dict__.pop("_relax_inputs", None)  # the refits' copy of the design (only needed during fit)
        return self

    def _bootstrap(
        self,
        X: ArrayLike,
        y: ArrayLike,
        mech: NDArray[np.object_],
        item_of_row: NDArray[np.intp],
        stratum_of_item: NDArray[np.object_],
    ) -> NDArray[np.float64]:
        """delta_m of ``n_bootstrap`` item resamples (within strata, in stratum-name order, drawn in order from one
        generator), each solved at the fitted penalties from the full fit."""
        B = int(self.n_bootstrap)
        m = self.estimator_.fixed_estimator()
        design, w, meta = m._prepare(X, y, mech, None)
        n_mech, p = meta["n_domains"], design.p
        if B == 0:
            return np.zeros((0, n_mech, p))
        lb, ls, tol, max_iter = m.lambda_shared_, m.lambda_domain_, float(m.tol), int(m.max_iter)
        full = design.solve(lb, ls, w, warm=getattr(self.estimator_, "_solution", None), tol=tol, max_iter=max_iter)
        rng = np.random.default_rng([int(self.seed), 1])
        groups = [np.flatnonzero(stratum_of_item == s) for s in sorted(set(stratum_of_item.tolist()))]
        n_items = len(stratum_of_item)

        def draw() -> NDArray[np.float64]:
            counts = np.zeros(n_items)
            for g in groups:
                counts += np.bincount(g[rng.integers(0, len(g), size=len(g))], minlength=n_items)
            return counts[item_of_row] * w

        def replicate(w_r: NDArray[np.float64]) -> NDArray[np.float64]:
            res = design.solve(lb, ls, w_r, warm=full, tol=tol, max_iter=max_iter)
            b, S = design.unpack(res["beta"], n_mech, meta["weighted_rows"])
            return self._relaxed(X, y, mech, w_r, b, S)[1]

        cd = isinstance(design, DomainDesign)
        threads = (solver_threads() if self.n_threads is None else int(self.n_threads)) if cd else 1
        work = int(design.indices.size) if isinstance(design, DomainDesign) else None
        out = np.zeros((B, n_mech, p))
        chunk = 16 * max(threads, 1)
        for start in range(0, B, chunk):
            stop = min(B, start + chunk)
            weights = [draw() for _ in range(start, stop)]
            for r, S in zip(range(start, stop), map_threads(replicate, weights, threads, work=work)):
                out[r] = S
        return out

    def _relaxed(
        self,
        X: ArrayLike,
        y: ArrayLike,
        mech: NDArray[np.object_],
        w: NDArray[np.float64],
        b: NDArray[np.float64],
        S: NDArray[np.float64],
    ) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """The relaxed refit (relaxed lasso): Eq. 1 again on the support L1 selected (b_j and delta_mj free only
        where non-zero), at the penalties times ``relax``, so the selected contrasts are not shrunk towards zero
        (``py_models._cd.DomainDesign`` on that support, whatever ``solver`` is). ``relax`` None or 1, no
        deviation selected, or relaxed weights beyond ``max_abs_weight``: (b, S) as they are."""
        if self.relax is None or self.relax == 1 or not np.any(S):
            return b, S
        m = self.estimator_
        if not hasattr(self, "_relax_inputs"):
            data = sp.csr_matrix(X, dtype=np.float64) if sp.issparse(X) else np.asarray(X, dtype=np.float64)
            y_pm = np.where(np.asarray(y).ravel() == m.classes_[1], 1.0, -1.0)
            lookup = {d: k for k, d in enumerate(m.domains_.tolist())}
            self._relax_inputs = (data, y_pm, np.array([lookup[d] for d in mech.tolist()], dtype=np.intp))
        data, y_pm, dom_idx = self._relax_inputs
        rows = np.arange(len(m.domains_))
        design = DomainDesign(
            data,
            y_pm,
            dom_idx,
            np.flatnonzero(b != 0),
            [np.flatnonzero(S[k] != 0) for k in rows],
            m.alpha_,
            shared_penalty_factor=m.penalty_factor_,
        )
        relax = float(self.relax)
        start = np.concatenate([b[design.shared_cols], *(S[k, cols] for k, cols in enumerate(design.domain_cols))])
        res = design.solve(
            m.lambda_shared_ * relax,
            m.lambda_domain_ * relax,
            w,
            warm={"beta": start},  # the L1 solution on this support: a few Newton steps from the relaxed optimum
            tol=float(self.tol),
            max_iter=int(self.max_iter),
        )
        if not np.all(np.isfinite(res["beta"])) or np.abs(res["beta"]).max(initial=0.0) > self.max_abs_weight:
            return b, S  # near-separation of a small sample: the relaxed weights blow up, keep the L1 solution
        return design.unpack(res["beta"], len(rows), rows)

    # ------------------------------------------------------------ predict
    def decision_function(self, X: ArrayLike, domains: ArrayLike | None = None) -> NDArray[np.float64]:
        """Logit (b + delta_m)' x of "a wins", ``domains`` = each row's mechanism (b alone for an unseen one)."""
        check_is_fitted(self, "estimator_")
        return self.estimator_.decision_function(X, domains)

    # ----------------------------------------------------------- contrasts
    def contrast_table(self, feature_names: list[str] | None = None) -> pd.DataFrame:
        """One row per mechanism pair (a < b by name) and concept: CONTRAST_COLUMNS. ``estimate`` =
        delta_a - delta_b (= weight_a - weight_b, the mechanisms' total weights b + delta), its percentile
        interval, bootstrap standard error, selection frequency and p-value (:func:`bootstrap_p_values`); the
        interval columns are NaN without resamples."""
        check_is_fitted(self, "estimator_")
        p = self.n_features_in_
        names = list(feature_names) if feature_names is not None else self._names()
        if len(names) != p:
            raise ValueError(f"feature_names has {len(names)} entries, expected {p}")
        D, boot, B = self.coef_mechanism_, self.bootstrap_deviations_, self.bootstrap_deviations_.shape[0]
        q = [(1 - self.level) / 2 * 100, (1 + self.level) / 2 * 100]
        frames = []
        for i, j in combinations(range(len(self.mechanisms_)), 2):
            est = D[i] - D[j]
            est = np.where(np.abs(est) <= ZERO_TOL, 0.0, est)
            row: dict[str, Any] = {
                "mechanism_a": str(self.mechanisms_[i]),
                "mechanism_b": str(self.mechanisms_[j]),
                "concept": np.asarray(names, dtype=object),
                "weight_a": self.coef_shared_ + D[i],
                "weight_b": self.coef_shared_ + D[j],
                "estimate": est,
                "n_bootstrap": B,
            }
            if B:
                reps = boot[:, i, :] - boot[:, j, :]
                lo, hi = np.percentile(reps, q, axis=0)
                row.update(
                    ci_low=lo,
                    ci_high=hi,
                    standard_error=reps.std(axis=0, ddof=1) if B > 1 else np.zeros(p),
                    selection_frequency=(np.abs(reps) > ZERO_TOL).mean(axis=0),
                    p_value=bootstrap_p_values(est, reps),
                )
            else:
                row.update({c: np.full(p, np.nan) for c in ("ci_low", "ci_high", "standard_error")})
                row.update(selection_frequency=np.full(p, np.nan), p_value=np.full(p, np.nan))
            frames.append(pd.DataFrame(row))
        return pd.concat(frames, ignore_index=True)[CONTRAST_COLUMNS]

    def _names(self) -> list[str]:
        names = getattr(self, "feature_names_in_", None)
        return [str(c) for c in names] if names is not None else [f"x{j}" for j in range(self.n_features_in_)]
