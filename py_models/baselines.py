"""Baselines and ablations of HMDR (method.md §4.4, peers.md), with HMDR's API.

Every variant is a scikit-learn classifier with ``fit(X, y, *, domains, sample_weight=None)``,
``predict_proba(X, domains=None)`` (column 1 = P(response a wins)), ``uses_domain_weights(domains)`` and
``param_grid(n_domains)`` (the 9 configurations its model selection searches).

* ``SharedOnlyClassifier`` -- L1 logistic regression on the shared concepts only, no domains (paper "Shared").
* ``SpecificOnlyClassifier`` -- one L1 logistic regression per domain, nothing shared (paper "Specific"; an
  unseen domain gets P = 0.5, so it is in-domain only).
* ``dirty_model(...)`` -- HMDR with alpha = 0 (paper "Dirty"), same grid as HMDR.
* ``FlatPooledClassifier`` -- one L1 logistic regression on all concepts, ignoring domains.
* ``PeerElasticNetClassifier`` -- the peers' way (VibeCheck, Preference-Dissection): an independent elastic-net
  (l1_ratio 0.5) on standardised features per domain, with an intercept and no symmetrisation. Unseen domain:
  P = 0.5.

The paper's grid for the shared/specific logistic regressions is {0.05, 0.1, 0.125, 0.25, 0.5, 1, 1.5, 2.5, 5}
without saying whether it is a penalty or scikit-learn's C. Read as a mean-normalised penalty it zeroes every
weight (HMDR's own lambdas are ~0.016-0.125), so it is used here as scikit-learn's C (sum-loss convention).
All L1 fits are without intercept (the symmetric data make one zero). ``solver="cd"`` (the default) solves them
on the coordinate-descent kernel of :mod:`py_models._cd`: liblinear's problem ``C sum_i w_i l(y_i x_i'beta) +
|beta|_1`` divided by ``C sum_i w_i`` is Eq. 1 with alpha = 0 and lambda = 1 / (C sum_i w_i), with one block
(``shared_only``, ``flat_pooled``) or one block per domain (``specific_only``: the per-domain problems are
independent, so one solve on the joint design gives every domain's optimum). The result equals liblinear's
within solver tolerance (certified by a duality gap); ``solver="liblinear"`` keeps scikit-learn's wrapper (the
benchmark's reference). :class:`L1Path` runs a model selection's C grid on every CV fold on one stored design,
warm-started along C (what :class:`py_models.selection.DomainGridSearchCV` uses for the cd solver).
"""

from __future__ import annotations

from numbers import Real
from typing import Any, ClassVar

import numpy as np
import scipy.sparse as sp
from numpy.typing import ArrayLike, NDArray
from sklearn.base import BaseEstimator, clone
from sklearn.linear_model import LogisticRegression
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted

from py_models._augment import sigmoid
from py_models._base import FINITE_MAX, DomainLinearClassifierMixin, check_sample_weight
from py_models._cd import GAP_FACTOR, DomainDesign
from py_models.hmdr import HMDRClassifier

__all__ = [
    "C_GRID",
    "L1_SOLVERS",
    "L1Path",
    "SharedOnlyClassifier",
    "SpecificOnlyClassifier",
    "FlatPooledClassifier",
    "PeerElasticNetClassifier",
    "dirty_model",
]

C_GRID = (0.05, 0.1, 0.125, 0.25, 0.5, 1.0, 1.5, 2.5, 5.0)
_POSITIVE = [Interval(Real, 0, FINITE_MAX, closed="neither")]
L1_SOLVERS = ("cd", "liblinear")


def _l1(C: float, tol: float = 1e-6) -> LogisticRegression:
    return LogisticRegression(
        l1_ratio=1.0, C=C, solver="liblinear", fit_intercept=False, tol=tol, max_iter=1000, random_state=0
    )


def _fit_lr(lr: LogisticRegression, X, y_pm: NDArray, w: NDArray | None) -> NDArray[np.float64]:
    """Fit, return the coefficient of "a wins" (+1); zeros if one class only."""
    if len(np.unique(y_pm)) < 2 or X.shape[1] == 0:
        return np.zeros(X.shape[1])
    lr.fit(X, y_pm, sample_weight=w)
    coef = lr.coef_.ravel().copy()
    return coef if lr.classes_[1] == 1.0 else -coef


