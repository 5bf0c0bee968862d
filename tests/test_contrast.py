"""Mechanism contrasts as fitted parameters (py_models/contrast.py, contrast_build.py; the fct_mechanism_contrasts
mart): Benjamini-Hochberg, planted data (a recovered difference, interval coverage, null contrasts not flagged),
the pair rule, and the README's human-vs-judge question answered from the mart of the shared sample build."""

from __future__ import annotations

import duckdb
import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone

from py_models._augment import sigmoid
from py_models.contrast import MechanismContrast, benjamini_hochberg, bootstrap_p_values
from py_models.contrast_build import ALL_DOMAINS, ContrastSettings, contrast_pairs, fit_contrasts
from py_models.synthetic import make_planted
from tests.conftest import SampleRun

PLANTED_CONCEPT = 3
N_CONCEPTS = 20


def planted_pair(n_items: int, seed: int, delta: float = 1.0) -> dict:
    """Items from ``make_planted`` (2 domains, 20 shared concepts, 6 with planted weights), each judged by two
    mechanisms: A with the planted weights w, B with w + delta on one concept. Every item appears once per
    mechanism; the true contrast A - B is -delta on that concept and 0 elsewhere."""
    data = make_planted(
        n_items,
        n_concepts=N_CONCEPTS,
        n_shared=N_CONCEPTS,
        n_domains=2,
        density=0.4,
        n_active_shared=6,
        n_dev_per_domain=0,
        seed=seed,
    )
    X = data.X.toarray()
    w_a = data.b.copy()
    w_b = data.b.copy()
    w_b[PLANTED_CONCEPT] += delta
    rng = np.random.default_rng(seed + 1000)
    y_a = np.where(rng.random(n_items) < sigmoid(X @ w_a), "a", "b")
    y_b = np.where(rng.random(n_items) < sigmoid(X @ w_b), "a", "b")
    items = np.array([f"item{i}" for i in range(n_items)], dtype=object)
    return {
        "X": np.vstack([X, X]),
        "y": np.concatenate([y_a, y_b]).astype(object),
        "mechanisms": np.array(["A"] * n_items + ["B"] * n_items, dtype=object),
        "items": np.concatenate([items, items]),
        "strata": np.concatenate([data.domains, data.domains]),
        "truth": w_a - w_b,
        "names": [f"c{j:02d}" for j in range(N_CONCEPTS)],
    }


def flagged(table: pd.DataFrame, fdr: float = 0.05) -> pd.Series:
    q = benjamini_hochberg(table["p_value"])
    return pd.Series((q <= fdr) & ((table["ci_low"] > 0) | (table["ci_high"] < 0)).to_numpy(), index=table.index)


# ------------------------------------------------------------------ Benjamini-Hochberg and p-values


def test_benjamini_hochberg_matches_the_step_up_rule_by_hand() -> None:
    p = np.array([0.01, 0.04, 0.03, 0.20, 0.001])
    # sorted: 0.001, 0.01, 0.03, 0.04, 0.20 -> p * 5 / rank: 0.005, 0.025, 0.05, 0.05, 0.20 (already monotone)
    np.testing.assert_allclose(benjamini_hochberg(p), [0.025, 0.05, 0.05, 0.20, 0.005])
    # the step-up minimum: a larger p later in the order pulls the earlier ones down to its value
    np.testing.assert_allclose(benjamini_hochberg([0.02, 0.021, 0.022]), [0.022, 0.022, 0.022])
    assert benjamini_hochberg([0.9, 0.95]).max() <= 1.0
    q = benjamini_hochberg([0.01, np.nan, 0.02])
    assert np.isnan(q[1]) and np.allclose(q[[0, 2]], [0.02, 0.02])  # NaN is not in the family
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        benjamini_hochberg([0.5, 1.5])


def test_benjamini_hochberg_controls_the_false_discovery_rate_on_uniform_nulls() -> None:
    rng = np.random.default_rng(0)
    rejections = [int((benjamini_hochberg(rng.random(45)) <= 0.05).sum()) for _ in range(400)]
    assert np.mean(np.array(rejections) > 0) <= 0.08  # all null: FDR = FWER <= 0.05 (plus sampling error)
    naive = [int((rng.random(45) <= 0.05).sum()) for _ in range(400)]
    assert np.mean(np.array(naive) > 0) > 0.8  # uncorrected, nearly every family has a false discovery


def test_bootstrap_p_values_treat_an_exact_zero_as_no_evidence() -> None:
    reps = np.array([[0.0, 1.0, 0.9], [0.0, 1.2, -0.9], [0.1, 0.8, 0.0], [0.0, 1.1, 0.1]])
    p = bootstrap_p_values([0.0, 1.0, 0.05], reps)
    assert p[0] == 1.0
    assert p[1] < 1e-3
    assert p[2] > 0.5


# ------------------------------------------------------------------ the estimator on planted data


