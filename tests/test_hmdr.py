"""The HMDR estimator family (py_models: hmdr, selection, baselines, bootstrap, lift, fit_job), on planted data.

Recovery, the certified optimum (KKT, duality gap, an independent reference solver), symmetrisation, sample
weights, the scikit-learn API (``check_estimator`` with documented expected failures, ``score`` that requires
domains), selection, bootstrap, baselines, explanation maths and the fit job. Seeded synthetic data only.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.optimize import minimize
from scipy.stats import spearmanr
from sklearn.base import clone, is_classifier
from sklearn.linear_model import LogisticRegression
from sklearn.utils.estimator_checks import parametrize_with_checks

from py_models import _cd
from py_models._augment import hmdr_objective, rowwise_dot, sigmoid
from py_models._cd import GAP_FACTOR, DomainDesign, threads
from py_models.baselines import (
    FlatPooledClassifier,
    PeerElasticNetClassifier,
    SharedOnlyClassifier,
    SpecificOnlyClassifier,
    dirty_model,
)
from py_models.bootstrap import BOOTSTRAP_COLUMNS, bootstrap_hmdr
from py_models.fit_job import FRAME_COLUMNS, fit_mechanisms
from py_models.fit_settings import FitSettings
from py_models.hmdr import SOLVERS, HMDRClassifier, default_hyperparameters
from py_models.lift import concept_contributions, global_lift_pct, local_lift
from py_models.selection import DomainGridSearchCV, HMDRClassifierCV, paper_grid
from py_models.style_baseline import ReferenceLogit
from py_models.synthetic import make_planted

P = 20
B_TRUE = np.zeros(P)
B_TRUE[[0, 1, 2, 3, 4]] = [2.0, -1.5, 1.0, -0.6, 0.3]
# planted deviations: d1 gets +1.5 on a non-shared feature 10, d2 gets -1.2 on feature 0
S_TRUE = {"d1": {10: 1.5}, "d2": {0: -1.2}}
DOMAIN_SIZES = {"d0": 900, "d1": 900, "d2": 900, "d3": 900, "tiny": 6}
# Recovery tests use a light penalty: the paper-style defaults (1/(2|D|), 1/|D|^2) shrink
# strongly at small |D| (|D| = 2 gives lambda_shared = 0.25, i.e. an all-zero model here).
# lambda_shared < (#domains) * lambda_domain so that a common effect is cheaper in b.
FIT = {"alpha": 0.25, "lambda_shared": 0.01, "lambda_domain": 0.005}

SIZES = {"d0": 1500, "d1": 1500, "d2": 1500, "d3": 1500, "small": 15}


def make_data(seed: int = 0, sizes: dict[str, int] | None = None, zero_frac: float = 0.3):
    rng = np.random.default_rng(seed)
    sizes = DOMAIN_SIZES if sizes is None else sizes
    Xs, ds = [], []
    for d, n in sizes.items():
        X = rng.integers(-1, 2, size=(n, P)).astype(float)
        X[rng.random((n, P)) < zero_frac] = 0.0
        Xs.append(X)
        ds += [d] * n
    X = np.vstack(Xs)
    dom = np.asarray(ds, dtype=object)
    z = X @ B_TRUE
    for d, dev in S_TRUE.items():
        m = dom == d
        for j, v in dev.items():
            z[m] += v * X[m, j]
    y = np.where(rng.random(len(z)) < sigmoid(z), "a", "b").astype(object)
    return X, y, dom


@pytest.fixture(scope="module")
def planted():
    X, y, dom = make_data(0)
    model = HMDRClassifier(**FIT).fit(X, y, domains=dom)
    return X, y, dom, model


@pytest.fixture(scope="module")
def planted_sparse():
    D = make_planted(
        0,
        n_concepts=60,
        n_shared=20,
        n_domains=5,
        density=0.3,
        n_active_shared=8,
        n_dev_per_domain=2,
        domain_sizes=SIZES,
        seed=3,
    )
    m = HMDRClassifier(
        alpha=0.25,
        lambda_shared=0.004,
        lambda_domain=0.002,
        shared_mask=D.shared_mask,
        domain_masks=D.domain_masks,
        min_domain_samples=20,
        tol=1e-8,
    ).fit(D.X, D.y, domains=D.domains)
    return D, m


# ------------------------------------------------------------------ recovery
def test_shared_signs_and_ranking(planted):
    X, y, dom, m = planted
    b = m.coef_shared_
    strong = [0, 1, 2, 3]  # 0.3 may be legitimately shrunk to 0
    assert np.all(np.sign(b[strong]) == np.sign(B_TRUE[strong])), b[:5]
    rho = spearmanr(np.abs(b[:5]), np.abs(B_TRUE[:5])).statistic
    assert rho >= 0.9, (rho, b[:5])
    top3 = set(np.argsort(-np.abs(b))[:3].tolist())
    assert top3 == {0, 1, 2}


def test_planted_domain_deviation_recovered(planted):
    _, _, _, m = planted
    idx = {d: i for i, d in enumerate(m.domains_.tolist())}
    S = m.coef_domain_
    assert S[idx["d1"], 10] > 0.5
    assert S[idx["d2"], 0] < -0.4
    # the d1-specific signal is not leaking into the other domains' deviations or b
    for d in ("d0", "d2", "d3"):
        assert abs(S[idx[d], 10]) < 0.25
    assert abs(m.coef_shared_[10]) < 0.25
    total = m.coef_table().set_index(["domain", "concept"])["total_weight"]
    assert total[("d1", "x10")] > 0.6 and total[("d2", "x0")] < total[("d0", "x0")]


def test_exact_zeros(planted):
    _, _, _, m = planted
    noise = np.setdiff1d(np.arange(P), [0, 1, 2, 3, 4, 10])
    assert np.sum(m.coef_shared_[noise] == 0.0) >= len(noise) - 3
    assert np.mean(m.coef_domain_ == 0.0) > 0.7
    assert np.count_nonzero(m.coef_shared_) < P


def test_small_domain_has_no_domain_weights(planted):
    X, _, dom, m = planted
    assert "tiny" in m.domains_.tolist()
    assert "tiny" not in m.domains_with_weights_.tolist()
    assert set(m.domains_with_weights_.tolist()) == {"d0", "d1", "d2", "d3"}
    i = m.domains_.tolist().index("tiny")
    assert np.all(m.coef_domain_[i] == 0.0)
    assert m.domain_n_samples_["tiny"] == 6
    tiny = dom == "tiny"
    assert not m.uses_domain_weights(dom[tiny]).any() and m.uses_domain_weights(dom[~tiny]).all()
    np.testing.assert_allclose(m.decision_function(X[tiny], dom[tiny]), X[tiny] @ m.coef_shared_)
    ct = m.coef_table()
    assert set(ct["domain"]) == set(m.domains_.tolist())
    assert len(ct) == len(m.domains_) * P
    assert not ct.loc[ct.domain == "tiny", "has_domain_weights"].any()
    np.testing.assert_allclose(ct["global_lift_pct"], 50 * ct["total_weight"])
    np.testing.assert_allclose(ct["total_weight"], ct["shared_weight"] + ct["domain_deviation"])


def test_unseen_domain_uses_shared_and_beats_chance(planted):
    _, _, _, m = planted
    rng = np.random.default_rng(7)
    Xn = rng.integers(-1, 2, size=(1000, P)).astype(float)
    yn = np.where(rng.random(1000) < sigmoid(Xn @ B_TRUE), "a", "b")
    dn = np.full(1000, "never_seen", dtype=object)
    p_new = m.predict_proba(Xn, dn)[:, 1]
    np.testing.assert_allclose(p_new, m.predict_proba(Xn)[:, 1])
    np.testing.assert_allclose(p_new, sigmoid(Xn @ m.coef_shared_))
    assert not m.uses_domain_weights(dn).any()
    acc = np.mean(m.predict(Xn, dn) == yn)
    assert acc > 0.75, acc  # Bayes rate here is ~0.8; chance is 0.5


def _f1(true: np.ndarray, est: np.ndarray) -> float:
    t, e = true != 0, est != 0
    tp = np.sum(t & e)
    return 2 * tp / max(t.sum() + e.sum(), 1)


def test_support_and_sign_recovery(planted_sparse):
    D, m = planted_sparse
    assert _f1(D.b, m.coef_shared_) >= 0.75, (D.b, m.coef_shared_)
    both = (D.b != 0) & (m.coef_shared_ != 0)
    assert np.all(np.sign(D.b[both]) == np.sign(m.coef_shared_[both]))
    # domain deviations of the large domains: total weights b + s_d recover the planted ones' signs
    big = [k for k, d in enumerate(D.domain_names) if d != "small"]
    true_tot = D.b + D.S[big]
    est_tot = m.coef_shared_ + m.coef_domain_[big]
    # exact-zero support of b + s_d picks up tiny noise weights at this light penalty: F1 on |w| > 0.1
    assert _f1(true_tot.ravel(), np.where(np.abs(est_tot) > 0.1, est_tot, 0).ravel()) >= 0.7
    strong = np.abs(true_tot) > 0.5
    assert np.mean(np.sign(est_tot[strong]) == np.sign(true_tot[strong])) >= 0.95
    # masks: b zero outside shared, s_d zero outside shared ∪ specific(d); tiny domain: b alone
    assert np.all(m.coef_shared_[~D.shared_mask] == 0)
    for k, d in enumerate(m.domains_):
        assert np.all(m.coef_domain_[k, ~D.domain_masks[d]] == 0)
    assert "small" not in m.domains_with_weights_.tolist()


def test_ood_with_b_alone_beats_chance(planted_sparse):
    D, m = planted_sparse
    rng = np.random.default_rng(5)
    Xn = rng.integers(-1, 2, size=(3000, D.X.shape[1])).astype(float) * D.shared_mask
    yn = np.where(rng.random(3000) < sigmoid(Xn @ D.b), "a", "b")
    dn = np.full(3000, "unseen", dtype=object)
    assert not m.uses_domain_weights(dn).any()
    np.testing.assert_allclose(m.decision_function(Xn, dn), Xn @ m.coef_shared_)
    acc = np.mean(m.predict(Xn, dn) == yn)
    bayes = np.mean((Xn @ D.b > 0) == (yn == "a"))
    assert acc > 0.6 and acc > bayes - 0.05, (acc, bayes)


# ------------------------------------------------------------- invariances
def test_symmetrisation_invariance():
    X, y, dom = make_data(1, sizes={"d0": 300, "d1": 300, "d2": 300})
    flip = np.where(y == "a", "b", "a")
    m1 = HMDRClassifier(**FIT, tol=1e-8).fit(X, y, domains=dom)
    m2 = HMDRClassifier(**FIT, tol=1e-8).fit(-X, flip, domains=dom)
    assert np.count_nonzero(m1.coef_domain_) > 0 and np.count_nonzero(m1.coef_shared_) > 2
    np.testing.assert_allclose(m1.coef_shared_, m2.coef_shared_, atol=1e-6)
    np.testing.assert_allclose(m1.coef_domain_, m2.coef_domain_, atol=1e-6)
    # no intercept + mean loss: the mirror rows leave the objective, hence the optimum, unchanged
    m3 = HMDRClassifier(**FIT, tol=1e-8, symmetrize=False).fit(X, y, domains=dom)
    np.testing.assert_allclose(m1.coef_shared_, m3.coef_shared_, atol=1e-5)
    np.testing.assert_allclose(m1.coef_domain_, m3.coef_domain_, atol=1e-5)
    # symmetric model: p(-x) = 1 - p(x)
    np.testing.assert_allclose(m1.predict_proba(-X, dom)[:, 1], 1 - m1.predict_proba(X, dom)[:, 1])


@pytest.mark.parametrize("labels", [("a", "b"), (1, 0), (1, -1), (True, False)], ids=["ab", "01", "pm1", "bool"])
def test_label_encodings_agree(labels):
    X, y, dom = make_data(2, sizes={"d0": 200, "d1": 200})
    pos, neg = labels
    y_enc = np.where(y == "a", pos, neg)
    if isinstance(pos, str):
        y_enc = y_enc.astype(object)
    ref = HMDRClassifier(**FIT).fit(X, y, domains=dom)
    m = HMDRClassifier(**FIT).fit(X, y_enc, domains=dom)
    assert m.classes_[1] == pos and m.classes_[0] == neg
    np.testing.assert_allclose(m.coef_shared_, ref.coef_shared_, atol=1e-8)
    np.testing.assert_allclose(m.coef_shared_[0], ref.coef_shared_[0])
    assert m.coef_shared_[0] > 0  # positive weight = favours "a wins"
    assert np.all((m.predict(X, dom) == pos) == (m.predict_proba(X, dom)[:, 1] > 0.5))


def test_masks_respected():
    X, y, dom = make_data(3, sizes={"d0": 300, "d1": 300, "d2": 300})
    shared = np.ones(P, dtype=bool)
    shared[[1, 10, 11]] = False
    dmask = np.zeros(P, dtype=bool)
    dmask[[0, 10]] = True
    m = HMDRClassifier(**FIT, shared_mask=shared, domain_masks={"d1": dmask}).fit(X, y, domains=dom)
    assert np.all(m.coef_shared_[~shared] == 0.0)
    i1 = m.domains_.tolist().index("d1")
    assert np.all(m.coef_domain_[i1, ~dmask] == 0.0)
    assert m.coef_domain_[i1, 10] > 0.3  # the planted d1 deviation lives in its mask


# ------------------------------------------------------ objective / solver
def _reference_solution(X, y_pm, dom_idx, K, alpha, lam_b, lam_s, shared, dmasks, w=None):
    """Independent solver of mean-normalised Eq. 1 (weights ``w``, default 1): L-BFGS-B on the smooth split
    reformulation theta = u - v, u, v >= 0. Returns (objective, b, S)."""
    n, p = X.shape
    w = np.ones(n) if w is None else w
    N = w.sum()
    m = p + K * p
    pen = np.concatenate([np.full(p, lam_b), np.full(K * p, lam_s)])
    allowed = np.concatenate([shared, np.concatenate(dmasks)])

    def f(v):
        t = v[:m] - v[m:]
        b, S = t[:p], t[p:].reshape(K, p)
        zs = X @ b
        zf = zs + np.einsum("ij,ij->i", X, S[dom_idx])
        val = (w @ (np.logaddexp(0, -y_pm * zf) + alpha * np.logaddexp(0, -y_pm * zs))) / N
        gf = -w * y_pm * sigmoid(-y_pm * zf) / N
        gs = -alpha * w * y_pm * sigmoid(-y_pm * zs) / N
        gS = np.zeros((K, p))
        np.add.at(gS, dom_idx, X * gf[:, None])
        g = np.concatenate([X.T @ (gf + gs), gS.ravel()])
        return val + pen @ (v[:m] + v[m:]), np.concatenate([g + pen, -g + pen])

    bounds = [(0, None) if a else (0, 0) for a in allowed] * 2
    r = minimize(
        f,
        np.zeros(2 * m),
        jac=True,
        method="L-BFGS-B",
        bounds=bounds,
        options={"maxiter": 100000, "maxfun": 200000, "ftol": 1e-16, "gtol": 1e-12},
    )
    t = r.x[:m] - r.x[m:]
    return r.fun, t[:p], t[p:].reshape(K, p)


@pytest.mark.parametrize("solver", SOLVERS)
def test_objective_matches_independent_reference_and_is_minimal(solver):
    rng = np.random.default_rng(11)
    X, y, dom = make_data(4, sizes={"d0": 120, "d1": 150, "d2": 90})
    X = X[:, :8]
    w = rng.integers(1, 4, size=len(y)).astype(float)
    shared = np.array([1, 1, 1, 1, 1, 1, 0, 0], dtype=bool)
    dm = {"d0": np.ones(8, bool), "d1": np.array([0, 0, 1, 1, 1, 1, 1, 1], bool)}
    params = dict(alpha=0.4, lambda_shared=0.04, lambda_domain=0.015, shared_mask=shared, domain_masks=dm, tol=1e-8)
    m = HMDRClassifier(**params, solver=solver).fit(X, y, domains=dom, sample_weight=w)
    f_fit = m.objective(X, y, dom, sample_weight=w)

    y_pm = np.where(y == "a", 1.0, -1.0)
    dom_idx = np.searchsorted(m.domains_, dom)
    masks = [dm.get(d, np.ones(8, bool)) for d in m.domains_]
    f_ref, b_ref, S_ref = _reference_solution(X, y_pm, dom_idx, 3, 0.4, 0.04, 0.015, shared, masks, w)
    assert abs(f_fit - f_ref) / f_ref < 1e-5, (f_fit, f_ref)
    np.testing.assert_allclose(m.coef_shared_, b_ref, atol=2e-3)
    np.testing.assert_allclose(m.coef_domain_, S_ref, atol=2e-3)
    # objective() agrees with the standalone Eq. 1 implementation (no symmetrisation needed)
    f_plain = hmdr_objective(X, y_pm, dom_idx, m.coef_shared_, m.coef_domain_, 0.4, 0.04, 0.015, w)
    assert f_fit == pytest.approx(f_plain, rel=1e-12)
    # the solution beats random perturbations and coordinate moves off zero
    for _ in range(30):
        db = rng.normal(0, 0.02, 8) * shared
        dS = rng.normal(0, 0.02, (3, 8)) * np.vstack(masks)
        assert (
            m.objective(X, y, dom, w, coef_shared=m.coef_shared_ + db, coef_domain=m.coef_domain_ + dS) >= f_fit - 1e-10
        )
    for j in np.flatnonzero((m.coef_shared_ == 0) & shared):
        for eps in (1e-3, -1e-3):
            bb = m.coef_shared_.copy()
            bb[j] += eps
            assert m.objective(X, y, dom, w, coef_shared=bb) >= f_fit - 1e-10


def test_lambda_scale_is_mean_normalised():
    """Duplicating the whole data set must not change the solution (mean loss)."""
    X, y, dom = make_data(5, sizes={"d0": 200, "d1": 200})
    m1 = HMDRClassifier(**FIT, tol=1e-8).fit(X, y, domains=dom)
    assert np.count_nonzero(m1.coef_shared_) > 2
    m2 = HMDRClassifier(**FIT, tol=1e-8).fit(
        np.vstack([X, X]), np.concatenate([y, y]), domains=np.concatenate([dom, dom])
    )
    np.testing.assert_allclose(m1.coef_shared_, m2.coef_shared_, atol=1e-6)
    # the defaults are the paper-style ones for |D| = 2
    m0 = HMDRClassifier().fit(X, y, domains=dom)
    assert (m0.alpha_, m0.lambda_shared_, m0.lambda_domain_) == (0.5, 0.25, 0.25)


def test_sample_weight_equals_duplication():
    X, y, dom = make_data(6, sizes={"d0": 150, "d1": 150, "d2": 150})
    w = np.random.default_rng(0).integers(1, 4, size=len(y))
    rep = np.repeat(np.arange(len(y)), w)
    mw = HMDRClassifier(**FIT, tol=1e-8).fit(X, y, domains=dom, sample_weight=w.astype(float))
    assert np.count_nonzero(mw.coef_domain_) > 0
    md = HMDRClassifier(**FIT, tol=1e-8).fit(X[rep], y[rep], domains=dom[rep])
    np.testing.assert_allclose(mw.coef_shared_, md.coef_shared_, atol=1e-6)
    np.testing.assert_allclose(mw.coef_domain_, md.coef_domain_, atol=1e-6)
    assert mw.objective(X, y, dom, w) == pytest.approx(md.objective(X[rep], y[rep], dom[rep]), rel=1e-9)
    # zero weights drop a row
    w0 = np.ones(len(y))
    w0[:10] = 0
    m0 = HMDRClassifier(**FIT, tol=1e-8).fit(X, y, domains=dom, sample_weight=w0)
    m_drop = HMDRClassifier(**FIT, tol=1e-8).fit(X[10:], y[10:], domains=dom[10:])
    np.testing.assert_allclose(m0.coef_shared_, m_drop.coef_shared_, atol=1e-6)


@pytest.mark.parametrize("solver", SOLVERS)
def test_objective_certified_and_matches_reference_1e6(solver):
    D = make_planted(
        0,
        n_concepts=10,
        n_shared=6,
        n_domains=3,
        density=0.5,
        n_active_shared=4,
        n_dev_per_domain=2,
        domain_sizes={"d0": 200, "d1": 150, "d2": 120},
        seed=8,
    )
    X = D.X.toarray()
    params = dict(alpha=0.3, lambda_shared=0.03, lambda_domain=0.012)
    m = HMDRClassifier(**params, shared_mask=D.shared_mask, domain_masks=D.domain_masks, tol=1e-10, solver=solver).fit(
        X, D.y, domains=D.domains
    )
    f = m.objective(X, D.y, D.domains)
    assert f == pytest.approx(m.objective_, rel=1e-12)
    assert 0 <= m.duality_gap_ < 1e-7  # certified: f - f* <= gap
    assert m.kkt_violation_ < 1e-3
    y_pm = np.where(D.y == "a", 1.0, -1.0)
    idx = np.searchsorted(m.domains_, D.domains)
    masks = [D.domain_masks[d] for d in m.domains_]
    f_ref = _reference_solution(X, y_pm, idx, 3, 0.3, 0.03, 0.012, D.shared_mask, masks)[0]
    assert abs(f - f_ref) / f_ref < 1e-6, (f, f_ref)
    assert f <= f_ref + 1e-9


def test_kkt_conditions_hold_independently(planted_sparse):
    D, m = planted_sparse
    X = D.X.toarray()
    y = np.where(D.y == "a", 1.0, -1.0)
    idx = np.array([m.domains_.tolist().index(d) for d in D.domains])
    idx_w = np.where(m.has_domain_weights_[idx], idx, -1)
    b, S = m.coef_shared_, m.coef_domain_
    zs = X @ b
    zf = zs + rowwise_dot(X, S, idx_w)
    n = len(y)
    gf = -y * sigmoid(-y * zf) / n
    gs = -m.alpha_ * y * sigmoid(-y * zs) / n
    gb = X.T @ (gf + gs)
    tol = 1e-3

    def check(g, w, lam, mask):
        nz = (w != 0) & mask
        z = (w == 0) & mask
        assert np.all(np.abs(g[nz] + lam * np.sign(w[nz])) <= tol * lam)
        assert np.all(np.abs(g[z]) <= lam * (1 + tol))

    check(gb, b, m.lambda_shared_, D.shared_mask)
    for k, d in enumerate(m.domains_):
        if m.has_domain_weights_[k]:
            rows = idx_w == k
            check(X[rows].T @ gf[rows], S[k], m.lambda_domain_, D.domain_masks[d])


def test_symmetrised_fit_has_zero_intercept_and_same_optimum():
    D = make_planted(
        0, n_concepts=12, n_shared=12, n_domains=2, density=0.5, domain_sizes={"d0": 300, "d1": 300}, seed=4
    )
    X = D.X.toarray()
    y = np.where(D.y == "a", 1, 0)
    Xs, ys = np.vstack([X, -X]), np.concatenate([y, 1 - y])
    lr = LogisticRegression(C=1.0, fit_intercept=True, tol=1e-10, max_iter=10000).fit(Xs, ys)
    assert abs(lr.intercept_[0]) < 1e-6
    # the analytic symmetrisation: explicit mirror rows give the same HMDR solution and objective
    p = dict(alpha=0.5, lambda_shared=0.02, lambda_domain=0.01, tol=1e-10)
    m1 = HMDRClassifier(**p).fit(X, D.y, domains=D.domains)
    flip = np.where(D.y == "a", "b", "a")
    m2 = HMDRClassifier(**p, symmetrize=False).fit(
        np.vstack([X, -X]), np.concatenate([D.y, flip]), domains=np.concatenate([D.domains, D.domains])
    )
    np.testing.assert_allclose(m1.coef_shared_, m2.coef_shared_, atol=1e-6)
    np.testing.assert_allclose(m1.coef_domain_, m2.coef_domain_, atol=1e-6)
    assert m1.objective_ == pytest.approx(m2.objective_, rel=1e-8)


def test_sparse_and_dense_inputs_agree(planted_sparse):
    D, m = planted_sparse
    md = HMDRClassifier(**{k: v for k, v in m.get_params().items()}).fit(D.X.toarray(), D.y, domains=D.domains)
    np.testing.assert_allclose(md.coef_shared_, m.coef_shared_, atol=1e-9)
    np.testing.assert_allclose(m.predict_proba(D.X, D.domains), md.predict_proba(D.X.toarray(), D.domains))


def test_warm_start_reaches_the_same_optimum():
    D = make_planted(4000, n_concepts=80, n_shared=20, n_domains=4, seed=1)
    kw = dict(alpha=0.25, shared_mask=D.shared_mask, domain_masks=D.domain_masks, tol=1e-9)
    warm = HMDRClassifier(lambda_shared=0.0625, lambda_domain=0.0625, warm_start=True, **kw).fit(
        D.X, D.y, domains=D.domains
    )
    for lb, ls in [(0.03125, 0.015625), (0.015625, 0.015625)]:
        warm.set_params(lambda_shared=lb, lambda_domain=ls).fit(D.X, D.y, domains=D.domains)
        cold = HMDRClassifier(lambda_shared=lb, lambda_domain=ls, **kw).fit(D.X, D.y, domains=D.domains)
        assert warm.objective_ == pytest.approx(cold.objective_, rel=1e-7)
        assert warm.kkt_violation_ < 1e-3
        np.testing.assert_array_equal(warm.coef_shared_ != 0, cold.coef_shared_ != 0)


# ------------------------------------------------------------------ the cd solver against the liblinear route
def _planted_cd(seed: int = 3, n_concepts: int = 60, sizes: dict[str, int] | None = None):
    return make_planted(
        0,
        n_concepts=n_concepts,
        n_shared=20,
        n_domains=5,
        density=0.3,
        n_active_shared=8,
        n_dev_per_domain=2,
        domain_sizes=SIZES if sizes is None else sizes,
        seed=seed,
    )


ROUTE_CASES = {
    "masks": {},
    "dirty_alpha0": {"alpha": 0.0},
    "alpha1": {"alpha": 1.0},
    "heavy_pooling": {"lambda_shared": 0.002, "lambda_domain": 0.02},
    "unpenalized": {"unpenalized": True},
    "weights": {"weights": True},
}


@pytest.mark.parametrize("case", list(ROUTE_CASES), ids=list(ROUTE_CASES))
def test_cd_matches_the_liblinear_route(case):
    """The default solver minimises the same objective as the previous route (augmented design + liblinear) at
    the default tolerance: objectives within 1e-6 relative, cd's certified to 1e-7, the same supports, masks and
    the small domain without weights honoured; alpha, sample weights and unpenalised covariates included."""
    D = _planted_cd()
    spec = dict(ROUTE_CASES[case])
    params: dict = {"alpha": 0.25, "lambda_shared": 0.004, "lambda_domain": 0.002, "min_domain_samples": 20}
    params.update({k: v for k, v in spec.items() if k in params})
    params.update(shared_mask=D.shared_mask, domain_masks=D.domain_masks)
    w = np.random.default_rng(4).integers(0, 4, size=D.X.shape[0]).astype(float) if spec.get("weights") else None
    if spec.get("unpenalized"):
        free = np.zeros(D.X.shape[1], dtype=bool)
        free[[0, 25]] = True  # a shared and a domain-specific concept as control covariates
        params["unpenalized_mask"] = free
    fits = {s: HMDRClassifier(**params, solver=s).fit(D.X, D.y, domains=D.domains, sample_weight=w) for s in SOLVERS}
    cd, lib = fits["cd"], fits["liblinear"]
    f_cd = cd.objective(D.X, D.y, D.domains, w)
    f_lib = lib.objective(D.X, D.y, D.domains, w)
    assert abs(f_cd - f_lib) / f_lib < 1e-6, (f_cd, f_lib)
    assert f_cd == pytest.approx(cd.objective_, rel=1e-12)
    assert 0.0 <= cd.duality_gap_ <= 1e-6 * GAP_FACTOR * f_cd
    assert f_cd <= f_lib + lib.duality_gap_
    assert cd.kkt_violation_ < 1e-3
    np.testing.assert_allclose(cd.coef_shared_, lib.coef_shared_, atol=2e-3)
    np.testing.assert_allclose(cd.coef_domain_, lib.coef_domain_, atol=2e-3)
    big = np.abs(lib.coef_shared_) > 1e-3
    assert np.all(cd.coef_shared_[big] != 0)
    assert np.all(cd.coef_shared_[~D.shared_mask & ~params.get("unpenalized_mask", np.zeros(60, bool))] == 0)
    for k, d in enumerate(cd.domains_):
        assert np.all(cd.coef_domain_[k, ~D.domain_masks[d]] == 0)
    assert "small" not in cd.domains_with_weights_.tolist()
    assert np.all(cd.coef_domain_[cd.domains_.tolist().index("small")] == 0)
    if spec.get("unpenalized"):
        assert np.all(cd.coef_domain_[:, free] == 0)  # a control covariate has no domain deviation
        assert np.all(cd.coef_shared_[free] != 0)
        np.testing.assert_array_equal(cd.penalty_factor_, lib.penalty_factor_)


def test_cd_planted_weights_recovered_like_the_liblinear_route(planted_sparse):
    """The planted fixture (shared b, sparse s_d): the default solver's fit recovers the planted supports and signs
    exactly as the old route's does."""
    D, m = planted_sparse
    assert m.solver == "cd"
    old = HMDRClassifier(**{**m.get_params(), "solver": "liblinear"}).fit(D.X, D.y, domains=D.domains)
    np.testing.assert_array_equal(np.sign(m.coef_shared_), np.sign(old.coef_shared_))
    assert np.mean(np.sign(m.coef_domain_) == np.sign(old.coef_domain_)) > 0.99
    assert abs(m.objective_ - old.objective_) / old.objective_ < 1e-7


