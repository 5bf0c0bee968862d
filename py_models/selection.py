"""Model selection (method.md §4.3): k-fold CV over a grid of configurations, then a refit on all pairs.

* ``HMDRClassifierCV`` -- HMDR with alpha and the lambdas chosen by CV. It builds its design once (``cd``: once
  for every alpha and the pooled model; ``liblinear``: the augmented design once per alpha) and runs every fold's
  grid path on it by instance weights (no rebuild, warm-started along the path; ``cd``: folds in threads).
  Grids: ``pooling`` (the default; can choose full pooling) or ``paper`` (App. C.2, ``paper_grid``).
* ``DomainGridSearchCV`` -- the same selection for any member of the estimator family with a ``param_grid``
  (the L1 baselines with the cd solver: every fold's C path on one stored design, warm-started along C, through
  their ``selection_path``; otherwise plain refits per configuration and fold).
* ``choose_config`` -- the one owner of the selection rules (``SELECTION_RULES``).
* Folds come from :func:`py_models.cv.stratified_folds` and every configuration is scored by
  :func:`py_models.cv.score` (accuracy credit 0.5 at P = 0.5, clipped log-loss), unless ``fit`` gets ``folds``.

``paper_grid(n)``: alpha = 1/|D| is fixed by the caller; lambda_domain in {1/n^2, 2/n^2, 1/(2n)} and
lambda_shared in {1/n^2, 2/n^2, 1/(2n), 1/n} with lambda_shared >= lambda_domain: 9 configurations, ordered from
the most to the least penalised so each fit can warm-start (screen) from the previous one. ``n`` is the grid's
|D|. The paper has |D| = 8 (values 1/64 .. 1/8). With the 1/|D| scaling a data set with 1-3 domains gets lambdas
of 0.1-2 (every weight zero) and one with 20 domains gets 0.0025-0.05; ``grid_domains`` therefore defaults to the
paper's 8 ("paper" values) and can be set to None for the literal 1/|D|-of-the-data rule.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from numbers import Integral, Real
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import scipy.sparse as sp
from numpy.typing import ArrayLike, NDArray
from sklearn.base import BaseEstimator, clone
from sklearn.utils._param_validation import HasMethods, Interval, StrOptions
from sklearn.utils.validation import check_is_fitted

from py_models._augment import AugmentedDesign, rowwise_dot, sigmoid
from py_models._base import ONE_DOMAIN, DomainLinearClassifierMixin, check_sample_weight
from py_models._cd import DomainDesign, map_threads
from py_models.cv import pair_credit, pair_log_loss, score, score_rows, stratified_folds
from py_models.hmdr import Design, HMDRClassifier, _set_model_params

__all__ = [
    "PAPER_GRID_DOMAINS",
    "paper_grid",
    "HMDRClassifierCV",
    "DomainGridSearchCV",
    "choose_config",
    "lambda_max",
    "POOLING_RATIOS",
    "SELECTION_RULES",
    "GRIDS",
    "MAX_ABS_WEIGHT",
]

PAPER_GRID_DOMAINS = 8
POOLING_RATIOS: tuple[float, ...] = (4.0, 2.0, 1.0, 0.5)  # lambda_domain / lambda_shared below "infinity" (pooled)
N_LAMBDAS = 7  # lambda_shared = lambda_max * 2^-1 ... 2^-7
#: default largest |weight| a selectable configuration may reach in any CV fold; the build passes its own bound,
#: dbt var max_abs_lift_pct / 50 (the publication bound). Beyond it a fit has (nearly) separated a small training
#: set; such a configuration is chosen only if every configuration does it
MAX_ABS_WEIGHT = 10.0
SELECTION_RULES = (
    "log_loss_within_accuracy_se",
    "max_accuracy",
    "one_se_accuracy",
    "one_se_pooling",
    "min_log_loss",
    "max_fold_accuracy",
)
GRIDS = ("pooling", "paper")
POOLED = float("inf")


def paper_grid(n_domains: int) -> list[dict[str, float]]:
    """The 9 (lambda_shared, lambda_domain) pairs of App. C.2 for |D| = n_domains, most penalised first."""
    D = float(max(int(n_domains), 1))
    lam_s = [1 / D**2, 2 / D**2, 1 / (2 * D)]
    lam_b = [1 / D**2, 2 / D**2, 1 / (2 * D), 1 / D]
    grid = {(b, s) for s in lam_s for b in lam_b if b >= s - 1e-15}
    ordered = sorted(grid, key=lambda t: (-t[1], -t[0]))
    return [{"lambda_shared": b, "lambda_domain": s} for b, s in ordered]


def lambda_max(
    X: Any, y_pm: NDArray[np.float64], w: NDArray[np.float64], alpha: float, penalized: NDArray[np.bool_] | None = None
) -> float:
    """Smallest lambda_shared at which the pooled model (s = 0) is all-zero: (1+alpha)/(2N) max_j |sum w y x_j|."""
    g = np.abs(np.asarray(X.T @ (w * y_pm)).ravel()) * (1.0 + alpha) / (2.0 * w.sum())
    if penalized is not None:
        g = g[penalized]
    return float(g.max()) if g.size else 0.0


def _fold_ids(folds: ArrayLike | None, domains: NDArray, y: NDArray, n_folds: int, seed: int) -> NDArray:
    """The fold id of every row: ``folds`` as given (one per row), else ``stratified_folds`` in row order."""
    fold_ids = stratified_folds(domains, y, int(n_folds), int(seed)) if folds is None else np.asarray(folds).ravel()
    if fold_ids.shape[0] != len(y):
        raise ValueError(f"folds has {fold_ids.shape[0]} entries, X has {len(y)} rows")
    return fold_ids


def _fold_means(fold_rows: list[dict[str, Any]], n_configs: int) -> pd.DataFrame:
    """Per configuration (index 0..n_configs-1): the accuracy and log-loss averaged over folds (each fold counts
    the same), from one row per (config, fold) with ``config``, ``accuracy`` and ``log_loss``; NaN if no fold."""
    acc = np.full(n_configs, np.nan)
    ll = np.full(n_configs, np.nan)
    if fold_rows:
        cfg = np.array([r["config"] for r in fold_rows], dtype=np.intp)
        a = np.array([r["accuracy"] for r in fold_rows], dtype=np.float64)
        lo = np.array([r["log_loss"] for r in fold_rows], dtype=np.float64)
        for c in np.unique(cfg):
            rows = cfg == c
            acc[c], ll[c] = a[rows].mean(), lo[rows].mean()
    return pd.DataFrame(
        {"cv_fold_accuracy": acc, "cv_fold_log_loss": ll}, index=pd.RangeIndex(n_configs, name="config")
    )


def choose_config(
    table: pd.DataFrame, losses: NDArray[np.float64], rule: str, errors: NDArray[np.float64] | None = None
) -> int:
    """Index of the chosen row of ``table`` (one row per configuration, with ``pooling``, ``alpha``,
    ``cv_log_loss`` and ``cv_accuracy``; ``max_fold_accuracy`` reads ``cv_fold_accuracy`` and
    ``cv_fold_log_loss``). ``losses`` / ``errors``: per-pair out-of-fold log-losses and classification errors
    (1 - accuracy credit), configs x pairs.

    * ``log_loss_within_accuracy_se`` (the default): among the configurations whose CV error is within one
      *paired* standard error of the best one's (SE of the per-pair error differences), the lowest log-loss.
      Agreement with the mechanism is what an explanation is scored by, but on a few hundred pairs accuracy
      differences of a few points are noise; log-loss then decides, as it sees far smaller real differences.
    * ``max_accuracy``: the best mean CV accuracy (ties: the lower log-loss).
    * ``one_se_accuracy``: from the configurations whose CV error is within one *paired* standard error of the
      best one's (SE of the per-pair error differences), the most pooled (largest lambda_domain /
      lambda_shared, inf = no domain deviations; then the larger alpha), ties by log-loss. Deviations must earn
      their place on held-out pairs, judged on the metric the explanation is scored by.
    * ``min_log_loss``: the lowest mean CV log-loss; ``one_se_pooling``: the same one-SE rule on log-loss.
    * ``max_fold_accuracy``: the best accuracy averaged over folds (each fold counts the same; ties: the lower
      fold-averaged log-loss, then the earlier configuration): the paper's rule, that of the ``hmdr_paper``,
      ``dirty`` and baseline variants of ``preflens evaluate``.
    """
    if rule not in SELECTION_RULES:
        raise ValueError(f"selection rule must be one of {SELECTION_RULES}, got {rule!r}")
    if rule == "max_fold_accuracy":
        acc, fll = table["cv_fold_accuracy"].to_numpy(), table["cv_fold_log_loss"].to_numpy()
        return int(np.lexsort((fll, -acc))[0])
    ll = table["cv_log_loss"].to_numpy()
    err = 1.0 - table["cv_accuracy"].to_numpy()
    if rule == "max_accuracy":
        return int(np.lexsort((ll, err))[0])
    if rule == "min_log_loss":
        return int(np.argmin(ll))
    if rule == "log_loss_within_accuracy_se":
        best = int(np.lexsort((ll, err))[0])
        n = errors.shape[1] if errors is not None and errors.ndim == 2 else 0
        diff = errors - errors[best][None, :] if errors is not None else np.zeros((len(ll), 0))
        se = diff.std(axis=1, ddof=1) / np.sqrt(n) if n > 1 else np.zeros(len(ll))
        ok = np.flatnonzero(err <= err[best] + se)
        return int(ok[np.argmin(ll[ok])])
    if rule == "one_se_accuracy":
        if errors is None:
            raise ValueError("one_se_accuracy needs the per-pair errors")
        best, metric, per_pair = int(np.lexsort((ll, err))[0]), err, errors
    else:
        best, metric, per_pair = int(np.argmin(ll)), ll, losses
    n = per_pair.shape[1] if per_pair.ndim == 2 else 0
    diff = per_pair - per_pair[best][None, :]
    se = diff.std(axis=1, ddof=1) / np.sqrt(n) if n > 1 else np.zeros(len(ll))
    ok = np.flatnonzero(metric <= metric[best] + se)
    key = np.lexsort((ll[ok], -table["alpha"].to_numpy()[ok], -table["pooling"].to_numpy()[ok]))
    return int(ok[key[0]])


class HMDRClassifierCV(HMDRClassifier):
    """HMDR with its hyperparameters chosen by k-fold cross-validation, then refitted on all pairs.

    Parameters
    ----------
    grid : {"pooling", "paper"}
        ``pooling`` (default): stage 1 fits the pooled model (every s_d = 0) along lambda_shared = lambda_max *
        2^-k, k = 1..7, and keeps the best lambda_shared by CV log-loss; stage 2 adds domain deviations at that
        lambda_shared with lambda_domain / lambda_shared in {4, 2, 1, 0.5} and alpha in {1/|D|, 1}. So the
        selection can always fall back to full pooling (the paper's grid cannot: it has lambda_b >= lambda_s).
        ``paper``: the 9 configurations of App. C.2 at alpha = 1/|D| (``paper_grid(grid_domains or |D|)``).
    rule : str
        One of ``SELECTION_RULES``: how a configuration is chosen from the CV table (see :func:`choose_config`
        and docs/fitting.md for what each cost in `preflens evaluate` on real data). Default
        ``log_loss_within_accuracy_se``.
    n_folds : int >= 2
        CV folds (:func:`py_models.cv.stratified_folds`, row order), unless ``fit`` gets ``folds``.
    seed : int
        Seed of the folds.
    grid_domains : int >= 1 or None
        |D| of the paper grid (default 8, the paper's values); None = the data's |D|.
    max_abs_weight : float > 0
        Configurations whose weights exceed this in a CV fold (near-separation of a small training set) are not
        selected unless all do (default 10: the publication bound, lift 500%; inf: no bound).
    alpha : float >= 0 or None
        None (default): the grid's alphas (pooling: 1/|D| and 1; paper: 1/|D|). A number fixes alpha for
        every configuration (0 = the paper's Dirty model).
    shared_mask, domain_masks, unpenalized_mask, min_domain_samples, symmetrize, tol, max_iter, solver
        As :class:`~py_models.hmdr.HMDRClassifier` (its lambda_* are chosen here). With ``solver="cd"`` the
        data are stored once for every alpha and the pooled model, each fold's path is warm-started along lambda
        (the deviation stage from the fold's pooled model), and the folds run on ``py_models._cd.solver_threads()``
        threads (``PREFLENS_HMDR_THREADS=1``: none); results do not depend on the thread count.

    Attributes
    ----------
    cv_results_ : DataFrame
        One row per configuration tried: stage, alpha, lambda_shared, lambda_domain, pooling (lambda_domain /
        lambda_shared, inf = pooled), cv_log_loss and cv_accuracy (over all out-of-fold pairs),
        cv_fold_log_loss and cv_fold_accuracy (averaged over folds), max_abs_weight (largest |weight| in any
        fold), chosen.
    selected_config_ : dict
        The chosen alpha, lambda_shared, lambda_domain and pooling.
    oof_proba_ : ndarray of shape (n_samples,)
        Out-of-fold P(a wins) of the chosen configuration (each pair predicted by the fold model that did not
        see it; selection itself saw every pair, so these are slightly optimistic).
    folds_ : ndarray of shape (n_samples,)
        Fold id per pair.
    classes_, n_features_in_, feature_names_in_, domains_, domain_n_samples_, has_domain_weights_,
    domains_with_weights_, alpha_, lambda_shared_, lambda_domain_, penalty_factor_, coef_shared_, coef_domain_,
    objective_, duality_gap_, kkt_violation_, n_iter_, n_screened_
        Those of the refit on all pairs at ``selected_config_`` (see :class:`~py_models.hmdr.HMDRClassifier`).
    """

    _parameter_constraints: ClassVar[dict[str, list[Any]]] = {
        **{
            k: v
            for k, v in HMDRClassifier._parameter_constraints.items()
            if k not in ("lambda_shared", "lambda_domain", "warm_start")
        },
        "grid": [StrOptions(set(GRIDS))],
        "rule": [StrOptions(set(SELECTION_RULES))],
        "n_folds": [Interval(Integral, 2, None, closed="left")],
        "seed": [Interval(Integral, 0, None, closed="left")],
        "grid_domains": [Interval(Integral, 1, None, closed="left"), None],
        "max_abs_weight": [Interval(Real, 0, np.inf, closed="right")],  # inf: no bound
    }

    def __init__(
        self,
        grid: str = "pooling",
        rule: str = "log_loss_within_accuracy_se",
        n_folds: int = 5,
        seed: int = 0,
        grid_domains: int | None = PAPER_GRID_DOMAINS,
        max_abs_weight: float = MAX_ABS_WEIGHT,
        alpha: float | None = None,
        shared_mask: ArrayLike | None = None,
        domain_masks: Mapping[Any, ArrayLike] | None = None,
        unpenalized_mask: ArrayLike | None = None,
        min_domain_samples: int = 10,
        symmetrize: bool = True,
        tol: float = 1e-6,
        max_iter: int = 1000,
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
        self.grid = grid
        self.rule = rule
        self.n_folds = n_folds
        self.seed = seed
        self.grid_domains = grid_domains
        self.max_abs_weight = max_abs_weight

    def fit(
        self,
        X: ArrayLike,
        y: ArrayLike,
        *,
        domains: ArrayLike | None = None,
        sample_weight: ArrayLike | None = None,
        folds: ArrayLike | None = None,
    ) -> HMDRClassifierCV:
        """Select on CV folds (``folds``: one id per row, else stratified ``n_folds``), refit on all rows."""
        self._validate_params()
        n_rows = np.asarray(y).ravel().shape[0]
        dom = np.full(n_rows, ONE_DOMAIN, dtype=object) if domains is None else np.asarray(domains, dtype=object)
        probe = self.fixed_estimator(alpha=1.0, lambda_shared=1.0, lambda_domain=1.0)
        design1, w, meta = probe._prepare(X, y, dom, sample_weight)
        n_dom = meta["n_domains"]
        Xc = sp.csr_matrix(X, dtype=np.float64) if sp.issparse(X) else np.asarray(X, dtype=np.float64)
        y_pm = design1.y_pm
        y_pos = y_pm > 0
        fold_ids = _fold_ids(folds, dom, y_pos, self.n_folds, self.seed)
        dom_row = np.full(n_dom, -1, dtype=np.intp)
        dom_row[meta["weighted_rows"]] = meta["weighted_rows"]
        idx = dom_row[meta["inv"]]
        has_dev = bool(len(meta["weighted_rows"]))
        a_data = 1.0 / n_dom if self.alpha is None else float(self.alpha)
        fold_list = [k for k in np.unique(fold_ids) if (fold_ids == k).any() and (w[fold_ids != k] > 0).any()]
        cd = isinstance(design1, DomainDesign)

        designs: dict[tuple[float, bool], Design] = {}

        def design_for(alpha: float, pooled: bool) -> Design:
            """The design at ``alpha`` (pooled: every s_d = 0); cd: a view of the one design, liblinear: a build."""
            key = (alpha, pooled)
            if key not in designs:
                if isinstance(design1, DomainDesign):
                    designs[key] = design1.view(alpha=alpha, pooled=pooled)
                else:
                    m = self.fixed_estimator(alpha=alpha, lambda_shared=1.0, lambda_domain=1.0)
                    if pooled:  # no domain has its own weights: every s_d = 0
                        m.set_params(min_domain_samples=n_rows + 1)
                    designs[key] = m._prepare(X, y, dom, sample_weight)[0]
            return designs[key]

        rows: list[dict[str, Any]] = []
        oof: list[NDArray[np.float64]] = []
        pooled_path: dict[Any, list[dict[str, Any]]] = {}  # cd: the pooled solutions of every fold (warm starts)

        def fold_path(
            design: Design, k: Any, configs: list[tuple[float, float]], pooled: bool, warm0: dict[str, Any] | None
        ) -> tuple[NDArray[np.float64], NDArray[np.float64], list[dict[str, Any]]]:
            """Fold k's grid path, warm-started: the held-out logits and the largest |weight| of each config."""
            te = fold_ids == k
            w_tr = np.where(te, 0.0, w)
            sub = design.subset(w_tr) if isinstance(design, AugmentedDesign) else None
            warm = warm0
            z_te = np.zeros((len(configs), int(te.sum())))
            wmax = np.zeros(len(configs))
            sols: list[dict[str, Any]] = []
            for c, (lb, ls) in enumerate(configs):
                res = design.solve(
                    lb,
                    ls if not pooled else lb,
                    w_tr,
                    warm=warm,
                    tol=float(self.tol),
                    max_iter=int(self.max_iter),
                    sub=sub,
                )
                warm = res
                wmax[c] = float(np.abs(res["beta"]).max(initial=0.0))
                if "z" in res:
                    z_te[c] = res["z"][te]
                elif pooled:
                    b = np.zeros(design.p)
                    b[design.shared_cols] = res["beta"][: design.n_shared_cols]
                    z_te[c] = np.asarray(Xc[te] @ b).ravel()
                else:
                    b, S = design.unpack(res["beta"], n_dom, meta["weighted_rows"])
                    z_te[c] = np.asarray(Xc[te] @ b).ravel() + rowwise_dot(Xc[te], S, idx[te])
                sols.append({key: res[key] for key in ("beta", "gradient", "lam")})
            return z_te, wmax, sols

        def run_path(stage: str, alpha: float, configs: list[tuple[float, float]], pooled: bool) -> None:
            design = design_for(alpha, pooled)
            probs = np.full((len(configs), n_rows), 0.5)
            wmax = np.zeros(len(configs))
            warm0: dict[Any, dict[str, Any] | None] = {k: None for k in fold_list}
            if cd and not pooled and pooled_path:  # start the deviations from the pooled fold model at lambda_shared
                j = path.index(configs[0][0]) if configs[0][0] in path else -1
                warm0 = {k: {"beta": pooled_path[k][j]["beta"]} if j >= 0 else None for k in fold_list}

            def one(k: Any) -> tuple[NDArray[np.float64], NDArray[np.float64], list[dict[str, Any]]]:
                return fold_path(design, k, configs, pooled, warm0[k])

            if isinstance(design, DomainDesign):
                done = map_threads(one, fold_list, work=int(design.indices.size))
            else:
                done = [one(k) for k in fold_list]
            for k, (z_te, wm, sols) in zip(fold_list, done):
                probs[:, fold_ids == k] = sigmoid(z_te)
                wmax = np.maximum(wmax, wm)
                if cd and pooled:
                    pooled_path[k] = sols
            fold_scores = [score_rows(y_pos[fold_ids == k], probs[:, fold_ids == k]) for k in fold_list]
            # per configuration, the folds' scores in fold order, averaged (as _fold_means)
            fold_acc = np.array([np.array([f[0][c] for f in fold_scores]).mean() for c in range(len(configs))])
            fold_ll = np.array([np.array([f[1][c] for f in fold_scores]).mean() for c in range(len(configs))])
            all_acc, all_ll = score_rows(y_pos, probs)
            for c, (lb, ls) in enumerate(configs):
                acc, ll = float(all_acc[c]), float(all_ll[c])
                rows.append(
                    {
                        "stage": stage,
                        "alpha": alpha,
                        "lambda_shared": lb,
                        "lambda_domain": POOLED if pooled else ls,
                        "pooling": POOLED if pooled else ls / lb,
                        "cv_log_loss": ll,
                        "cv_accuracy": acc,
                        "cv_fold_log_loss": fold_ll[c],
                        "cv_fold_accuracy": fold_acc[c],
                        "max_abs_weight": wmax[c],
                    }
                )
                oof.append(probs[c])

        path: list[float] = []
        if self.grid == "paper":
            cfgs = paper_grid(self.grid_domains or n_dom)
            run_path("paper", a_data, [(g["lambda_shared"], g["lambda_domain"]) for g in cfgs], pooled=False)
        else:
            penal = np.ones(design1.p, dtype=bool)
            if self.unpenalized_mask is not None:
                penal = ~np.asarray(self.unpenalized_mask, dtype=bool)
            lmax = lambda_max(Xc, y_pm, w, a_data, penal)
            lmax = lmax if lmax > 0 else 1.0
            path = [lmax * 2.0 ** -(k + 1) for k in range(N_LAMBDAS)]
            run_path("pooled", a_data, [(lb, lb) for lb in path], pooled=True)
            if has_dev:
                # along the pooled path, log-loss is smooth where accuracy is flat and noisy: it picks lambda_shared
                # (among the configurations that stay within MAX_ABS_WEIGHT, when any does)
                ll1 = np.array([r["cv_log_loss"] for r in rows])
                sane = np.array([r["max_abs_weight"] <= self.max_abs_weight for r in rows])
                lb_star = path[int(np.argmin(np.where(sane, ll1, np.inf) if sane.any() else ll1))]
                for alpha in sorted({a_data, 1.0}) if self.alpha is None else [a_data]:
                    run_path("deviations", alpha, [(lb_star, r * lb_star) for r in POOLING_RATIOS], pooled=False)
        table = pd.DataFrame(rows)
        losses = np.vstack([pair_log_loss(y_pos[w > 0], p[w > 0]) for p in oof]) if oof else np.zeros((0, 0))
        errors = np.vstack([1.0 - pair_credit(y_pos[w > 0], p[w > 0]) for p in oof]) if oof else np.zeros((0, 0))
        sane = (table["max_abs_weight"] <= self.max_abs_weight).to_numpy() if len(table) else np.zeros(0, bool)
        keep = np.flatnonzero(sane) if sane.any() else np.arange(len(table))
        best = (
            int(keep[choose_config(table.iloc[keep].reset_index(drop=True), losses[keep], self.rule, errors[keep])])
            if len(table)
            else 0
        )
        table["chosen"] = np.arange(len(table)) == best
        chosen = table.iloc[best].to_dict()
        alpha, lb, ls = float(chosen["alpha"]), float(chosen["lambda_shared"]), float(chosen["lambda_domain"])
        if isinstance(design1, DomainDesign):
            self._refit_cd(design1, w, meta, probe, alpha, lb, ls)
        else:
            self._refit_liblinear(X, y, dom, sample_weight, alpha, lb, ls)
        self.cv_results_ = table
        self.selected_config_ = {
            "alpha": alpha,
            "lambda_shared": self.lambda_shared_,
            "lambda_domain": self.lambda_domain_,
            "pooling": float(chosen["pooling"]),
        }
        self.oof_proba_ = oof[best] if oof else np.full(n_rows, 0.5)
        self.folds_ = fold_ids
        return self

    _FITTED_FROM_PREPARE = (
        "n_features_in_",
        "feature_names_in_",
        "classes_",
        "domains_",
        "domain_n_samples_",
        "domains_with_weights_",
        "has_domain_weights_",
        "penalty_factor_",
    )

    def _adopt(self, prepared: HMDRClassifier) -> None:
        """The attributes ``_prepare`` set on ``prepared`` (same data, masks and rows), as this model's."""
        for attr in self._FITTED_FROM_PREPARE:
            if hasattr(prepared, attr):
                setattr(self, attr, getattr(prepared, attr))

    def _refit_cd(
        self,
        design: DomainDesign,
        w: NDArray[np.float64],
        meta: dict[str, Any],
        probe: HMDRClassifier,
        alpha: float,
        lb: float,
        ls: float,
    ) -> None:
        """The refit on all rows at the chosen configuration, on the one design (cd)."""
        tol, max_iter = float(self.tol), int(self.max_iter)
        if not np.isfinite(ls):  # pooled: the smallest lambda_domain that keeps every s_d exactly zero (KKT), x2
            pooled = design.view(alpha=alpha, pooled=True).solve(lb, lb, w, tol=tol, max_iter=max_iter)
            if not len(meta["weighted_rows"]):
                ls = 4.0 * lb
            else:
                g = design.view(alpha=alpha).diagnostics_at(pooled["beta"], w, lb, lb)["gradient"]
                g_s = np.abs(g[design.n_shared_cols :])
                ls = float(max(2.0 * (g_s.max() if g_s.size else 0.0), 4.0 * lb))
            warm: dict[str, Any] | None = {"beta": pooled["beta"]}
        else:
            warm = None
        res = design.view(alpha=alpha).solve(lb, ls, w, warm=warm, tol=tol, max_iter=max_iter)
        self._adopt(probe)
        self.alpha_, self.lambda_shared_, self.lambda_domain_ = alpha, lb, ls
        self._store_solution(design, res, meta)

    def _refit_liblinear(
        self, X: Any, y: Any, dom: Any, sample_weight: Any, alpha: float, lb: float, ls: float
    ) -> None:
        """The refit on all rows at the chosen configuration, on a design built for it (liblinear, as before)."""
        if not np.isfinite(ls):  # pooled: the smallest lambda_domain that keeps every s_d exactly zero (KKT), x2
            ls = self._pooled_lambda_domain(X, y, dom, sample_weight, alpha, lb)
        final = self.fixed_estimator(alpha=alpha, lambda_shared=lb, lambda_domain=ls)
        design, w, meta = final._prepare(X, y, dom, sample_weight)
        res = design.solve(lb, ls, w, tol=float(self.tol), max_iter=int(self.max_iter))
        self._adopt(final)
        self.alpha_, self.lambda_shared_, self.lambda_domain_ = alpha, lb, ls
        self._store_solution(design, res, meta)

    def _pooled_lambda_domain(self, X, y, dom, sample_weight, alpha: float, lb: float) -> float:
        pooled = self.fixed_estimator(alpha=alpha, lambda_shared=lb, lambda_domain=lb)
        pooled.set_params(min_domain_samples=10**12).fit(X, y, domains=dom, sample_weight=sample_weight)
        probe = self.fixed_estimator(alpha=alpha, lambda_shared=lb, lambda_domain=lb)
        design, w, meta = probe._prepare(X, y, dom, sample_weight)
        if not len(meta["weighted_rows"]):
            return 4.0 * lb
        assert isinstance(design, AugmentedDesign)
        beta = np.zeros(design.width)
        beta[: design.n_shared_cols] = pooled.coef_shared_[design.shared_cols]
        A, ya, wa = design.subset(w)
        g = design.diagnostics(A, ya, wa, float(w.sum()), beta, design.penalties(lb, lb))["gradient"]
        g_s = np.abs(g[design.n_shared_cols :])
        return float(max(2.0 * (g_s.max() if g_s.size else 0.0), 4.0 * lb))


class DomainGridSearchCV(DomainLinearClassifierMixin, BaseEstimator):
    """A member of the estimator family with its configuration chosen by k-fold CV, then refitted on all pairs.

    Every configuration is fitted on each fold's training part (``clone(estimator).set_params(**config)``) and
    scored on its held-out part with ``py_models.cv.score``; the rule is ``max_fold_accuracy``
    (:func:`choose_config`). A fold whose training part has one class only is left out; with no fold left the
    middle configuration of the grid is used. An estimator with ``selection_path`` (the L1 baselines, cd solver)
    runs the C grid of every fold on one stored design instead (held-out rows weight 0, warm starts along C):
    the same fits within solver tolerance, without a refit per configuration and fold.

    Parameters
    ----------
    estimator : estimator of the family
        Unfitted; ``fit(X, y, *, domains, sample_weight)`` and ``predict_proba(X, domains)``.
    param_grid : sequence of dict
        The configurations (parameter name -> value), e.g. ``estimator.param_grid(n_domains)``.
    n_folds : int >= 2
        CV folds (:func:`py_models.cv.stratified_folds`, row order), unless ``fit`` gets ``folds``.
    seed : int
        Seed of the folds.

    Attributes
    ----------
    best_estimator_ : estimator
        ``estimator`` at the chosen configuration, refitted on all pairs; predictions delegate to it.
    selected_config_ : dict
        The chosen configuration.
    cv_results_ : DataFrame
        One row per configuration: its parameters, cv_fold_accuracy and cv_fold_log_loss, chosen.
    classes_ : ndarray of shape (2,)
        Those of ``best_estimator_``.
    n_features_in_ : int
        Number of features seen in fit.
    """

    _parameter_constraints: ClassVar[dict[str, list[Any]]] = {
        "estimator": [HasMethods(["fit", "predict_proba"])],
        "param_grid": [list, tuple],
        "n_folds": [Interval(Integral, 2, None, closed="left")],
        "seed": [Interval(Integral, 0, None, closed="left")],
    }

    def __init__(
        self, estimator: Any, param_grid: Sequence[Mapping[str, Any]], n_folds: int = 5, seed: int = 0
    ) -> None:
        self.estimator = estimator
        self.param_grid = param_grid
        self.n_folds = n_folds
        self.seed = seed

    def fit(
        self,
        X: Any,
        y: ArrayLike,
        *,
        domains: ArrayLike | None = None,
        sample_weight: ArrayLike | None = None,
        folds: ArrayLike | None = None,
    ) -> DomainGridSearchCV:
        """Select on CV folds (``folds``: one id per row, else stratified ``n_folds``), refit on all rows."""
        self._validate_params()
        grid = [dict(g) for g in self.param_grid]
        X, y_pm, dom = self._validate_training_data(X, y, domains)
        y_arr = np.asarray(y).ravel()
        fold_ids = _fold_ids(folds, dom, y_arr, self.n_folds, self.seed)
        w = check_sample_weight(sample_weight, len(y_arr))
        path = self._path(X, y_pm, dom, w, grid)
        fold_rows = []
        if path is not None:
            for _k, te, probs in path.fold_probabilities(fold_ids, [float(g["C"]) for g in grid]):
                accs, lls = score_rows(path.y_pm[te] > 0, probs)
                for c in range(len(grid)):
                    fold_rows.append({"config": c, "accuracy": float(accs[c]), "log_loss": float(lls[c])})
        else:
            for k in np.unique(fold_ids):
                te = fold_ids == k
                tr = ~te
                if len(set(y_arr[tr].tolist())) < 2:
                    continue
                for c, g in enumerate(grid):
                    m = (
                        clone(self.estimator)
                        .set_params(**g)
                        .fit(X[tr], y_arr[tr], domains=dom[tr], sample_weight=None if w is None else w[tr])
                    )
                    acc, ll = score(y_arr[te] == m.classes_[1], m.predict_proba(X[te], dom[te])[:, 1])
                    fold_rows.append({"config": c, "accuracy": acc, "log_loss": ll})
        table = pd.concat([pd.DataFrame(grid), _fold_means(fold_rows, len(grid)).reset_index(drop=True)], axis=1)
        best = choose_config(table, np.zeros((0, 0)), "max_fold_accuracy") if fold_rows else len(grid) // 2
        table["chosen"] = np.arange(len(grid)) == best
        self.selected_config_ = {
            k: (float(v) if isinstance(v, (np.floating, float)) else v) for k, v in grid[best].items()
        }
        if path is not None:
            self.best_estimator_ = path.refit(float(self.selected_config_["C"]))
        else:
            self.best_estimator_ = (
                clone(self.estimator).set_params(**self.selected_config_).fit(X, y_arr, domains=dom, sample_weight=w)
            )
        self.cv_results_ = table
        return self

    def _path(self, X: Any, y_pm: NDArray, dom: NDArray, w: NDArray[np.float64] | None, grid: list[dict]) -> Any:
        """The estimator's ``selection_path`` (one stored design, folds by weights, warm starts along C) when it
        has one for its solver and the grid varies C only; else None (a plain refit per configuration and fold).
        X, ``y_pm`` (+-1) and ``dom`` as checked here (``classes_`` and ``n_features_in_`` are set)."""
        make = getattr(self.estimator, "selection_path", None)
        if make is None or not grid or any(set(g) != {"C"} for g in grid):
            return None
        return make(X, y_pm, dom, w, self.classes_)

    def decision_function(self, X: Any, domains: ArrayLike | None = None) -> NDArray[np.float64]:
        """The logit of ``best_estimator_``."""
        check_is_fitted(self)
        return self.best_estimator_.decision_function(X, domains)

    def score(
        self, X: Any, y: ArrayLike, sample_weight: ArrayLike | None = None, *, domains: ArrayLike | None = None
    ) -> float:
        """``best_estimator_.score`` (requires ``domains`` when it does)."""
        return float(self.best_estimator_.score(X, y, sample_weight, domains=domains))

    def uses_domain_weights(self, domains: ArrayLike) -> NDArray[np.bool_]:
        return self.best_estimator_.uses_domain_weights(domains)