class _L1Problem:
    """The L1 logistic regressions of a baseline on one training set, stored once for the cd solver.

    One block of columns ``cols`` shared by every row (``per_domain=False``), or one block per distinct domain
    (sorted, as ``np.unique``) with those columns, each block seeing only its domain's rows: liblinear's problem
    per block, divided by ``C sum_i w_i``, summed over the blocks (independent, so the joint optimum is every
    block's optimum). A block whose rows with positive weight have one class only stays zero (liblinear's wrapper
    is not called for it)."""

    def __init__(self, X: Any, y_pm: NDArray[np.float64], dom: NDArray, cols: NDArray[np.intp], per_domain: bool):
        n = X.shape[0]
        self.y_pm, self.cols, self.per_domain = y_pm, np.asarray(cols, dtype=np.intp), per_domain
        if per_domain:
            self.domains, codes = np.unique(dom, return_inverse=True)
            self.block = np.asarray(codes, dtype=np.intp).ravel()
            domain_cols = [self.cols] * len(self.domains)
            self.design = DomainDesign(X, y_pm, self.block, np.zeros(0, np.intp), domain_cols, alpha=0.0)
        else:
            self.domains = np.zeros(0, dtype=object)
            self.block = np.zeros(n, dtype=np.intp)
            self.design = DomainDesign(X, y_pm, np.full(n, -1, np.intp), self.cols, [], alpha=0.0)
        self.n_blocks = max(len(self.domains), 1)

    def _usable(self, w: NDArray[np.float64]) -> tuple[NDArray[np.bool_], NDArray[np.float64]]:
        """Per block: both classes among its rows with positive weight; its share of the total weight."""
        pos = w > 0
        k = self.n_blocks
        wins = np.bincount(self.block[pos & (self.y_pm > 0)], minlength=k) > 0
        losses = np.bincount(self.block[pos & (self.y_pm < 0)], minlength=k) > 0
        share = np.bincount(self.block, weights=w, minlength=k) / w.sum()
        return wins & losses, share

    def solve(
        self,
        C: float,
        w: NDArray[np.float64],
        tol: float,
        warm: dict[str, Any] | None = None,
        usable: tuple[NDArray[np.bool_], NDArray[np.float64]] | None = None,
    ) -> dict[str, Any]:
        """``DomainDesign.solve`` at lambda = 1 / (C sum w), certified by the duality gap: at most ``tol`` x
        ``GAP_FACTOR`` x the objective for one block; per domain, at most ``tol`` x the smallest usable block's
        share of the weight x the objective (a domain's gap is part of the joint one, so each domain's objective
        is within about ``tol`` relative of its own optimum). ``usable``: ``_usable(w)``, if computed already."""
        ok, share = self._usable(w) if usable is None else usable
        eligible: NDArray[np.bool_]
        if self.per_domain:
            eligible = np.repeat(ok, len(self.cols)).astype(bool)
        else:
            eligible = np.full(self.design.width, bool(ok[0]))
        lam = 1.0 / (float(C) * float(w.sum()))
        rel = min(1.0, float(share[ok].min()) / GAP_FACTOR) if ok.any() else 1.0
        return self.design.solve(lam, lam, w, warm=warm, tol=tol * rel, max_iter=1000, eligible=eligible)

    def block_coef(self, beta: NDArray[np.float64], k: int) -> NDArray[np.float64]:
        """The weights of block k (every feature; zero outside ``cols``)."""
        coef = np.zeros(self.design.p)
        lo, hi = self.design.starts[k + 1], self.design.starts[k + 2]
        coef[self.cols] = beta[lo:hi]
        return coef


class _Baseline(DomainLinearClassifierMixin, BaseEstimator):
    """A baseline of the family: validated parameters and training data, ``param_grid`` of its selection."""

    _parameter_constraints: ClassVar[dict[str, list[Any]]] = {"C": _POSITIVE, "tol": _POSITIVE}

    @staticmethod
    def param_grid(n_domains: int) -> list[dict[str, Any]]:
        """The configurations its model selection searches: scikit-learn's C over ``C_GRID``."""
        return [{"C": c} for c in C_GRID]

    def _setup(self, X, y, domains, sample_weight):
        self._validate_params()
        X, y_pm, dom = self._validate_training_data(X, y, domains)
        return X, y_pm, dom, check_sample_weight(sample_weight, X.shape[0])