def test_cd_certificate_bounds_the_suboptimality():
    """At any tolerance the reported duality gap bounds the distance to the independent reference optimum, and
    the solve stops once the gap is at most tol x GAP_FACTOR x objective."""
    D = make_planted(
        0, n_concepts=10, n_shared=6, n_domains=3, density=0.5, domain_sizes={"d0": 200, "d1": 150}, seed=8
    )
    X = D.X.toarray()
    params = dict(
        alpha=0.3, lambda_shared=0.01, lambda_domain=0.005, shared_mask=D.shared_mask, domain_masks=D.domain_masks
    )
    y_pm = np.where(D.y == "a", 1.0, -1.0)
    ref = None
    for tol in (1e-1, 1e-3, 1e-6):
        m = HMDRClassifier(**params, tol=tol).fit(X, D.y, domains=D.domains)
        if ref is None:
            idx = np.searchsorted(m.domains_, D.domains)
            ref = _reference_solution(
                X, y_pm, idx, 2, 0.3, 0.01, 0.005, D.shared_mask, [D.domain_masks[d] for d in m.domains_]
            )[0]
        assert m.duality_gap_ <= tol * GAP_FACTOR * m.objective_
        assert ref - 1e-10 <= m.objective_ <= ref + m.duality_gap_ + 1e-10
        assert m.n_iter_ >= 1


