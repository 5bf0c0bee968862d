"""Model selection (method.md §4.3): the paper's 9-configuration grid, k-fold CV stratified by domain, refit.

* ``paper_grid(n)`` -- alpha = 1/|D| is fixed by the caller; lambda_domain in {1/n^2, 2/n^2, 1/(2n)} and
  lambda_shared in {1/n^2, 2/n^2, 1/(2n), 1/n} with lambda_shared >= lambda_domain: 9 configurations. They are
  ordered from the most to the least penalised so each fit can warm-start (screen) from the previous one.
* ``n`` is the grid's |D|. The paper has |D| = 8 (values 1/64 .. 1/8). With the 1/|D| scaling a data set with
  1-3 domains gets lambdas of 0.1-2 (every weight zero) and one with 20 domains gets 0.0025-0.05;
  ``grid_domains`` therefore defaults to the paper's 8 ("paper" values) and can be set to None for the literal
  1/|D|-of-the-data rule.
* ``fit_hmdr_selected`` builds the augmented design ONCE on the training set, runs every fold's grid path on it
  by instance weights (no rebuild), picks the configuration with the best mean CV accuracy (ties -> lower
  log-loss, then the more penalised), and refits on the full training set.
* ``fit_selected`` does the same for any variant with ``param_grid`` (baselines: plain refits, they are cheap).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp
from numpy.typing import ArrayLike, NDArray
from sklearn.base import clone

from py_models._augment import rowwise_dot, sigmoid
from py_models.hmdr import HMDRClassifier

__all__ = [
    "PAPER_GRID_DOMAINS", "paper_grid", "stratified_folds", "fit_hmdr_selected", "fit_selected", "score",
    "HMDRClassifierCV", "choose_config", "lambda_max", "POOLING_RATIOS", "SELECTION_RULES", "GRIDS",
]

PAPER_GRID_DOMAINS = 8


def paper_grid(n_domains: int) -> list[dict[str, float]]:
    """The 9 (lambda_shared, lambda_domain) pairs of App. C.2 for |D| = n_domains, most penalised first."""
    D = float(max(int(n_domains), 1))
    lam_s = [1 / D**2, 2 / D**2, 1 / (2 * D)]
    lam_b = [1 / D**2, 2 / D**2, 1 / (2 * D), 1 / D]
    grid = {(b, s) for s in lam_s for b in lam_b if b >= s - 1e-15}
    ordered = sorted(grid, key=lambda t: (-t[1], -t[0]))
    return [{"lambda_shared": b, "lambda_domain": s} for b, s in ordered]


def stratified_folds(domains: ArrayLike, y: ArrayLike, n_folds: int, seed: int) -> NDArray[np.int64]:
    """Fold ids stratified by domain and, within a domain, by label (round-robin over a seeded permutation)."""
    dom = np.asarray(domains, dtype=object).astype(str)
    yy = np.asarray(y).astype(str)
    rng = np.random.default_rng(seed)
    folds = np.empty(len(dom), dtype=np.int64)
    counter = 0
    for d in sorted(set(dom.tolist())):
        idx = np.flatnonzero(dom == d)
        idx = idx[rng.permutation(len(idx))]
        idx = idx[np.argsort(yy[idx], kind="stable")]
        folds[idx] = (counter + np.arange(len(idx))) % n_folds
        counter += len(idx)
    return folds


def score(y_pos: NDArray[np.bool_], prob: NDArray[np.float64]) -> tuple[float, float]:
    """(accuracy with 0.5 credit when prob == 0.5, log-loss)."""
    pred_pos = prob > 0.5
    acc = np.where(prob == 0.5, 0.5, (pred_pos == y_pos).astype(float))
    p = np.clip(prob, 1e-15, 1 - 1e-15)
    ll = -np.where(y_pos, np.log(p), np.log1p(-p))
    return float(acc.mean()), float(ll.mean())


def _best(rows: list[dict[str, Any]], keys: list[str]) -> tuple[dict[str, Any], pd.DataFrame]:
    cv = pd.DataFrame(rows)
    agg = cv.groupby("config", sort=True).agg(cv_accuracy=("accuracy", "mean"), cv_log_loss=("log_loss", "mean"))
    agg = agg.reset_index().sort_values(["cv_accuracy", "cv_log_loss", "config"], ascending=[False, True, True])
    best = int(agg["config"].iloc[0])
    params = cv.loc[cv["config"] == best, keys].iloc[0].to_dict()
    return params, agg


def fit_hmdr_selected(
    X: ArrayLike,
    y: ArrayLike,
    domains: ArrayLike,
    *,
    sample_weight: ArrayLike | None = None,
    grid: list[dict[str, float]] | None = None,
    grid_domains: int | None = PAPER_GRID_DOMAINS,
    n_folds: int = 5,
    seed: int = 0,
    warm_start: bool = True,
    **params: Any,
) -> HMDRClassifier:
    """CV-select (lambda_shared, lambda_domain) on the grid, refit; returns the fitted estimator.

    ``params`` go to HMDRClassifier (alpha, masks, min_domain_samples, tol, ...; alpha None -> 1/|D| of the
    data). The fitted estimator carries ``cv_results_`` (one row per configuration: lambdas, mean CV accuracy
    and log-loss) and ``selected_config_``. A domain's "own weights" status is decided on the full training set.
    """
    est = HMDRClassifier(**{k: v for k, v in params.items() if k not in ("lambda_shared", "lambda_domain")})
    design, w, meta = est._prepare(X, y, domains, sample_weight)
    n_dom = meta["n_domains"]
    grid = grid if grid is not None else paper_grid(grid_domains or n_dom)
    Xc = sp.csr_matrix(X, dtype=np.float64) if sp.issparse(X) else np.asarray(X, dtype=np.float64)
    y_pos = design.y_pm > 0
    dom_row = np.full(n_dom, -1, dtype=np.intp)
    dom_row[meta["weighted_rows"]] = meta["weighted_rows"]
    idx = dom_row[meta["inv"]]
    folds = stratified_folds(np.asarray(domains, dtype=object), y_pos, n_folds, seed)
    rows: list[dict[str, Any]] = []
    for k in range(n_folds):
        te = folds == k
        w_tr = np.where(te, 0.0, w)
        if not te.any() or w_tr.sum() <= 0:
            continue
        sub = design.subset(w_tr)
        warm = None
        for c, g in enumerate(grid):
            res = design.solve(g["lambda_shared"], g["lambda_domain"], w_tr, warm=warm if warm_start else None,
                               tol=float(est.tol), max_iter=int(est.max_iter), sub=sub)
            warm = res
            b, S = design.unpack(res["beta"], n_dom, meta["weighted_rows"])
            Xt = Xc[te]
            z = np.asarray(Xt @ b).ravel() + rowwise_dot(Xt, S, idx[te])
            acc, ll = score(y_pos[te], sigmoid(z))
            rows.append({"config": c, **g, "fold": k, "accuracy": acc, "log_loss": ll})
    if rows:
        best, agg = _best(rows, ["lambda_shared", "lambda_domain"])
    else:  # cannot cross-validate (e.g. 1 pair per fold): fall back to the grid's middle
        best, agg = dict(grid[len(grid) // 2]), pd.DataFrame()
    est.set_params(**best)
    est.lambda_shared_, est.lambda_domain_ = float(best["lambda_shared"]), float(best["lambda_domain"])
    res = design.solve(est.lambda_shared_, est.lambda_domain_, w, tol=float(est.tol), max_iter=int(est.max_iter))
    est._store_solution(design, res, meta)
    est.cv_results_ = agg
    est.selected_config_ = best
    return est


def fit_selected(
    make: Callable[..., Any],
    X: ArrayLike,
    y: ArrayLike,
    domains: ArrayLike,
    *,
    grid: list[dict[str, Any]],
    n_folds: int = 5,
    seed: int = 0,
    sample_weight: ArrayLike | None = None,
) -> Any:
    """Generic CV selection + refit for a baseline built by ``make(**config)``."""
    dom = np.asarray(domains, dtype=object)
    y_arr = np.asarray(y)
    proto = make(**grid[0])
    folds = stratified_folds(dom, y_arr, n_folds, seed)
    w = None if sample_weight is None else np.asarray(sample_weight, dtype=np.float64)
    rows = []
    for k in range(n_folds):
        te = folds == k
        tr = ~te
        if not te.any() or len(set(y_arr[tr].tolist())) < 2:
            continue
        for c, g in enumerate(grid):
            m = clone(proto).set_params(**g).fit(X[tr], y_arr[tr], domains=dom[tr],
                                                 sample_weight=None if w is None else w[tr])
            pos = y_arr[te] == m.classes_[1]
            acc, ll = score(pos, m.predict_proba(X[te], dom[te])[:, 1])
            rows.append({"config": c, **g, "fold": k, "accuracy": acc, "log_loss": ll})
    best = _best(rows, list(grid[0]))[0] if rows else dict(grid[len(grid) // 2])
    best = {k: (float(v) if isinstance(v, (np.floating, float)) else v) for k, v in best.items()}
    model = clone(proto).set_params(**best).fit(X, y_arr, domains=dom, sample_weight=w)
    model.selected_config_ = best
    return model


# ---------------------------------------------------------------------------------------------------------------
# HMDRClassifierCV: selection that can choose more pooling than the paper's grid
# ---------------------------------------------------------------------------------------------------------------

POOLING_RATIOS: tuple[float, ...] = (4.0, 2.0, 1.0, 0.5)  # lambda_domain / lambda_shared below "infinity" (pooled)
N_LAMBDAS = 7                                             # lambda_shared = lambda_max * 2^-1 ... 2^-7
#: default largest |weight| a selectable configuration may reach in any CV fold; the build passes its own bound,
#: dbt var max_abs_lift_pct / 50 (the publication bound). Beyond it a fit has (nearly) separated a small training set; such a configuration is
#: chosen only if every configuration does it
MAX_ABS_WEIGHT = 10.0
SELECTION_RULES = ("log_loss_within_accuracy_se", "max_accuracy", "one_se_accuracy", "one_se_pooling", "min_log_loss")
GRIDS = ("pooling", "paper")
POOLED = float("inf")


def lambda_max(X: Any, y_pm: NDArray[np.float64], w: NDArray[np.float64], alpha: float,
               penalized: NDArray[np.bool_] | None = None) -> float:
    """Smallest lambda_shared at which the pooled model (s = 0) is all-zero: (1+alpha)/(2N) max_j |sum w y x_j|."""
    g = np.abs(np.asarray(X.T @ (w * y_pm)).ravel()) * (1.0 + alpha) / (2.0 * w.sum())
    if penalized is not None:
        g = g[penalized]
    return float(g.max()) if g.size else 0.0


def _pair_error(y_pos: NDArray[np.bool_], prob: NDArray[np.float64]) -> NDArray[np.float64]:
    """Per-pair classification error: 1 wrong, 0 right, 0.5 at prob 0.5 (the accuracy credit of ``score``)."""
    return np.where(prob == 0.5, 0.5, ((prob > 0.5) != y_pos).astype(float))


def _pair_log_loss(y_pos: NDArray[np.bool_], prob: NDArray[np.float64]) -> NDArray[np.float64]:
    p = np.clip(prob, 1e-15, 1 - 1e-15)
    return -np.where(y_pos, np.log(p), np.log1p(-p))


def choose_config(
    table: pd.DataFrame, losses: NDArray[np.float64], rule: str, errors: NDArray[np.float64] | None = None
) -> int:
    """Index of the chosen row of ``table`` (one row per configuration, with ``pooling``, ``alpha``,
    ``cv_log_loss`` and ``cv_accuracy``). ``losses`` / ``errors``: per-pair out-of-fold log-losses and
    classification errors (1 - accuracy credit), configs x pairs.

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
    """
    if rule not in SELECTION_RULES:
        raise ValueError(f"selection rule must be one of {SELECTION_RULES}, got {rule!r}")
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

    Parameters (besides :class:`HMDRClassifier`'s; its alpha / lambda_* are ignored and chosen here)
    ----------
    grid : "pooling" or "paper"
        ``pooling`` (default): stage 1 fits the pooled model (every s_d = 0) along lambda_shared = lambda_max *
        2^-k, k = 1..7, and keeps the best lambda_shared by CV log-loss; stage 2 adds domain deviations at that
        lambda_shared with lambda_domain / lambda_shared in {4, 2, 1, 0.5} and alpha in {1/|D|, 1}. So the
        selection can always fall back to full pooling (the paper's grid cannot: it has lambda_b >= lambda_s).
        ``paper``: the 9 configurations of App. C.2 at alpha = 1/|D| (``paper_grid(grid_domains or |D|)``).
    rule : "log_loss_within_accuracy_se" (default), "max_accuracy", "one_se_accuracy", "one_se_pooling" or
        "min_log_loss". How a configuration is chosen from the CV table (see :func:`choose_config` and
        docs/fitting.md for what each cost in `preflens evaluate` on real data).
    n_folds, seed : CV folds, stratified by domain and label (:func:`stratified_folds`), unless ``fit`` gets
        ``folds``.
    grid_domains : |D| of the paper grid (default 8, the paper's values); None = the data's |D|.
    max_abs_weight : configurations whose weights exceed this in a CV fold (near-separation of a small training
        set) are not selected unless all do (default 10: the publication bound, lift 500%).

    Attributes
    ----------
    cv_results_ : DataFrame, one row per configuration tried: stage, alpha, lambda_shared, lambda_domain, pooling
        (lambda_domain / lambda_shared, inf = pooled), cv_log_loss, cv_accuracy, chosen.
    selected_config_ : dict, the chosen alpha, lambda_shared, lambda_domain and pooling.
    oof_proba_ : (n,) out-of-fold P(a wins) of the chosen configuration (each pair predicted by the fold model
        that did not see it; selection itself saw every pair, so these are slightly optimistic).
    folds_ : (n,) fold id per pair.
    """

    def __init__(
        self,
        grid: str = "pooling",
        rule: str = "log_loss_within_accuracy_se",
        n_folds: int = 5,
        seed: int = 0,
        grid_domains: int | None = PAPER_GRID_DOMAINS,
        max_abs_weight: float = MAX_ABS_WEIGHT,
        shared_mask: ArrayLike | None = None,
        domain_masks: Mapping[Any, ArrayLike] | None = None,
        unpenalized_mask: ArrayLike | None = None,
        min_domain_samples: int = 10,
        symmetrize: bool = True,
        tol: float = 1e-6,
        max_iter: int = 1000,
    ) -> None:
        super().__init__(shared_mask=shared_mask, domain_masks=domain_masks, unpenalized_mask=unpenalized_mask,
                         min_domain_samples=min_domain_samples, symmetrize=symmetrize, tol=tol, max_iter=max_iter)
        self.grid = grid
        self.rule = rule
        self.n_folds = n_folds
        self.seed = seed
        self.grid_domains = grid_domains
        self.max_abs_weight = max_abs_weight

    def _base(self, **hyper: Any) -> HMDRClassifier:
        keys = ("shared_mask", "domain_masks", "unpenalized_mask", "min_domain_samples", "symmetrize", "tol",
                "max_iter")
        return HMDRClassifier(**{**{k: getattr(self, k) for k in keys}, **hyper})

    def fit(
        self,
        X: ArrayLike,
        y: ArrayLike,
        *,
        domains: ArrayLike | None = None,
        sample_weight: ArrayLike | None = None,
        folds: ArrayLike | None = None,
    ) -> "HMDRClassifierCV":
        """Select on CV folds (``folds``: one id per row, else stratified ``n_folds``), refit on all rows."""
        if self.grid not in GRIDS:
            raise ValueError(f"grid must be one of {GRIDS}, got {self.grid!r}")
        if self.rule not in SELECTION_RULES:
            raise ValueError(f"rule must be one of {SELECTION_RULES}, got {self.rule!r}")
        if not (isinstance(self.n_folds, (int, np.integer)) and self.n_folds >= 2):
            raise ValueError("n_folds must be an int >= 2")
        n_rows = np.asarray(y).ravel().shape[0]
        dom = np.full(n_rows, "__all__", dtype=object) if domains is None else np.asarray(domains, dtype=object)
        probe = self._base(alpha=1.0, lambda_shared=1.0, lambda_domain=1.0)
        design1, w, meta = probe._prepare(X, y, dom, sample_weight)
        n_dom = meta["n_domains"]
        Xc = sp.csr_matrix(X, dtype=np.float64) if sp.issparse(X) else np.asarray(X, dtype=np.float64)
        y_pm = design1.y_pm
        y_pos = y_pm > 0
        fold_ids = (stratified_folds(dom, y_pos, int(self.n_folds), int(self.seed)) if folds is None
                    else np.asarray(folds).ravel())
        if fold_ids.shape[0] != n_rows:
            raise ValueError(f"folds has {fold_ids.shape[0]} entries, X has {n_rows} rows")
        dom_row = np.full(n_dom, -1, dtype=np.intp)
        dom_row[meta["weighted_rows"]] = meta["weighted_rows"]
        idx = dom_row[meta["inv"]]
        has_dev = bool(len(meta["weighted_rows"]))
        a_data = 1.0 / n_dom
        fold_list = [k for k in np.unique(fold_ids) if (fold_ids == k).any() and (w[fold_ids != k] > 0).any()]

        designs: dict[tuple[float, bool], Any] = {}

        def design_for(alpha: float, pooled: bool):
            key = (alpha, pooled)
            if key not in designs:
                m = self._base(alpha=alpha, lambda_shared=1.0, lambda_domain=1.0)
                if pooled:  # no domain has its own weights: every s_d = 0
                    m.set_params(min_domain_samples=n_rows + 1)
                designs[key] = m._prepare(X, y, dom, sample_weight)[0]
            return designs[key]

        rows: list[dict[str, Any]] = []
        oof: list[NDArray[np.float64]] = []

        def run_path(stage: str, alpha: float, configs: list[tuple[float, float]], pooled: bool) -> None:
            design = design_for(alpha, pooled)
            probs = np.full((len(configs), n_rows), 0.5)
            wmax = np.zeros(len(configs))
            for k in fold_list:
                te = fold_ids == k
                w_tr = np.where(te, 0.0, w)
                sub = design.subset(w_tr)
                warm = None
                for c, (lb, ls) in enumerate(configs):
                    res = design.solve(lb, ls if not pooled else lb, w_tr, warm=warm, tol=float(self.tol),
                                       max_iter=int(self.max_iter), sub=sub)
                    warm = res
                    wmax[c] = max(wmax[c], float(np.abs(res["beta"]).max(initial=0.0)))
                    if pooled:
                        b = np.zeros(design.p)
                        b[design.shared_cols] = res["beta"][: design.n_shared_cols]
                        z = np.asarray(Xc[te] @ b).ravel()
                    else:
                        b, S = design.unpack(res["beta"], n_dom, meta["weighted_rows"])
                        z = np.asarray(Xc[te] @ b).ravel() + rowwise_dot(Xc[te], S, idx[te])
                    probs[c, te] = sigmoid(z)
            for c, (lb, ls) in enumerate(configs):
                acc, ll = score(y_pos, probs[c])
                rows.append({"stage": stage, "alpha": alpha, "lambda_shared": lb,
                             "lambda_domain": POOLED if pooled else ls,
                             "pooling": POOLED if pooled else ls / lb, "cv_log_loss": ll, "cv_accuracy": acc,
                             "max_abs_weight": wmax[c]})
                oof.append(probs[c])

        if self.grid == "paper":
            cfgs = paper_grid(self.grid_domains or n_dom)
            run_path("paper", a_data, [(g["lambda_shared"], g["lambda_domain"]) for g in cfgs], pooled=not has_dev)
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
                for alpha in sorted({a_data, 1.0}):
                    run_path("deviations", alpha, [(lb_star, r * lb_star) for r in POOLING_RATIOS], pooled=False)
        table = pd.DataFrame(rows)
        losses = np.vstack([_pair_log_loss(y_pos[w > 0], p[w > 0]) for p in oof]) if oof else np.zeros((0, 0))
        errors = np.vstack([_pair_error(y_pos[w > 0], p[w > 0]) for p in oof]) if oof else np.zeros((0, 0))
        sane = (table["max_abs_weight"] <= self.max_abs_weight).to_numpy() if len(table) else np.zeros(0, bool)
        keep = np.flatnonzero(sane) if sane.any() else np.arange(len(table))
        best = int(keep[choose_config(table.iloc[keep].reset_index(drop=True), losses[keep], self.rule,
                                      errors[keep])]) if len(table) else 0
        table["chosen"] = np.arange(len(table)) == best
        chosen = table.iloc[best].to_dict()
        alpha, lb, ls = float(chosen["alpha"]), float(chosen["lambda_shared"]), float(chosen["lambda_domain"])
        if not np.isfinite(ls):  # pooled: the smallest lambda_domain that keeps every s_d exactly zero (KKT), x2
            ls = self._pooled_lambda_domain(X, y, dom, sample_weight, alpha, lb)
        final = self._base(alpha=alpha, lambda_shared=lb, lambda_domain=ls)
        design, w, meta = final._prepare(X, y, dom, sample_weight)
        res = design.solve(lb, ls, w, tol=float(self.tol), max_iter=int(self.max_iter))
        for attr in ("n_features_in_", "feature_names_in_", "classes_", "domains_", "domain_n_samples_",
                     "domains_with_weights_", "has_domain_weights_", "penalty_factor_"):
            if hasattr(final, attr):
                setattr(self, attr, getattr(final, attr))
        self.alpha_, self.lambda_shared_, self.lambda_domain_ = alpha, lb, ls
        self._store_solution(design, res, meta)
        self.cv_results_ = table
        self.selected_config_ = {"alpha": alpha, "lambda_shared": lb, "lambda_domain": ls,
                                 "pooling": float(chosen["pooling"])}
        self.oof_proba_ = oof[best] if oof else np.full(n_rows, 0.5)
        self.folds_ = fold_ids
        return self

    def _pooled_lambda_domain(self, X, y, dom, sample_weight, alpha: float, lb: float) -> float:
        pooled = self._base(alpha=alpha, lambda_shared=lb, lambda_domain=lb, min_domain_samples=10**12)
        pooled.fit(X, y, domains=dom, sample_weight=sample_weight)
        probe = self._base(alpha=alpha, lambda_shared=lb, lambda_domain=lb)
        design, w, meta = probe._prepare(X, y, dom, sample_weight)
        if not len(meta["weighted_rows"]):
            return 4.0 * lb
        beta = np.zeros(design.width)
        beta[: design.n_shared_cols] = pooled.coef_shared_[design.shared_cols]
        A, ya, wa = design.subset(w)
        g = design.diagnostics(A, ya, wa, float(w.sum()), beta, design.penalties(lb, lb))["gradient"]
        g_s = np.abs(g[design.n_shared_cols:])
        return float(max(2.0 * (g_s.max() if g_s.size else 0.0), 4.0 * lb))
