"""Pure HMDR fit job: one model per mechanism, cross-fitted predictions, tidy frames.

No I/O: takes a pandas frame of labelled pairs and returns pandas frames.

Conventions (see method.md §4, §5, §14):

* Ties (``winner == 'tie'``) are dropped before fitting (§14 item 6, "explaining a
  judge/RM"); their count is reported in ``params.n_ties_dropped``.
* Every mechanism gets its own HMDR. Hyperparameters left as None are resolved
  ONCE per mechanism from |D| = its number of domains with decisive pairs, and
  used for all folds and the refit (``params`` frame).
* Row order: each mechanism's pairs are sorted by label_id first, so every result (folds, solver, bootstrap
  resamples) is the same whatever order the input rows come in.
* Cross-fitting: ``n_folds`` folds from :func:`py_models.cv.stratified_folds` (stratified by domain and,
  within a domain, by winner; keyed by label_id, seeded by ``seed`` and the domain name). Each pair gets
  exactly one out-of-fold probability; symmetrisation happens inside ``HMDRClassifier.fit`` (training
  part only). Domains unseen in a training fold, or below ``min_domain_samples``
  there, are predicted with b alone (``used_domain_weights``).
* Scoring (:mod:`py_models.cv`): ``predicted_winner`` is 'a' if prob_a > 0.5, 'b' if < 0.5 and 'tie' if
  exactly 0.5 (z = 0, e.g. all concepts zero); ``is_correct`` is False for a
  'tie' prediction, while ``accuracy`` gives it 0.5 credit (chance level).
* Coefficients and local explanations come from a refit on all decisive pairs
  (local explanations cover decisive pairs only, so their keys match
  ``predictions``; ``weight`` = b_j + s_dj of the pair's domain).
* A mechanism whose rows carry several mechanism_type values gets them joined
  with '|' (upstream should make this impossible).
* ``select=True`` (the default): hyperparameters are chosen per mechanism by
  :class:`~py_models.selection.HMDRClassifierCV` on the same folds as the
  cross-fitting, and the out-of-fold predictions are those of the chosen
  configuration's fold models (selection saw every pair, so they are slightly
  optimistic; ``preflens evaluate`` nests it).
* ``standardize=True`` (measure-rep): each concept column is divided by its
  root-mean-square on the training part (no centring, so the model stays
  antisymmetric); weights then read "per standard deviation of the difference"
  and ``feature_scale`` in the coefficients converts them back.
* ``reference``: a frame of per-pair style differences (index item_id, the
  columns of ``style_baseline.STYLE_FEATURES``). With it, every mechanism also
  gets the length-only and style reference models on the same folds (metrics
  rows with ``variant`` 'length_only' / 'style'), and ``control='length'`` adds
  a length-controlled refit: log word-count ratio as an unpenalised covariate
  (coefficients with ``control`` = 'length', concept LENGTH_CONTROL_CONCEPT).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from py_models._jobs import WorkerPool, map_jobs
from py_models.bootstrap import BOOTSTRAP_COLUMNS, bootstrap_hmdr
from py_models.cv import pair_credit, pair_log_loss, stratified_folds
from py_models.hmdr import HMDRClassifier, default_hyperparameters
from py_models.lift import concept_contributions
from py_models.mart_keys import ALL_DOMAINS, SHARED_DOMAIN
from py_models.selection import MAX_ABS_WEIGHT, PAPER_GRID_DOMAINS, HMDRClassifierCV
from py_models.style_baseline import LENGTH_FEATURE, REFERENCE_MODELS, fit_reference_oof

__all__ = ["fit_mechanisms", "plan_fit", "run_plans", "FitPlan", "FRAME_COLUMNS", "rms_scale"]

REQUIRED_COLUMNS = ("label_id", "item_id", "mechanism", "mechanism_type", "domain", "winner")
PROTOCOL = "cv5_oof"
MODEL_VARIANT = "hmdr"
NO_CONTROL = "none"
LENGTH_CONTROL = "length"
CONTROLS = (NO_CONTROL, LENGTH_CONTROL)
LENGTH_CONTROL_CONCEPT = "Length control (log word-count ratio)"

FRAME_COLUMNS: dict[str, list[str]] = {
    "coefficients": [
        "mechanism",
        "mechanism_type",
        "representation",
        "domain",
        "concept",
        "shared_weight",
        "domain_deviation",
        "total_weight",
        "shared_lift_pct",
        "deviation_lift_pct",
        "global_lift_pct",
        "n_pairs",
        "has_domain_weights",
        "total_weight_ci_low",
        "total_weight_ci_high",
        "global_lift_ci_low",
        "global_lift_ci_high",
        "selection_frequency",
        "n_bootstrap",
        "control",
        "feature_scale",
    ],
    "predictions": [
        "label_id",
        "item_id",
        "mechanism",
        "domain",
        "representation",
        "fold",
        "prob_a",
        "predicted_winner",
        "actual_winner",
        "is_correct",
        "used_domain_weights",
    ],
    "metrics": [
        "mechanism",
        "mechanism_type",
        "representation",
        "variant",
        "domain",
        "protocol",
        "n_pairs",
        "accuracy",
        "log_loss",
    ],
    "local_explanations": [
        "label_id",
        "mechanism",
        "representation",
        "domain",
        "concept",
        "value",
        "weight",
        "contribution",
        "local_lift_pct",
    ],
    "skipped": ["mechanism", "mechanism_type", "representation", "n_pairs", "n_decisive", "reason"],
    "params": [
        "mechanism",
        "mechanism_type",
        "representation",
        "alpha",
        "lambda_shared",
        "lambda_domain",
        "min_domain_samples",
        "n_train",
        "n_ties_dropped",
        "n_domains",
        "n_domains_with_weights",
        "n_nonzero_shared",
        "n_nonzero_domain",
        "n_folds",
        "seed",
        "selection",
        "n_bootstrap",
        "duality_gap",
        "control",
        "pooling",
        "cv_log_loss",
    ],
}


def rms_scale(X: np.ndarray) -> np.ndarray:
    """Per-column root-mean-square (1 where a column is all zero): the measure-rep standardisation."""
    scale = np.sqrt(np.mean(np.square(X), axis=0)) if len(X) else np.ones(X.shape[1])
    return np.where(scale > 0, scale, 1.0)


def _metric_rows(
    base: dict[str, Any], variant: str, y: np.ndarray, prob: np.ndarray, dom: np.ndarray
) -> list[dict[str, Any]]:
    """Overall and per-domain accuracy (0.5 credit at prob 0.5) and log-loss of out-of-fold predictions."""
    y_pos = y == "a"
    credit, loss = pair_credit(y_pos, prob), pair_log_loss(y_pos, prob)
    head = {**base, "variant": variant, "protocol": PROTOCOL}
    rows = [
        {
            **head,
            "domain": ALL_DOMAINS,
            "n_pairs": len(y),
            "accuracy": float(credit.mean()),
            "log_loss": float(loss.mean()),
        }
    ]
    for d in sorted(set(dom.tolist()), key=str):
        s = dom == d
        rows.append(
            {
                **head,
                "domain": d,
                "n_pairs": int(s.sum()),
                "accuracy": float(credit[s].mean()),
                "log_loss": float(loss[s].mean()),
            }
        )
    return rows


def _cross_fit(
    make: Callable[[], HMDRClassifier],
    design_for: Callable[[np.ndarray], np.ndarray],
    y: np.ndarray,
    dom: np.ndarray,
    folds: np.ndarray,
    n_folds: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Out-of-fold P(a wins) and "used its domain's weights" per pair: fold k is predicted by ``make()`` fitted
    on the other folds, on ``design_for(training mask)`` (the design scaled on that training part). A fold
    whose training part has one class only is predicted at chance (0.5)."""
    prob = np.full(len(y), 0.5)
    used = np.zeros(len(y), dtype=bool)
    for k in range(n_folds):
        te = folds == k
        tr = ~te
        if not te.any() or len(set(y[tr].tolist())) < 2:
            continue
        X = design_for(tr)
        m = make().fit(X[tr], y[tr], domains=dom[tr])
        prob[te] = m.predict_proba(X[te], dom[te])[:, 1]
        used[te] = m.uses_domain_weights(dom[te])
    return prob, used