def _design(D, alpha: float = 0.25, X=None) -> DomainDesign:
    y = np.where(D.y == "a", 1.0, -1.0)
    idx = np.searchsorted(D.domain_names, D.domains)
    cols = [np.flatnonzero(D.domain_masks[d]) for d in D.domain_names]
    return DomainDesign(D.X if X is None else X, y, idx, np.flatnonzero(D.shared_mask), cols, alpha)


def test_warm_start_from_any_point_gives_the_cold_optimum():
    """A warm start (another lambda's solution, the solution on other weights, or a meaningless point with a
    meaningless gradient for the strong rule) changes where the solve starts, never where it ends."""
    D = make_planted(3000, n_concepts=80, n_shared=20, n_domains=4, seed=1)
    des = _design(D)
    w = np.ones(des.n)
    cold = des.solve(0.01, 0.005, w)
    rng = np.random.default_rng(0)
    other_w = rng.integers(0, 3, size=des.n).astype(float)
    starts = {
        "path": des.solve(0.04, 0.02, w),
        "other_rows": des.solve(0.01, 0.005, other_w),
        "smaller_lambda": des.solve(0.001, 0.0005, w),
        "garbage": {
            "beta": rng.normal(0, 1, des.width),
            "gradient": rng.normal(0, 1, des.width),
            "lam": np.ones(des.width),
        },
    }
    for name, start in starts.items():
        warm = des.solve(0.01, 0.005, w, warm=start)
        assert warm["objective"] == pytest.approx(cold["objective"], rel=1e-9), name
        assert warm["duality_gap"] <= 1e-6 * GAP_FACTOR * warm["objective"], name
        np.testing.assert_array_equal(warm["beta"] != 0, cold["beta"] != 0, err_msg=name)
        np.testing.assert_allclose(warm["beta"], cold["beta"], atol=1e-4, err_msg=name)
    # the previous solution itself: certified again without a Newton step
    again = des.solve(0.01, 0.005, w, warm=cold)
    assert again["n_newton"] == 0 and again["objective"] == pytest.approx(cold["objective"], rel=1e-12)


