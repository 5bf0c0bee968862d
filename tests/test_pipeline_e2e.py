"""The main job end to end through the real `preflens` console script, on the bundled sample.

The first run is the session's shared sample run (conftest ``sample_run``); the re-run (the cheapest build that runs
every stage, conftest ``CHEAP_BUILD``: the subject is what it ingests and annotates) and the refused build work on a
private copy of it.
"""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from tests.conftest import CHEAP_BUILD_ARGS, SampleRun, preflens

pytestmark = pytest.mark.slow


def counts(db: Path) -> dict[str, int]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        return {
            t: con.execute(f"select count(*) from raw.{t}").fetchone()[0] for t in ("items", "labels", "annotations")
        }
    finally:
        con.close()


def test_run_publishes_served_copy_and_summary(sample_run: SampleRun) -> None:
    wh = sample_run.warehouse
    serve = sample_run.paths.serve_db
    assert serve.exists()
    con = duckdb.connect(str(serve), read_only=True)
    try:
        mechs = con.execute("select count(distinct mechanism) from marts.fct_model_metrics").fetchone()[0]
        types = {r[0] for r in con.execute("select distinct mechanism_type from marts.fct_model_metrics").fetchall()}
        n_domains = con.execute("select count(*) from marts.dim_domains").fetchone()[0]
        acc = con.execute(
            "select min(accuracy), max(accuracy) from marts.fct_model_metrics where domain = '__all__'"
        ).fetchone()
    finally:
        con.close()
    assert mechs >= 15 and types == {"human", "judge", "reward"} and n_domains >= 6
    assert 0.0 <= acc[0] <= acc[1] <= 1.0
    assert (wh / "serve" / "parquet" / "fct_concept_effects.parquet").exists()
    out = sample_run.stdout
    assert "held-out" in out.lower() and "judge:gpt-4" in out and "Done in" in out


def test_rerun_is_idempotent_and_reuses_annotations(sample_copy: Path) -> None:
    wh = sample_copy
    before = counts(wh / "preflens.duckdb")
    proc = preflens(wh, "run", *CHEAP_BUILD_ARGS)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert counts(wh / "preflens.duckdb") == before
    assert "0 new items" in proc.stdout
    assert "0 loaded" in proc.stdout


def test_concurrent_build_is_refused(sample_copy: Path) -> None:
    from pipelines.core.lock import BuildLock

    wh = sample_copy
    with BuildLock(wh / ".build.lock"):
        proc = preflens(wh, "build", timeout=120)
    assert proc.returncode == 3
    assert "build already running" in proc.stderr


def test_summary_command_reads_the_served_copy(sample_run: SampleRun) -> None:
    proc = preflens(sample_run.warehouse, "summary", "--representation", "score")
    assert proc.returncode == 0, proc.stderr
    assert "score-rep" in proc.stdout


def test_sample_build_publishes_measure_rep_baselines_and_length_control(sample_run: SampleRun) -> None:
    """Issue 9: the measure representation leads, every mechanism carries its length-only and style baselines on
    the same folds, the chosen configuration is recorded, and the length-controlled effects sit beside the plain
    ones."""
    con = duckdb.connect(str(sample_run.paths.serve_db), read_only=True)
    try:
        variants = con.execute(
            """select representation, variant, count(distinct mechanism) from marts.fct_model_metrics
               where domain = '__all__' group by all"""
        ).fetchall()
        base = con.execute(
            """select count(*), count(accuracy_style), count(accuracy_length_only)
               from marts.rpt_model_baselines where representation = 'measure'"""
        ).fetchone()
        controls = {r[0] for r in con.execute("select distinct control from marts.fct_concept_effects").fetchall()}
        ctrl_rows = con.execute(
            """select count(*) from marts.fct_concept_effects
               where control = 'length' and concept = 'Length control (log word-count ratio)'
                 and domain = '__shared__' and total_weight <> 0"""
        ).fetchone()[0]
        # measure-rep: the feature is the transformed difference, and the fit's scale is its RMS over the pairs
        check = con.execute(
            """with p as (
                   select c.concept, c.measure_a, c.measure_b, c.measure_diff, c.is_relevant, d.measure_transform
                   from marts.fct_pair_concepts c join marts.dim_concepts d using (concept)
               )
               select max(abs(measure_diff - case when not is_relevant then 0
                          when measure_transform = 'log1p'
                            then sign(measure_a) * ln(1 + abs(measure_a)) - sign(measure_b) * ln(1 + abs(measure_b))
                          else measure_a - measure_b end)),
                      count(*) filter (where measure_transform not in ('log1p', 'identity'))
               from p"""
        ).fetchone()
        scales = con.execute(
            """select min(feature_scale), max(feature_scale) from marts.fct_concept_effects
               where representation = 'measure' and control = 'none'"""
        ).fetchone()
    finally:
        con.close()
    by = {(r, v): n for r, v, n in variants}
    n_mech = by[("measure", "hmdr")]
    assert n_mech >= 15
    for rep in ("measure", "comp", "score"):
        for v in ("hmdr", "length_only", "style"):
            assert by.get((rep, v)) == n_mech, (rep, v)
        # the length-controlled refit is fitted for the lead representation only
        assert by.get((rep, "hmdr_length_control")) == (n_mech if rep == "measure" else None), rep
    assert base == (n_mech, n_mech, n_mech)
    assert controls == {"none", "length"} and ctrl_rows >= 1
    assert check[0] < 1e-9 and check[1] == 0
    assert scales[0] > 0 and scales[1] < 1e3
    out = sample_run.stdout
    assert "measure-rep" in out and "vs length only" in out and "vs style baseline" in out