class _L1Baseline(_Baseline):
    """An L1 baseline: liblinear's problem, solved by the cd kernel (default) or by liblinear."""

    _parameter_constraints: ClassVar[dict[str, list[Any]]] = {
        **_Baseline._parameter_constraints,
        "solver": [StrOptions(set(L1_SOLVERS))],
    }
    _per_domain: ClassVar[bool] = False

    def _columns(self, p: int) -> NDArray[np.intp]:
        return np.arange(p, dtype=np.intp)

    def _problem(self, X: Any, y_pm: NDArray[np.float64], dom: NDArray) -> _L1Problem:
        return _L1Problem(X, y_pm, dom, self._columns(X.shape[1]), self._per_domain)

    def _store(self, problem: _L1Problem, res: dict[str, Any]) -> None:
        raise NotImplementedError

    def _fit_cd(self, X: Any, y_pm: NDArray[np.float64], dom: NDArray, w: NDArray[np.float64] | None) -> None:
        problem = self._problem(X, y_pm, dom)
        w_all = np.ones(X.shape[0]) if w is None else w
        self._store(problem, problem.solve(float(self.C), w_all, float(self.tol)))

    def selection_path(
        self, X: Any, y_pm: NDArray[np.float64], dom: NDArray, w: NDArray[np.float64] | None, classes: NDArray
    ) -> L1Path | None:
        """The C grid of a model selection on one stored design (:class:`L1Path`; inputs checked by the caller:
        X, labels as +-1 with +1 = ``classes[1]``, domains, weights or None); None for liblinear."""
        return L1Path(self, X, y_pm, dom, w, classes) if self.solver == "cd" else None


class SharedOnlyClassifier(_L1Baseline):
    """L1 logistic regression on the shared concepts (``shared_mask``), no domain terms.

    Parameters
    ----------
    C : float > 0
        scikit-learn's inverse L1 strength (sum-loss convention).
    shared_mask : bool array (n_features,) or None
        The features it may use (default: all).
    tol : float > 0
        Stopping tolerance: the relative duality gap (cd; ``GAP_FACTOR`` x tol) or liblinear's.
    solver : {"cd", "liblinear"}
        The coordinate-descent kernel (default) or scikit-learn's liblinear wrapper (the same problem).

    Attributes
    ----------
    classes_ : ndarray of shape (2,)
        ``[negative, positive]``; the positive class is "response a wins".
    n_features_in_ : int
        Number of features seen in fit.
    coef_ : ndarray of shape (n_features_in_,)
        Weights towards "a wins" (zero outside ``shared_mask``).
    objective_ : float
        cd: the certified mean-normalised objective (liblinear's divided by C sum w); liblinear: NaN.
    """

    uses_domains = False
    _parameter_constraints: ClassVar[dict[str, list[Any]]] = {
        **_L1Baseline._parameter_constraints,
        "shared_mask": ["array-like", None],
    }

    def __init__(
        self, C: float = 1.0, shared_mask: ArrayLike | None = None, tol: float = 1e-6, solver: str = "cd"
    ) -> None:
        self.C = C
        self.shared_mask = shared_mask
        self.tol = tol
        self.solver = solver

    def _mask(self, p: int) -> NDArray[np.bool_]:
        return np.ones(p, dtype=bool) if self.shared_mask is None else np.asarray(self.shared_mask, dtype=bool)

    def _columns(self, p: int) -> NDArray[np.intp]:
        return np.flatnonzero(self._mask(p)).astype(np.intp)

    def fit(self, X, y, *, domains=None, sample_weight=None):
        X, y_pm, dom, w = self._setup(X, y, domains, sample_weight)
        if self.solver == "cd":
            self._fit_cd(X, y_pm, dom, w)
            return self
        cols = self._columns(X.shape[1])
        self.coef_ = np.zeros(X.shape[1])
        self.coef_[cols] = _fit_lr(_l1(self.C, self.tol), X[:, cols], y_pm, w)
        self.objective_ = float("nan")
        return self

    def _store(self, problem: _L1Problem, res: dict[str, Any]) -> None:
        self.coef_ = np.zeros(problem.design.p)
        self.coef_[problem.cols] = res["beta"][: problem.design.n_shared_cols]
        self.objective_ = float(res["objective"])

    def decision_function(self, X, domains=None):
        return np.asarray(self._validate_X(X) @ self.coef_).ravel()