def test_pooled_view_is_the_pooled_model():
    """The pooled view of the one stored design (every s_d fixed at zero) is the model without domain weights, and
    another alpha's view is that alpha's model: no rebuild for the selection's pooled stage or its alphas."""
    D = make_planted(2000, n_concepts=40, n_shared=15, n_domains=4, seed=2)
    des = _design(D)
    w = np.ones(des.n)
    pooled = des.view(pooled=True).solve(0.01, 0.01, w)
    assert np.all(pooled["beta"][des.n_shared_cols :] == 0)
    ref = HMDRClassifier(
        alpha=0.25, lambda_shared=0.01, lambda_domain=0.01, shared_mask=D.shared_mask, min_domain_samples=10**9
    )
    ref.fit(D.X, D.y, domains=D.domains)
    np.testing.assert_allclose(pooled["beta"][: des.n_shared_cols], ref.coef_shared_[D.shared_mask], atol=1e-6)
    assert pooled["objective"] == pytest.approx(ref.objective_, rel=1e-8)
    a1 = des.view(alpha=1.0).solve(0.01, 0.005, w)
    m1 = HMDRClassifier(
        alpha=1.0, lambda_shared=0.01, lambda_domain=0.005, shared_mask=D.shared_mask, domain_masks=D.domain_masks
    )
    m1.fit(D.X, D.y, domains=D.domains)
    assert a1["objective"] == pytest.approx(m1.objective_, rel=1e-9)
    assert des.alpha == 0.25  # views leave the design alone


