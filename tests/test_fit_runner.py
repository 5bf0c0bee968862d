"""The fit's inputs and settings: dbt's one feature pivot, FitSettings, and the fit outside dbt
(pipelines/build/fit_runner.py) equal to the dbt Python model int_hmdr_fits, on DuckDB."""

from __future__ import annotations

import ast
import math
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest
import yaml

from pipelines.build import fit_runner
from pipelines.build.dbt_runner import run_dbt
from pipelines.core.config import DBT_PROJECT_DIR, Paths, dbt_project_vars
from py_models.fit_job import fit_mechanisms
from py_models.fit_output import TALL_SCHEMA, to_tall
from py_models.fit_settings import FitSettings
from py_models.representations import REPRESENTATIONS
from tests.conftest import planted_concepts, write_planted_raw

VARS = "{annotator: 'offline', annotator_version: 'test-1', hmdr_n_bootstrap: 5}"
MODEL_FILE = DBT_PROJECT_DIR / "models" / "intermediate" / "int_hmdr_fits.py"
MODELS_YML = DBT_PROJECT_DIR / "models" / "intermediate" / "_int__models.yml"
CLARITY = planted_concepts()[0]


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A planted build up to the fit, with one annotation missing (item `gap`, concept Clarity)."""
    paths = Paths(warehouse=tmp_path_factory.mktemp("fit_runner"))
    write_planted_raw(paths.build_db, n_items=120)
    con = duckdb.connect(str(paths.build_db))
    gap = con.execute("select min(item_id) from raw.annotations").fetchone()[0]
    con.execute("delete from raw.annotations where item_id = ? and concept = ?", [gap, CLARITY])
    con.close()
    run_dbt(
        # cautious: only the tests whose inputs this partial build makes (the reconciliation tests of the marts left
        # out would read tables that do not exist)
        [
            "build",
            "--select",
            "+int_hmdr_fits",
            "fct_pair_features_comp",
            "fct_pair_features_measure",
            "--indirect-selection",
            "cautious",
            "--vars",
            VARS,
        ],
        paths,
        build_id="runner-parity",
    )
    return paths.build_db


def _query(db: Path, sql: str, params: list | None = None) -> list[tuple]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        return con.execute(sql, params or []).fetchall()
    finally:
        con.close()


def _rows(db: Path, table: str) -> list[tuple]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        # row_id is positional and fitted_at the time the fit ran: both legitimately differ between the two runs
        cols = [
            r[0]
            for r in con.execute(f"describe intermediate.{table}").fetchall()
            if r[0] not in ("row_id", "fitted_at")
        ]
        select = ", ".join(f'"{c}"' for c in cols)
        return con.execute(f"select {select} from intermediate.{table} order by all").fetchall()
    finally:
        con.close()


# ------------------------------------------------------------------ the feature pivot, in dbt


@pytest.mark.slow
def test_dbt_pivots_every_pair_with_zero_for_a_missing_annotation(built: Path) -> None:
    n_pairs = _query(built, "select count(*) from intermediate.int_labelled_pairs")[0][0]
    assert _query(built, "select count(*) from intermediate.int_pair_features_comp")[0][0] == n_pairs
    gap = _query(built, "select min(item_id) from raw.annotations")[0][0]
    # the item without a Clarity annotation keeps its pairs, with Clarity 0 ("not relevant")
    values = _query(
        built, f'select distinct "{CLARITY}" from intermediate.int_pair_features_comp where item_id = ?', [gap]
    )
    assert values == [(0,)]
    # every other cell is the item's comp_value, for every concept (the hostile name included)
    for concept in planted_concepts():
        q = concept.replace('"', '""')
        mismatched = _query(
            built,
            f"""
            select count(*) from intermediate.int_pair_features_comp f
            left join intermediate.int_item_concepts c on c.item_id = f.item_id and c.concept = ?
            where f."{q}" is distinct from coalesce(c.comp_value, 0)""",
            [concept],
        )[0][0]
        assert mismatched == 0, concept
    # the mart is the table the fit read
    assert (
        _query(
            built, "select * from marts.fct_pair_features_comp except select * from intermediate.int_pair_features_comp"
        )
        == []
    )
    # no raw measurements in the planted annotations: the measure table is every pair with its keys only
    cols = [r[0] for r in _query(built, "describe intermediate.int_pair_features_measure")]
    assert cols == ["label_id", "item_id", "mechanism", "mechanism_type", "domain", "winner"]
    assert _query(built, "select count(*) from marts.fct_pair_features_measure")[0][0] == n_pairs


@pytest.mark.slow
def test_runner_on_duckdb_reproduces_the_dbt_python_model(built: Path) -> None:
    assert (
        fit_runner.main(
            [
                "--engine",
                "duckdb",
                "--db",
                str(built),
                "--build-id",
                "runner-parity",
                "--vars",
                VARS,
                "--table",
                "runner_fits",
            ]
        )
        == 0
    )
    dbt_rows, runner_rows = _rows(built, "int_hmdr_fits"), _rows(built, "runner_fits")
    assert len(dbt_rows) == len(runner_rows) > 0
    assert {r[0] for r in dbt_rows} == {"runner-parity"}  # fit_id is the build id (not the var's template text)
    for a, b in zip(dbt_rows, runner_rows):
        for x, y in zip(a, b):
            if isinstance(x, float) and isinstance(y, float):
                assert math.isclose(x, y, rel_tol=1e-9, abs_tol=1e-12) or (math.isnan(x) and math.isnan(y))
            else:
                assert x == y
    # measure-rep had no concept column: one skip row per mechanism, counting every pair
    skips = _query(
        built,
        """select mechanism, n_pairs from intermediate.int_hmdr_fits
                             where record_type = 'skipped' and representation = 'measure' order by 1""",
    )
    pairs = _query(built, "select mechanism, count(*) from intermediate.int_labelled_pairs group by 1 order by 1")
    assert skips == [(m, float(n)) for m, n in pairs]


# ------------------------------------------------------------------ the settings: one typed owner


def _dbt_calls(func: str) -> set[str]:
    """The constant first arguments of ``dbt.<func>(...)`` calls dbt's own parser finds in the model file."""
    from dbt.parser.models import PythonParseVisitor

    visitor = PythonParseVisitor(None)
    visitor.visit(ast.parse(MODEL_FILE.read_text(), filename=str(MODEL_FILE)))
    return {str(args[0]) for name, args, _ in visitor.dbt_function_calls if name == func and args}


