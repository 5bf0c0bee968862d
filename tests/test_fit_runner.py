"""The fit's inputs and settings: dbt's one feature pivot, FitSettings, and the fit outside dbt
(pipelines/build/fit_runner.py) equal to the dbt Python model int_hmdr_fits, on DuckDB."""

from __future__ import annotations

import ast
import math
from pathlib import Path

import duckdb
import pytest
import yaml

from pipelines.build import fit_runner
from pipelines.build.dbt_runner import run_dbt
from pipelines.core.config import DBT_PROJECT_DIR, Paths, dbt_project_vars
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
