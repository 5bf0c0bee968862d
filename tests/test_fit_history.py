"""Fit lineage in real dbt builds on the planted fixture: the fit-history marts show only fits a reader may trust.

Two builds of the same warehouse, as the pipeline runs them (a ``running`` row in ``ops.builds`` while dbt runs):

1. build ``b1`` (full build). Before it, the warehouse holds what an older project version left: fit history
   as tables ``marts.fct_concept_effects`` / ``fct_model_metrics`` / ``fct_fit_configs`` with one fit,
   ``legacy-fit``. After it, ``b1`` is recorded failed (its checks failed, or it was killed).
2. build ``b2`` (the fit stage), recorded published.

The fixture also has a mechanism whose 240 verdicts are all ties (issue 11, item 11).
"""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from pipelines.build.dbt_runner import run_dbt
from pipelines.core.config import Paths
from pipelines.core.warehouse import connect
from tests.conftest import QUICK_FIT, write_planted_raw

pytestmark = pytest.mark.slow

VARS = ["--vars", "{" + ", ".join(f"{k}: '{v}'" for k, v in {"annotator_version": "test-1", **QUICK_FIT}.items()) + "}"]
TIES_ONLY = "judge:always-tie"
REPRESENTATIONS = {"measure", "comp", "score"}
#: the fit-history marts and the per-fit marts: every mart that reads fit output
FIT_MARTS = (
    "fct_concept_effects",
    "fct_model_metrics",
    "fct_fit_configs",
    "fct_predictions",
    "fct_local_explanations",
    "fct_fit_skips",
)
HISTORY = ("fct_concept_effects", "fct_model_metrics", "fct_fit_configs")


def _add_tie_mechanism(db: Path) -> int:
    """Every planted item also judged by ``TIES_ONLY``, always a tie; returns the number of verdicts."""
    con = connect(db)
    try:
        con.execute(
            f"""insert into raw.labels
                select md5(item_id || 'tie'), item_id, '{TIES_ONLY}', 'judge', 'tie', null, null, 'ties.jsonl',
                       row_number() over (order by item_id), 'ing1', now()
                from raw.items"""
        )
        return int(con.execute(f"select count(*) from raw.labels where mechanism = '{TIES_ONLY}'").fetchone()[0])
    finally:
        con.close()


def _write_legacy_history(db: Path) -> None:
    """The fit-history tables an older version kept in schema marts (without today's bootstrap columns)."""
    con = connect(db)
    try:
        con.execute("create schema if not exists marts")
        con.execute(
            """create table marts.fct_concept_effects as
               select 'legacy-fit' as fit_id, 'human:planted' as mechanism, 'human' as mechanism_type,
                      'comp' as representation, '__shared__' as domain, 'Clarity' as concept,
                      1.5 as shared_weight, 0.0 as domain_deviation, 1.5 as total_weight, 75.0 as shared_lift_pct,
                      0.0 as deviation_lift_pct, 75.0 as global_lift_pct, 240::bigint as n_pairs,
                      false as has_domain_weights, 'none' as control, 1.0 as feature_scale"""
        )
        con.execute(
            """create table marts.fct_model_metrics as
               select 'legacy-fit' as fit_id, 'human:planted' as mechanism, 'human' as mechanism_type,
                      'comp' as representation, 'hmdr' as variant, '__all__' as domain, 'cv5_oof' as protocol,
                      240::bigint as n_pairs, 0.8 as accuracy, 0.45 as log_loss"""
        )
        con.execute(
            """create table marts.fct_fit_configs as
               select 'legacy-fit' as fit_id, 'human:planted' as mechanism, 'human' as mechanism_type,
                      'comp' as representation, 'fixed' as selection, 0.5 as alpha, 0.03125 as lambda_shared,
                      0.015625 as lambda_domain, 0.5 as pooling, null::double as cv_log_loss, 240::bigint as n_pairs,
                      'none' as control, null::double as duality_gap, 0::bigint as n_bootstrap,
                      timestamp '2025-01-01 00:00:00' as fitted_at"""
        )
    finally:
        con.close()


def _record(db: Path, build_id: str, status: str = "running", published: bool | None = None) -> None:
    con = connect(db)
    try:
        con.execute(
            """insert into ops.builds (build_id, started_at, status, package_version) values (?, now(), ?, 'test')
               on conflict (build_id) do update set status = excluded.status""",
            [build_id, status],
        )
        con.execute("update ops.builds set published = ? where build_id = ?", [published, build_id])
    finally:
        con.close()


def q(db: Path, sql: str) -> list[tuple]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def fit_ids(db: Path, relation: str) -> set[str]:
    return {r[0] for r in q(db, f"select distinct fit_id from {relation}")}