def _reference_oof(
    ref: pd.DataFrame, y: np.ndarray, folds: np.ndarray, memo: dict[bytes, dict[str, np.ndarray]] | None
) -> dict[str, np.ndarray]:
    """Out-of-fold P(a wins) of each reference model (``REFERENCE_MODELS``) on ``folds``.

    They depend on the style differences, labels and folds only, not on the representation: with ``memo`` they
    are fitted once per distinct (differences, labels, folds), keyed by their exact contents, and reused."""
    used = list(dict.fromkeys(c for cs in REFERENCE_MODELS.values() for c in cs))
    values = ref[used].to_numpy(dtype=np.float64)
    key = b"\0".join(
        [
            "\0".join(used).encode(),
            np.ascontiguousarray(values).tobytes(),
            "\0".join(map(str, y.tolist())).encode(),
            np.ascontiguousarray(folds, dtype=np.int64).tobytes(),
        ]
    )
    if memo is not None and key in memo:
        return memo[key]
    out = {variant: fit_reference_oof(ref, y, folds, cols) for variant, cols in REFERENCE_MODELS.items()}
    if memo is not None:
        memo[key] = out
    return out


def _empty(name: str) -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype=object) for c in FRAME_COLUMNS[name]})


def _validate(df: pd.DataFrame, concept_cols: list[str], n_folds: int) -> pd.DataFrame:
    missing = [c for c in (*REQUIRED_COLUMNS, *concept_cols) if c not in df.columns]
    if missing:
        raise ValueError(f"missing columns: {missing}")
    if len(set(concept_cols)) != len(concept_cols) or not concept_cols:
        raise ValueError("concept_cols must be a non-empty list of distinct column names")
    if not isinstance(n_folds, (int, np.integer)) or n_folds < 2:
        raise ValueError("n_folds must be an int >= 2")
    vals = df[concept_cols].apply(pd.to_numeric, errors="raise").to_numpy(dtype=np.float64)
    if not np.all(np.isfinite(vals)):
        bad = [c for c, ok in zip(concept_cols, np.isfinite(vals).all(axis=0)) if not ok]
        raise ValueError(f"non-finite concept values (irrelevant concepts must be 0): {bad}")
    out = df.copy()
    out["winner"] = out["winner"].astype(str).str.strip().str.lower()
    bad_w = sorted(set(out["winner"]) - {"a", "b", "tie"})
    if bad_w:
        raise ValueError(f"winner must be 'a', 'b' or 'tie'; got {bad_w}")
    dup = out.duplicated(["mechanism", "label_id"])
    if dup.any():
        raise ValueError(f"duplicate label_id within a mechanism: {out.loc[dup, 'label_id'].tolist()[:5]}")
    return out