def test_design_is_stored_compactly():
    """comp-rep (-1/0/1) and score-rep (small integers) values are stored as int8, other values as the smallest
    float type that holds them exactly; row indices are int32; explicit zeros and entries no coordinate reads
    (outside the masks) are not stored. About 5 bytes per stored non-zero for comp-rep."""
    D = _planted_cd(sizes={"d0": 400, "d1": 300, "d2": 300, "d3": 200, "small": 15})
    des = _design(D)
    assert des.values.dtype == np.int8 and des.indices.dtype == np.int32
    assert des.values.size == D.X.nnz  # planted data are zero outside shared and each domain's concepts
    assert des.nbytes <= 5 * D.X.nnz + 8 * 3 * des.n + 16 * des.width + 1024
    assert _design(D, X=D.X * 3.0).values.dtype == np.int8  # score-rep-like integers
    assert _design(D, X=D.X * 0.5).values.dtype == np.float32  # exactly representable
    assert _design(D, X=D.X * 0.1).values.dtype == np.float64
    Xz = D.X.copy().astype(np.float64)
    Xz.data[::2] = 0.0  # explicit zeros
    assert _design(D, X=Xz).values.size == np.count_nonzero(Xz.data)
    dense = _design(D, X=D.X.toarray())
    np.testing.assert_array_equal(dense.values, des.values)
    np.testing.assert_array_equal(dense.indices, des.indices)
    # a mask that leaves a concept out of every coordinate: its entries are not stored
    masked = DomainDesign(D.X, des.y_pm, des.dom_idx, des.shared_cols[1:], [c[c != 0] for c in des.domain_cols], 0.25)
    assert masked.values.size == D.X.nnz - D.X[:, 0].nnz
    # the same optimum from every storage of the same values
    w = np.ones(des.n)
    f = des.solve(0.004, 0.002, w)["objective"]
    assert dense.solve(0.004, 0.002, w)["objective"] == pytest.approx(f, rel=1e-12)
    wide = _design(D, X=D.X * 0.1)
    assert wide.solve(0.0004, 0.0002, w)["objective"] == pytest.approx(
        _design(D, X=(D.X * 0.1).toarray()).solve(0.0004, 0.0002, w)["objective"], rel=1e-12
    )


def test_one_class_left_by_the_weights_gives_zero_weights():
    """Weights that leave one class only: every weight zero with either solver (as the liblinear route did)."""
    X, y, dom = make_data(12, sizes={"d0": 60, "d1": 60})
    w = np.where(y == "a", 1.0, 0.0)
    for solver in SOLVERS:
        m = HMDRClassifier(**FIT, solver=solver).fit(X, y, domains=dom, sample_weight=w)
        assert np.all(m.coef_shared_ == 0) and np.all(m.coef_domain_ == 0), solver
        assert m.n_iter_ >= (1 if solver == "cd" else 0)


def test_solver_parameter_is_validated_and_kept():
    X, y, dom = make_data(9, sizes={"d0": 50, "d1": 50})
    with pytest.raises(ValueError, match="solver"):
        HMDRClassifier(solver="newton").fit(X, y, domains=dom)
    with pytest.raises(ValueError, match="solver"):
        HMDRClassifierCV(solver="newton").fit(X, y, domains=dom)
    assert HMDRClassifier().get_params()["solver"] == "cd"
    m = HMDRClassifierCV(solver="liblinear", n_folds=2).fit(X, y, domains=dom)
    assert m.fixed_estimator().solver == "liblinear"


def test_threads_do_not_change_results(planted_sparse, monkeypatch):
    """Folds and bootstrap resamples run in threads (here on any design size); the thread count changes nothing
    (the resamples are drawn in order in the calling thread). Small designs stay in the calling thread."""
    pools: list[int] = []

    class CountingPool(_cd.ThreadPoolExecutor):
        def __init__(self, max_workers: int) -> None:
            pools.append(max_workers)
            super().__init__(max_workers=max_workers)

    monkeypatch.setattr(_cd, "ThreadPoolExecutor", CountingPool)
    D, m = planted_sparse
    monkeypatch.setattr(_cd, "THREAD_MIN_ENTRIES", _design(D).indices.size + 1)
    bootstrap_hmdr(m, D.X, D.y, D.domains, D.concept_names, n_bootstrap=4, seed=2, n_threads=2)
    assert pools == []  # too small to pay for a thread
    monkeypatch.setattr(_cd, "THREAD_MIN_ENTRIES", 0)
    a = bootstrap_hmdr(m, D.X, D.y, D.domains, D.concept_names, n_bootstrap=12, seed=2, n_threads=1)
    assert pools == []
    b = bootstrap_hmdr(m, D.X, D.y, D.domains, D.concept_names, n_bootstrap=12, seed=2, n_threads=2)
    assert pools and set(pools) == {2}
    pd.testing.assert_frame_equal(a, b)
    Dm = make_planted(2500, n_concepts=30, n_shared=10, n_domains=4, seed=5)
    fits = {}
    for n in (1, 2):
        pools.clear()
        with threads(n):
            fits[n] = HMDRClassifierCV().fit(Dm.X, Dm.y, domains=Dm.domains)
        assert bool(pools) == (n == 2)
    pd.testing.assert_frame_equal(fits[1].cv_results_, fits[2].cv_results_)
    np.testing.assert_array_equal(fits[1].coef_domain_, fits[2].coef_domain_)
    with pytest.raises(ValueError):
        with threads(0):
            pass
    monkeypatch.setenv(_cd.THREADS_ENV, "1")
    assert _cd.solver_threads() == 1
    monkeypatch.setenv(_cd.THREADS_ENV, "two")
    with pytest.raises(ValueError, match=_cd.THREADS_ENV):
        _cd.solver_threads()


def test_bootstrap_warm_started_matches_the_cold_liblinear_route(planted_sparse):
    """The resamples start from the full fit (cd); their intervals and selection frequencies are those of cold
    fits by the old route on the same resamples."""
    D, m = planted_sparse
    old = HMDRClassifier(**{**m.get_params(), "solver": "liblinear"}).fit(D.X, D.y, domains=D.domains)
    kw = dict(n_bootstrap=10, seed=1)
    a = bootstrap_hmdr(m, D.X, D.y, D.domains, D.concept_names, **kw)
    b = bootstrap_hmdr(old, D.X, D.y, D.domains, D.concept_names, **kw)
    np.testing.assert_allclose(a["total_weight_ci_low"], b["total_weight_ci_low"], atol=2e-3)
    np.testing.assert_allclose(a["total_weight_ci_high"], b["total_weight_ci_high"], atol=2e-3)
    assert np.mean(a["selection_frequency"] == b["selection_frequency"]) > 0.97


def test_bootstrap_resamples_are_the_previous_ones(planted_sparse):
    """The resamples are drawn in one call per resample now; they are exactly those of the previous per-domain
    ``rng.choice`` loop (same generator, same order), so the intervals of the liblinear route did not change."""
    D, m = planted_sparse
    old = HMDRClassifier(**{**m.get_params(), "solver": "liblinear"}).fit(D.X, D.y, domains=D.domains)
    got = bootstrap_hmdr(old, D.X, D.y, D.domains, D.concept_names, n_bootstrap=5, seed=4)
    design, w, meta = old.fixed_estimator()._prepare(D.X, D.y, D.domains, None)
    rng = np.random.default_rng(4)
    groups = [np.flatnonzero(meta["inv"] == k) for k in range(meta["n_domains"])]
    totals = []
    for _ in range(5):
        counts = np.zeros(design.n)
        for g in groups:
            np.add.at(counts, rng.choice(g, size=len(g), replace=True), 1.0)
        res = design.solve(old.lambda_shared_, old.lambda_domain_, counts * w, tol=old.tol, max_iter=old.max_iter)
        b, S = design.unpack(res["beta"], meta["n_domains"], meta["weighted_rows"])
        totals.append(np.vstack([b, b + S]))
    lo, hi = np.percentile(np.stack(totals), [(1 - 0.95) / 2 * 100, (1 + 0.95) / 2 * 100], axis=0)
    np.testing.assert_array_equal(got["total_weight_ci_low"].to_numpy(), lo.ravel())
    np.testing.assert_array_equal(got["total_weight_ci_high"].to_numpy(), hi.ravel())


