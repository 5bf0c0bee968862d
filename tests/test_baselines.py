"""The L1 baselines on the coordinate-descent kernel equal scikit-learn's liblinear fits (py_models/baselines.py)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import scipy.sparse as sp

from py_models.baselines import (
    C_GRID,
    FlatPooledClassifier,
    PeerElasticNetClassifier,
    SharedOnlyClassifier,
    SpecificOnlyClassifier,
)
from py_models.cv import stratified_folds
from py_models.selection import DomainGridSearchCV
from py_models.synthetic import make_planted

REL = 1e-6  # the objective of the cd fit is within this of liblinear's (relative), or below it


def planted(seed: int = 0, sizes: dict[str, int] | None = None, p: int = 20):
    D = make_planted(
        0,
        n_concepts=p,
        n_shared=8,
        n_domains=3,
        density=0.4,
        n_active_shared=4,
        domain_sizes=sizes or {"d0": 120, "d1": 60, "d2": 25},
        seed=seed,
    )
    return D.X.toarray(), np.asarray(D.y, dtype=object), np.asarray(D.domains, dtype=object)


def liblinear_objective(coef, X, y, C, w=None) -> float:
    """liblinear's L1 problem: C sum_i w_i log(1 + exp(-y_i x_i'coef)) + |coef|_1 (y as +-1, +1 = "a")."""
    y_pm = np.where(y == "a", 1.0, -1.0)
    w = np.ones(len(y)) if w is None else w
    return float(C * (w * np.logaddexp(0.0, -y_pm * (X @ coef))).sum() + np.abs(coef).sum())


def close_or_better(ours: float, ref: float) -> None:
    assert ours <= ref * (1 + REL), (ours, ref, (ours - ref) / ref)
    assert ours >= ref * (1 - 1e-4), (ours, ref)  # liblinear is not far off either: the same problem


@pytest.mark.parametrize("C", C_GRID)
@pytest.mark.parametrize("weighted", [False, True])
def test_pooled_fits_match_liblinear(C: float, weighted: bool) -> None:
    X, y, dom = planted(1)
    w = np.random.default_rng(0).uniform(0.2, 3.0, len(y)) if weighted else None
    mask = np.arange(X.shape[1]) % 3 != 0
    for make in (
        lambda s: FlatPooledClassifier(C=C, solver=s),
        lambda s: SharedOnlyClassifier(C=C, shared_mask=mask, solver=s),
    ):
        ours = make("cd").fit(X, y, domains=dom, sample_weight=w)
        ref = make("liblinear").fit(X, y, domains=dom, sample_weight=w)
        close_or_better(liblinear_objective(ours.coef_, X, y, C, w), liblinear_objective(ref.coef_, X, y, C, w))
        # the certified objective is liblinear's divided by C sum w
        total = len(y) if w is None else w.sum()
        assert ours.objective_ == pytest.approx(liblinear_objective(ours.coef_, X, y, C, w) / (C * total), rel=1e-9)
        if getattr(ours, "shared_mask", None) is not None:
            assert np.all(ours.coef_[~mask] == 0.0)


@pytest.mark.parametrize("C", C_GRID)
def test_per_domain_fits_match_liblinear_in_every_domain(C: float) -> None:
    """Every domain's objective meets the tolerance on its own, a one-class domain stays zero (as the wrapper
    leaves it), an unseen domain predicts 0.5; dense and CSR input give the same fit."""
    X, y, dom = planted(2, sizes={"d0": 150, "d1": 40, "d2": 18, "d3": 12})
    y = y.copy()
    y[dom == "d3"] = "a"  # one class
    ours = SpecificOnlyClassifier(C=C).fit(X, y, domains=dom)
    ref = SpecificOnlyClassifier(C=C, solver="liblinear").fit(X, y, domains=dom)
    assert list(ours.domains_) == list(ref.domains_)
    for d in ours.domains_:
        m = dom == d
        close_or_better(
            liblinear_objective(ours.coefs_[d], X[m], y[m], C), liblinear_objective(ref.coefs_[d], X[m], y[m], C)
        )
    assert np.all(ours.coefs_["d3"] == 0.0) and np.all(ref.coefs_["d3"] == 0.0)
    assert ours.predict_proba(X[:3], np.array(["unseen"] * 3, dtype=object))[:, 1].tolist() == [0.5] * 3
    assert list(ours.uses_domain_weights(np.array(["d0", "unseen"], dtype=object))) == [True, False]
    sparse = SpecificOnlyClassifier(C=C).fit(sp.csr_matrix(X), y, domains=dom)
    for d in ours.domains_:
        np.testing.assert_allclose(sparse.coefs_[d], ours.coefs_[d], atol=1e-12)


def test_selection_path_equals_refits_per_fold_and_warm_equals_cold() -> None:
    """The stored-design C path (held-out rows weight 0, warm starts along C) gives each fold's fit on its
    training rows alone, and the grid search chooses what the liblinear route chooses."""
    X, y, dom = planted(3)
    folds = stratified_folds(dom, y, 5, 0)
    for est in (SpecificOnlyClassifier(), FlatPooledClassifier()):
        g = DomainGridSearchCV(est, est.param_grid(0)).fit(X, y, domains=dom)
        path = est.selection_path(X, np.where(y == "a", 1.0, -1.0), dom, None, g.classes_)
        assert path is not None
        got = path.fold_probabilities(folds, list(C_GRID))
        assert [k for k, _, _ in got] == [0, 1, 2, 3, 4]
        for _k, te, probs in got[:2]:
            for c, C in enumerate(C_GRID):
                cold = type(est)(C=C).fit(X[~te], y[~te], domains=dom[~te])
                np.testing.assert_allclose(probs[c], cold.predict_proba(X[te], dom[te])[:, 1], atol=1e-5)
        ref = DomainGridSearchCV(est.set_params(solver="liblinear"), est.param_grid(0)).fit(X, y, domains=dom)
        assert g.selected_config_ == ref.selected_config_
        np.testing.assert_allclose(g.cv_results_.cv_fold_accuracy, ref.cv_results_.cv_fold_accuracy)
        np.testing.assert_allclose(g.cv_results_.cv_fold_log_loss, ref.cv_results_.cv_fold_log_loss, rtol=1e-4)
        np.testing.assert_allclose(g.predict_proba(X, dom), ref.predict_proba(X, dom), atol=1e-4)


# The smallest case of the bundled sample where the two routes part (comp-rep, human:llmeval2-annotators, in-domain
# split 0, CV fold 4, domain "finance"): its 4 training pairs on 3 of the 45 concepts (columns 17, 22 and 20), the
# first two columns identical (comp-rep values are in {-1, 0, 1}, so a domain of a few pairs has many identical or
# opposite columns).
DUP_X = np.array([[1, 1, 1], [0, 0, 1], [0, 0, -1], [-1, -1, 0]], dtype=float)
DUP_Y = np.array(["b", "a", "b", "a"], dtype=object)
DUP_HELD_OUT = np.array([[1.0, 0.0, 1.0]])  # the held-out pair of that fold ("a" won): it has the first column only


@pytest.mark.parametrize("C", [2.5, 5.0])
def test_identical_columns_leave_held_out_predictions_undetermined(C: float) -> None:
    """Identical columns make the optimum non-unique: cd and liblinear reach one objective and the same training
    logits, but split the weight of the identical columns differently (any split of one sign is optimal), so a
    held-out pair with only one of them gets a different prediction, here on opposite sides of 0.5. This is why
    the routes can select another C on comp- and score-rep designs (docs/fitting.md), not a solver fault."""
    dom = np.array(["finance"] * len(DUP_Y), dtype=object)
    ours = SpecificOnlyClassifier(C=C).fit(DUP_X, DUP_Y, domains=dom)
    ref = SpecificOnlyClassifier(C=C, solver="liblinear").fit(DUP_X, DUP_Y, domains=dom)
    w_ours, w_ref = ours.coefs_["finance"], ref.coefs_["finance"]
    objective = liblinear_objective(w_ours, DUP_X, DUP_Y, C)
    close_or_better(objective, liblinear_objective(w_ref, DUP_X, DUP_Y, C))
    np.testing.assert_allclose(DUP_X @ w_ours, DUP_X @ w_ref, atol=1e-4)
    total = w_ours[0] + w_ours[1]
    assert total == pytest.approx(w_ref[0] + w_ref[1], abs=1e-4) and abs(total) > 0.5
    for t in (0.0, 0.3, 1.0):  # every split of the identical columns' weight has the same objective
        moved = np.array([t * total, (1 - t) * total, w_ours[2]])
        assert liblinear_objective(moved, DUP_X, DUP_Y, C) == pytest.approx(objective, rel=1e-12)
    held = np.array(["finance"], dtype=object)
    z_ours, z_ref = ours.decision_function(DUP_HELD_OUT, held)[0], ref.decision_function(DUP_HELD_OUT, held)[0]
    assert z_ours < 0.0 < z_ref, (z_ours, z_ref)


def test_peer_elastic_net_backends_are_identical() -> None:
    """saga called directly gives the estimator's weights bit for bit (weights, a one-class domain, sparse)."""
    X, y, dom = planted(4, sizes={"d0": 90, "d1": 30, "d2": 12})
    y = y.copy()
    y[dom == "d2"] = "b"
    w = np.random.default_rng(1).uniform(0.5, 2.0, len(y))
    for Xin, sw in ((X, None), (X, w), (sp.csr_matrix(X), None)):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            a = PeerElasticNetClassifier().fit(Xin, y, domains=dom, sample_weight=sw)
            b = PeerElasticNetClassifier(backend="estimator").fit(Xin, y, domains=dom, sample_weight=sw)
        for d in b.coefs_:
            assert np.array_equal(a.coefs_[d], b.coefs_[d]) and a.intercepts_[d] == b.intercepts_[d], d
        np.testing.assert_array_equal(a.predict_proba(Xin, dom), b.predict_proba(Xin, dom))


def test_unknown_solver_is_refused() -> None:
    X, y, dom = planted(0)
    with pytest.raises(ValueError, match="solver"):
        SpecificOnlyClassifier(solver="lbfgs").fit(X, y, domains=dom)
    with pytest.raises(ValueError, match="backend"):
        PeerElasticNetClassifier(backend="x").fit(X, y, domains=dom)
