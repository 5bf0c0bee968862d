"""Evaluation protocols (py_models.eval_protocols) and `preflens evaluate` end to end."""

from __future__ import annotations

from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest

from pipelines.evaluate.workers import run_units
from py_models.cv import score
from py_models.eval_protocols import (
    EVAL_COLUMNS,
    OOD_VARIANTS,
    TIE_POLICY,
    VARIANTS,
    ProtocolSettings,
    fit_variant,
    in_domain_splits,
    ood_splits,
    plan_units,
    prepare_mechanism,
    run_protocols,
    sort_results,
    variant_groups,
)
from py_models.synthetic import make_planted
from tests.conftest import REPO, preflens

GOLDEN = REPO / "tests" / "golden" / "eval_protocols_small.csv"

KEY = ["mechanism", "representation", "variant", "protocol", "split", "domain"]


def make_frame(seed: int = 0) -> tuple[pd.DataFrame, list[str]]:
    frames = []
    for k, mech in enumerate(["judge:planted", "human:planted"]):
        D = make_planted(
            0,
            n_concepts=12,
            n_shared=8,
            n_domains=3,
            density=0.4,
            n_active_shared=4,
            domain_sizes={"d0": 120, "d1": 100, "d2": 40},
            seed=seed + k,
        )
        f = pd.DataFrame(D.X.toarray(), columns=D.concept_names)
        win = D.y.copy()
        win[:7] = "tie"
        f.insert(0, "winner", win)
        f.insert(0, "domain", D.domains)
        f.insert(0, "mechanism_type", mech.split(":")[0])
        f.insert(0, "mechanism", mech)
        f.insert(0, "item_id", [f"i{i}" for i in range(len(f))])
        f.insert(0, "label_id", [f"{mech}:{i}" for i in range(len(f))])
        frames.append(f)
    return pd.concat(frames, ignore_index=True), D.concept_names


@pytest.fixture(scope="module")
def results():
    df, cols = make_frame()
    return df, run_protocols(df, cols, representation="comp", n_splits=2, n_seeds=2, min_ood_test=45)


def test_split_helpers_are_stratified_and_disjoint():
    dom = np.array(["a"] * 80 + ["b"] * 40 + ["c"] * 1, dtype=object)
    splits = in_domain_splits(dom, 4, 0.125, 0)
    for te in splits:
        assert te[dom == "a"].sum() == 10 and te[dom == "b"].sum() == 5 and te[dom == "c"].sum() == 0
    assert not np.array_equal(splits[0], splits[1])
    for d, _s, tr, te in ood_splits(dom, 2, 0.875, 30, 0):
        assert d in {"a", "b"} and not (tr & te).any()
        assert not tr[dom == d].any() and te[dom == d].all()
        assert tr[dom == "c"].all()  # max(1, round(0.875 * 1))


def test_protocol_rows(results):
    df, res = results
    assert list(res.columns) == EVAL_COLUMNS
    assert not res.duplicated(KEY).any()
    assert set(res.variant) == set(VARIANTS)
    assert set(res.loc[res.protocol == "ood", "variant"]) == set(OOD_VARIANTS)
    assert res.accuracy.between(0, 1).all() and (res.n_pairs > 0).all()
    assert (res.tie_policy == TIE_POLICY).all() and (res.n_ties_dropped == 7).all()
    ind = res[(res.protocol == "in_domain") & (res.domain == "__all__")]
    n_dec = (df[df.mechanism == "judge:planted"].winner != "tie").sum()
    j = ind[ind.mechanism == "judge:planted"]
    assert ((j.n_train + j.n_pairs) == n_dec).all()  # test pairs never enter training
    assert set(j.split) == {0, 1}
    per_dom = res[(res.protocol == "in_domain") & (res.domain != "__all__")]
    tot = per_dom.groupby(["mechanism", "variant", "split"]).n_pairs.sum()
    allr = ind.set_index(["mechanism", "variant", "split"]).n_pairs
    assert (tot.reindex(allr.index) == allr).all()
    ood = res[res.protocol == "ood"]
    assert set(ood.held_out_domain) == {"d0", "d1"}  # d2 has < 45 pairs
    assert (ood.domain == ood.held_out_domain).all() and set(ood.split) == {0, 1}
    # the planted signal is learned: HMDR well above chance in and out of domain
    mean = res[res.domain.isin(["__all__"]) | (res.protocol == "ood")].groupby(["variant", "protocol"]).accuracy.mean()
    assert mean[("hmdr", "in_domain")] > 0.6 and mean[("hmdr", "ood")] > 0.6
    assert res.selected_config.str.len().gt(0).all()


