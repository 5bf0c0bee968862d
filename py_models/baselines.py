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
All L1 fits use liblinear without intercept (the symmetric data make one zero).
"""

from __future__ import annotations

from numbers import Real
from typing import Any, ClassVar

import numpy as np
import scipy.sparse as sp
from numpy.typing import ArrayLike, NDArray
from sklearn.base import BaseEstimator
from sklearn.linear_model import LogisticRegression
from sklearn.utils._param_validation import Interval
from sklearn.utils.validation import check_is_fitted

from py_models._base import FINITE_MAX, DomainLinearClassifierMixin, check_sample_weight
from py_models.hmdr import HMDRClassifier

__all__ = [
    "C_GRID",
    "SharedOnlyClassifier",
    "SpecificOnlyClassifier",
    "FlatPooledClassifier",
    "PeerElasticNetClassifier",
    "dirty_model",
]

C_GRID = (0.05, 0.1, 0.125, 0.25, 0.5, 1.0, 1.5, 2.5, 5.0)
_POSITIVE = [Interval(Real, 0, FINITE_MAX, closed="neither")]


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


class SharedOnlyClassifier(_Baseline):
    """L1 logistic regression on the shared concepts (``shared_mask``), no domain terms.

    Parameters
    ----------
    C : float > 0
        scikit-learn's inverse L1 strength (sum-loss convention).
    shared_mask : bool array (n_features,) or None
        The features it may use (default: all).
    tol : float > 0
        liblinear stopping tolerance.

    Attributes
    ----------
    classes_ : ndarray of shape (2,)
        ``[negative, positive]``; the positive class is "response a wins".
    n_features_in_ : int
        Number of features seen in fit.
    coef_ : ndarray of shape (n_features_in_,)
        Weights towards "a wins" (zero outside ``shared_mask``).
    """

    uses_domains = False
    _parameter_constraints: ClassVar[dict[str, list[Any]]] = {
        **_Baseline._parameter_constraints,
        "shared_mask": ["array-like", None],
    }

    def __init__(self, C: float = 1.0, shared_mask: ArrayLike | None = None, tol: float = 1e-6) -> None:
        self.C = C
        self.shared_mask = shared_mask
        self.tol = tol

    def _mask(self, p: int) -> NDArray[np.bool_]:
        return np.ones(p, dtype=bool) if self.shared_mask is None else np.asarray(self.shared_mask, dtype=bool)

    def fit(self, X, y, *, domains=None, sample_weight=None):
        X, y_pm, _, w = self._setup(X, y, domains, sample_weight)
        cols = np.flatnonzero(self._mask(X.shape[1]))
        self.coef_ = np.zeros(X.shape[1])
        self.coef_[cols] = _fit_lr(_l1(self.C, self.tol), X[:, cols], y_pm, w)
        return self

    def decision_function(self, X, domains=None):
        return np.asarray(self._validate_X(X) @ self.coef_).ravel()


class FlatPooledClassifier(SharedOnlyClassifier):
    """L1 logistic regression on all concepts, ignoring domains.

    Parameters
    ----------
    C, tol
        As :class:`SharedOnlyClassifier`.

    Attributes
    ----------
    classes_, n_features_in_
        As :class:`SharedOnlyClassifier`.
    coef_ : ndarray of shape (n_features_in_,)
        Weights towards "a wins".
    """

    _parameter_constraints: ClassVar[dict[str, list[Any]]] = dict(_Baseline._parameter_constraints)

    def __init__(self, C: float = 1.0, tol: float = 1e-6) -> None:
        self.C = C
        self.tol = tol

    def _mask(self, p: int) -> NDArray[np.bool_]:
        return np.ones(p, dtype=bool)


class SpecificOnlyClassifier(_Baseline):
    """One independent L1 logistic regression per domain; unseen domains get P = 0.5.

    Parameters
    ----------
    C, tol
        As :class:`SharedOnlyClassifier`; C is the same in every domain.

    Attributes
    ----------
    classes_, n_features_in_
        As :class:`SharedOnlyClassifier`.
    domains_ : ndarray
        Distinct training domains, sorted.
    coefs_ : dict
        Domain -> weights towards "a wins", shape (n_features_in_,).
    intercepts_ : dict
        Domain -> intercept (0 without one).
    """

    def __init__(self, C: float = 1.0, tol: float = 1e-6) -> None:
        self.C = C
        self.tol = tol

    def _make(self) -> LogisticRegression:
        return _l1(self.C, self.tol)

    def _prep_domain(self, Xd, fit: bool = False, d: Any = None):
        return Xd

    def fit(self, X, y, *, domains=None, sample_weight=None):
        X, y_pm, dom, w = self._setup(X, y, domains, sample_weight)
        self.domains_ = np.unique(dom)
        self.coefs_: dict[Any, NDArray[np.float64]] = {}
        self.intercepts_: dict[Any, float] = {}
        for d in self.domains_:
            m = dom == d
            lr = self._make()
            Xd = self._prep_domain(X[m], fit=True, d=d)
            self.coefs_[d] = _fit_lr(lr, Xd, y_pm[m], None if w is None else w[m])
            b0 = float(lr.intercept_[0]) if getattr(lr, "fit_intercept", False) and hasattr(lr, "coef_") else 0.0
            self.intercepts_[d] = b0 if (not hasattr(lr, "classes_") or lr.classes_[1] == 1.0) else -b0
        return self

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


class PeerElasticNetClassifier(SpecificOnlyClassifier):
    """Per-domain elastic-net (l1_ratio 0.5) on standardised features with an intercept (peers' practice).

    Parameters
    ----------
    C : float > 0
        scikit-learn's inverse regularisation strength, the same in every domain.
    l1_ratio : float in [0, 1]
        Elastic-net mixing (1 = L1).
    tol : float > 0
        saga stopping tolerance.

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
    }

    def __init__(self, C: float = 1.0, l1_ratio: float = 0.5, tol: float = 1e-4) -> None:
        self.C = C
        self.l1_ratio = l1_ratio
        self.tol = tol

    def _make(self) -> LogisticRegression:
        return LogisticRegression(
            l1_ratio=self.l1_ratio,
            C=self.C,
            solver="saga",
            fit_intercept=True,
            tol=self.tol,
            max_iter=2000,
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
        self.scales_ = {}
        return super().fit(X, y, domains=domains, sample_weight=sample_weight)


def dirty_model(**params: Any) -> HMDRClassifier:
    """The paper's Dirty model: HMDR with alpha = 0 (no shared loss)."""
    return HMDRClassifier(**{**params, "alpha": 0.0})