def _coefficients(
    est: HMDRClassifier, names: np.ndarray, n_dec: int, base: dict[str, Any], control: str, scale: np.ndarray
) -> pd.DataFrame:
    """The refit's weights as coefficient rows: ``__shared__`` (b) plus one block per domain (b + s_d)."""
    b = est.coef_shared_
    shared = pd.DataFrame(
        {
            "domain": SHARED_DOMAIN,
            "concept": names,
            "shared_weight": b,
            "domain_deviation": 0.0,
            "total_weight": b,
            "shared_lift_pct": 50.0 * b,
            "deviation_lift_pct": 0.0,
            "global_lift_pct": 50.0 * b,
            "has_domain_weights": False,
        }
    )
    ct = pd.concat([shared, est.coef_table(list(names))], ignore_index=True)
    counts = est.domain_n_samples_
    ct["n_pairs"] = [n_dec if d == SHARED_DOMAIN else counts[d] for d in ct["domain"]]
    for kcol, v in base.items():
        ct[kcol] = v
    ct["control"] = control
    ct["feature_scale"] = np.tile(scale, len(ct) // len(names))
    return ct


def _fit_one(
    mech: str,
    sub: pd.DataFrame,
    *,
    concept_cols: list[str],
    representation: str,
    n_folds: int,
    seed: int,
    min_pairs: int,
    select: bool,
    grid: str,
    rule: str,
    grid_domains: int | None,
    n_bootstrap: int,
    standardize: bool,
    reference: pd.DataFrame | None,
    control: str,
    max_abs_weight: float,
    hmdr_params: dict[str, Any],
    reference_memo: dict[bytes, dict[str, np.ndarray]] | None = None,
) -> dict[str, list[Any]]:
    """Everything fitted for one mechanism: frames (lists of parts) keyed like FRAME_COLUMNS.

    ``reference_memo``: the reference models' out-of-fold probabilities already fitted for this mechanism by
    another representation's fit (same pairs, labels and folds give the same models; see :func:`_reference_oof`).
    """
    names = np.asarray(concept_cols, dtype=object)
    cv_keys = ("shared_mask", "domain_masks", "min_domain_samples", "symmetrize", "tol", "max_iter", "solver")
    out: dict[str, list[Any]] = {k: [] for k in FRAME_COLUMNS}
    mtypes = sub["mechanism_type"].unique().tolist()
    mtype = mtypes[0] if len(mtypes) == 1 else "|".join(sorted(map(str, mtypes)))
    dec = sub[sub["winner"] != "tie"].sort_values("label_id", kind="stable").reset_index(drop=True)
    n_ties = int(len(sub) - len(dec))
    base = {"mechanism": mech, "mechanism_type": mtype, "representation": representation}
    reason = None
    if len(dec) < max(min_pairs, n_folds):
        reason = f"too few decisive pairs: {len(dec)} < {max(min_pairs, n_folds)} ({n_ties} ties dropped)"
    elif dec["winner"].nunique() < 2:
        reason = f"one class only among decisive pairs: winner={dec['winner'].iloc[0]!r}"
    if reason is not None:
        return {"skipped": [{**base, "n_pairs": len(sub), "n_decisive": len(dec), "reason": reason}]}

    X_raw = dec[concept_cols].to_numpy(dtype=np.float64)
    y = dec["winner"].to_numpy(dtype=object)
    dom = dec["domain"].to_numpy(dtype=object)
    n_dom = len(pd.unique(dom))
    folds = stratified_folds(dom, y, n_folds, seed, order=dec["label_id"].to_numpy())
    scale = rms_scale(X_raw) if standardize else np.ones(len(concept_cols))
    X = X_raw / scale
    params = {**default_hyperparameters(n_dom), **{k: v for k, v in hmdr_params.items() if v is not None}}

    def fold_scaled(tr: np.ndarray) -> np.ndarray:
        """X scaled on the training part: the measure-rep standardisation inside a fold."""
        return X_raw / (rms_scale(X_raw[tr]) if standardize else np.ones(len(concept_cols)))

    # ---- model (and its out-of-fold predictions on the cross-fitting folds)
    def selector(**masks: Any) -> HMDRClassifierCV:
        """The model selection with this fit's grid, rule and bound (``masks``: the estimator's masks)."""
        cv_params = {k: v for k, v in params.items() if k in cv_keys}
        return HMDRClassifierCV(
            grid=grid,
            rule=rule,
            n_folds=n_folds,
            seed=seed,
            grid_domains=grid_domains,
            max_abs_weight=max_abs_weight,
            **{**cv_params, **masks},
        )

    if select:
        est = selector()
        est.fit(X, y, domains=dom, folds=folds)
        if standardize:  # fold models must be scaled on their own training part: refit per fold scale
            prob, used = _cross_fit(est.fixed_estimator, fold_scaled, y, dom, folds, n_folds)
        else:
            prob = est.oof_proba_.copy()
            used = est.uses_domain_weights(dom) & np.isfinite(est.selected_config_["pooling"])
        params.update({k: est.selected_config_[k] for k in ("alpha", "lambda_shared", "lambda_domain")})
    else:
        est = HMDRClassifier(**params).fit(X, y, domains=dom)
        prob, used = _cross_fit(lambda: HMDRClassifier(**params), fold_scaled, y, dom, folds, n_folds)
    pred = np.where(prob > 0.5, "a", np.where(prob < 0.5, "b", "tie"))
    out["predictions"].append(
        pd.DataFrame(
            {
                "label_id": dec["label_id"].to_numpy(),
                "item_id": dec["item_id"].to_numpy(),
                "mechanism": mech,
                "domain": dom,
                "representation": representation,
                "fold": folds,
                "prob_a": prob,
                "predicted_winner": pred,
                "actual_winner": y,
                "is_correct": pred == y,
                "used_domain_weights": used,
            }
        )
    )
    mrows = _metric_rows(base, MODEL_VARIANT, y, prob, dom)

    # ---- reference models on the same folds: length only and the 15-feature style baseline
    ref = None
    if reference is not None:
        ref = reference.reindex(dec["item_id"].to_numpy())
        if ref.isna().any().any():
            raise ValueError(f"reference style differences missing for some items of {mech!r}")
        for variant, prob_ref in _reference_oof(ref, y, folds, reference_memo).items():
            mrows += _metric_rows(base, variant, y, prob_ref, dom)
    out["metrics"].append(pd.DataFrame(mrows))

    # ---- full refit (done above) for coefficients and local explanations
    ct = _coefficients(est, names, len(dec), base, NO_CONTROL, scale)
    if n_bootstrap > 0:
        boot = bootstrap_hmdr(est, X, y, dom, concept_cols, n_bootstrap=n_bootstrap, seed=seed)
        ct = ct.merge(boot, on=["domain", "concept"], how="left")
    else:
        for c in BOOTSTRAP_COLUMNS[2:]:
            ct[c] = np.nan
    out["coefficients"].append(ct)

    # ---- length-controlled refit: log word-count ratio as an unpenalised shared covariate
    if control == LENGTH_CONTROL and ref is not None:
        length = ref[LENGTH_FEATURE].to_numpy(dtype=np.float64)
        ls = rms_scale(length[:, None])
        Xc = np.column_stack([X, length / ls[0]])
        free = np.zeros(Xc.shape[1], dtype=bool)
        free[-1] = True
        cparams = {k: v for k, v in params.items() if k in cv_keys}
        if select:
            cest = selector(**{**_extend_masks(cparams), "unpenalized_mask": free})
            cest.fit(Xc, y, domains=dom, folds=folds)
            cprob = cest.oof_proba_
        else:
            cest = HMDRClassifier(**{**_extend_masks(params), "unpenalized_mask": free}).fit(Xc, y, domains=dom)
            cprob, _ = _cross_fit(cest.fixed_estimator, lambda tr: Xc, y, dom, folds, n_folds)
        cnames = np.append(names, LENGTH_CONTROL_CONCEPT).astype(object)
        cct = _coefficients(cest, cnames, len(dec), base, LENGTH_CONTROL, np.append(scale, ls))
        for c in BOOTSTRAP_COLUMNS[2:]:
            cct[c] = np.nan
        out["coefficients"].append(cct)
        out["metrics"].append(pd.DataFrame(_metric_rows(base, f"{MODEL_VARIANT}_length_control", y, cprob, dom)))

    W = est.effective_weights(dom)
    le = concept_contributions(X, W, concept_cols, row_ids=np.arange(len(dec)))
    ridx = le["row_id"].to_numpy()
    le.insert(0, "label_id", dec["label_id"].to_numpy()[ridx])
    le["mechanism"] = mech
    le["representation"] = representation
    le["domain"] = dom[ridx]
    out["local_explanations"].append(le)

    cfg = getattr(est, "selected_config_", {})
    out["params"].append(
        {
            **base,
            "alpha": est.alpha_,
            "lambda_shared": est.lambda_shared_,
            "lambda_domain": est.lambda_domain_,
            "min_domain_samples": est.min_domain_samples,
            "n_train": len(dec),
            "n_ties_dropped": n_ties,
            "n_domains": n_dom,
            "n_domains_with_weights": len(est.domains_with_weights_),
            "n_nonzero_shared": int(np.count_nonzero(est.coef_shared_)),
            "n_nonzero_domain": int(np.count_nonzero(est.coef_domain_)),
            "n_folds": n_folds,
            "seed": seed,
            "selection": f"cv_{grid}_{rule}" if select else "fixed",
            "n_bootstrap": int(n_bootstrap),
            "duality_gap": est.duality_gap_,
            "control": control,
            "pooling": float(cfg.get("pooling", est.lambda_domain_ / est.lambda_shared_)),
            "cv_log_loss": float(est.cv_results_.loc[est.cv_results_["chosen"], "cv_log_loss"].iloc[0])
            if select
            else np.nan,
        }
    )
    return out


@dataclass(frozen=True)
class FitPlan:
    """One representation's fit, validated and ready to run (:func:`plan_fit`, :func:`run_plans`)."""

    representation: str
    data: pd.DataFrame
    settings: dict[str, Any]

    @property
    def mechanisms(self) -> list[str]:
        return sorted(self.data["mechanism"].unique().tolist(), key=str)


def plan_fit(
    df: pd.DataFrame,
    concept_cols: list[str],
    *,
    representation: str,
    n_folds: int = 5,
    seed: int = 0,
    min_pairs: int = 20,
    select: bool = True,
    grid: str = "pooling",
    rule: str = "log_loss_within_accuracy_se",
    grid_domains: int | None = PAPER_GRID_DOMAINS,
    n_bootstrap: int = 0,
    standardize: bool = False,
    reference: pd.DataFrame | None = None,
    control: str = NO_CONTROL,
    max_abs_weight: float = MAX_ABS_WEIGHT,
    **hmdr_params: Any,
) -> FitPlan:
    """Check the inputs of one representation's fit (the arguments of :func:`fit_mechanisms`, which see) and
    return its plan; errors are raised here, before anything is fitted."""
    concept_cols = list(concept_cols)
    data = _validate(df, concept_cols, n_folds)
    if control not in CONTROLS:
        raise ValueError(f"control must be one of {CONTROLS}, got {control!r}")
    if control != NO_CONTROL and reference is None:
        raise ValueError("control='length' needs the reference style differences (reference=...)")
    if reference is not None:
        missing = sorted({c for cols in REFERENCE_MODELS.values() for c in cols} - set(reference.columns))
        if missing:
            raise ValueError(f"reference frame lacks columns {missing}")
    HMDRClassifier(**hmdr_params)  # fail fast on unknown parameter names
    settings = {
        "concept_cols": concept_cols,
        "representation": representation,
        "n_folds": n_folds,
        "seed": seed,
        "min_pairs": min_pairs,
        "select": select,
        "grid": grid,
        "rule": rule,
        "grid_domains": grid_domains,
        "n_bootstrap": n_bootstrap,
        "standardize": standardize,
        "reference": reference,
        "control": control,
        "max_abs_weight": max_abs_weight,
        "hmdr_params": hmdr_params,
    }
    return FitPlan(representation, data, settings)


def _fit_mechanism(
    mech: str, parts: list[tuple[dict[str, Any], pd.DataFrame | None]]
) -> list[dict[str, list[Any]] | None]:
    """One mechanism in every plan (``parts``: each plan's settings and this mechanism's rows, None where the
    plan lacks it), in one call so that the reference models are fitted once for all of them."""
    memo: dict[bytes, dict[str, np.ndarray]] = {}
    return [None if sub is None else _fit_one(mech, sub, **settings, reference_memo=memo) for settings, sub in parts]


def run_plans(plans: list[FitPlan], n_jobs: int = 1, pool: WorkerPool | None = None) -> list[dict[str, pd.DataFrame]]:
    """Fit every plan: one call per mechanism covering all plans, on ``n_jobs`` processes (or ``pool``), the
    largest mechanisms first. Returns each plan's frames (FRAME_COLUMNS), in the order of ``plans``; results do
    not depend on ``n_jobs``."""
    mechs = sorted({m for plan in plans for m in plan.mechanisms}, key=str)
    by_plan = [{m: plan.data[plan.data["mechanism"] == m] for m in plan.mechanisms} for plan in plans]
    tasks = [(m, [(plan.settings, groups.get(m)) for plan, groups in zip(plans, by_plan)]) for m in mechs]
    costs = [sum(len(sub) for _, sub in parts if sub is not None) for _, parts in tasks]
    done = map_jobs(_fit_mechanism, tasks, n_jobs, costs=costs, pool=pool)
    return [_assemble([p for parts in done if (p := parts[k]) is not None]) for k in range(len(plans))]


def _assemble(parts: list[dict[str, list[Any]]]) -> dict[str, pd.DataFrame]:
    """One plan's frames from its mechanisms' parts (in mechanism order)."""
    out: dict[str, list[Any]] = {k: [] for k in FRAME_COLUMNS}
    for part in parts:
        for k, v in part.items():
            out[k].extend(v)
    skipped, params_rows = out["skipped"], out["params"]
    result: dict[str, pd.DataFrame] = {}
    for name in ("coefficients", "predictions", "metrics", "local_explanations"):
        frames = out[name]
        result[name] = pd.concat(frames, ignore_index=True)[FRAME_COLUMNS[name]] if frames else _empty(name)
    result["skipped"] = pd.DataFrame(skipped, columns=FRAME_COLUMNS["skipped"]) if skipped else _empty("skipped")
    result["params"] = pd.DataFrame(params_rows, columns=FRAME_COLUMNS["params"]) if params_rows else _empty("params")
    return result


def fit_mechanisms(
    df: pd.DataFrame,
    concept_cols: list[str],
    *,
    representation: str,
    n_jobs: int = 1,
    **options: Any,
) -> dict[str, pd.DataFrame]:
    """Fit one HMDR per mechanism; return coefficients, predictions, metrics,
    local_explanations, skipped and params frames (see module docstring).

    ``options`` are :func:`plan_fit`'s keywords (defaults there): ``n_folds``, ``seed``, ``min_pairs``,
    ``select``, ``grid``, ``rule``, ``grid_domains``, ``n_bootstrap``, ``standardize``, ``reference``,
    ``control``, ``max_abs_weight``; any other keyword is passed to :class:`HMDRClassifier` (alpha,
    lambda_shared, lambda_domain, shared_mask, domain_masks, min_domain_samples, symmetrize, tol, max_iter,
    solver), and an unknown one is a ``TypeError`` before anything is fitted. Mechanisms with fewer than
    ``min_pairs`` decisive pairs or a single winning side are reported in ``skipped``.

    ``select=True``: alpha and the lambdas are chosen per mechanism by :class:`HMDRClassifierCV` (``grid``
    'pooling' or 'paper', ``rule``; |D| of the paper grid = ``grid_domains``) on the cross-fitting folds; the
    fixed alpha / lambda_* are then ignored. ``select=False`` fits the fixed
    hyperparameters (None -> the paper's defaults for the mechanism's |D|).
    ``n_bootstrap > 0``: within-domain bootstrap CIs and selection frequencies on the refit's configuration
    (``bootstrap.bootstrap_hmdr``), merged into ``coefficients``.
    ``standardize``, ``reference`` and ``control``: see the module docstring. ``n_jobs`` > 1 fits mechanisms in
    parallel processes (:mod:`py_models._jobs`); results do not depend on it. ``max_abs_weight``: the
    selection's weight bound (the dbt model passes max_abs_lift_pct / 50, the publication bound). Several
    representations at once, sharing the reference models and the processes: :func:`plan_fit` and
    :func:`run_plans`.
    """
    plan = plan_fit(df, concept_cols, representation=representation, **options)
    return run_plans([plan], n_jobs)[0]


def _extend_masks(params: dict[str, Any]) -> dict[str, Any]:
    """Masks of p features extended by one (the control covariate: shared, no domain deviation)."""
    out = dict(params)
    if out.get("shared_mask") is not None:
        out["shared_mask"] = np.append(np.asarray(out["shared_mask"], dtype=bool), True)
    if out.get("domain_masks"):
        out["domain_masks"] = {d: np.append(np.asarray(m, dtype=bool), False) for d, m in out["domain_masks"].items()}
    return out
