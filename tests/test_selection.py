"""HMDR model selection (issue 9): a grid that can choose full pooling, a stable rule, recorded choices."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from py_models.baselines import SharedOnlyClassifier, SpecificOnlyClassifier
from py_models.cv import score, stratified_folds
from py_models.fit_job import LENGTH_CONTROL_CONCEPT, fit_mechanisms, rms_scale
from py_models.hmdr import HMDRClassifier
from py_models.selection import DomainGridSearchCV, HMDRClassifierCV, choose_config, paper_grid
from py_models.style_baseline import STYLE_FEATURES
from py_models.synthetic import make_planted


def _planted(n_dev: int, seed: int = 1):
    return make_planted(
        4000, n_concepts=30, n_shared=30, n_domains=4, n_active_shared=8, n_dev_per_domain=n_dev, density=0.4, seed=seed
    )


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_selection_reaches_full_pooling_without_planted_deviations(seed: int) -> None:
    D = _planted(0, seed=seed)
    # the one-SE rule on accuracy: exactly the pooled model (every s_d = 0, lambda_domain / lambda_shared = inf)
    m = HMDRClassifierCV(rule="one_se_accuracy").fit(D.X, D.y, domains=D.domains)
    assert np.isinf(m.selected_config_["pooling"])
    assert np.count_nonzero(m.coef_domain_) == 0
    assert m.duality_gap_ < 1e-4
    assert set(m.cv_results_["stage"]) == {"pooled", "deviations"} and m.cv_results_["chosen"].sum() == 1
    active = D.b != 0
    assert (np.sign(m.coef_shared_[active]) == np.sign(D.b[active])).mean() >= 0.9
    # the default rule can pick a deviation configuration on noise, but its deviations stay sparse and small next
    # to the planted shared weights (0.3 to 1.2)
    d = HMDRClassifierCV().fit(D.X, D.y, domains=D.domains)
    assert np.count_nonzero(d.coef_domain_) <= 0.1 * d.coef_domain_.size
    assert np.abs(d.coef_domain_).max(initial=0.0) < 0.25 < np.abs(D.b[D.b != 0]).min()


def test_selection_keeps_planted_deviations() -> None:
    D = _planted(6)
    m = HMDRClassifierCV().fit(D.X, D.y, domains=D.domains)
    assert np.isfinite(m.selected_config_["pooling"])
    # most planted deviations are found with the right sign
    hit = (np.sign(m.coef_domain_) == np.sign(D.S)) & (D.S != 0)
    assert hit.sum() >= 0.75 * np.count_nonzero(D.S)
    pooled = m.cv_results_[m.cv_results_["stage"] == "pooled"]["cv_log_loss"].min()
    assert m.cv_results_.loc[m.cv_results_["chosen"], "cv_log_loss"].iloc[0] < pooled - 0.02


def test_paper_grid_is_kept_for_reproduction() -> None:
    D = _planted(6)
    m = HMDRClassifierCV(grid="paper", rule="max_accuracy").fit(D.X, D.y, domains=D.domains)
    assert len(m.cv_results_) == 9
    chosen = {"lambda_shared": m.lambda_shared_, "lambda_domain": m.lambda_domain_}
    assert chosen in paper_grid(8)
    assert m.alpha_ == pytest.approx(1 / 4)


def test_one_se_rule_prefers_pooling_within_noise() -> None:
    rng = np.random.default_rng(0)
    base = 0.6 + rng.normal(0, 0.3, size=400)  # per-pair out-of-fold log-losses of the pooled configuration

    def table_for(losses: np.ndarray) -> pd.DataFrame:
        return pd.DataFrame(
            {
                "pooling": [np.inf, 1.0, 4.0],
                "alpha": [0.25, 0.25, 1.0],
                "cv_log_loss": losses.mean(axis=1),
                "cv_accuracy": [0.6, 0.6, 0.6],
            }
        )

    # config 2 is better than the pooled one on every pair: chosen by both rules
    clear = np.vstack([base, base - 0.002 + rng.normal(0, 0.05, 400), base - 0.010])
    assert choose_config(table_for(clear), clear, "min_log_loss") == 2
    assert choose_config(table_for(clear), clear, "one_se_pooling") == 2
    # config 2 is better on average by less than one paired SE: the most pooled configuration wins
    noisy = np.vstack([base, base + rng.normal(0, 0.05, 400), base - 0.001 + rng.normal(0, 0.05, 400)])
    t = table_for(noisy)
    assert choose_config(t, noisy, "min_log_loss") == int(np.argmin(t["cv_log_loss"]))
    assert choose_config(t, noisy, "one_se_pooling") == 0


def test_unpenalised_covariate_is_not_shrunk() -> None:
    from scipy.optimize import minimize

    rng = np.random.default_rng(0)
    X = rng.normal(size=(400, 4))
    z = X @ np.array([1.5, 0.4, 0.0, -0.3])
    y = np.where(rng.random(400) < 1 / (1 + np.exp(-z)), "a", "b")
    free = np.array([True, False, False, False])
    lam = 0.05
    m = HMDRClassifier(
        alpha=0.0, lambda_shared=lam, lambda_domain=lam, unpenalized_mask=free, min_domain_samples=10**9
    ).fit(X, y)  # one domain without deviations: a plain L1 LR
    y_pm = np.where(y == "a", 1.0, -1.0)

    def f(b: np.ndarray) -> float:
        return float(np.mean(np.logaddexp(0, -y_pm * (X @ b))) + lam * np.abs(b[1:]).sum())

    ref = minimize(f, np.zeros(4), method="Powell", options={"xtol": 1e-10, "ftol": 1e-13, "maxiter": 100000})
    assert f(m.coef_shared_) <= ref.fun + 1e-6
    np.testing.assert_allclose(m.coef_shared_[0], ref.x[0], atol=1e-3)


def _frame(n: int = 600, seed: int = 0) -> tuple[pd.DataFrame, list[str], pd.DataFrame]:
    """Two mechanisms on raw measure-like differences of very different scales; one follows concept 'big'."""
    rng = np.random.default_rng(seed)
    big = rng.normal(0, 50, n)  # e.g. a readability difference, large raw units
    small = rng.normal(0, 0.1, n)  # e.g. an overlap share difference
    length = rng.normal(0, 1, n)
    z = 0.06 * big + 1.0 * length
    rows = []
    for mech in ("judge:j", "human:h"):
        win = np.where(rng.random(n) < 1 / (1 + np.exp(-(z if mech == "judge:j" else 0 * z))), "a", "b")
        rows.append(
            pd.DataFrame(
                {
                    "label_id": [f"{mech}{i}" for i in range(n)],
                    "item_id": [f"i{i}" for i in range(n)],
                    "mechanism": mech,
                    "mechanism_type": mech.split(":")[0],
                    "domain": np.where(np.arange(n) % 2, "x", "y"),
                    "winner": win,
                    "big": big,
                    "small": small,
                }
            )
        )
    ref = pd.DataFrame(0.0, index=[f"i{i}" for i in range(n)], columns=list(STYLE_FEATURES))
    ref["log_words"] = length
    return pd.concat(rows, ignore_index=True), ["big", "small"], ref


def test_measure_scale_round_trips_and_baselines_share_folds() -> None:
    df, cols, ref = _frame()
    out = fit_mechanisms(df, cols, representation="measure", standardize=True, reference=ref, control="length")
    co = out["coefficients"]
    j = co[(co.mechanism == "judge:j") & (co.control == "none") & (co.domain == "__shared__")].set_index("concept")
    raw = df[df.mechanism == "judge:j"][cols].to_numpy()
    np.testing.assert_allclose(j.loc[cols, "feature_scale"].to_numpy(), rms_scale(raw))
    # a weight per SD of the difference, back to raw units: total_weight / feature_scale
    w_raw = j.loc["big", "total_weight"] / j.loc["big", "feature_scale"]
    assert w_raw > 0.02  # planted 0.06 per raw unit, shrunk by the L1 penalty and the omitted length term
    # local explanations are in the standardised units the weights apply to
    le = out["local_explanations"]
    sub = le[(le.mechanism == "judge:j") & (le.concept == "big")]
    x0 = df.set_index("label_id").loc[sub.label_id, "big"].to_numpy()
    np.testing.assert_allclose(sub.value.to_numpy(), x0 / j.loc["big", "feature_scale"])
    # reference models and the controlled refit are scored per mechanism on the same pairs
    m = out["metrics"]
    allm = m[m.domain == "__all__"].set_index(["mechanism", "variant"])
    for mech in ("judge:j", "human:h"):
        assert {v for mm, v in allm.index if mm == mech} == {"hmdr", "length_only", "style", "hmdr_length_control"}
        assert allm.loc[(mech, "hmdr"), "n_pairs"] == allm.loc[(mech, "style"), "n_pairs"]
    assert allm.loc[("judge:j", "hmdr_length_control"), "accuracy"] > allm.loc[("judge:j", "hmdr"), "accuracy"]
    assert allm.loc[("human:h", "hmdr"), "accuracy"] < 0.6  # random labels stay near chance
    ctrl = co[(co.mechanism == "judge:j") & (co.control == "length") & (co.domain == "__shared__")].set_index("concept")
    assert ctrl.loc[LENGTH_CONTROL_CONCEPT, "total_weight"] > 0.5  # length: unpenalised, planted 1.0 per SD
    params = out["params"].set_index("mechanism")
    assert params.loc["judge:j", "selection"] == "cv_pooling_log_loss_within_accuracy_se"
    assert np.isfinite(params.loc["judge:j", "cv_log_loss"])


def test_one_fold_splitter_is_stratified_and_keyed() -> None:
    rng = np.random.default_rng(3)
    dom = rng.choice(["x", "y", "z"], size=301, p=[0.5, 0.3, 0.2]).astype(object)
    y = rng.choice(["a", "b"], size=301)
    ids = np.array([f"l{i:03d}" for i in range(301)])
    folds = stratified_folds(dom, y, 5, 0, order=ids)
    for d in "xyz":
        for label in "ab":
            sizes = np.bincount(folds[(dom == d) & (y == label)], minlength=5)
            assert sizes.max() - sizes.min() <= 1
    # keyed by ids: the same pair gets the same fold whatever the row order
    perm = rng.permutation(301)
    np.testing.assert_array_equal(stratified_folds(dom[perm], y[perm], 5, 0, order=ids[perm]), folds[perm])
    assert (stratified_folds(dom, y, 5, 1, order=ids) != folds).any()
    # a new domain does not reshuffle the others (each domain's order is seeded by its name): the deal only
    # starts at another fold
    extra = np.append(dom, "w"), np.append(y, "a"), np.append(ids, "l999")
    grown = stratified_folds(*extra[:2], 5, 0, order=extra[2])[:-1]
    for d in "xyz":
        rows = dom == d
        shift = (grown[rows][0] - folds[rows][0]) % 5
        np.testing.assert_array_equal(grown[rows], (folds[rows] + shift) % 5)


def test_grid_search_of_a_baseline_picks_the_best_fold_accuracy_and_refits() -> None:
    D = _planted(3)
    X, y, dom = D.X.toarray(), D.y, D.domains
    grid = [{"C": 0.01}, {"C": 0.5}, {"C": 5.0}]
    folds = stratified_folds(dom, y, 4, 0)
    m = DomainGridSearchCV(SharedOnlyClassifier(), grid, n_folds=4).fit(X, y, domains=dom, folds=folds)
    # the same table by hand: every configuration on every fold, the one scorer, averaged over folds
    by_hand = []
    for g in grid:
        accs = []
        for k in range(4):
            te = folds == k
            f = SharedOnlyClassifier(**g).fit(X[~te], y[~te], domains=dom[~te])
            accs.append(score(y[te] == "a", f.predict_proba(X[te])[:, 1])[0])
        by_hand.append(np.mean(accs))
    np.testing.assert_allclose(m.cv_results_["cv_fold_accuracy"], by_hand)
    assert m.selected_config_ == grid[int(np.argmax(by_hand))] and m.cv_results_["chosen"].sum() == 1
    refit = SharedOnlyClassifier(**m.selected_config_).fit(X, y, domains=dom)
    np.testing.assert_array_equal(m.predict_proba(X, dom), refit.predict_proba(X, dom))
    # a domain-aware baseline: scoring needs domains, as for the model it wraps
    spec = DomainGridSearchCV(SpecificOnlyClassifier(), grid[:2], n_folds=2).fit(X, y, domains=dom)
    with pytest.raises(ValueError, match="needs domains"):
        spec.score(X, y)
    assert spec.score(X, y, domains=dom) == np.mean(spec.predict(X, dom) == y)


@pytest.mark.parametrize(
    "bad",
    [
        {"rule": "best"},
        {"grid": "wide"},
        {"n_folds": 1},
        {"max_abs_weight": 0.0},
        {"alpha": -1.0},
        {"tol": 0.0},
        {"min_domain_samples": -1},
    ],
)
def test_parameters_are_checked_in_one_place(bad: dict) -> None:
    D = _planted(0)
    with pytest.raises(ValueError, match=f"'{next(iter(bad))}' parameter of HMDRClassifierCV"):
        HMDRClassifierCV(**bad).fit(D.X, D.y, domains=D.domains)