def test_planted_difference_is_recovered_covered_and_nulls_are_not_flagged() -> None:
    replicates = 8
    covered, found, null_flags, estimates = 0, 0, 0, []
    for r in range(replicates):
        d = planted_pair(1000, seed=r)
        model = MechanismContrast(n_bootstrap=100, seed=r).fit(
            d["X"], d["y"], mechanisms=d["mechanisms"], items=d["items"], strata=d["strata"]
        )
        table = model.contrast_table(d["names"])
        assert list(table[["mechanism_a", "mechanism_b"]].drop_duplicates().itertuples(index=False, name=None)) == [
            ("A", "B")
        ]
        planted = table.iloc[PLANTED_CONCEPT]
        truth = d["truth"][PLANTED_CONCEPT]
        estimates.append(planted["estimate"])
        covered += int(planted["ci_low"] <= truth <= planted["ci_high"])
        flags = flagged(table)
        found += int(flags.iloc[PLANTED_CONCEPT])
        null_flags += int(flags.drop(index=PLANTED_CONCEPT).sum())
        assert planted["selection_frequency"] > 0.9
        # the contrast is the difference of the mechanisms' total weights, whatever part of it b took
        np.testing.assert_allclose(table["estimate"], table["weight_a"] - table["weight_b"], atol=1e-9)
    assert abs(np.mean(estimates) - (-1.0)) < 0.25, estimates
    assert covered >= 6, f"the interval covered the planted -1 in {covered} of {replicates} replicates"
    assert found >= 7, f"the planted contrast was flagged in {found} of {replicates} replicates"
    assert null_flags <= 0.05 * replicates * (N_CONCEPTS - 1), f"{null_flags} null contrasts flagged"


def test_without_the_relaxed_refit_the_l1_contrast_is_shrunk_towards_zero() -> None:
    d = planted_pair(1000, seed=0)
    kw = dict(mechanisms=d["mechanisms"], items=d["items"], strata=d["strata"])
    relaxed = MechanismContrast(n_bootstrap=0).fit(d["X"], d["y"], **kw).contrast_table(d["names"])
    plain = MechanismContrast(n_bootstrap=0, relax=None).fit(d["X"], d["y"], **kw).contrast_table(d["names"])
    assert abs(plain["estimate"].iloc[PLANTED_CONCEPT]) < abs(relaxed["estimate"].iloc[PLANTED_CONCEPT])
    assert relaxed["ci_low"].isna().all()  # no resamples: no interval


def test_no_difference_planted_flags_almost_nothing() -> None:
    d = planted_pair(800, seed=11, delta=0.0)
    model = MechanismContrast(n_bootstrap=100, seed=3).fit(
        d["X"], d["y"], mechanisms=d["mechanisms"], items=d["items"], strata=d["strata"]
    )
    assert flagged(model.contrast_table(d["names"])).sum() <= 1


def test_item_bootstrap_resamples_whole_items_and_results_are_reproducible() -> None:
    d = planted_pair(300, seed=5)
    kw = dict(mechanisms=d["mechanisms"], items=d["items"], strata=d["strata"])
    a = MechanismContrast(n_bootstrap=20, seed=1, select=False).fit(d["X"], d["y"], **kw)
    b = clone(a).fit(d["X"], d["y"], **kw)
    np.testing.assert_array_equal(a.bootstrap_deviations_, b.bootstrap_deviations_)
    assert a.n_items_ == 300 and a.n_pairs_ == {"A": 300, "B": 300}
    assert a.score(d["X"], d["y"], domains=d["mechanisms"]) > 0.5
    bad = d["strata"].copy()
    bad[0] = "elsewhere"  # item0's verdict of A in another stratum than its verdict of B
    with pytest.raises(ValueError, match="constant within an item"):
        MechanismContrast(n_bootstrap=5).fit(d["X"], d["y"], mechanisms=d["mechanisms"], items=d["items"], strata=bad)
    with pytest.raises(ValueError, match="at least two mechanisms"):
        MechanismContrast().fit(d["X"][:300], d["y"][:300], mechanisms=d["mechanisms"][:300], items=d["items"][:300])


# ------------------------------------------------------------------ the build's pair rule


def _frame(d: dict, extra_mechanism_items: int) -> tuple[pd.DataFrame, list[str]]:
    frame = pd.DataFrame(d["X"], columns=d["names"])
    frame.insert(0, "label_id", [f"l{i}" for i in range(len(frame))])
    frame.insert(1, "item_id", d["items"])
    frame.insert(2, "mechanism", d["mechanisms"])
    frame.insert(3, "mechanism_type", np.where(d["mechanisms"] == "A", "human", "judge"))
    frame.insert(4, "domain", d["strata"])
    frame.insert(5, "winner", d["y"])
    third = frame[frame["mechanism"] == "A"].head(extra_mechanism_items).copy()
    third["mechanism"], third["mechanism_type"] = "C", "reward"
    third["label_id"] = [f"c{i}" for i in range(len(third))]
    return pd.concat([frame, third], ignore_index=True), d["names"]