@pytest.fixture(scope="module")
def warehouse_after_b1(tmp_path_factory: pytest.TempPathFactory) -> Paths:
    """The planted warehouse with legacy history and a ties-only mechanism, after build b1 (still running)."""
    paths = Paths(warehouse=tmp_path_factory.mktemp("fit_history"))
    write_planted_raw(paths.build_db)
    assert _add_tie_mechanism(paths.build_db) == 240
    _write_legacy_history(paths.build_db)
    _record(paths.build_db, "b1")
    run_dbt(["build", *VARS], paths, build_id="b1")
    return paths


@pytest.fixture(scope="module")
def snapshot_b1_running(warehouse_after_b1: Paths) -> dict[str, set[str]]:
    """The fit ids every fit mart shows while b1 is running (its own tests and gates read them)."""
    return {mart: fit_ids(warehouse_after_b1.build_db, f"marts.{mart}") for mart in FIT_MARTS}


@pytest.fixture(scope="module")
def warehouse_after_b2(warehouse_after_b1: Paths, snapshot_b1_running: dict[str, set[str]]) -> Paths:
    """b1 recorded failed, then build b2's fit stage, recorded published."""
    db = warehouse_after_b1.build_db
    _record(db, "b1", "failed", False)
    _record(db, "b2")
    run_dbt(["build", "--selector", "fit", *VARS], warehouse_after_b1, build_id="b2")
    _record(db, "b2", "success", True)
    return warehouse_after_b1


def test_a_running_build_sees_its_own_fit_and_the_legacy_history(snapshot_b1_running: dict[str, set[str]]) -> None:
    for mart in HISTORY:
        assert snapshot_b1_running[mart] == {"legacy-fit", "b1"}, mart
    for mart in ("fct_predictions", "fct_local_explanations", "fct_fit_skips"):
        assert snapshot_b1_running[mart] == {"b1"}, mart


def test_a_failed_build_leaves_every_fit_mart_at_once(warehouse_after_b1: Paths, warehouse_after_b2: Paths) -> None:
    db = warehouse_after_b2.build_db
    for mart in FIT_MARTS:
        assert "b1" not in fit_ids(db, f"marts.{mart}"), mart
    for mart in HISTORY:
        assert fit_ids(db, f"marts.{mart}") == {"legacy-fit", "b2"}, mart
    assert q(db, "select fit_id from marts.dim_latest_fit") == [("b2",)]
    assert {r[0] for r in q(db, "select distinct fit_id from marts.rpt_top_concepts")} == {"b2"}


def test_the_history_store_keeps_every_fit_including_the_failed_one(warehouse_after_b2: Paths) -> None:
    db = warehouse_after_b2.build_db
    for mart in HISTORY:
        store = f"intermediate.int_fit_history_{mart.removeprefix('fct_')}"
        assert fit_ids(db, store) == {"legacy-fit", "b1", "b2"}, store
    # the legacy rows came over with the columns they had; the newer ones are null
    legacy = q(
        db,
        """select concept, total_weight, control, total_weight_ci_low from marts.fct_concept_effects
           where fit_id = 'legacy-fit'""",
    )
    assert legacy == [("Clarity", 1.5, "none", None)]
    n_b1 = q(db, "select count(*) from intermediate.int_fit_history_concept_effects where fit_id = 'b1'")[0][0]
    n_b2 = q(db, "select count(*) from marts.fct_concept_effects where fit_id = 'b2'")[0][0]
    assert n_b1 == n_b2 > 0


def test_a_mechanism_with_only_ties_gets_a_skip_row_per_representation(warehouse_after_b2: Paths) -> None:
    db = warehouse_after_b2.build_db
    assert q(db, f"select n_labels, n_decisive, n_ties from marts.dim_mechanisms where mechanism = '{TIES_ONLY}'") == [
        (240, 0, 240)
    ]
    rows = q(db, f"select fit_id, representation, reason from marts.fct_fit_skips where mechanism = '{TIES_ONLY}'")
    assert {r[1] for r in rows} == REPRESENTATIONS and {r[0] for r in rows} == {"b2"}
    for _, _, reason in rows:
        assert "240" in reason and "ties" in reason, reason
    # and in no other fit output
    for mart in ("fct_concept_effects", "fct_model_metrics", "fct_predictions"):
        assert q(db, f"select count(*) from marts.{mart} where mechanism = '{TIES_ONLY}'") == [(0,)], mart
    # the fitted mechanisms keep only the fit's own skip: measure-rep, which the planted annotations have no values for
    others = q(db, "select mechanism, representation from marts.fct_fit_skips where mechanism <> 'judge:always-tie'")
    assert sorted(others) == [("human:planted", "measure"), ("judge:noise", "measure")]