def test_protocols_are_deterministic(results):
    df, res = results
    df2, cols = make_frame()
    again = run_protocols(
        df2.sample(frac=1.0, random_state=3),
        cols,
        representation="comp",
        n_splits=2,
        n_seeds=2,
        min_ood_test=45,
        variants=("hmdr",),
    )
    a = res[res.variant == "hmdr"].set_index(KEY).accuracy.sort_index()
    b = again.set_index(KEY).accuracy.sort_index()
    pd.testing.assert_series_equal(a, b)


#: variants whose numbers do not depend on the HMDR solver (py_models/hmdr.py, being replaced): pinned exactly
SOLVER_FREE = ("shared_only", "specific_only", "flat_pooled", "peer_enet")
#: of those, the L1 baselines: since PROTOCOL_VERSION 2 solved by the cd kernel instead of liblinear (the golden's
#: solver). Their accuracies and selected configurations are still pinned exactly (on this fixture no CV choice
#: changed); their log-losses moved by at most 1.2e-6 relative (liblinear stops at its own tolerance, cd at a
#: certified duality gap; the objectives agree within 1e-6, tests/test_baselines.py), so they are pinned to 1e-5
L1_BASELINES = ("shared_only", "specific_only", "flat_pooled")


def test_results_equal_the_pinned_golden(results):
    """The protocols give today's rows: the golden was written by the per-split loop this module replaced (same
    seeds, same splits, every variant, both protocols). Every row's keys, sizes and tie fields are pinned, and the
    numbers of the variants that do not use the HMDR solver (the L1 baselines' log-losses to their solver's
    tolerance, see ``L1_BASELINES``); the HMDR variants' numbers are the solver's (pinned
    against the per-split loop below, whatever the solver). Regenerate it only for an intended change of the
    protocols, and bump ``PROTOCOL_VERSION`` then (an interrupted evaluation must not mix the two)."""
    _, res = results
    gold = pd.read_csv(GOLDEN, keep_default_na=False, na_values={"held_out_domain": [""]})
    order = KEY + ["held_out_domain"]
    got = res.sort_values(order, na_position="first").reset_index(drop=True)
    gold = gold.sort_values(order, na_position="first").reset_index(drop=True)
    assert len(got) == len(gold)
    keys = [c for c in EVAL_COLUMNS if c not in ("accuracy", "log_loss", "selected_config", "held_out_domain")]
    pd.testing.assert_frame_equal(got[keys].astype(str), gold[keys].astype(str))
    assert (got.held_out_domain.fillna("") == gold.held_out_domain.fillna("")).all()
    free = got.variant.isin(SOLVER_FREE).to_numpy()
    assert free.sum() > 0
    pd.testing.assert_frame_equal(
        got.loc[free, ["accuracy", "selected_config"]].astype(str),
        gold.loc[free, ["accuracy", "selected_config"]].astype(str),
    )
    exact = got.variant.isin([v for v in SOLVER_FREE if v not in L1_BASELINES]).to_numpy()
    l1 = got.variant.isin(L1_BASELINES).to_numpy()
    assert exact.sum() > 0 and l1.sum() > 0
    np.testing.assert_allclose(got.log_loss[exact].to_numpy(float), gold.log_loss[exact].to_numpy(float), rtol=1e-12)
    np.testing.assert_allclose(got.log_loss[l1].to_numpy(float), gold.log_loss[l1].to_numpy(float), rtol=1e-5)


