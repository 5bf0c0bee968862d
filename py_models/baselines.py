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

from typing import Any

import numpy as np
import scipy.sparse as sp
from numpy.typing import ArrayLike, NDArray
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.linear_model import LogisticRegression
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from py_models._augment import encode_labels, sigmoid
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


def _l1(C: float, tol: float = 1e-6) -> LogisticRegression:
    return LogisticRegression(l1_ratio=1.0, C=C, solver="liblinear", fit_intercept=False, tol=tol, max_iter=1000,
                              random_state=0)


def _fit_lr(lr: LogisticRegression, X, y_pm: NDArray, w: NDArray | None) -> NDArray[np.float64]:
    """Fit, return the coefficient of "a wins" (+1); zeros if one class only."""
    if len(np.unique(y_pm)) < 2 or X.shape[1] == 0:
        return np.zeros(X.shape[1])
    lr.fit(X, y_pm, sample_weight=w)
    coef = lr.coef_.ravel().copy()
    return coef if lr.classes_[1] == 1.0 else -coef


class _Base(ClassifierMixin, BaseEstimator):
    def _setup(self, X, y, domains, sample_weight):
        if y is None:
            raise ValueError("requires y to be passed, but the target y is None")
        X = validate_data(self, X, reset=True, dtype=np.float64, accept_sparse="csr", ensure_min_samples=2)
        check_classification_targets(y)
        y_pm, self.classes_ = encode_labels(np.asarray(y).ravel())
        dom = np.full(X.shape[0], "__all__", dtype=object) if domains is None else np.asarray(domains, dtype=object).ravel()
        if len(dom) != X.shape[0] or len(y_pm) != X.shape[0]:
            raise ValueError("X, y and domains lengths differ")
        w = None if sample_weight is None else np.asarray(sample_weight, dtype=np.float64).ravel()
        return X, y_pm, dom, w

    def _check_X(self, X):
        check_is_fitted(self, "classes_")
        return validate_data(self, X, reset=False, dtype=np.float64, accept_sparse="csr")

    def predict_proba(self, X: ArrayLike, domains: ArrayLike | None = None) -> NDArray[np.float64]:
        p1 = sigmoid(self.decision_function(X, domains))
        return np.column_stack([1.0 - p1, p1])

    def predict(self, X: ArrayLike, domains: ArrayLike | None = None) -> NDArray:
        z = self.decision_function(X, domains)
        return self.classes_[(z > 0).astype(int)]

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_class = False
        tags.input_tags.sparse = True
        return tags

    def uses_domain_weights(self, domains: ArrayLike) -> NDArray[np.bool_]:
        return np.zeros(len(np.asarray(domains, dtype=object).ravel()), dtype=bool)


class SharedOnlyClassifier(_Base):
    """L1 logistic regression on the shared concepts (``shared_mask``), no domain terms."""

    def __init__(self, C: float = 1.0, shared_mask: ArrayLike | None = None, tol: float = 1e-6) -> None:
        self.C = C
        self.shared_mask = shared_mask
        self.tol = tol

    @staticmethod
    def param_grid(n_domains: int) -> list[dict[str, Any]]:
        return [{"C": c} for c in C_GRID]

    def _mask(self, p: int) -> NDArray[np.bool_]:
        return np.ones(p, dtype=bool) if self.shared_mask is None else np.asarray(self.shared_mask, dtype=bool)

    def fit(self, X, y, *, domains=None, sample_weight=None):
        X, y_pm, _, w = self._setup(X, y, domains, sample_weight)
        cols = np.flatnonzero(self._mask(X.shape[1]))
        self.coef_ = np.zeros(X.shape[1])
        self.coef_[cols] = _fit_lr(_l1(self.C, self.tol), X[:, cols], y_pm, w)
        return self

    def decision_function(self, X, domains=None):
        return np.asarray(self._check_X(X) @ self.coef_).ravel()


class FlatPooledClassifier(SharedOnlyClassifier):
    """L1 logistic regression on all concepts, ignoring domains."""

    def __init__(self, C: float = 1.0, tol: float = 1e-6) -> None:
        self.C = C
        self.tol = tol

    def _mask(self, p: int) -> NDArray[np.bool_]:
        return np.ones(p, dtype=bool)


class SpecificOnlyClassifier(_Base):
    """One independent L1 logistic regression per domain; unseen domains get P = 0.5."""

    def __init__(self, C: float = 1.0, tol: float = 1e-6) -> None:
        self.C = C
        self.tol = tol

    @staticmethod
    def param_grid(n_domains: int) -> list[dict[str, Any]]:
        return [{"C": c} for c in C_GRID]

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
        X = self._check_X(X)
        z = np.zeros(X.shape[0])
        if domains is None:
            return z
        dom = np.asarray(domains, dtype=object).ravel()
        for d in np.unique(dom):
            if d in self.coefs_:
                m = dom == d
                z[m] = np.asarray(self._prep_domain(X[m], fit=False, d=d) @ self.coefs_[d]).ravel() + self.intercepts_[d]
        return z

    def uses_domain_weights(self, domains):
        check_is_fitted(self, "coefs_")
        return np.array([d in self.coefs_ for d in np.asarray(domains, dtype=object).ravel()], dtype=bool)


class PeerElasticNetClassifier(SpecificOnlyClassifier):
    """Per-domain elastic-net (l1_ratio 0.5) on standardised features with an intercept (peers' practice)."""

    def __init__(self, C: float = 1.0, l1_ratio: float = 0.5, tol: float = 1e-4) -> None:
        self.C = C
        self.l1_ratio = l1_ratio
        self.tol = tol

    def _make(self) -> LogisticRegression:
        return LogisticRegression(l1_ratio=self.l1_ratio, C=self.C, solver="saga", fit_intercept=True,
                                  tol=self.tol, max_iter=2000, random_state=0)

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