def test_selection_with_cd_matches_the_liblinear_route():
    """The selection on the one design (views per alpha and for the pooled stage, warm starts across stages, folds
    in threads) scores every configuration as the old route does, chooses the same one and refits to its optimum."""
    D = make_planted(2500, n_concepts=30, n_shared=30, n_domains=4, n_dev_per_domain=3, density=0.4, seed=1)
    fits = {s: HMDRClassifierCV(solver=s).fit(D.X, D.y, domains=D.domains) for s in SOLVERS}
    cd, lib = fits["cd"], fits["liblinear"]
    assert cd.selected_config_ == pytest.approx(lib.selected_config_, rel=1e-6)
    cols = ["cv_log_loss", "cv_accuracy", "cv_fold_log_loss", "max_abs_weight"]
    np.testing.assert_allclose(cd.cv_results_[cols].to_numpy(), lib.cv_results_[cols].to_numpy(), rtol=1e-4, atol=1e-4)
    assert abs(cd.objective_ - lib.objective_) / lib.objective_ < 1e-6
    np.testing.assert_allclose(cd.oof_proba_, lib.oof_proba_, atol=1e-4)
    pooled = HMDRClassifierCV(rule="one_se_accuracy").fit(D.X[:, :30], D.y, domains=D.domains)
    assert pooled.n_iter_ >= 1


def test_fit_settings_carry_the_solver_to_the_fit():
    """dbt var hmdr_solver (FitSettings.solver) picks the solver of every fit of the build; an unknown one is an
    error naming the var."""
    from pipelines.core.config import dbt_project_vars

    project = {**dbt_project_vars(), "build_id": "b"}
    assert FitSettings.from_vars(project).solver == "cd"
    assert FitSettings.from_vars({**project, "hmdr_solver": "liblinear"}).solver == "liblinear"
    with pytest.raises(ValueError, match="hmdr_solver"):
        FitSettings.from_vars({**project, "hmdr_solver": "lbfgs"})
    df, cols = make_frame(3)
    df = df[df.mechanism == "judge_planted"]
    out = {s: fit_mechanisms(df, cols, representation="comp_rep", select=True, solver=s) for s in SOLVERS}
    a, b = (out[s]["coefficients"].set_index(["domain", "concept"])["total_weight"] for s in SOLVERS)
    np.testing.assert_allclose(a.to_numpy(), b.reindex(a.index).to_numpy(), atol=2e-3)


# ---------------------------------------------------------------- selection
def test_paper_grid():
    g = paper_grid(8)
    assert len(g) == 9
    assert all(c["lambda_shared"] >= c["lambda_domain"] for c in g)
    assert {c["lambda_domain"] for c in g} == {1 / 64, 2 / 64, 1 / 16}
    assert {c["lambda_shared"] for c in g} == {1 / 64, 2 / 64, 1 / 16, 1 / 8}
    assert len(paper_grid(3)) == 9


def test_paper_selection_picks_the_best_fold_accuracy_and_refits():
    """The paper's selection (App. C.2; ``preflens evaluate``'s hmdr_paper): its 9 configurations at alpha = 1/|D|,
    the best accuracy averaged over folds, then a refit on all pairs at that configuration."""
    D = make_planted(3000, n_concepts=40, n_shared=15, n_domains=4, seed=2)
    m = HMDRClassifierCV(
        grid="paper",
        rule="max_fold_accuracy",
        max_abs_weight=np.inf,
        shared_mask=D.shared_mask,
        domain_masks=D.domain_masks,
    ).fit(D.X, D.y, domains=D.domains)
    chosen = {k: m.selected_config_[k] for k in ("lambda_shared", "lambda_domain")}
    assert chosen in paper_grid(8)
    cv = m.cv_results_
    assert len(cv) == 9 and cv["chosen"].sum() == 1
    assert cv["cv_accuracy"].max() > 0.6
    assert cv.loc[cv["chosen"], "cv_fold_accuracy"].iloc[0] == cv["cv_fold_accuracy"].max()
    ref = HMDRClassifier(alpha=1 / 4, **chosen, shared_mask=D.shared_mask, domain_masks=D.domain_masks).fit(
        D.X, D.y, domains=D.domains
    )
    np.testing.assert_allclose(m.coef_shared_, ref.coef_shared_, atol=1e-6)
    # the paper's Dirty model: the same grid at alpha = 0
    dirty = HMDRClassifierCV(grid="paper", rule="max_fold_accuracy", max_abs_weight=np.inf, alpha=0.0).fit(
        D.X, D.y, domains=D.domains
    )
    assert dirty.alpha_ == 0.0 and set(dirty.cv_results_["alpha"]) == {0.0}


# ---------------------------------------------------------------- bootstrap and baselines
def test_bootstrap_intervals_and_selection_frequency(planted_sparse):
    D, m = planted_sparse
    names = D.concept_names
    bt = bootstrap_hmdr(m, D.X, D.y, D.domains, names, n_bootstrap=20, seed=1)
    assert list(bt.columns) == BOOTSTRAP_COLUMNS
    assert len(bt) == (1 + len(m.domains_)) * len(names)
    assert (bt.total_weight_ci_low <= bt.total_weight_ci_high).all()
    assert bt.selection_frequency.between(0, 1).all()
    sh = bt[bt.domain == "__shared__"].set_index("concept")
    strong = [names[j] for j in np.flatnonzero(np.abs(D.b) > 0.6)]
    assert (sh.loc[strong, "selection_frequency"] == 1.0).all()
    # intervals cover the point estimate for strong drivers
    for j in np.flatnonzero(np.abs(D.b) > 0.6):
        row = sh.loc[names[j]]
        assert row.total_weight_ci_low <= m.coef_shared_[j] <= row.total_weight_ci_high
    off = [names[j] for j in np.flatnonzero(~D.shared_mask)]
    assert (sh.loc[off, "selection_frequency"] == 0).all()
    np.testing.assert_allclose(bt.global_lift_ci_low, 50 * bt.total_weight_ci_low)
    assert bootstrap_hmdr(m, D.X, D.y, D.domains, names, n_bootstrap=0).empty


def test_baselines_api(planted_sparse):
    D, m = planted_sparse
    X, y, dom = D.X, D.y, D.domains
    dn = np.full(X.shape[0], "never", dtype=object)
    for est in (SharedOnlyClassifier(C=1.0, shared_mask=D.shared_mask), FlatPooledClassifier(C=1.0)):
        est.fit(X, y, domains=dom)
        assert np.mean(est.predict(X, dom) == y) > 0.6
        np.testing.assert_allclose(est.predict_proba(X, dom), est.predict_proba(X, dn))
    so = SharedOnlyClassifier(C=1.0, shared_mask=D.shared_mask).fit(X, y, domains=dom)
    assert np.all(so.coef_[~D.shared_mask] == 0)
    for est in (SpecificOnlyClassifier(C=1.0), PeerElasticNetClassifier(C=1.0)):
        est.fit(X, y, domains=dom)
        assert np.mean(est.predict(X, dom) == y) > 0.6
        np.testing.assert_allclose(est.predict_proba(X, dn)[:, 1], 0.5)  # unseen: no shared part
        assert est.uses_domain_weights(dom).all() and not est.uses_domain_weights(dn).any()
    d = dirty_model(
        lambda_shared=0.004, lambda_domain=0.002, shared_mask=D.shared_mask, domain_masks=D.domain_masks
    ).fit(X, y, domains=dom)
    assert d.alpha_ == 0.0
    # the shared loss makes b predictive alone: HMDR's b beats the dirty model's b on the shared signal
    zs = np.asarray(X @ D.b).ravel()
    assert (
        np.corrcoef(np.asarray(X @ m.coef_shared_).ravel(), zs)[0, 1]
        >= np.corrcoef(np.asarray(X @ d.coef_shared_).ravel(), zs)[0, 1] - 0.02
    )


# ---------------------------------------------------------- sklearn API
def test_clone_get_params_and_no_param_mutation():
    mask = np.ones(P, dtype=bool)
    dm = {"d1": np.ones(P, dtype=bool)}
    m = HMDRClassifier(alpha=0.2, shared_mask=mask, domain_masks=dm, min_domain_samples=5)
    params = m.get_params()
    assert params["alpha"] == 0.2 and params["lambda_shared"] is None
    c = clone(m)
    assert c.get_params().keys() == params.keys()
    cp = c.get_params()
    for k in ("alpha", "lambda_shared", "lambda_domain", "min_domain_samples", "symmetrize", "tol", "max_iter"):
        assert cp[k] == params[k]
    assert np.array_equal(cp["shared_mask"], mask)
    assert list(cp["domain_masks"]) == ["d1"] and np.array_equal(cp["domain_masks"]["d1"], dm["d1"])
    X, y, dom = make_data(8, sizes={"d0": 100, "d1": 100})
    m.fit(X, y, domains=dom)
    assert m.lambda_shared is None and m.alpha == 0.2 and m.shared_mask is mask and m.domain_masks is dm
    assert mask.all() and list(dm) == ["d1"]
    c2 = clone(m)
    assert not hasattr(c2, "coef_shared_")
    c2.set_params(lambda_shared=0.3)
    assert c2.get_params()["lambda_shared"] == 0.3 and m.lambda_shared is None
    assert m.n_features_in_ == P and m.coef_domain_.shape == (2, P)
    assert is_classifier(m) and 0.0 <= m.score(X, y, domains=dom) <= 1.0