def test_the_golden_holds_for_every_representation(results):
    """The golden is the comp-rep run of its frame; a unit's numbers depend on its design, never on the
    representation's name, so the measure- and score-rep runs of the same frame give exactly the same rows (every
    variant, both protocols, HMDR's too) under their own name: the golden pins all three."""
    df, res = results
    _, cols = make_frame()
    assert set(res.representation) == {"comp"}
    for rep in ("measure", "score"):
        got = run_protocols(df, cols, representation=rep, n_splits=2, n_seeds=2, min_ood_test=45)
        assert (got.representation == rep).all()
        pd.testing.assert_frame_equal(got.drop(columns="representation"), res.drop(columns="representation"))


def _reference_rows(df: pd.DataFrame, cols: list[str], variants: tuple[str, ...], **kw) -> pd.DataFrame:
    """The per-split loop the units replaced: every variant fitted on its own, split by split."""
    s = ProtocolSettings(variants=variants, **kw)
    rows = []
    for mech in sorted(df.mechanism.unique()):
        d = prepare_mechanism(df[df.mechanism == mech], cols, "comp")
        y_pos = d.y == "a"
        runs: list[tuple[str, int, str | None, np.ndarray, np.ndarray]] = [
            ("in_domain", i, None, ~te, te)
            for i, te in enumerate(in_domain_splits(d.dom, s.n_splits, s.test_frac, s.seed, mech))
        ]
        runs += [
            ("ood", i, h, tr, te)
            for h, i, tr, te in ood_splits(d.dom, s.n_seeds, s.ood_train_frac, s.min_ood_test, s.seed, mech)
        ]
        for protocol, split, held, tr, te in runs:
            for v in variants:
                if protocol == "ood" and v not in OOD_VARIANTS:
                    continue
                m = fit_variant(v, d.X[tr], d.y[tr], d.dom[tr], seed=s.seed, min_domain_samples=s.min_domain_samples)
                prob = m.predict_proba(d.X[te], d.dom[te] if protocol == "in_domain" else None)[:, 1]
                doms = ["__all__"] + (sorted(set(d.dom[te].tolist())) if protocol == "in_domain" else [])
                for dom in doms:
                    sel = np.ones(te.sum(), bool) if dom == "__all__" else d.dom[te] == dom
                    acc, _ = score(y_pos[te][sel], prob[sel])
                    rows.append((mech, v, protocol, split, held if protocol == "ood" else dom, int(sel.sum()), acc))
    return pd.DataFrame(rows, columns=["mechanism", "variant", "protocol", "split", "domain", "n_pairs", "accuracy"])


def test_one_fit_serves_equal_variants_and_units_match_the_per_split_loop():
    """shared_only and flat_pooled (no shared mask) are one unit; the units' rows equal fitting every variant on
    its own, split by split (with whatever HMDR solver is installed)."""
    variants = ("hmdr", "shared_only", "flat_pooled", "peer_enet")
    assert variant_groups(VARIANTS) == [
        ("hmdr",),
        ("hmdr_paper",),
        ("shared_only", "flat_pooled"),
        ("specific_only",),
        ("dirty",),
        ("peer_enet",),
    ]
    assert variant_groups(VARIANTS, shared_mask=np.ones(3, bool)) == [(v,) for v in VARIANTS]
    df, cols = make_frame(seed=5)
    kw = dict(n_splits=2, n_seeds=1, min_ood_test=45)
    got = run_protocols(df, cols, representation="comp", variants=variants, **kw)
    ref = _reference_rows(df, cols, variants, **kw)
    key = ["mechanism", "variant", "protocol", "split", "domain"]
    got = got[key + ["n_pairs", "accuracy"]].sort_values(key).reset_index(drop=True)
    pd.testing.assert_frame_equal(got, ref.sort_values(key).reset_index(drop=True), check_dtype=False)
    # and the plan has one unit per training part for the two, each giving both variants' keys once
    design = prepare_mechanism(df[df.mechanism == "judge:planted"], cols, "comp")
    units = plan_units(design, ProtocolSettings(variants=variants, **kw))
    keys = [k for u in units for k in u.keys()]
    assert len(keys) == len(set(keys))
    assert sum(u.variants == ("shared_only", "flat_pooled") for u in units) == 2 + 2  # 2 splits + 2 OOD domains


