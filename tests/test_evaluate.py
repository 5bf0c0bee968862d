"""Evaluation protocols (py_models.eval_protocols) and `preflens evaluate` end to end."""

from __future__ import annotations

import subprocess
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest

from py_models.eval_protocols import (
    EVAL_COLUMNS,
    OOD_VARIANTS,
    TIE_POLICY,
    VARIANTS,
    in_domain_splits,
    ood_splits,
    run_protocols,
)
from py_models.synthetic import make_planted
from tests.conftest import env_with, venv_bin

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


@pytest.mark.slow
def test_preflens_evaluate_end_to_end(tmp_path: Path) -> None:
    wh = tmp_path / "wh"
    env = env_with(PREFLENS_WAREHOUSE=str(wh), COLUMNS="200")
    run = subprocess.run([venv_bin("preflens"), "run"], env=env, capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
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
    ev = subprocess.run(
        [
            venv_bin("preflens"),
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
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert ev.returncode == 0, ev.stdout[-2000:] + ev.stderr[-2000:]
    assert "Mean accuracy %" in ev.stdout and "hmdr" in ev.stdout
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
