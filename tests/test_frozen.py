"""Frozen-fit scoring maths (py_models/frozen.py) on planted weights: no I/O, no fit."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from py_models._augment import sigmoid
from py_models.frozen import (
    ALL_DOMAINS,
    SHARED_DOMAIN,
    FrozenFit,
    agreement_table,
    wilson_interval,
)
from py_models.synthetic import make_planted


def _effects(b: np.ndarray, S: np.ndarray, domains: list[str], names: list[str], scale: np.ndarray) -> pd.DataFrame:
    """fct_concept_effects-shaped rows of planted b and s_d (the marts' layout: '__shared__' holds b)."""
    rows = [
        {
            "domain": SHARED_DOMAIN,
            "concept": c,
            "shared_weight": b[j],
            "domain_deviation": 0.0,
            "has_domain_weights": True,
            "feature_scale": scale[j],
        }
        for j, c in enumerate(names)
    ]
    for k, d in enumerate(domains):
        rows += [
            {
                "domain": d,
                "concept": c,
                "shared_weight": b[j],
                "domain_deviation": S[k, j],
                "has_domain_weights": True,
                "feature_scale": scale[j],
            }
            for j, c in enumerate(names)
        ]
    return pd.DataFrame(rows).sample(frac=1.0, random_state=0)  # the marts give rows in no particular order


@pytest.fixture(scope="module")
def planted():
    return make_planted(3000, n_concepts=40, n_shared=10, n_domains=4, density=0.3, n_active_shared=6, seed=7)


def test_scoring_applies_the_planted_weights_per_domain_on_the_fits_scale(planted) -> None:
    rng = np.random.default_rng(1)
    scale = rng.uniform(0.5, 3.0, len(planted.concept_names))
    fit = FrozenFit.from_effects(_effects(planted.b, planted.S, planted.domain_names, planted.concept_names, scale))
    X = planted.X.toarray()
    pairs, explanations = fit.score(X * scale, planted.domains.tolist())

    index = {d: k for k, d in enumerate(planted.domain_names)}
    W = planted.b[None, :] + planted.S[[index[d] for d in planted.domains]]
    z = np.einsum("ij,ij->i", X, W)
    np.testing.assert_allclose(pairs["logit"], z, atol=1e-12)
    np.testing.assert_allclose(pairs["prob_a"], sigmoid(z), atol=1e-12)
    assert (pairs["predicted_winner"] == np.where(z > 0, "a", "b")).all()
    assert pairs["used_domain_weights"].all()
    # the local explanations add up to each pair's logit
    summed = explanations.groupby("row_id")["contribution"].sum().reindex(range(len(X)), fill_value=0.0)
    np.testing.assert_allclose(summed, z, atol=1e-10)


def test_an_unseen_domain_is_scored_with_the_shared_weights_alone(planted) -> None:
    scale = np.ones(len(planted.concept_names))
    fit = FrozenFit.from_effects(_effects(planted.b, planted.S, planted.domain_names, planted.concept_names, scale))
    X = planted.X.toarray()[:50]
    pairs, _ = fit.score(X, ["never-seen"] * 50)
    np.testing.assert_allclose(pairs["logit"], X @ planted.b, atol=1e-12)
    assert not pairs["used_domain_weights"].any()


def test_a_domain_without_its_own_weights_falls_back_to_b(planted) -> None:
    scale = np.ones(len(planted.concept_names))
    effects = _effects(planted.b, planted.S, planted.domain_names, planted.concept_names, scale)
    weightless = planted.domain_names[0]
    effects.loc[effects["domain"] == weightless, "has_domain_weights"] = False
    fit = FrozenFit.from_effects(effects)
    X = planted.X.toarray()[:20]
    pairs, _ = fit.score(X, [weightless] * 20)
    np.testing.assert_allclose(pairs["logit"], X @ planted.b, atol=1e-12)


def test_agreement_matches_the_planted_model_and_flipped_verdicts_drift(planted) -> None:
    """Verdicts drawn from the planted model agree with it as often as its own accuracy (no drift); the same
    verdicts flipped fall far below it (drift), overall and in every domain."""
    scale = np.ones(len(planted.concept_names))
    fit = FrozenFit.from_effects(_effects(planted.b, planted.S, planted.domain_names, planted.concept_names, scale))
    half = planted.X.shape[0] // 2
    X, dom, y = planted.X.toarray(), planted.domains, planted.y
    scored, _ = fit.score(X, dom.tolist())
    frame = pd.DataFrame({"domain": dom, "winner": y, "predicted_winner": scored["predicted_winner"]})
    first, second = frame.iloc[:half], frame.iloc[half:]
    # the fit's "held-out" figures: the planted model's accuracy on the first half
    acc = (first["winner"] == first["predicted_winner"]).groupby(first["domain"]).agg(["size", "mean"])
    held_out = pd.concat(
        [
            pd.DataFrame(
                {
                    "domain": [ALL_DOMAINS],
                    "n_pairs": [len(first)],
                    "accuracy": [(first["winner"] == first["predicted_winner"]).mean()],
                }
            ),
            acc.reset_index().rename(columns={"size": "n_pairs", "mean": "accuracy"}),
        ]
    )
    same = agreement_table(second, held_out)
    assert not same["drift"].astype(bool).any(), same
    overall = same.set_index("domain").loc[ALL_DOMAINS]
    assert overall["n_pairs"] == len(second)
    assert overall["agreement_ci_low"] <= overall["fit_accuracy"] <= overall["agreement_ci_high"]

    flipped = second.assign(winner=np.where(second["winner"] == "a", "b", "a"))
    drifted = agreement_table(flipped, held_out)
    assert drifted["drift"].astype(bool).all(), drifted
    assert drifted.set_index("domain").loc[ALL_DOMAINS, "agreement"] == pytest.approx(1 - overall["agreement"])


def test_a_domain_the_fit_has_no_figure_for_has_no_drift_verdict() -> None:
    verdicts = pd.DataFrame({"domain": ["new", "new", "old"], "winner": ["a", "b", "a"], "predicted_winner": "a"})
    held_out = pd.DataFrame({"domain": [ALL_DOMAINS, "old"], "n_pairs": [100, 40], "accuracy": [0.7, 0.75]})
    out = agreement_table(verdicts, held_out).set_index("domain")
    assert pd.isna(out.loc["new", "drift"]) and pd.isna(out.loc["new", "fit_accuracy"])
    assert out.loc["new", "n_pairs"] == 2 and out.loc["new", "agreement"] == 0.5
    assert out.loc["old", "drift"] is False or out.loc["old", "drift"] == False  # noqa: E712 (a numpy/pandas bool)


def test_drift_needs_the_agreement_interval_wholly_below_the_fits() -> None:
    held_out = pd.DataFrame({"domain": [ALL_DOMAINS], "n_pairs": [1000], "accuracy": [0.8]})
    fit_low = float(wilson_interval(800, 1000)[0][()])
    # 42 of 60 agree: 0.70, its interval reaches above the fit's lower end -> no drift
    ok = pd.DataFrame({"domain": "d", "winner": ["a"] * 60, "predicted_winner": ["a"] * 42 + ["b"] * 18})
    row = agreement_table(ok, held_out).set_index("domain").loc[ALL_DOMAINS]
    assert row["agreement_ci_high"] >= fit_low and not row["drift"]
    # 300 of 600 agree: 0.5, wholly below -> drift
    bad = pd.DataFrame({"domain": "d", "winner": ["a"] * 600, "predicted_winner": ["a"] * 300 + ["b"] * 300})
    row = agreement_table(bad, held_out).set_index("domain").loc[ALL_DOMAINS]
    assert row["agreement_ci_high"] < fit_low and row["drift"]


def test_wilson_interval_known_values() -> None:
    # Wilson (1927) score interval, z = 1.96: 8 of 10 -> [0.4902, 0.9433]; 0 of 10 -> [0, 0.2775]
    low, high = wilson_interval([8, 0, 5], [10, 10, 0])
    np.testing.assert_allclose(low[:2], [0.4902, 0.0], atol=1e-4)
    np.testing.assert_allclose(high[:2], [0.9433, 0.2775], atol=1e-4)
    assert np.isnan(low[2]) and np.isnan(high[2])


def test_rows_of_two_fits_are_refused() -> None:
    effects = pd.DataFrame(
        {
            "domain": [SHARED_DOMAIN, SHARED_DOMAIN],
            "concept": ["A", "A"],
            "shared_weight": [1.0, 2.0],
            "domain_deviation": [0.0, 0.0],
            "has_domain_weights": [True, True],
            "feature_scale": [1.0, 1.0],
        }
    )
    with pytest.raises(ValueError, match="repeat a concept"):
        FrozenFit.from_effects(effects)