class FlatPooledClassifier(SharedOnlyClassifier):
    """L1 logistic regression on all concepts, ignoring domains.

    Parameters
    ----------
    C, tol, solver
        As :class:`SharedOnlyClassifier`.

    Attributes
    ----------
    classes_, n_features_in_, objective_
        As :class:`SharedOnlyClassifier`.
    coef_ : ndarray of shape (n_features_in_,)
        Weights towards "a wins".
    """

    _parameter_constraints: ClassVar[dict[str, list[Any]]] = dict(_L1Baseline._parameter_constraints)

    def __init__(self, C: float = 1.0, tol: float = 1e-6, solver: str = "cd") -> None:
        self.C = C
        self.tol = tol
        self.solver = solver

    def _mask(self, p: int) -> NDArray[np.bool_]:
        return np.ones(p, dtype=bool)


class _PerDomain(_Baseline):
    """Independent fits per domain: ``coefs_`` / ``intercepts_`` per training domain, unseen domains P = 0.5."""

    def _make(self) -> LogisticRegression:
        raise NotImplementedError

    def _prep_domain(self, Xd, fit: bool = False, d: Any = None):
        return Xd

    def _fit_per_domain(self, X, y_pm, dom, w) -> None:
        """One scikit-learn fit per training domain (``_make``)."""
        self.domains_ = np.unique(dom)
        self.coefs_: dict[Any, NDArray[np.float64]] = {}
        self.intercepts_: dict[Any, float] = {}
        for d in self.domains_:
            m = dom == d
            Xd = self._prep_domain(X[m], fit=True, d=d)
            self.coefs_[d], self.intercepts_[d] = self._fit_domain(Xd, y_pm[m], None if w is None else w[m])

    def _fit_domain(
        self, Xd: Any, y_pm: NDArray[np.float64], w: NDArray[np.float64] | None
    ) -> tuple[NDArray[np.float64], float]:
        """One domain's (weights, intercept) towards "a wins" from scikit-learn's estimator (``_make``)."""
        lr = self._make()
        coef = _fit_lr(lr, Xd, y_pm, w)
        b0 = float(lr.intercept_[0]) if getattr(lr, "fit_intercept", False) and hasattr(lr, "coef_") else 0.0
        return coef, (b0 if (not hasattr(lr, "classes_") or lr.classes_[1] == 1.0) else -b0)

    def decision_function(self, X, domains=None):
        X = self._validate_X(X)
        z = np.zeros(X.shape[0])
        if domains is None:
            return z
        dom = np.asarray(domains, dtype=object).ravel()
        for d in np.unique(dom):
            if d in self.coefs_:
                m = dom == d
                z[m] = (
                    np.asarray(self._prep_domain(X[m], fit=False, d=d) @ self.coefs_[d]).ravel() + self.intercepts_[d]
                )
        return z

    def uses_domain_weights(self, domains):
        check_is_fitted(self, "coefs_")
        return np.array([d in self.coefs_ for d in np.asarray(domains, dtype=object).ravel()], dtype=bool)