def test_input_validation():
    X, y, dom = make_data(9, sizes={"d0": 50, "d1": 50})
    with pytest.raises(ValueError):
        HMDRClassifier().fit(X, np.full(len(y), "a"), domains=dom)
    with pytest.raises(ValueError):
        HMDRClassifier(lambda_shared=0.0).fit(X, y, domains=dom)
    with pytest.raises(ValueError):
        HMDRClassifier(shared_mask=np.ones(3, bool)).fit(X, y, domains=dom)
    with pytest.raises(ValueError):
        HMDRClassifier().fit(X, y, domains=dom[:-1])
    m = HMDRClassifier().fit(X, y, domains=dom)
    with pytest.raises(ValueError):
        m.predict(X[:, :5])


def test_default_hyperparameters():
    assert default_hyperparameters(8) == {"alpha": 0.125, "lambda_shared": 1 / 16, "lambda_domain": 1 / 64}


def test_score_requires_domains_and_scores_the_fitted_model(planted):
    """score() used to score with the shared weights b alone (the inherited ClassifierMixin.score(X, y)); a
    domain-aware model now refuses to score without domains, and with them scores predict(X, domains)."""
    X, y, dom, m = planted
    for missing in ({}, {"domains": None}):
        with pytest.raises(ValueError, match="needs domains"):
            m.score(X, y, **missing)
    acc = m.score(X, y, domains=dom)
    assert acc == np.mean(m.predict(X, dom) == y)
    # the number the old score(X, y) gave: b alone, a different model on data with planted deviations
    assert acc != np.mean(m.predict(X) == y)
    w = np.random.default_rng(0).random(len(y))
    assert m.score(X, y, w, domains=dom) == pytest.approx(np.average(m.predict(X, dom) == y, weights=w))
    specific = SpecificOnlyClassifier().fit(X, y, domains=dom)
    with pytest.raises(ValueError, match="needs domains"):
        specific.score(X, y)
    assert specific.score(X, y, domains=dom) == np.mean(specific.predict(X, dom) == y)
    # a model that ignores domains scores without them
    shared = SharedOnlyClassifier().fit(X, y, domains=dom)
    assert shared.score(X, y) == shared.score(X, y, domains=dom) == np.mean(shared.predict(X) == y)


_SCORE_NEEDS_DOMAINS = (
    "score() requires domains= for a domain-aware model (py_models._base.DomainLinearClassifierMixin); the check "
    "calls score(X, y) and gets the ValueError that stops scoring with the shared weights only"
)
_CD_SAMPLE_WEIGHT_TOL = (
    "the cd solver stops at a certified relative duality gap of tol x GAP_FACTOR = 1e-7: a weighted fit and the fit "
    "on repeated rows agree to ~1e-6 in P (both checks pass at tol=1e-8) but the check compares at rtol 1e-7; "
    "test_sample_weight_equals_duplication checks it at 1e-6"
)
_CV_FOLDS = (
    "the check's repeated rows fall into other CV folds than the weighted rows they stand for, so the selection "
    "can choose another configuration (it fails at any solver tolerance); the refit at a fixed configuration is "
    "HMDRClassifier's case"
)
_CHANCE_WITHOUT_DOMAINS = (
    "the check fits and predicts without domains: predict(X) then treats every pair as an unseen domain, which a "
    "model without a shared part predicts at chance (P = 0.5), below the check's accuracy bar"
)
_DOMAIN_AWARE = {
    "check_fit_score_takes_y": _SCORE_NEEDS_DOMAINS,
    "check_pipeline_consistency": _SCORE_NEEDS_DOMAINS,
    # it calls score(X, y) with the wrong number of features and expects that error first
    "check_n_features_in_after_fitting": _SCORE_NEEDS_DOMAINS,
}
_SAMPLE_WEIGHT_CHECKS = (
    "check_sample_weight_equivalence_on_dense_data",
    "check_sample_weight_equivalence_on_sparse_data",
)
EXPECTED_FAILED_CHECKS: dict[str, dict[str, str]] = {
    "HMDRClassifier": {**_DOMAIN_AWARE, **dict.fromkeys(_SAMPLE_WEIGHT_CHECKS, _CD_SAMPLE_WEIGHT_TOL)},
    "HMDRClassifierCV": {**_DOMAIN_AWARE, **dict.fromkeys(_SAMPLE_WEIGHT_CHECKS, _CV_FOLDS)},
    # the cd solver (their default since the evaluate speed-up): a weighted fit equals the fit on repeated rows
    "SharedOnlyClassifier": {},
    "FlatPooledClassifier": {},
    "SpecificOnlyClassifier": {**_DOMAIN_AWARE, "check_classifiers_train": _CHANCE_WITHOUT_DOMAINS},
    "PeerElasticNetClassifier": {**_DOMAIN_AWARE, "check_classifiers_train": _CHANCE_WITHOUT_DOMAINS},
    "ReferenceLogit": {},
    "DomainGridSearchCV": dict.fromkeys(_SAMPLE_WEIGHT_CHECKS, _CV_FOLDS),  # around SharedOnlyClassifier
}
FAMILY = [
    HMDRClassifier(lambda_shared=0.01, lambda_domain=0.01),
    HMDRClassifierCV(n_folds=2),  # 2 folds keep the checks' many refits quick
    SharedOnlyClassifier(),
    FlatPooledClassifier(),
    SpecificOnlyClassifier(),
    PeerElasticNetClassifier(),
    ReferenceLogit(),
    DomainGridSearchCV(SharedOnlyClassifier(), [{"C": 0.5}, {"C": 2.0}], n_folds=2),
]


@parametrize_with_checks(
    FAMILY, expected_failed_checks=lambda est: EXPECTED_FAILED_CHECKS[type(est).__name__], xfail_strict=True
)
def test_sklearn_check_estimator(estimator, check):
    """scikit-learn's full check_estimator on every member of the family; each expected failure is listed with
    its reason above and is strict (a check that starts to pass fails the test, so the list stays true)."""
    check(estimator)


# ---------------------------------------------------------------- explain
def test_local_lift_and_contributions():
    z = np.array([0.0, 1.0, -2.0, 30.0, -30.0])
    dz = np.array([0.5, -0.3, 1.0, 0.2, 0.2])
    direct = 100 * (sigmoid(z + dz) - sigmoid(z)) / sigmoid(z)
    np.testing.assert_allclose(local_lift(z, dz), direct, rtol=1e-9, atol=1e-12)
    assert local_lift(0.0, 0.0) == 0.0
    # first-order: lift ~ 100*(1 - sigma(z))*dz, and 50*dz at z = 0
    assert local_lift(0.0, 1e-4) == pytest.approx(50 * 1e-4, rel=1e-3)
    np.testing.assert_allclose(global_lift_pct([0.1, -0.2]), [5.0, -10.0])

    X = np.array([[1.0, 0.0, -1.0], [0.0, 1.0, 1.0]])
    W = np.array([[0.5, 0.7, 0.0], [0.5, -0.4, 0.2]])
    t = concept_contributions(X, W, ["c0", "c1", "c2"], row_ids=["p", "q"])
    assert list(zip(t.row_id, t.concept)) == [("p", "c0"), ("q", "c1"), ("q", "c2")]
    np.testing.assert_allclose(t.contribution, [0.5, -0.4, 0.2])
    np.testing.assert_allclose(t.z, [0.5, -0.2, -0.2])
    np.testing.assert_allclose(t.local_lift_pct, local_lift(t.z, t.weight))


