"""Hierarchical Multi-Domain Regression (HMDR), method.md §4 (Calderon et al. 2025).

Weights per domain are ``beta_d = b + s_d``; the (mean-normalised) Eq. 1 objective

    F(b, s) = (1/N) sum_i w_i [ l(y_i, (b + s_{d_i})' x_i) + alpha * l(y_i, b' x_i) ]
              + lambda_shared * ||b||_1 + lambda_domain * sum_d ||s_d||_1

with l(y, z) = log(1 + exp(-y z)), no intercept, N = sum_i w_i over the
(symmetrised) training instances (N = number of instances without weights), is
minimised exactly (exact zeros) by one of two solvers (``solver``):

* ``"cd"`` (default, :mod:`py_models._cd`): proximal Newton with coordinate descent on X itself, the domain
  structure as an index (rows grouped by domain, one column-major copy of X in compact types), working sets and
  warm starts; no augmented design is built.
* ``"liblinear"`` (the previous route, kept for comparison): the augmented-design reformulation (method.md §4.5,
  :class:`py_models._augment.AugmentedDesign`) and scikit-learn's liblinear L1 logistic regression:

  * b-block columns are scaled by c = lambda_domain / lambda_shared, so a uniform
    L1 penalty lambda_domain on the design coefficients theta equals
    lambda_shared*||b||_1 + lambda_domain*sum||s_d||_1 with b = c * theta_b;
  * liblinear minimises ||theta||_1 + C * sum_k sw_k l_k. Dividing F by
    lambda_domain gives ||theta||_1 + (1/(lambda_domain * N)) * sum_k sw_k l_k, hence
    **C = 1 / (lambda_domain * N)** with the design rows' weights sw_k = w_i
    (domain loss rows) and alpha * w_i (shared loss rows). The alpha rows do not
    enter N.

Both minimise the same objective and certify their result the same way (KKT violation, duality gap).

Default hyperparameters (|D| = number of distinct training domains, App. C.2):
alpha = 1/|D|, lambda_shared = 1/(2|D|), lambda_domain = 1/|D|^2 (the centre of
the paper's grid and the setting of its Figure 7 sweeps).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from numbers import Integral, Real
from typing import Any, ClassVar

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike, NDArray
from sklearn.base import BaseEstimator
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted

from py_models._augment import UNPENALIZED_FACTOR, AugmentedDesign, hmdr_objective, rowwise_dot
from py_models._base import FINITE_MAX, DomainLinearClassifierMixin, check_sample_weight
from py_models._cd import DomainDesign

__all__ = ["HMDRClassifier", "default_hyperparameters", "SOLVERS", "Design", "factorize_domains"]

#: the solvers of Eq. 1: "cd" (py_models._cd, the default) and "liblinear" (the augmented design, kept for comparison)
SOLVERS = ("cd", "liblinear")
Design = DomainDesign | AugmentedDesign


def factorize_domains(dom: NDArray[np.object_]) -> tuple[NDArray[Any], NDArray[np.intp]]:
    """``np.unique(dom, return_inverse=True)`` (sorted distinct domains, each row's index), by hashing first:
    sorting a million Python strings is slow, sorting the few distinct ones is not."""
    codes, uniq = pd.factorize(dom, use_na_sentinel=False)
    domains_, inv_uniq = np.unique(np.asarray(uniq, dtype=object), return_inverse=True)
    return domains_, np.asarray(inv_uniq, dtype=np.intp).ravel()[codes]


def default_hyperparameters(n_domains: int) -> dict[str, float]:
    """Paper-style defaults for |D| domains: alpha=1/|D|, lambda_b=1/(2|D|), lambda_s=1/|D|^2."""
    if n_domains < 1:
        raise ValueError("n_domains must be >= 1")
    D = float(n_domains)
    return {"alpha": 1.0 / D, "lambda_shared": 1.0 / (2.0 * D), "lambda_domain": 1.0 / D**2}


def _set_model_params(
    est: BaseEstimator,
    alpha: float | None,
    shared_mask: ArrayLike | None,
    domain_masks: Mapping[Any, ArrayLike] | None,
    unpenalized_mask: ArrayLike | None,
    min_domain_samples: int,
    symmetrize: bool,
    tol: float,
    max_iter: int,
    solver: str,
) -> None:
    """Store the parameters HMDRClassifier shares with HMDRClassifierCV (the model and its solver), unchanged."""
    est.alpha = alpha
    est.shared_mask = shared_mask
    est.domain_masks = domain_masks
    est.unpenalized_mask = unpenalized_mask
    est.min_domain_samples = min_domain_samples
    est.symmetrize = symmetrize
    est.tol = tol
    est.max_iter = max_iter
    est.solver = solver


class HMDRClassifier(DomainLinearClassifierMixin, BaseEstimator):
    """Hierarchical multi-domain L1 logistic regression (shared b + domain deviations s_d).

    Labels: positive class = "response a wins" ('a' for {'a','b'}, 1 for {0,1} or {-1,+1}); ``classes_ =
    [negative, positive]`` so ``predict_proba[:, 1]`` is P(a wins), as in scikit-learn's binary convention.
    ``predict``, ``predict_proba``, ``decision_function`` and ``score`` take each pair's domain
    (``domains=``); an unseen domain, a domain without weights of its own or ``domains=None`` is predicted
    with b alone, and ``score`` requires ``domains`` (see :class:`~py_models._base.DomainLinearClassifierMixin`).

    Parameters
    ----------
    alpha : float >= 0 or None
        Weight of the shared loss (b alone must predict). None -> 1/|D|.
    lambda_shared, lambda_domain : float > 0 or None
        L1 weights on b and on each s_d. None -> 1/(2|D|) and 1/|D|^2.
    shared_mask : bool array (n_features,) or None
        Features where b may be non-zero (default: all).
    domain_masks : mapping domain -> bool array (n_features,) or None
        Features where s_d may be non-zero; domains missing from the mapping get all features.
    unpenalized_mask : bool array (n_features,) or None
        Control covariates (e.g. length, as in Arena's style control): their shared weight is left unpenalised
        (penalty factor ``UNPENALIZED_FACTOR`` = 1e-4) and they get no domain deviation, so every other weight
        reads "with the covariates held fixed".
    min_domain_samples : int >= 0
        Domains with fewer training pairs (rows with positive weight, before symmetrisation) get no s_d (they
        are fitted and predicted with b alone).
    symmetrize : bool
        The paper augments every training instance (x, y) with (-x, -y) after the split. With no intercept and
        a mean-normalised loss the mirror instance carries exactly the same loss, so the objective and optimum
        are identical with or without it; the fit applies it analytically (mirror rows are never
        materialised). Kept as a parameter for fidelity; it does not change results. Test sets are never
        augmented into training.
    tol : float > 0
        Stopping tolerance. ``cd``: the solve stops when the duality gap is at most ``tol`` x 0.1 x the
        objective (``py_models._cd.GAP_FACTOR``: the default certifies the objective to 1e-7 relative);
        ``liblinear``: its own stopping tolerance.
    max_iter : int >= 1
        ``cd``: the maximum number of Newton steps; ``liblinear``: its maximum number of outer iterations.
    warm_start : bool
        Reuse the previous solution (same data, other lambdas) to screen columns with the sequential strong
        rule; screened columns are KKT-checked and re-added if needed, so the optimum is the same as a cold fit.
        With ``cd`` the previous solution is also the starting point.
    solver : {"cd", "liblinear"}
        ``cd`` (default): proximal Newton with coordinate descent on X itself (:mod:`py_models._cd`);
        ``liblinear``: scikit-learn's liblinear on the augmented design (the previous route, for comparison).
        Both minimise the same objective; results agree to the solvers' tolerance.

    Attributes
    ----------
    classes_ : ndarray of shape (2,)
        ``[negative, positive]``; the positive class is "response a wins".
    n_features_in_ : int
        Number of features (concepts) seen in fit.
    feature_names_in_ : ndarray of shape (n_features_in_,)
        Column names of ``X`` when it was a DataFrame with string column names.
    domains_ : ndarray of shape (n_domains,)
        Distinct training domains, sorted; the rows of ``coef_domain_``.
    domain_n_samples_ : dict
        Training pairs (with positive weight) per domain.
    has_domain_weights_ : ndarray of bool, shape (n_domains,)
        Whether each of ``domains_`` has a deviation s_d (at least ``min_domain_samples`` pairs).
    domains_with_weights_ : ndarray
        The domains of ``domains_`` that have a deviation s_d.
    alpha_, lambda_shared_, lambda_domain_ : float
        The hyperparameters used (None resolved to the defaults for |D| = ``len(domains_)``).
    penalty_factor_ : ndarray of shape (n_features_in_,)
        Factor on lambda_shared per feature (1, or ``UNPENALIZED_FACTOR`` for ``unpenalized_mask``).
    coef_shared_ : ndarray of shape (n_features_in_,)
        The shared weights b.
    coef_domain_ : ndarray of shape (n_domains, n_features_in_)
        The deviations s_d (rows of domains without weights of their own are zero).
    objective_ : float
        Mean-normalised Eq. 1 at the solution.
    duality_gap_ : float
        Certified upper bound on the suboptimality of ``objective_`` (Fenchel dual of the augmented problem).
    kkt_violation_ : float
        Largest violation of the optimality conditions, relative to the coordinate's lambda (0 = optimal).
    n_iter_ : int
        ``cd``: working-set rounds, each ending with a pass over every coordinate that certifies the iterate
        (at least 1); ``liblinear``: its iterations, summed over screening rounds.
    n_screened_ : int
        Coordinates (design columns) the solver never updated: outside its final working set (``cd``), or left
        out by the strong rule (``warm_start``) and not re-added (``liblinear``); the certificate covers them.
    """

    _parameter_constraints: ClassVar[dict[str, list[Any]]] = {
        "alpha": [Interval(Real, 0, FINITE_MAX, closed="left"), None],
        "lambda_shared": [Interval(Real, 0, FINITE_MAX, closed="neither"), None],
        "lambda_domain": [Interval(Real, 0, FINITE_MAX, closed="neither"), None],
        "shared_mask": ["array-like", None],
        "domain_masks": [Mapping, None],
        "unpenalized_mask": ["array-like", None],
        "min_domain_samples": [Interval(Integral, 0, None, closed="left")],
        "symmetrize": ["boolean"],
        "tol": [Interval(Real, 0, FINITE_MAX, closed="neither")],
        "max_iter": [Interval(Integral, 1, None, closed="left")],
        "warm_start": ["boolean"],
        "solver": [StrOptions(set(SOLVERS))],
    }

    def __init__(
        self,
        alpha: float | None = None,
        lambda_shared: float | None = None,
        lambda_domain: float | None = None,
        shared_mask: ArrayLike | None = None,
        domain_masks: Mapping[Any, ArrayLike] | None = None,
        unpenalized_mask: ArrayLike | None = None,
        min_domain_samples: int = 10,
        symmetrize: bool = True,
        tol: float = 1e-6,
        max_iter: int = 1000,
        warm_start: bool = False,
        solver: str = "cd",
    ) -> None:
        _set_model_params(
            self,
            alpha,
            shared_mask,
            domain_masks,
            unpenalized_mask,
            min_domain_samples,
            symmetrize,
            tol,
            max_iter,
            solver,
        )
        self.lambda_shared = lambda_shared
        self.lambda_domain = lambda_domain
        self.warm_start = warm_start

    # ------------------------------------------------------------------ fit
    def _resolve_hyperparameters(self, n_domains: int) -> tuple[float, float, float]:
        d = default_hyperparameters(n_domains)
        alpha = d["alpha"] if self.alpha is None else float(self.alpha)
        lam_b = d["lambda_shared"] if self.lambda_shared is None else float(self.lambda_shared)
        lam_s = d["lambda_domain"] if self.lambda_domain is None else float(self.lambda_domain)
        return alpha, lam_b, lam_s

    def _check_mask(self, mask: ArrayLike | None, p: int, what: str) -> NDArray[np.bool_]:
        if mask is None:
            return np.ones(p, dtype=bool)
        m = np.asarray(mask)
        if m.dtype != bool or m.shape != (p,):
            raise ValueError(f"{what} must be a bool array of shape ({p},), got {m.dtype} {m.shape}")
        return m.copy()

    def fixed_estimator(self, **hyperparameters: Any) -> HMDRClassifier:
        """An unfitted HMDRClassifier with this one's masks and solver settings, at the fitted alpha_ and
        lambdas (or at ``hyperparameters``, before a fit): the model a fold, a bootstrap resample or a refit
        on other rows fits."""
        own = {k: getattr(self, k) for k in HMDRClassifier._get_param_names() if hasattr(self, k)}
        if not hyperparameters:
            check_is_fitted(self, "coef_shared_")
            hyperparameters = {
                "alpha": self.alpha_,
                "lambda_shared": self.lambda_shared_,
                "lambda_domain": self.lambda_domain_,
            }
        return HMDRClassifier(**{**own, "warm_start": False, **hyperparameters})

    def _prepare(
        self, X: ArrayLike, y: ArrayLike, domains: ArrayLike | None, sample_weight: ArrayLike | None
    ) -> tuple[Design, NDArray[np.float64], dict[str, Any]]:
        """Validate, resolve hyperparameters and masks, build the solver's design (no solve)."""
        self._validate_params()
        data, y_pm, dom = self._validate_training_data(X, y, domains)
        n, p = data.shape
        w = check_sample_weight(sample_weight, n)
        w = np.ones(n) if w is None else w
        domains_, inv = factorize_domains(dom)
        self.domains_ = domains_
        n_dom = len(domains_)
        alpha, lam_b, lam_s = self._resolve_hyperparameters(n_dom)
        self.alpha_, self.lambda_shared_, self.lambda_domain_ = alpha, lam_b, lam_s

        shared = self._check_mask(self.shared_mask, p, "shared_mask")
        free = (
            np.zeros(p, dtype=bool)
            if self.unpenalized_mask is None
            else self._check_mask(self.unpenalized_mask, p, "unpenalized_mask")
        )
        shared |= free
        self.penalty_factor_ = np.where(free, UNPENALIZED_FACTOR, 1.0)
        masks = dict(self.domain_masks or {})
        pos = w > 0
        counts = np.bincount(inv[pos], minlength=n_dom)
        self.domain_n_samples_ = dict(zip(domains_.tolist(), counts.tolist()))
        weighted = counts >= max(int(self.min_domain_samples), 1)
        self.domains_with_weights_ = domains_[weighted]
        self.has_domain_weights_ = weighted
        widx = np.full(n_dom, -1, dtype=np.intp)
        widx[weighted] = np.arange(int(weighted.sum()))
        domain_cols = [
            np.flatnonzero(self._check_mask(masks.get(d), p, f"domain_masks[{d!r}]") & ~free)
            for d in domains_[weighted]
        ]
        design_class = DomainDesign if self.solver == "cd" else AugmentedDesign
        design = design_class(
            data,
            y_pm,
            widx[inv],
            np.flatnonzero(shared),
            domain_cols,
            alpha,
            shared_penalty_factor=self.penalty_factor_,
        )
        meta = {"weighted_rows": np.flatnonzero(weighted), "n_domains": n_dom, "inv": inv}
        return design, w, meta

    def _store_solution(self, design: Design, res: dict[str, Any], meta: dict[str, Any]) -> None:
        b, S = design.unpack(res["beta"], meta["n_domains"], meta["weighted_rows"])
        self.coef_shared_ = b
        self.coef_domain_ = S
        self.n_iter_ = int(res["n_iter"])
        self.objective_ = float(res["objective"])
        self.duality_gap_ = float(res["duality_gap"])
        self.kkt_violation_ = float(res["kkt_violation"])
        self.n_screened_ = int(res["n_screened"])
        self._solution = res

    def fit(
        self,
        X: ArrayLike,
        y: ArrayLike,
        *,
        domains: ArrayLike | None = None,
        sample_weight: ArrayLike | None = None,
    ) -> HMDRClassifier:
        """Fit b and s_d on pairs X (n, p; dense or sparse) with labels y and per-row domain names
        (None: one domain, i.e. a plain L1 logistic regression with the shared loss).

        With ``warm_start=True`` a previous solution on the same data screens columns (strong rule,
        KKT-checked, so the optimum is unchanged) -- this is how the grid search reuses solutions.
        """
        prev = getattr(self, "_solution", None) if self.warm_start else None
        prev_shape = getattr(self, "_warm_key", None)
        design, w, meta = self._prepare(X, y, domains, sample_weight)
        key = (design.n, design.width, float(w.sum()))
        warm = prev if (prev is not None and prev_shape == key) else None
        res = design.solve(
            self.lambda_shared_, self.lambda_domain_, w, warm=warm, tol=float(self.tol), max_iter=int(self.max_iter)
        )
        self._store_solution(design, res, meta)
        self._warm_key = key
        return self

    # ------------------------------------------------------------ predict
    def _domain_index(self, domains: ArrayLike | None, n: int) -> NDArray[np.intp]:
        """Row of coef_domain_ per sample, -1 for unseen / weightless domains / None."""
        if domains is None:
            return np.full(n, -1, dtype=np.intp)
        dom = np.asarray(domains, dtype=object).ravel()
        if len(dom) != n:
            raise ValueError(f"domains has length {len(dom)}, X has {n} rows")
        lookup = {d: i for i, d in enumerate(self.domains_.tolist())}
        idx = np.array([lookup.get(d, -1) for d in dom.tolist()], dtype=np.intp)
        ok = idx >= 0
        ok[ok] = self.has_domain_weights_[idx[ok]]
        return np.where(ok, idx, -1)

    def uses_domain_weights(self, domains: ArrayLike) -> NDArray[np.bool_]:
        """True where the domain was fitted with its own deviation s_d."""
        check_is_fitted(self, "coef_shared_")
        dom = np.asarray(domains, dtype=object).ravel()
        return self._domain_index(dom, len(dom)) >= 0

    def effective_weights(self, domains: ArrayLike | None, n: int | None = None) -> NDArray[np.float64]:
        """Per-row weights b + s_d (n, p); b alone for unseen/weightless domains or None."""
        check_is_fitted(self, "coef_shared_")
        if domains is None and n is None:
            raise ValueError("give domains or n")
        n_rows = len(np.asarray(domains, dtype=object).ravel()) if domains is not None else int(n)  # type: ignore[arg-type]
        idx = self._domain_index(domains, n_rows)
        S_ext = np.vstack([self.coef_domain_, np.zeros((1, self.n_features_in_))])
        return self.coef_shared_[None, :] + S_ext[idx]

    def decision_function(self, X: ArrayLike, domains: ArrayLike | None = None) -> NDArray[np.float64]:
        """Logit z = (b + s_d)'x of "a wins"; b alone for unseen domains or domains=None."""
        data = self._validate_X(X)
        idx = self._domain_index(domains, data.shape[0])
        return np.asarray(data @ self.coef_shared_).ravel() + rowwise_dot(data, self.coef_domain_, idx)

    # ---------------------------------------------------------- objective
    def objective(
        self,
        X: ArrayLike,
        y: ArrayLike,
        domains: ArrayLike,
        sample_weight: ArrayLike | None = None,
        *,
        coef_shared: NDArray[np.float64] | None = None,
        coef_domain: NDArray[np.float64] | None = None,
    ) -> float:
        """Mean-normalised Eq. 1 at the fitted (or given) coefficients.

        Uses the fitted alpha_/lambda_*_ and training conventions (symmetrisation,
        s_d = 0 for weightless/unseen domains). ``coef_shared``/``coef_domain``
        (shaped like the fitted attributes) evaluate another point.
        """
        data = self._validate_X(X)
        y_arr = np.asarray(y).ravel()
        y_pm = np.where(y_arr == self.classes_[1], 1.0, -1.0)
        if not np.all(np.isin(y_arr, self.classes_)):
            raise ValueError("y contains labels not in classes_")
        idx = self._domain_index(domains, data.shape[0])
        b = self.coef_shared_ if coef_shared is None else np.asarray(coef_shared, float)
        S = self.coef_domain_ if coef_domain is None else np.asarray(coef_domain, float)
        # penalty counts s_d of all fitted domains; weightless domains are zero by construction
        w = None if sample_weight is None else np.asarray(sample_weight, float)
        return hmdr_objective(
            data,
            y_pm,
            idx,
            b,
            S,
            self.alpha_,
            self.lambda_shared_,
            self.lambda_domain_,
            w,
            self.symmetrize,
            shared_penalty_factor=self.penalty_factor_,
        )

    # -------------------------------------------------------- explanation
    def coef_table(self, feature_names: Sequence[str] | None = None) -> pd.DataFrame:
        """Tidy global explanation: one row per (fitted domain, concept).

        Lifts per method.md §5: shared 50*b, deviation 50*s_d, global 50*(b+s_d) (%).
        Domains without domain weights have domain_deviation = 0.
        """
        check_is_fitted(self, "coef_shared_")
        p = self.n_features_in_
        if feature_names is None:
            names = getattr(self, "feature_names_in_", None)
            feature_names = list(names) if names is not None else [f"x{j}" for j in range(p)]
        if len(feature_names) != p:
            raise ValueError(f"feature_names has {len(feature_names)} entries, expected {p}")
        nd = len(self.domains_)
        b = np.tile(self.coef_shared_, nd)
        s = self.coef_domain_.ravel()
        return pd.DataFrame(
            {
                "domain": np.repeat(self.domains_, p),
                "concept": np.tile(np.asarray(feature_names, dtype=object), nd),
                "shared_weight": b,
                "domain_deviation": s,
                "total_weight": b + s,
                "shared_lift_pct": 50.0 * b,
                "deviation_lift_pct": 50.0 * s,
                "global_lift_pct": 50.0 * (b + s),
                "has_domain_weights": np.repeat(self.has_domain_weights_, p),
            }
        )