class SpecificOnlyClassifier(_L1Baseline, _PerDomain):
    """One independent L1 logistic regression per domain; unseen domains get P = 0.5.

    Parameters
    ----------
    C, tol, solver
        As :class:`SharedOnlyClassifier`; C is the same in every domain. With ``cd`` every domain is solved in
        one call on the joint design (the problems are independent), each to ``tol`` on its own objective.

    Attributes
    ----------
    classes_, n_features_in_
        As :class:`SharedOnlyClassifier`.
    domains_ : ndarray
        Distinct training domains, sorted.
    coefs_ : dict
        Domain -> weights towards "a wins", shape (n_features_in_,) (zero for a domain with one class).
    intercepts_ : dict
        Domain -> intercept (0 without one).
    objective_ : float
        cd: the certified objective, the sum of the domains' (each liblinear's divided by C sum w); liblinear: NaN.
    """

    _per_domain = True

    def __init__(self, C: float = 1.0, tol: float = 1e-6, solver: str = "cd") -> None:
        self.C = C
        self.tol = tol
        self.solver = solver

    def _make(self) -> LogisticRegression:
        return _l1(self.C, self.tol)

    def fit(self, X, y, *, domains=None, sample_weight=None):
        X, y_pm, dom, w = self._setup(X, y, domains, sample_weight)
        if self.solver == "cd":
            self._fit_cd(X, y_pm, dom, w)
        else:
            self._fit_per_domain(X, y_pm, dom, w)
            self.objective_ = float("nan")
        return self

    def _store(self, problem: _L1Problem, res: dict[str, Any]) -> None:
        self.domains_ = problem.domains
        self.coefs_ = {d: problem.block_coef(res["beta"], k) for k, d in enumerate(problem.domains)}
        self.intercepts_ = {d: 0.0 for d in problem.domains}
        self.objective_ = float(res["objective"])


class L1Path:
    """A model selection's C grid for an L1 baseline (cd solver): one stored design for the training set, every
    CV fold solved by instance weights (held-out rows weight 0), each fold's grid warm-started along C.

    ``fold_probabilities`` gives what fitting ``clone(estimator).set_params(C=c)`` on each fold's training rows
    and predicting its held-out rows gives, within solver tolerance; ``refit`` the estimator on every row.
    """

    def __init__(
        self,
        estimator: _L1Baseline,
        X: Any,
        y_pm: NDArray[np.float64],
        dom: NDArray,
        w: NDArray[np.float64] | None,
        classes: NDArray,
    ) -> None:
        self.estimator = estimator
        self._model = clone(estimator)
        self._model._validate_params()
        self._model.n_features_in_ = X.shape[1]
        self._model.classes_ = classes
        self.y_pm, self.dom = y_pm, dom
        self.w = np.ones(X.shape[0]) if w is None else w
        self.problem = self._model._problem(X, self.y_pm, self.dom)

    def fold_probabilities(
        self, fold_ids: NDArray, Cs: list[float]
    ) -> list[tuple[Any, NDArray[np.bool_], NDArray[np.float64]]]:
        """Per fold whose training rows have both classes: (fold id, held-out mask, P(a wins) of its held-out
        rows per C, shape (len(Cs), n_held_out)); the folds in sorted order."""
        out = []
        tol = float(self._model.tol)
        for k in np.unique(fold_ids):
            te = fold_ids == k
            w_tr = np.where(te, 0.0, self.w)
            y_tr = self.y_pm[w_tr > 0]
            if not len(y_tr) or y_tr.min() == y_tr.max():
                continue
            probs = np.empty((len(Cs), int(te.sum())))
            warm = None
            usable = self.problem._usable(w_tr)
            for c, C in enumerate(Cs):
                warm = self.problem.solve(C, w_tr, tol, warm, usable)
                probs[c] = sigmoid(warm["z"][te])
            out.append((k, te, probs))
        return out

    def refit(self, C: float) -> _L1Baseline:
        """The estimator at ``C``, fitted on every row (the stored design, weights as given)."""
        model = clone(self.estimator).set_params(C=C)
        for attr in ("n_features_in_", "classes_"):
            if hasattr(self._model, attr):
                setattr(model, attr, getattr(self._model, attr))
        model._store(self.problem, self.problem.solve(float(C), self.w, float(model.tol)))
        return model