def test_the_model_file_is_a_valid_dbt_python_model() -> None:
    """dbt's own checks (one model(dbt, session), ending in one return): the worker pool is closed before it."""
    from dbt.parser.models import PythonValidationVisitor

    visitor = PythonValidationVisitor()
    visitor.visit(ast.parse(MODEL_FILE.read_text(), filename=str(MODEL_FILE)))
    assert visitor.num_model_def == 1 and visitor.dbt_errors == []


def test_the_model_reads_the_settings_vars_and_the_feature_tables() -> None:
    assert _dbt_calls("get") == set(FitSettings.VARS)
    assert _dbt_calls("ref") == {r.feature_table for r in REPRESENTATIONS.values()} | {fit_runner.TEXTS_TABLE}
    # its config block renders exactly those vars, each under its own name (build_id: var or the env's id)
    entry = next(m for m in yaml.safe_load(MODELS_YML.read_text())["models"] if m["name"] == "int_hmdr_fits")
    config = {k: v for k, v in entry["config"].items() if k not in ("enabled", "tags")}
    assert set(config) == set(FitSettings.VARS)
    for key, value in config.items():
        assert value.startswith(f"{{{{ var('{key}'"), (key, value)


def test_settings_from_dbt_text_and_from_yaml_vars_agree() -> None:
    project = dbt_project_vars()
    as_text = {k: str(v) for k, v in project.items()}  # dbt renders every config value as text
    a = FitSettings.from_vars({**project, "build_id": "b1"})
    b = FitSettings.from_vars({**as_text, "build_id": "b1"})
    assert a == b
    assert a.representations == tuple(str(project["representations"]).split(","))
    assert a.max_abs_weight == float(project["max_abs_lift_pct"]) / 50
    c = FitSettings.from_vars(
        {
            **as_text,
            "build_id": "b2",
            "hmdr_alpha": "0.5",
            "hmdr_grid_domains": "",
            "hmdr_select": "False",
            "cv_folds": "3",
        }
    )
    assert (c.alpha, c.grid_domains, c.select, c.n_folds, c.fit_id) == (0.5, None, False, 3, "b2")
    with pytest.raises(ValueError, match="cv_folds"):
        FitSettings.from_vars({k: v for k, v in as_text.items() if k != "cv_folds"} | {"build_id": "b"})
    with pytest.raises(ValueError, match="unknown representation"):
        FitSettings.from_vars({**as_text, "build_id": "b", "representations": "comp,nope"})
    # the runner: the project vars with --vars overrides, and the build id it was given
    runner = fit_runner.fit_settings("b3", {"cv_folds": 3, "hmdr_n_bootstrap": 0})
    assert (runner.fit_id, runner.n_folds, runner.n_bootstrap) == ("b3", 3, 0)