def test_worker_processes_give_the_same_rows_in_any_order():
    """Units on 2 spawned worker processes, started in reverse, give exactly the in-process rows."""
    df, cols = make_frame(seed=2)
    settings = ProtocolSettings(variants=("shared_only", "peer_enet"), n_splits=2, n_seeds=1, min_ood_test=45)
    designs = {
        ("comp", m): prepare_mechanism(df[df.mechanism == m], cols, "comp") for m in sorted(df.mechanism.unique())
    }
    units = [u for d in designs.values() for u in plan_units(d, settings)]

    def frame(results):
        return sort_results(pd.DataFrame([r for _, rows, *_ in results for r in rows], columns=EVAL_COLUMNS))

    one = frame(run_units(designs, units, settings, n_jobs=1))
    two = frame(run_units(designs, units[::-1], settings, n_jobs=2))
    assert len(one) > 0
    pd.testing.assert_frame_equal(one, two)


@pytest.mark.slow
def test_preflens_evaluate_end_to_end(sample_copy: Path) -> None:
    wh = sample_copy
    db = wh / "preflens.duckdb"
    con = duckdb.connect(str(db), read_only=True)
    try:  # the main build already has the (empty) evaluation marts and the bootstrap columns
        assert con.execute("select count(*) from marts.fct_eval_results").fetchall()[0][0] == 0
        ce = con.execute(
            "select count(*), avg(n_bootstrap), min(selection_frequency), max(selection_frequency), "
            "count(*) filter (where total_weight_ci_low > total_weight or total_weight_ci_high < total_weight) "
            "from marts.fct_concept_effects where representation = 'measure' and control = 'none'"
        ).fetchall()[0]
        # bootstrap intervals are computed for the lead representation only
        other = con.execute(
            "select count(n_bootstrap) from marts.fct_concept_effects where representation <> 'measure'"
        ).fetchall()[0][0]
    finally:
        con.close()
    assert ce[0] > 0 and ce[1] > 0 and 0 <= ce[2] <= ce[3] <= 1
    assert other == 0
    ev = preflens(
        wh,
        "evaluate",
        "--splits",
        "2",
        "--seeds",
        "1",
        "--jobs",
        "1",
        "--mechanism",
        "judge:gpt-4",
        "--mechanism",
        "human:mt-bench-experts",
    )
    assert ev.returncode == 0, ev.stdout[-2000:] + ev.stderr[-2000:]
    assert "Mean accuracy %" in ev.stdout and "hmdr" in ev.stdout
    # progress: one plain line per mechanism and variant, on stderr
    for mech in ("judge:gpt-4", "human:mt-bench-experts"):
        for v in VARIANTS:
            assert any(f" measure {mech} {v}: " in line for line in ev.stderr.splitlines()), (mech, v, ev.stderr)
    con = duckdb.connect(str(db), read_only=True)
    try:
        raw = con.execute("select count(*), count(distinct eval_id), min(build_id) from ops.eval_results").fetchall()[0]
        fct = con.execute("select count(*), count(distinct variant) from marts.fct_eval_results").fetchall()[0]
        rpt = con.execute(
            "select mechanism, variant, protocol, n_runs, mean_accuracy, accuracy_ci_low, accuracy_ci_high "
            "from marts.rpt_model_comparison"
        ).df()
    finally:
        con.close()
    assert raw[0] == fct[0] > 0 and raw[1] == 1 and raw[2] is not None
    assert fct[1] == len(VARIANTS)
    assert set(rpt.mechanism) == {"judge:gpt-4", "human:mt-bench-experts"}
    ind = rpt[rpt.protocol == "in_domain"]
    assert (ind.n_runs == 2).all() and len(ind) == 2 * len(VARIANTS)
    assert (rpt.accuracy_ci_low <= rpt.mean_accuracy).all() and (rpt.mean_accuracy <= rpt.accuracy_ci_high).all()
    assert set(rpt.loc[rpt.protocol == "ood", "variant"]) <= set(OOD_VARIANTS)
