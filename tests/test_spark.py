"""The scale-out path: the same dbt project built on Apache Spark (dbt-spark, method session) gives the same marts.

Runs only with the optional extra installed (`make test-spark` installs it): skipped when pyspark or Java is
missing, so the default install and `make test` are unaffected. One DuckDB build and one Spark build of the
planted fixture (raw tables exported to Parquet), then every mart is compared: same columns, same rows,
floats within a tolerance.
"""

from __future__ import annotations

import math
import shutil
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest

from pipelines.build.dbt_runner import run_dbt
from pipelines.core.config import Paths
from tests.conftest import planted_concepts, write_planted_raw

pytest.importorskip("pyspark", reason="the spark extra is not installed (pip install -e '.[spark]')")
pytest.importorskip("dbt.adapters.spark", reason="dbt-spark is not installed (pip install -e '.[spark]')")
if shutil.which("java") is None:
    pytest.skip("Java 17+ is required by PySpark", allow_module_level=True)

pytestmark = [pytest.mark.spark, pytest.mark.slow]

BUILD_ID = "parity-build"
#: marts of the DuckDB build only: the mechanism contrasts are a dbt Python model (int_mechanism_contrast_fits),
#: disabled on Spark with the marts after it (docs/scaling.md)
DUCKDB_ONLY_MARTS = {"fct_mechanism_contrasts", "rpt_mechanism_contrast"}
# a handful of bootstrap resamples keeps the fit quick; everything else is the project default
VARS = "{annotator: 'offline', annotator_version: 'test-1', hmdr_n_bootstrap: 10}"
RTOL, ATOL = 1e-6, 1e-9