# ------------------------------------------------------------------ the tall table of a fit without local explanations


def _small_frame(n: int = 80, seed: int = 0) -> pd.DataFrame:
    """One mechanism, two domains, three comp-rep concepts, random winners."""
    rng = np.random.default_rng(seed)
    df = pd.DataFrame(rng.integers(-1, 2, size=(n, 3)).astype(float), columns=["c1", "c2", "c3"])
    df.insert(0, "winner", np.where(rng.random(n) < 0.5, "a", "b"))
    df.insert(0, "domain", np.where(rng.random(n) < 0.5, "x", "y"))
    df.insert(0, "mechanism_type", "human")
    df.insert(0, "mechanism", "m1")
    df.insert(0, "item_id", [f"it{i}" for i in range(n)])
    df.insert(0, "label_id", [f"l{i}" for i in range(n)])
    return df


def test_to_tall_of_a_fit_with_no_local_explanations_keeps_the_schema() -> None:
    # penalties this strong zero every weight: the fit has coefficients, predictions and metrics but no local
    # explanation (no pair has a non-zero contribution), so no frame brings the local-explanation columns
    frames = fit_mechanisms(
        _small_frame(), ["c1", "c2", "c3"], representation="comp", select=False, lambda_shared=10.0, lambda_domain=10.0
    )
    assert len(frames["local_explanations"]) == 0 and len(frames["coefficients"]) > 0
    tall = to_tall({"comp": frames}, fit_id="f1")
    assert list(tall.columns) == list(TALL_SCHEMA)
    assert {c: str(t) for c, t in tall.dtypes.items()} == {
        c: str(pd.Series(dtype=t).dtype) for c, t in TALL_SCHEMA.items()
    }
    assert "local_explanations" not in set(tall["record_type"])
    assert len(tall) == sum(len(f) for f in frames.values())
    assert tall["row_id"].tolist() == list(range(len(tall)))
    for col in ("value", "contribution", "local_lift_pct"):  # present, all missing
        assert tall[col].isna().all()
    assert (tall["total_weight"].dropna() == 0).all()
    # and a fit that produced nothing at all still has the table's columns
    empty = to_tall({"comp": {"skipped": frames["skipped"]}}, fit_id="f2")
    assert list(empty.columns) == list(TALL_SCHEMA) and len(empty) == 0


# ------------------------------------------------------------------ the fit's processes (py_models/_jobs.py)


def _tiny_fit() -> float:
    """A small cd fit (compiles or loads the solver's kernels); its objective."""
    from py_models.hmdr import HMDRClassifier

    rng = np.random.default_rng(0)
    X = rng.integers(-1, 2, size=(60, 4)).astype(float)
    y = np.where(rng.random(60) < 0.5, "a", "b")
    dom = np.where(rng.random(60) < 0.5, "x", "y")
    return float(
        HMDRClassifier(lambda_shared=0.01, lambda_domain=0.01, min_domain_samples=1).fit(X, y, domains=dom).objective_
    )