def test_pairs_below_the_shared_item_minimum_are_not_fitted_and_every_family_is_corrected() -> None:
    d = planted_pair(240, seed=2)
    frame, names = _frame(d, extra_mechanism_items=30)
    assert contrast_pairs(frame, 50) == [("A", "B", 240)]
    assert contrast_pairs(frame, 30) == [("A", "B", 240), ("A", "C", 30), ("B", "C", 30)]
    settings = ContrastSettings(min_shared_items=50, min_domain_items=100, n_bootstrap=30)
    out = fit_contrasts(frame, names, representation="comp", standardize=False, settings=settings)
    per_domain = frame.drop_duplicates("item_id")["domain"].value_counts()
    expected_scopes = {ALL_DOMAINS, *per_domain.index[per_domain >= 100]}
    assert set(out["domain"]) == expected_scopes
    assert set(zip(out["mechanism_a"], out["mechanism_b"])) == {("A", "B")}
    assert (out.groupby("domain").size() == N_CONCEPTS).all()
    all_scope = out[out["domain"] == ALL_DOMAINS]
    assert (all_scope["n_shared_items"] == 240).all() and (all_scope["n_pairs_a"] == 240).all()
    assert (all_scope[["mechanism_type_a", "mechanism_type_b"]] == ["human", "judge"]).all().all()
    for _, family in out.groupby("domain"):  # one BH family per pair x domain
        np.testing.assert_allclose(family["p_adjusted"], benjamini_hochberg(family["p_value"]))
    excludes = (out["ci_low"] > 0) | (out["ci_high"] < 0)
    assert (out["distinguishable"] == ((out["p_adjusted"] <= 0.05) & excludes)).all()
    assert fit_contrasts(frame, [], representation="comp", standardize=False, settings=settings).empty


# ------------------------------------------------------------------ the mart on the real sample build

HUMAN, JUDGE = "human:mt-bench-experts", "judge:gpt-4"


def test_the_readme_human_vs_judge_question_from_the_contrast_mart(sample_run: SampleRun) -> None:
    con = duckdb.connect(str(sample_run.paths.serve_db), read_only=True)
    try:
        latest = con.execute("select fit_id from marts.dim_latest_fit").fetchone()[0]
        # the items both judged, counted from the published features, not from the contrast fit
        shared = con.execute(
            """select count(*) from (select item_id from marts.fct_pair_features_measure where mechanism = ?
               intersect select item_id from marts.fct_pair_features_measure where mechanism = ?)""",
            [HUMAN, JUDGE],
        ).fetchone()[0]
        answer = con.execute(
            """select concept, lift_diff_pct, lift_diff_ci_low, lift_diff_ci_high, selection_frequency, p_value,
                      p_adjusted, distinguishable, verdict, n_shared_items, fit_id, representation
               from marts.rpt_mechanism_contrast
               where mechanism_a = ? and mechanism_b = ? and domain = '__all__'
               order by distinguishable desc, abs(lift_diff_pct) desc""",
            [JUDGE, HUMAN],
        ).df()
        mart = con.execute(
            "select * from marts.fct_mechanism_contrasts where fit_id = ? order by mechanism_a, mechanism_b, domain",
            [latest],
        ).df()
        n_concepts = con.execute(
            """select count(*) - 6 from information_schema.columns
               where table_schema = 'marts' and table_name = 'fct_pair_features_measure'"""
        ).fetchone()[0]
        eligible = con.execute(
            """with m as (select distinct item_id, mechanism from marts.fct_pair_features_measure)
               select a.mechanism, b.mechanism from m as a join m as b
                 on a.item_id = b.item_id and a.mechanism < b.mechanism
               group by all having count(*) >= 50"""
        ).fetchall()
    finally:
        con.close()
    assert shared >= 50
    assert len(answer) == n_concepts > 0  # one row per measure-rep concept
    assert (answer["fit_id"] == latest).all() and (answer["representation"] == "measure").all()
    assert (answer["n_shared_items"] == shared).all()
    assert answer[["lift_diff_ci_low", "lift_diff_ci_high", "selection_frequency", "p_value"]].notna().all().all()
    assert (answer["lift_diff_ci_low"] <= answer["lift_diff_ci_high"]).all()
    assert set(answer["verdict"]) <= {"a rewards more", "b rewards more", "not distinguishable"}
    # the mart holds one orientation; the report both, negated
    one = mart[(mart["mechanism_a"] == HUMAN) & (mart["mechanism_b"] == JUDGE) & (mart["domain"] == "__all__")]
    merged = answer.merge(one, on="concept")
    np.testing.assert_allclose(merged["lift_diff_pct"], -50.0 * merged["estimate"], atol=1e-9)
    # the BH decision, recomputed here per pair x domain from the published p-values
    for _, family in mart.groupby(["mechanism_a", "mechanism_b", "domain"]):
        q = benjamini_hochberg(family["p_value"])
        np.testing.assert_allclose(family["p_adjusted"], q, rtol=1e-9)
        excludes = (family["ci_low"] > 0) | (family["ci_high"] < 0)
        assert (family["distinguishable"] == ((q <= family["fdr"]) & excludes)).all()
    # the pair rule: exactly the mechanism pairs with >= 50 shared items were fitted
    assert set(zip(mart["mechanism_a"], mart["mechanism_b"])) == set(eligible)