@pytest.fixture(scope="module")
def builds(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from pipelines.build.spark_flow import build_on_spark, export_raw_parquet

    root = tmp_path_factory.mktemp("spark_parity")
    duck = Paths(warehouse=root / "duckdb")
    duck.warehouse.mkdir()
    write_planted_raw(duck.build_db)
    landing = root / "raw_parquet"
    counts = export_raw_parquet(duck.build_db, landing)
    assert counts["items"] == 240 and counts["labels"] == 480
    run_dbt(["build", "--vars", VARS], duck, BUILD_ID)
    spark_dir = root / "spark"
    build_on_spark(spark_dir, landing, BUILD_ID, VARS)
    dump = root / "spark_marts"
    _dump_spark_marts(spark_dir, landing, dump)
    return {"duckdb": duck.build_db, "spark_dir": spark_dir, "dump": dump, "landing": landing, "root": root}


def _dump_spark_marts(spark_dir: Path, landing: Path, out: Path) -> None:
    """Read the Spark marts in a separate process (the Derby metastore admits one JVM at a time)."""
    import subprocess
    import sys

    from pipelines.core.config import REPO_ROOT

    subprocess.run(
        [
            sys.executable,
            "-m",
            "pipelines.build.spark_flow",
            "--spark-dir",
            str(spark_dir),
            "--landing",
            str(landing),
            "--dump",
            str(out),
        ],
        cwd=str(REPO_ROOT),
        check=True,
        capture_output=True,
        text=True,
    )


def _duckdb_marts(db: Path) -> dict[str, pd.DataFrame]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        names = [
            r[0]
            for r in con.execute(
                """select table_name from duckdb_tables() where schema_name = 'marts'
               union all select view_name from duckdb_views() where schema_name = 'marts' and not internal"""
            ).fetchall()
        ]
        return {n: con.execute(f'select * from marts."{n}"').df() for n in names}
    finally:
        con.close()


def _spark_marts(dump: Path) -> dict[str, pd.DataFrame]:
    return {p.name[len("marts.") : -len(".parquet")]: pd.read_parquet(p) for p in dump.glob("marts.*.parquet")}


def _plain(v: object) -> object:
    """A comparable Python value: nulls -> None, numbers -> int/float, timestamps -> ISO text, arrays -> tuples."""
    if v is None or v is pd.NA or v is pd.NaT:
        return None
    if isinstance(v, (list, tuple, np.ndarray)):
        return tuple(_plain(x) for x in v)
    if isinstance(v, (bool, np.bool_)):
        return bool(v)
    if isinstance(v, (int, np.integer)):
        return int(v)
    if isinstance(v, (float, np.floating, Decimal)):
        f = float(v)
        return None if math.isnan(f) else f
    if isinstance(v, (pd.Timestamp, datetime, date)):
        return pd.Timestamp(v).tz_localize(None).isoformat() if pd.Timestamp(v).tzinfo else pd.Timestamp(v).isoformat()
    return v


def _rows(frame: pd.DataFrame, columns: list[str]) -> list[tuple]:
    rows = [tuple(_plain(v) for v in rec) for rec in frame[columns].itertuples(index=False, name=None)]

    # floats may differ in the last digits between engines: order by the exact columns, then rounded floats
    def key(row: tuple) -> tuple:
        return tuple((0, "") if v is None else (1, round(v, 6) if isinstance(v, float) else v) for v in row)

    return sorted(rows, key=lambda r: tuple(str(k) for k in key(r)))


def _same(a: object, b: object) -> bool:
    if isinstance(a, float) or isinstance(b, float):
        return a is not None and b is not None and math.isclose(float(a), float(b), rel_tol=RTOL, abs_tol=ATOL)
    if isinstance(a, tuple) and isinstance(b, tuple):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return a == b


def test_every_mart_is_built_on_spark(builds: dict[str, Path]) -> None:
    duck, spark = _duckdb_marts(builds["duckdb"]), _spark_marts(builds["dump"])
    assert set(spark) == set(duck) - DUCKDB_ONLY_MARTS
    assert DUCKDB_ONLY_MARTS <= set(duck)
    for name in [
        "fct_concept_effects",
        "fct_predictions",
        "fct_model_metrics",
        "fct_local_explanations",
        "fct_pair_features_comp",
        "rpt_top_concepts",
    ]:
        assert len(spark[name]) > 0, name


@pytest.mark.parametrize(
    "mart",
    [
        "dim_concepts",
        "dim_domains",
        "dim_items",
        "dim_mechanisms",
        "dim_annotators",
        "fct_pair_concepts",
        "fct_pair_features_comp",
        "fct_pair_features_score",
        "fct_concept_effects",
        "fct_predictions",
        "fct_model_metrics",
        "fct_local_explanations",
        "fct_fit_skips",
        "rpt_top_concepts",
        "rpt_domain_specificity",
        "rpt_annotation_quality",
        "rpt_mechanism_agreement",
    ],
)
def test_mart_contents_match_duckdb(builds: dict[str, Path], mart: str) -> None:
    duck, spark = _duckdb_marts(builds["duckdb"])[mart], _spark_marts(builds["dump"])[mart]
    assert sorted(spark.columns) == sorted(duck.columns)
    columns = sorted(duck.columns)
    left, right = _rows(duck, columns), _rows(spark, columns)
    assert len(left) == len(right), f"{mart}: {len(left)} rows on DuckDB, {len(right)} on Spark"
    for i, (a, b) in enumerate(zip(left, right)):
        diff = [(c, x, y) for c, x, y in zip(columns, a, b) if not _same(x, y)]
        assert not diff, f"{mart} row {i}: {diff[:4]}"


def test_remaining_marts_match_in_row_count(builds: dict[str, Path]) -> None:
    duck, spark = _duckdb_marts(builds["duckdb"]), _spark_marts(builds["dump"])
    for name in sorted(set(duck) - DUCKDB_ONLY_MARTS):
        assert len(spark[name]) == len(duck[name]), name


def test_hostile_concept_name_is_a_column_on_spark_too(builds: dict[str, Path]) -> None:
    spark = _spark_marts(builds["dump"])
    assert planted_concepts()[-1] in spark["fct_pair_features_comp"].columns
    assert len(spark["dim_items"]) == 240  # the 'drop table' text did nothing
    assert sorted(spark["fct_pair_features_comp"]["Clarity"].unique().tolist()) == [-1, 0, 1]


def test_fit_ran_outside_dbt_on_spark(builds: dict[str, Path]) -> None:
    import json

    manifest = json.loads((builds["spark_dir"] / "dbt_target" / "manifest.json").read_text())
    assert "model.preflens.int_hmdr_fits" not in manifest["nodes"]  # disabled on Spark
    assert "source.preflens.hmdr.int_hmdr_fits" in manifest["sources"]
    effects = _spark_marts(builds["dump"])["fct_concept_effects"]
    assert set(effects["fit_id"]) == {BUILD_ID}


# ---------------------------------------------------------------------------------------- the HMDR fit on MLlib
FIT_HYPERPARAMETERS = {"alpha": 1 / 3, "lambda_shared": 0.01, "lambda_domain": 0.01}


@pytest.fixture(scope="module")
def planted_features(builds: dict[str, Path]) -> pd.DataFrame:
    """The comp-rep features of the planted human mechanism (general, legal, coding), from the DuckDB build."""
    con = duckdb.connect(str(builds["duckdb"]), read_only=True)
    try:
        return con.execute(
            "select * from marts.fct_pair_features_comp where mechanism = 'human:planted' order by label_id"
        ).df()
    finally:
        con.close()


@pytest.fixture(scope="module")
def spark_session():
    from pyspark.sql import SparkSession

    spark = (
        SparkSession.builder.master("local[2]")
        .appName("preflens-mllib-test")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.shuffle.partitions", "4")
        .getOrCreate()
    )
    yield spark
    spark.stop()


@pytest.mark.parametrize("unpenalized", [(), ("Clarity",)], ids=["penalised", "one-unpenalised"])
def test_mllib_fit_matches_the_local_solver(
    planted_features: pd.DataFrame, spark_session, unpenalized: tuple[str, ...]
) -> None:
    from pipelines.build.spark_hmdr import fit_hmdr_mllib
    from py_models._augment import hmdr_objective
    from py_models.hmdr import HMDRClassifier

    concepts = [c for c in planted_concepts() if c in planted_features.columns]
    X = planted_features[concepts].to_numpy(dtype=float)
    y = planted_features["winner"].to_numpy()
    domains = planted_features["domain"].to_numpy(dtype=object)
    mask = np.array([c in unpenalized for c in concepts])
    local = HMDRClassifier(
        **FIT_HYPERPARAMETERS, min_domain_samples=10, unpenalized_mask=mask if unpenalized else None, tol=1e-10
    ).fit(X, y, domains=domains)

    frame = planted_features[[*concepts, "domain"]].assign(
        label=(planted_features["winner"] == "a").astype(float), weight=1.0
    )
    fit = fit_hmdr_mllib(
        spark_session.createDataFrame(frame),
        concepts,
        **FIT_HYPERPARAMETERS,
        min_domain_samples=10,
        unpenalized=unpenalized,
    )
    assert fit.domains == tuple(local.domains_.tolist()) == ("coding", "general", "legal")
    assert fit.has_domain_weights.tolist() == local.has_domain_weights_.tolist()
    assert fit.n_rows == len(planted_features)

    y_pm = np.where(y == "a", 1.0, -1.0)
    dom_idx = np.array([fit.domains.index(d) for d in domains])
    penalty = np.where(mask, local.penalty_factor_, 1.0)
    ours = hmdr_objective(
        X, y_pm, dom_idx, fit.coef_shared, fit.coef_domain, FIT_HYPERPARAMETERS["alpha"],
        FIT_HYPERPARAMETERS["lambda_shared"], FIT_HYPERPARAMETERS["lambda_domain"], shared_penalty_factor=penalty,
    )  # fmt: skip
    # the same optimum: MLlib's own objective is Eq. 1, and Eq. 1 at MLlib's weights is the local optimum
    assert fit.objective == pytest.approx(ours, rel=1e-6)
    assert ours == pytest.approx(local.objective_, rel=1e-6)
    np.testing.assert_allclose(fit.coef_shared, local.coef_shared_, atol=2e-3)
    np.testing.assert_allclose(fit.coef_domain, local.coef_domain_, atol=2e-3)
    # and it is the planted model: Clarity rewarded everywhere, Verbosity penalised in legal only
    assert fit.coef_shared[concepts.index("Clarity")] > 1.0
    legal = fit.domains.index("legal")
    assert fit.coef_domain[legal, concepts.index("Verbosity")] < -0.5


# ------------------------------------------------------------------ the MLlib fit wired into the Spark flow
#: MLlib (OWL-QN, tol 1e-10) and the local solver (certified: duality gap <= 1e-7 x objective) reach the same
#: optimum of Eq. 1 to within the local certificate; the weights are then as close as the objective's curvature
#: allows (flat directions of two correlated concepts move a weight far more than the objective)
OBJECTIVE_RTOL, WEIGHT_ATOL = 1e-6, 2e-3
#: the MLlib fit gets a build id of its own: Spark's fit-history stores append (macros/cross_db/fit_history_strategy)
MLLIB_BUILD_ID = "parity-mllib"
WEIGHTS = ["shared_weight", "domain_deviation", "total_weight"]


@pytest.fixture(scope="module")
def mllib_build(builds: dict[str, Path]) -> dict[str, object]:
    """The Spark flow again with ``fit_engine='mllib'`` on the features of the first Spark build (steps 2-3:
    the fit and the marts after it), its marts dumped after the local Spark build's were."""
    import json

    from pipelines.build.spark_flow import MLLIB_REPORT, build_on_spark

    spark_dir, landing = builds["spark_dir"], builds["landing"]
    build_on_spark(spark_dir, landing, MLLIB_BUILD_ID, VARS, fit_engine="mllib", refit=True)
    dump = builds["root"] / "spark_mllib_marts"
    _dump_spark_marts(spark_dir, landing, dump)
    return {"dump": dump, "report": json.loads((spark_dir / MLLIB_REPORT).read_text())}


def _eq1(features: pd.DataFrame, effects: pd.DataFrame, config: pd.Series) -> float:
    """Eq. 1 (mean-normalised) at the weights of one fit's fct_concept_effects rows, on the DuckDB features."""
    from py_models._augment import hmdr_objective

    shared = effects[effects["domain"] == "__shared__"].sort_values("concept")
    concepts = shared["concept"].tolist()
    dec = features[features["winner"].isin(["a", "b"])]
    X = dec[concepts].to_numpy(dtype=float) / shared["feature_scale"].to_numpy(dtype=float)
    weighted = sorted(effects.loc[effects["has_domain_weights"].astype(bool), "domain"].unique())
    dev = effects.set_index(["domain", "concept"])["domain_deviation"]
    S = np.array([[dev[(d, c)] for c in concepts] for d in weighted]).reshape(len(weighted), len(concepts))
    dom_idx = np.array([weighted.index(d) if d in weighted else -1 for d in dec["domain"]])
    return hmdr_objective(
        X, np.where(dec["winner"] == "a", 1.0, -1.0), dom_idx, shared["shared_weight"].to_numpy(dtype=float), S,
        float(config["alpha"]), float(config["lambda_shared"]), float(config["lambda_domain"]),
    )  # fmt: skip


def _of_fit(frame: pd.DataFrame, fit_id: str) -> pd.DataFrame:
    """The rows of one fit, without the columns that name the fit (id, time)."""
    if "fit_id" in frame.columns:
        frame = frame[frame["fit_id"] == fit_id]
    return frame.drop(columns=[c for c in ("fit_id", "fitted_at") if c in frame.columns]).reset_index(drop=True)


def _plain_fit(marts: dict[str, pd.DataFrame], fit_id: str, mechanism: str, representation: str) -> pd.DataFrame:
    """fct_concept_effects of one fit without a control covariate."""
    e = _of_fit(marts["fct_concept_effects"], fit_id)
    return e[(e["mechanism"] == mechanism) & (e["representation"] == representation) & (e["control"] == "none")]


def test_mllib_flow_reaches_the_local_optimum(builds: dict[str, Path], mllib_build: dict[str, object]) -> None:
    duck = _duckdb_marts(builds["duckdb"])
    mllib = _spark_marts(mllib_build["dump"])  # type: ignore[arg-type]
    configs = duck["fct_fit_configs"]
    fits = configs.drop_duplicates(["mechanism", "representation"])
    report = {(r["mechanism"], r["representation"]): r for r in mllib_build["report"]}  # type: ignore[attr-defined]
    assert set(report) == set(zip(fits["mechanism"], fits["representation"])) and report
    con = duckdb.connect(str(builds["duckdb"]), read_only=True)
    try:
        for _, cfg in fits.iterrows():
            mech, rep = cfg["mechanism"], cfg["representation"]
            features = con.execute(
                f'select * from marts."fct_pair_features_{rep}" where mechanism = ? order by label_id', [mech]
            ).df()

            local = _eq1(features, _plain_fit(duck, BUILD_ID, mech, rep), cfg)
            ours = _eq1(features, _plain_fit(mllib, MLLIB_BUILD_ID, mech, rep), cfg)
            assert ours == pytest.approx(local, rel=OBJECTIVE_RTOL), (mech, rep)
            assert report[(mech, rep)]["objective_mllib"] == pytest.approx(ours, rel=OBJECTIVE_RTOL)
            assert report[(mech, rep)]["n_iter"] > 0
    finally:
        con.close()


def test_mllib_flow_writes_the_fit_outputs_as_the_local_route(
    builds: dict[str, Path], mllib_build: dict[str, object]
) -> None:
    duck = _duckdb_marts(builds["duckdb"])
    mllib = _spark_marts(mllib_build["dump"])  # type: ignore[arg-type]
    assert set(mllib) == set(duck) - DUCKDB_ONLY_MARTS
    keys = ["mechanism", "representation", "control", "domain", "concept"]
    a = _of_fit(duck["fct_concept_effects"], BUILD_ID).sort_values(keys).reset_index(drop=True)
    b = _of_fit(mllib["fct_concept_effects"], MLLIB_BUILD_ID).sort_values(keys).reset_index(drop=True)
    assert len(b) > 0
    assert sorted(a.columns) == sorted(b.columns)
    assert a[keys].astype(str).equals(b[keys].astype(str))
    gap = np.abs(a[WEIGHTS].to_numpy(dtype=float) - b[WEIGHTS].to_numpy(dtype=float))
    assert gap.max() <= WEIGHT_ATOL
    plain = (a["control"] == "none").to_numpy()
    assert gap[plain].max() > 0  # MLlib's weights, not a copy of the local ones
    assert gap[~plain].max() <= 1e-9  # the length-controlled refit stays the local solver's
    np.testing.assert_allclose(b["global_lift_pct"], 50.0 * b["total_weight"], atol=1e-9)
    # the out-of-fold predictions and metrics come from the local route's fold models: unchanged
    for mart in ("fct_predictions", "fct_model_metrics", "fct_fit_skips"):
        left_fit, right_fit = _of_fit(duck[mart], BUILD_ID), _of_fit(mllib[mart], MLLIB_BUILD_ID)
        columns = sorted(left_fit.columns)
        left, right = _rows(left_fit, columns), _rows(right_fit, columns)
        assert len(left) == len(right) and all(_same(x, y) for ra, rb in zip(left, right) for x, y in zip(ra, rb)), mart
    # local explanations at MLlib's weights: contribution = value x (b + s_d) of the pair's domain, as the effects say
    le = _of_fit(mllib["fct_local_explanations"], MLLIB_BUILD_ID)
    assert len(le) > 0
    pair_keys = ["label_id", "mechanism", "representation"]
    domains = _of_fit(mllib["fct_predictions"], MLLIB_BUILD_ID)[[*pair_keys, "domain"]].drop_duplicates()
    le = le.merge(domains, on=pair_keys, how="left", validate="many_to_one")
    assert le["domain"].notna().all()
    total = b[b["control"] == "none"].set_index(["mechanism", "representation", "domain", "concept"])["total_weight"]
    expected = total.reindex(pd.MultiIndex.from_frame(le[["mechanism", "representation", "domain", "concept"]]))
    np.testing.assert_allclose(le["contribution"], le["value"] * expected.to_numpy(), atol=1e-12)
    assert abs(len(le) - len(_of_fit(duck["fct_local_explanations"], BUILD_ID))) <= 0.01 * len(le)