class PeerElasticNetClassifier(_PerDomain):
    """Per-domain elastic-net (l1_ratio 0.5) on standardised features with an intercept (peers' practice).

    Parameters
    ----------
    C : float > 0
        scikit-learn's inverse regularisation strength, the same in every domain.
    l1_ratio : float in [0, 1]
        Elastic-net mixing (1 = L1).
    tol : float > 0
        saga stopping tolerance.
    backend : {"sag_solver", "estimator"}
        ``sag_solver`` (default): scikit-learn's saga called as its estimator calls it, without the per-fit
        overhead; ``estimator``: through ``LogisticRegression`` (the previous route). Identical weights.

    Attributes
    ----------
    classes_, n_features_in_, domains_, intercepts_
        As :class:`SpecificOnlyClassifier`.
    coefs_ : dict
        Domain -> weights per standardised feature towards "a wins".
    scales_ : dict
        Domain -> 1 / (training standard deviation) per feature (0 for a constant feature).
    """

    _parameter_constraints: ClassVar[dict[str, list[Any]]] = {
        **_Baseline._parameter_constraints,
        "l1_ratio": [Interval(Real, 0, 1, closed="both")],
        "backend": [StrOptions({"sag_solver", "estimator"})],
    }
    _MAX_ITER = 2000

    def __init__(self, C: float = 1.0, l1_ratio: float = 0.5, tol: float = 1e-4, backend: str = "sag_solver") -> None:
        self.C = C
        self.l1_ratio = l1_ratio
        self.tol = tol
        self.backend = backend

    def _fit_domain(
        self, Xd: Any, y_pm: NDArray[np.float64], w: NDArray[np.float64] | None
    ) -> tuple[NDArray[np.float64], float]:
        """``backend="sag_solver"``: the call ``LogisticRegression(solver="saga").fit`` makes for a binary target
        (scikit-learn's ``sag_solver`` with the same step, penalties, seed and start), without the estimator's
        per-fit checks, label encoding and callbacks (three quarters of its time on a domain of ~20 pairs); the
        same weights bit for bit (tests/test_baselines.py)."""
        if self.backend == "estimator" or (sp.issparse(Xd) and Xd.indices.dtype != np.int32):
            return super()._fit_domain(Xd, y_pm, w)  # saga takes 32-bit sparse indices: the estimator says so
        if len(np.unique(y_pm)) < 2 or Xd.shape[1] == 0:
            return np.zeros(Xd.shape[1]), 0.0
        from sklearn.linear_model._sag import sag_solver
        from sklearn.utils import check_random_state
        from sklearn.utils.extmath import row_norms

        X = Xd.astype(np.float64).tocsr() if sp.issparse(Xd) else np.ascontiguousarray(Xd, dtype=np.float64)
        target = (y_pm == 1.0).astype(np.float64)  # classes_ = [-1, 1]: "a wins" is the positive class
        C, r = float(self.C), float(self.l1_ratio)
        coef, _, _ = sag_solver(
            X,
            target,
            None if w is None else np.array(w, dtype=np.float64),
            "log",
            (1.0 / C) * (1.0 - r),
            (1.0 / C) * r,
            self._MAX_ITER,
            float(self.tol),
            0,
            check_random_state(0),
            False,
            row_norms(X, squared=True).max(),
            {"coef": np.zeros((X.shape[1] + 1, 1))},
            is_saga=True,
        )
        return np.array(coef[:-1], dtype=np.float64), float(coef[-1])

    def _make(self) -> LogisticRegression:
        return LogisticRegression(
            l1_ratio=self.l1_ratio,
            C=self.C,
            solver="saga",
            fit_intercept=True,
            tol=self.tol,
            max_iter=self._MAX_ITER,
            random_state=0,
        )

    def _prep_domain(self, Xd, fit=False, d=None):
        if fit:
            if not hasattr(self, "scales_"):
                self.scales_ = {}
            sq = Xd.multiply(Xd).mean(axis=0) if sp.issparse(Xd) else np.mean(Xd**2, axis=0)
            mu = Xd.mean(axis=0)
            sd = np.sqrt(np.maximum(np.asarray(sq).ravel() - np.asarray(mu).ravel() ** 2, 0.0))
            self.scales_[d] = np.where(sd > 0, 1.0 / np.where(sd > 0, sd, 1.0), 0.0)
        s = self.scales_[d]
        return Xd.multiply(s).tocsr() if sp.issparse(Xd) else Xd * s

    def fit(self, X, y, *, domains=None, sample_weight=None):
        X, y_pm, dom, w = self._setup(X, y, domains, sample_weight)
        self.scales_ = {}
        self._fit_per_domain(X, y_pm, dom, w)
        return self


def dirty_model(**params: Any) -> HMDRClassifier:
    """The paper's Dirty model: HMDR with alpha = 0 (no shared loss)."""
    return HMDRClassifier(**{**params, "alpha": 0.0})