def _where_and_how(i: int) -> dict[str, object]:
    """Run in the pool: where the call ran, the collector's frozen objects, the kernels' cache use, threads."""
    import gc
    import os

    from numba.core.registry import CPUDispatcher
    from threadpoolctl import threadpool_info

    import py_models._cd as cd

    objective = _tiny_fit()
    kernels = [k for k in vars(cd).values() if isinstance(k, CPUDispatcher)]
    return {
        "i": i,
        "pid": os.getpid(),
        "frozen": gc.get_freeze_count(),
        "cached": all(k._cache.__class__.__name__ == "FunctionCache" for k in kernels),  # njit(cache=True)
        "misses": sum(sum(k.stats.cache_misses.values()) for k in kernels),
        "blas_threads": max((p["num_threads"] for p in threadpool_info()), default=1),
        "solver_threads": cd.solver_threads(),
        "objective": objective,
    }


def _fails_on_three(i: int) -> int:
    if i == 3:
        raise ValueError(f"call {i} failed")
    return i * i


def test_worker_pool_shares_calls_with_workers_that_load_cached_kernels() -> None:
    import os

    from py_models._jobs import WorkerPool

    expected = _tiny_fit()  # compiles the kernels here if the cache is stale, so the workers must find them cached
    with WorkerPool(2, preload=("py_models.fit_job",)) as pool:
        rows = pool.map(_where_and_how, [(i,) for i in range(6)], costs=[1, 5, 2, 4, 3, 0])
        assert [r["i"] for r in rows] == list(range(6))  # in the order of the arguments, whatever ran where
        worker = [r for r in rows if r["pid"] != os.getpid()]
        assert worker, "the first call handed to the worker runs there"
        for r in worker:
            assert r["frozen"] > 0  # the preloaded modules are out of the collector's full passes
            assert r["cached"] and r["misses"] == 0  # every kernel came from numba's cache: no compilation
        for r in rows:
            assert r["blas_threads"] == 1 and r["solver_threads"] == 1  # one thread per process, here too
            assert r["objective"] == expected
        with pytest.raises(ValueError, match="call 3 failed"):
            pool.map(_fails_on_three, [(i,) for i in range(6)])
        assert pool.map(_fails_on_three, [(2,), (4,)]) == [4, 16]  # the pool survives a failed call
    assert _where_and_how(0)["solver_threads"] >= 1  # no limit left behind in this process


def test_fit_build_is_the_same_on_one_or_two_processes_and_per_representation() -> None:
    """fit_build runs every representation in one pool, one call per mechanism: the same table as one process,
    and each representation's frames as fitting it alone with fit_mechanisms."""
    from pipelines.core.config import dbt_project_vars
    from py_models.features import design_frame
    from py_models.fit_build import fit_build
    from py_models.fit_job import NO_CONTROL
    from py_models.representations import representation_settings
    from py_models.style_baseline import pair_style_differences
    from tests.test_style_baseline import _three_representations

    features, texts = _three_representations(n=90)
    base = {**dbt_project_vars(), "build_id": "b", "hmdr_n_bootstrap": 3, "hmdr_select": False}
    at = pd.Timestamp("2026-01-01")
    tall = {
        jobs: fit_build(features, texts, FitSettings.from_vars({**base, "fit_jobs": jobs})).assign(fitted_at=at)
        for jobs in (1, 2)
    }
    pd.testing.assert_frame_equal(tall[1], tall[2])
    settings = FitSettings.from_vars({**base, "fit_jobs": 1})
    reference = pair_style_differences(texts["prompt"], texts["response_a"], texts["response_b"])
    reference.index = texts["item_id"].to_numpy()
    alone = {}
    for rep in settings.representations:
        frame, cols = design_frame(features[rep])
        lead = rep == settings.representations[0]
        alone[rep] = fit_mechanisms(
            frame,
            cols,
            representation=rep,
            n_folds=settings.n_folds,
            select=False,
            n_bootstrap=settings.n_bootstrap if lead else 0,
            standardize=representation_settings(rep).standardize,
            reference=reference,
            control="length" if settings.length_control and lead else NO_CONTROL,
            max_abs_weight=settings.max_abs_weight,
            min_domain_samples=settings.min_domain_pairs,
            lambda_shared=settings.lambda_shared,
            lambda_domain=settings.lambda_domain,
            solver=settings.solver,
        )
    pd.testing.assert_frame_equal(to_tall(alone, fit_id="b", fitted_at=at), tall[1])
