"""The shared base of the linear pair classifiers (HMDR, its CV selection, the baselines, the reference logit).

Every member scores a pair with a logit z of "response a wins" from ``decision_function(X, domains)``; this
mixin derives ``predict_proba`` (column 1 = P(a wins)), ``predict`` (``classes_[1]`` where z > 0), ``score``
and the scikit-learn tags from it, and owns the checks of the training inputs. Parameter checks are declared
per class in ``_parameter_constraints`` and run by scikit-learn's ``_validate_params`` at the start of ``fit``.

``score`` requires ``domains`` for a domain-aware model (``uses_domains``): without them every pair would be
scored with the shared weights alone, which is not the model that was fitted. scikit-learn's own helpers call
``score(X, y)`` without extra arguments (and metadata routing is not used here), so for these models they fail
loudly instead of scoring the wrong model.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
from numpy.typing import ArrayLike, NDArray
from sklearn.base import ClassifierMixin
from sklearn.metrics import accuracy_score
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from py_models._augment import encode_labels, sigmoid

__all__ = ["DomainLinearClassifierMixin", "ONE_DOMAIN", "FINITE_MAX", "check_sample_weight"]

ONE_DOMAIN = "__all__"  # the domain of every row when fit gets no domains
#: upper end of the ``Interval`` constraints of parameters that must be finite (it excludes inf; nan never passes)
FINITE_MAX = float(np.finfo(np.float64).max)


class DomainLinearClassifierMixin(ClassifierMixin):
    """Binary linear classifier of preference pairs whose logit may depend on each pair's domain.

    Subclasses implement ``fit`` and ``decision_function(X, domains=None)``; ``uses_domains`` says whether the
    prediction depends on the domain (then ``score`` requires it).
    """

    #: predictions depend on each pair's domain: ``score`` requires ``domains``
    uses_domains: ClassVar[bool] = True
    #: ``fit`` / ``decision_function`` accept a scipy.sparse CSR matrix
    accepts_sparse: ClassVar[bool] = True

    def decision_function(self, X: ArrayLike, domains: ArrayLike | None = None) -> NDArray[np.float64]:
        raise NotImplementedError

    def predict_proba(self, X: ArrayLike, domains: ArrayLike | None = None) -> NDArray[np.float64]:
        """Columns follow ``classes_``: ``[:, 1]`` = P(a wins) of each pair of ``X`` in its domain."""
        p1 = self._probability(self.decision_function(X, domains))
        return np.column_stack([1.0 - p1, p1])

    def predict(self, X: ArrayLike, domains: ArrayLike | None = None) -> NDArray:
        """``classes_[1]`` (a wins) where the logit is > 0, else ``classes_[0]`` (z == 0 -> negative, as sklearn)."""
        z = self.decision_function(X, domains)
        return self.classes_[(z > 0).astype(int)]

    def score(
        self, X: ArrayLike, y: ArrayLike, sample_weight: ArrayLike | None = None, *, domains: ArrayLike | None = None
    ) -> float:
        """Accuracy of ``predict(X, domains)`` on ``y`` (scikit-learn's ``score``).

        ``domains`` is required when ``uses_domains``: one domain name per row (a name not seen in training
        is scored with the shared weights, on purpose).
        """
        if self.uses_domains and domains is None:
            raise ValueError(
                f"{type(self).__name__}.score needs domains=...: its predictions depend on each pair's domain, "
                "and without them every pair would be scored with the shared weights only"
            )
        return float(accuracy_score(y, self.predict(X, domains), sample_weight=sample_weight))

    def _probability(self, z: NDArray[np.float64]) -> NDArray[np.float64]:
        """The link from logit to P(a wins)."""
        return sigmoid(z)

    def uses_domain_weights(self, domains: ArrayLike) -> NDArray[np.bool_]:
        """True where a pair's domain was fitted with weights of its own (none here: override)."""
        return np.zeros(len(np.asarray(domains, dtype=object).ravel()), dtype=bool)

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_class = False  # binary: "response a wins" or not
        tags.input_tags.sparse = self.accepts_sparse
        return tags

    # ------------------------------------------------------------ input checks
    def _validate_training_data(
        self, X: ArrayLike, y: ArrayLike, domains: ArrayLike | None
    ) -> tuple[Any, NDArray[np.float64], NDArray[np.object_]]:
        """Check X (at least 2 rows; sets ``n_features_in_``), y (2 classes; sets ``classes_``) and domains
        (None: one domain); returns ``(X, y as +-1 with +1 = a wins, domains)``."""
        if y is None:
            raise ValueError("requires y to be passed, but the target y is None")
        data, y = validate_data(
            self,
            X,
            y,
            reset=True,
            dtype=np.float64,
            ensure_min_samples=2,
            accept_sparse="csr" if self.accepts_sparse else False,
        )
        check_classification_targets(y)
        y_pm, self.classes_ = encode_labels(np.asarray(y).ravel())
        n = data.shape[0]
        dom = np.full(n, ONE_DOMAIN, dtype=object) if domains is None else np.asarray(domains, dtype=object).ravel()
        if len(y_pm) != n or len(dom) != n:
            raise ValueError(f"X, y and domains lengths differ: {n}, {len(y_pm)}, {len(dom)}")
        return data, y_pm, dom

    def _validate_X(self, X: ArrayLike) -> Any:
        """X of a fitted model: same features as in fit."""
        check_is_fitted(self)
        return validate_data(
            self, X, reset=False, dtype=np.float64, accept_sparse="csr" if self.accepts_sparse else False
        )


def check_sample_weight(sample_weight: ArrayLike | None, n: int) -> NDArray[np.float64] | None:
    """``sample_weight`` as float64 (None stays None): finite, >= 0, one per row, with a positive sum."""
    if sample_weight is None:
        return None
    w = np.asarray(sample_weight, dtype=np.float64).ravel()
    if w.shape != (n,) or not np.all(np.isfinite(w)) or np.any(w < 0) or not w.sum() > 0:
        raise ValueError("sample_weight must be finite, >= 0, length n, with a positive sum (not all weights zero)")
    return w