# ---------------------------------------------------------------- fit job
def make_frame(seed: int = 0) -> tuple[pd.DataFrame, list[str]]:
    rng = np.random.default_rng(seed)
    cols = [f"c{j}" for j in range(10)]
    b = np.zeros(10)
    b[[0, 1, 2]] = [2.0, -1.5, 1.0]
    domains = ["news", "code", "math", "chat", "rare"]
    frames = []
    spec = {
        "judge_planted": ("laaj", 400),
        "human_random": ("human", 400),
        "rm_tiny": ("rm", 25),
        "rm_oneclass": ("rm", 60),
    }
    for mech, (mtype, n) in spec.items():
        dom = rng.choice(domains, size=n, p=[0.3, 0.3, 0.2, 0.19, 0.01]).astype(object)
        X = rng.integers(-1, 2, size=(n, 10)).astype(float)
        if mech == "judge_planted":
            win = np.where(rng.random(n) < sigmoid(X @ b), "a", "b").astype(object)
            win[rng.random(n) < 0.1] = "tie"
        elif mech == "human_random":
            win = np.where(rng.random(n) < 0.5, "a", "b").astype(object)
        elif mech == "rm_tiny":
            win = np.where(rng.random(n) < 0.5, "a", "b").astype(object)
            win[:10] = "tie"  # 15 decisive < 20
        else:
            win = np.full(n, "a", dtype=object)
            win[:5] = "tie"
        f = pd.DataFrame(X, columns=cols)
        f.insert(0, "winner", win)
        f.insert(0, "domain", dom)
        f.insert(0, "mechanism_type", mtype)
        f.insert(0, "mechanism", mech)
        f.insert(0, "item_id", [f"it{i}" for i in range(n)])
        f.insert(0, "label_id", [f"{mech}:{i}" for i in range(n)])
        frames.append(f)
    return pd.concat(frames, ignore_index=True), cols


HYPER = {"lambda_shared": 0.02, "lambda_domain": 0.01}  # fixed lambdas; alpha 1/|D|
JOB = {**HYPER, "select": False}


@pytest.fixture(scope="module")
def job():
    df, cols = make_frame(0)
    return df, cols, fit_mechanisms(df, cols, representation="comp_rep", seed=3, **JOB)


def test_fit_job_frames_and_keys(job):
    df, cols, out = job
    assert set(out) == set(FRAME_COLUMNS)
    for name, f in out.items():
        assert list(f.columns) == FRAME_COLUMNS[name], name
    fitted = {"judge_planted", "human_random"}
    assert set(out["params"].mechanism) == fitted
    sk = out["skipped"].set_index("mechanism")
    assert set(sk.index) == {"rm_tiny", "rm_oneclass"}
    assert "too few decisive" in sk.loc["rm_tiny", "reason"]
    assert "one class" in sk.loc["rm_oneclass", "reason"]

    pred = out["predictions"]
    dec = df[df.mechanism.isin(fitted) & (df.winner != "tie")]
    assert sorted(pred.label_id) == sorted(dec.label_id)  # every decisive pair exactly once
    assert not pred.label_id.isin(df.loc[df.winner == "tie", "label_id"]).any()
    assert pred.prob_a.between(0, 1).all() and pred.prob_a.notna().all()
    assert set(pred.fold) == set(range(5))
    assert (pred.is_correct == (pred.predicted_winner == pred.actual_winner)).all()
    assert set(pred.representation) == {"comp_rep"}
    # folds are stratified by domain: each domain's folds differ in size by at most 1 per winner class
    for (_, _, _), g in pred.groupby(["mechanism", "domain", "actual_winner"]):
        sizes = g.fold.value_counts().reindex(range(5), fill_value=0)
        assert sizes.max() - sizes.min() <= 1

    params = out["params"].set_index("mechanism")
    n_ties = int(((df.mechanism == "judge_planted") & (df.winner == "tie")).sum())
    assert params.loc["judge_planted", "n_ties_dropped"] == n_ties
    assert params.loc["judge_planted", "n_train"] == (pred.mechanism == "judge_planted").sum()
    assert params.loc["judge_planted", "alpha"] == pytest.approx(1 / 5)


def test_fit_job_metrics(job):
    _, _, out = job
    met = out["metrics"]
    pred = out["predictions"]
    overall = met[met.domain == "__all__"].set_index("mechanism")
    assert (met.protocol == "cv5_oof").all()
    assert overall.loc["judge_planted", "accuracy"] > 0.7
    assert abs(overall.loc["human_random", "accuracy"] - 0.5) < 0.08
    assert overall.loc["judge_planted", "log_loss"] < np.log(2) < overall.loc["human_random", "log_loss"] + 0.05
    for mech, g in pred.groupby("mechanism"):
        assert overall.loc[mech, "n_pairs"] == len(g)
        per = met[(met.mechanism == mech) & (met.domain != "__all__")]
        assert per.n_pairs.sum() == len(g)
        credit = g.is_correct + 0.5 * (g.predicted_winner == "tie")  # z == 0 scores 0.5
        assert overall.loc[mech, "accuracy"] == pytest.approx(credit.mean())


def test_fit_job_coefficients_and_local_explanations(job):
    df, cols, out = job
    co = out["coefficients"]
    jp = co[co.mechanism == "judge_planted"]
    shared = jp[jp.domain == "__shared__"].set_index("concept")
    assert len(shared) == len(cols) and (shared.domain_deviation == 0).all()
    assert shared.loc["c0", "shared_weight"] > 0 and shared.loc["c1", "shared_weight"] < 0
    assert set(jp.domain) == {"__shared__", "news", "code", "math", "chat", "rare"}
    pred = out["predictions"]
    npairs = jp.groupby("domain").n_pairs.first()
    counts = pred[pred.mechanism == "judge_planted"].domain.value_counts()
    for d, n in counts.items():
        assert npairs[d] == n
    assert npairs["__shared__"] == counts.sum()
    assert npairs["rare"] < 10  # below min_domain_samples
    assert (jp.has_domain_weights == (jp.n_pairs >= 10) & (jp.domain != "__shared__")).all()
    np.testing.assert_allclose(co.global_lift_pct, 50 * co.total_weight)

    le = out["local_explanations"]
    assert le.label_id.isin(pred.label_id).all()
    assert (le.value != 0).all() and (le.weight != 0).all()
    m = le.merge(co[["mechanism", "domain", "concept", "total_weight"]], on=["mechanism", "domain", "concept"])
    assert len(m) == len(le)
    np.testing.assert_allclose(m.weight, m.total_weight)
    np.testing.assert_allclose(m.contribution, m.total_weight * m.value)
    # contributions add up to the logit of an independent full refit with the same params
    dec = df[(df.mechanism == "judge_planted") & (df.winner != "tie")]
    ref = HMDRClassifier(**HYPER).fit(
        dec[cols].to_numpy(float), dec.winner.to_numpy(object), domains=dec.domain.to_numpy(object)
    )
    z_ref = pd.Series(
        ref.decision_function(dec[cols].to_numpy(float), dec.domain.to_numpy(object)), index=dec.label_id.to_numpy()
    )
    z_sum = le[le.mechanism == "judge_planted"].groupby("label_id").contribution.sum()
    z_ref_nz = z_ref[z_ref != 0]
    np.testing.assert_allclose(z_sum.reindex(z_ref_nz.index).to_numpy(), z_ref_nz.to_numpy(), atol=1e-8)
    assert set(z_sum.index) == set(z_ref_nz.index)


def test_fit_job_deterministic_and_order_invariant(job):
    df, cols, out = job
    shuffled = df.sample(frac=1.0, random_state=1).reset_index(drop=True)
    out2 = fit_mechanisms(shuffled, cols, representation="comp_rep", seed=3, **JOB)
    a = out["predictions"].set_index("label_id").sort_index()
    b = out2["predictions"].set_index("label_id").sort_index()
    assert (a.fold == b.fold).all()
    np.testing.assert_array_equal(a.prob_a, b.prob_a)  # the pairs are put in label_id order first
    out3 = fit_mechanisms(df, cols, representation="comp_rep", seed=4, **JOB)
    c = out3["predictions"].set_index("label_id").sort_index()
    assert (a.fold != c.fold).any()


def test_fit_job_bootstrap_does_not_depend_on_row_order():
    """Every output, the bootstrap intervals too, is the same for any input row order (the resamples used to follow
    the order the warehouse happened to return the pairs in)."""
    df, cols = make_frame(2)
    df = df[df.mechanism == "judge_planted"]
    kw = dict(representation="comp_rep", n_bootstrap=4, **JOB)
    key = ["domain", "concept"]
    a = fit_mechanisms(df, cols, **kw)["coefficients"].sort_values(key).reset_index(drop=True)
    b = fit_mechanisms(df.sample(frac=1.0, random_state=3), cols, **kw)["coefficients"]
    pd.testing.assert_frame_equal(a, b.sort_values(key).reset_index(drop=True))
    assert a["total_weight_ci_low"].notna().all() and (a["n_bootstrap"] == 4).all()


def test_fit_job_validation():
    df, cols = make_frame(1)
    with pytest.raises(ValueError):
        fit_mechanisms(df.drop(columns=["domain"]), cols, representation="x")
    bad = df.copy()
    bad.loc[0, "c0"] = np.nan
    with pytest.raises(ValueError):
        fit_mechanisms(bad, cols, representation="x")
    with pytest.raises(TypeError):
        fit_mechanisms(df, cols, representation="x", not_a_param=1)
