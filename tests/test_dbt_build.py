"""A real dbt build (staging -> features -> HMDR fit -> marts) on a small planted-signal fixture."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import duckdb
import pytest

from pipelines.build.dbt_runner import DbtError, dbt_cwd, dbt_env, dbt_executable, run_dbt
from pipelines.core.config import DBT_PROJECT_DIR, Paths
from tests.conftest import CHEAP_BUILD, planted_concepts, write_planted_raw

pytestmark = pytest.mark.slow

ANNOTATOR = {"annotator": "offline", "annotator_version": "test-1"}


def dbt_vars(values: dict[str, str]) -> list[str]:
    return ["--vars", "{" + ", ".join(f"{k}: '{v}'" for k, v in values.items()) + "}"]


VARS = dbt_vars(ANNOTATOR)
#: the fit history test builds four times; its subject is which fits stay and which is latest, not the fit (the
#: cheapest build, conftest ``CHEAP_BUILD``, on ``comp``: the planted annotations have no raw measures)
QUICK_VARS = dbt_vars({**ANNOTATOR, **CHEAP_BUILD, "representations": "comp"})


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Paths:
    paths = Paths(warehouse=tmp_path_factory.mktemp("wh"))
    info = write_planted_raw(paths.build_db)
    assert info["n_items"] == 240
    result = run_dbt(["build", *VARS], paths, build_id="fixture-build")
    assert result.counts.get("error", 0) == 0 and result.counts.get("fail", 0) == 0
    return paths


def q(paths: Paths, sql: str, params: list | None = None) -> list[tuple]:
    con = duckdb.connect(str(paths.build_db), read_only=True)
    try:
        return con.execute(sql, params or []).fetchall()
    finally:
        con.close()


def test_every_layer_is_built(built: Paths) -> None:
    tables = {r[0] + "." + r[1] for r in q(built, "select schema_name, table_name from duckdb_tables()")}
    views = {
        r[0] + "." + r[1] for r in q(built, "select schema_name, view_name from duckdb_views() where not internal")
    }
    for t in [
        "marts.fct_pair_features_comp",
        "marts.fct_pair_features_score",
        "marts.dim_concepts",
        "intermediate.int_item_concepts",
        "intermediate.int_hmdr_fits",
        "intermediate.int_fit_history_concept_effects",
        "intermediate.int_fit_history_model_metrics",
    ]:
        assert t in tables
    assert "staging.stg_raw__items" in views
    # the fit marts are views over the fits, filtered by build status (macros/fit_lineage.sql)
    assert {"marts.fct_concept_effects", "marts.fct_predictions", "marts.fct_model_metrics"} <= views


def test_hostile_concept_name_is_a_quoted_column_not_sql(built: Paths) -> None:
    hostile = planted_concepts()[-1]
    cols = [
        r[0] for r in q(built, "select column_name from duckdb_columns() where table_name = 'fct_pair_features_comp'")
    ]
    assert hostile in cols
    assert q(built, "select count(*) from raw.items")[0][0] == 240  # the 'drop table' text did nothing


def test_wide_feature_table_has_one_row_per_decisive_pair(built: Paths) -> None:
    n_wide = q(built, "select count(*) from marts.fct_pair_features_comp")[0][0]
    n_labels = q(built, "select count(*) from raw.labels where winner in ('a', 'b')")[0][0]
    assert n_wide == n_labels == 480
    values = q(built, 'select distinct "Clarity" from marts.fct_pair_features_comp order by 1')
    assert [v[0] for v in values] == [-1, 0, 1]


def test_planted_shared_and_domain_weights_are_recovered(built: Paths) -> None:
    rows = q(
        built,
        """select domain, concept, shared_weight, domain_deviation, global_lift_pct
           from marts.fct_concept_effects
           where mechanism = 'human:planted' and representation = 'comp' and control = 'none'""",
    )
    eff = {(d, c): (b, s, lift) for d, c, b, s, lift in rows}
    # Clarity is the strongest positive shared driver
    shared = {c: b for (d, c), (b, s, lift) in eff.items() if d == "__shared__"}
    assert max(shared, key=shared.get) == "Clarity" and shared["Clarity"] > 0
    # Verbosity hurts in legal only: its total lift in legal is negative and below the other domains
    legal = eff[("legal", "Verbosity")][2]
    assert legal < 0
    assert legal < eff[("general", "Verbosity")][2] and legal < eff[("coding", "Verbosity")][2]


def test_held_out_accuracy_separates_signal_from_noise(built: Paths) -> None:
    acc = dict(
        q(
            built,
            """select mechanism, accuracy from marts.fct_model_metrics
               where domain = '__all__' and representation = 'comp' and variant = 'hmdr'""",
        )
    )
    assert acc["human:planted"] > 0.7
    assert acc["judge:noise"] < 0.62


def test_predictions_cover_every_decisive_pair(built: Paths) -> None:
    n = q(built, "select count(*) from marts.fct_predictions where representation = 'comp'")[0][0]
    assert n == 480
    bad = q(built, "select count(*) from marts.fct_predictions where prob_a < 0 or prob_a > 1")[0][0]
    assert bad == 0


def test_every_mart_has_a_description_and_a_key_test(built: Paths) -> None:
    manifest = json.loads((built.dbt_target_dir / "manifest.json").read_text())
    models = {n["name"]: n for n in manifest["nodes"].values() if n["resource_type"] == "model"}
    tested = {
        manifest["nodes"][dep]["name"]
        for t in manifest["nodes"].values()
        if t["resource_type"] == "test"
        and (t.get("test_metadata") or {}).get("name") in {"unique", "unique_combination"}
        for dep in t["depends_on"]["nodes"]
        if dep in manifest["nodes"]
    }
    for name, node in models.items():
        assert node["description"].strip(), f"{name} has no description"
        assert name[:4] in {"stg_", "int_", "fct_", "dim_", "rpt_"}, f"{name} breaks the layer prefixes"
        assert name in tested, f"{name} has no key test"


def test_a_failing_dbt_test_fails_the_build(tmp_path: Path) -> None:
    paths = Paths(warehouse=tmp_path)
    write_planted_raw(paths.build_db, n_items=30)
    con = duckdb.connect(str(paths.build_db))
    con.execute("update raw.annotations set comp_value = 2 where concept = 'Clarity'")
    con.close()
    with pytest.raises(DbtError, match="accepted_values"):
        run_dbt(["build", "--select", "stg_raw__annotations", *VARS], paths, build_id="bad")


def _snapshot(paths: Paths, tables: list[str]) -> dict[str, list[tuple]]:
    con = duckdb.connect(str(paths.build_db), read_only=True)
    try:
        out = {}
        for t in tables:
            cols = [r[0] for r in con.execute(f"describe {t}").fetchall() if r[0] not in {"fit_id", "annotated_at"}]
            select = ", ".join(f'"{c}"' for c in cols)
            out[t] = con.execute(f"select {select} from {t} order by all").fetchall()
        return out
    finally:
        con.close()


def test_incremental_build_equals_full_refresh(tmp_path: Path) -> None:
    paths = Paths(warehouse=tmp_path)
    write_planted_raw(paths.build_db, n_items=90)
    run_dbt(["build", "--exclude", "int_hmdr_fits+", *VARS], paths, build_id="b1")
    write_planted_raw(paths.build_db, n_items=30, seed=8, start=90)  # new pairs arrive
    run_dbt(["build", "--exclude", "int_hmdr_fits+", *VARS], paths, build_id="b2")
    tables = [
        "intermediate.int_item_concepts",
        "intermediate.int_labelled_pairs",
        "marts.fct_pair_concepts",
        "marts.fct_pair_features_comp",
    ]
    incremental = _snapshot(paths, tables)
    assert len(incremental["intermediate.int_labelled_pairs"]) == 240
    run_dbt(["build", "--full-refresh", "--exclude", "int_hmdr_fits+", *VARS], paths, build_id="b3")
    assert _snapshot(paths, tables) == incremental


def test_dbt_docs_generate_includes_marts_and_exposures(built: Paths) -> None:
    run_dbt(["docs", "generate", *VARS], paths=built, build_id="docs")  # the build's vars: dbt parses partially
    catalog = json.loads((built.dbt_target_dir / "catalog.json").read_text())
    names = {n.split(".")[-1] for n in catalog["nodes"]}
    assert {"fct_concept_effects", "rpt_top_concepts", "dim_concepts"} <= names
    manifest = json.loads((built.dbt_target_dir / "manifest.json").read_text())
    assert any(k.startswith("exposure.") for k in manifest["exposures"])
    assert {"nightly", "prefit", "fit", "features", "reports"} <= set(manifest.get("selectors", {}))


def test_selectors_split_the_build_as_the_pipeline_runs_it(built: Paths) -> None:
    """`features` lists the feature models and not the fit; prefit + fit = nightly, and they do not overlap."""

    def ls(selector: str) -> set[str]:
        proc = subprocess.run(
            [
                dbt_executable(),
                "-q",
                "ls",
                "--selector",
                selector,
                "--resource-type",
                "model",
                "--output",
                "name",
                "--project-dir",
                str(DBT_PROJECT_DIR),
                "--profiles-dir",
                str(DBT_PROJECT_DIR),
                "--target-path",
                str(built.dbt_target_dir),
                *VARS,
            ],  # the build's vars: dbt parses partially
            env=dbt_env(built, "ls"),
            cwd=dbt_cwd(built),
            capture_output=True,
            text=True,
            timeout=300,
            check=True,
        )
        return {line.strip() for line in proc.stdout.splitlines() if line.strip()}

    features, prefit, fit, nightly = ls("features"), ls("prefit"), ls("fit"), ls("nightly")
    assert {"fct_pair_features_comp", "fct_pair_features_measure", "fct_pair_features_score"} <= features
    assert "int_hmdr_fits" not in features and not features & fit  # nothing of the fit, nor downstream of it
    assert "int_hmdr_fits" in fit and {"fct_concept_effects", "dim_latest_fit", "rpt_top_concepts"} <= fit
    assert not prefit & fit and prefit | fit == nightly


def test_earlier_fits_stay_queryable(tmp_path: Path) -> None:
    paths = Paths(warehouse=tmp_path)
    write_planted_raw(paths.build_db, n_items=60)
    run_dbt(["build", *QUICK_VARS], paths, build_id="20260101T000000Z-aaaaaa")
    write_planted_raw(paths.build_db, n_items=60, seed=9, start=60)  # a new data release
    run_dbt(["build", *QUICK_VARS], paths, build_id="20260201T000000Z-bbbbbb")
    # re-running a build's fit (the pipeline's `fit` stage: the data did not change) replaces it
    run_dbt(["build", "--selector", "fit", *QUICK_VARS], paths, build_id="20260201T000000Z-bbbbbb")
    fits = q(paths, "select fit_id, count(*) from marts.fct_concept_effects group by 1 order by 1")
    assert [f for f, _ in fits] == ["20260101T000000Z-aaaaaa", "20260201T000000Z-bbbbbb"]
    assert fits[0][1] == fits[1][1]  # same grid of (mechanism, representation, domain, concept)
    n_metric_fits = q(paths, "select count(distinct fit_id) from marts.fct_model_metrics")[0][0]
    assert n_metric_fits == 2
    # the weight of one concept across the two releases, as a README query does
    moved = q(
        paths,
        """select count(*) from (
               select concept, domain, mechanism, representation, control, count(distinct fit_id) as n
               from marts.fct_concept_effects group by all having n = 2)""",
    )[0][0]
    assert moved == fits[0][1]
    latest = q(paths, "select distinct fit_id from marts.rpt_top_concepts")
    assert latest == [("20260201T000000Z-bbbbbb",)]
    # "latest" is the fit that ran last, whatever its id sorts like (dim_latest_fit, by fitted_at)
    run_dbt(["build", "--selector", "fit", *QUICK_VARS], paths, build_id="20250101T000000Z-cccccc")
    assert q(paths, "select fit_id from marts.dim_latest_fit") == [("20250101T000000Z-cccccc",)]
    assert q(paths, "select distinct fit_id from marts.rpt_top_concepts") == [("20250101T000000Z-cccccc",)]
    assert q(paths, "select count(distinct fit_id) from marts.fct_predictions")[0][0] == 1
