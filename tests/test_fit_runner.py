"""The HMDR fit outside dbt (pipelines/build/fit_runner.py) equals the dbt Python model int_hmdr_fits, on DuckDB."""

from __future__ import annotations

import math
from pathlib import Path

import duckdb
import pytest

from pipelines import fit_runner
from pipelines.core.config import Paths
from pipelines.build.dbt_runner import run_dbt
from tests.conftest import write_planted_raw

pytestmark = pytest.mark.slow

VARS = "{annotator: 'offline', annotator_version: 'test-1', hmdr_n_bootstrap: 5}"


def _rows(db: Path, table: str) -> list[tuple]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        # row_id is positional and fitted_at the time the fit ran: both legitimately differ between the two runs
        cols = [r[0] for r in con.execute(f"describe intermediate.{table}").fetchall()
                if r[0] not in ("row_id", "fitted_at")]
        select = ", ".join(f'"{c}"' for c in cols)
        return con.execute(f"select {select} from intermediate.{table} order by all").fetchall()
    finally:
        con.close()


def test_runner_on_duckdb_reproduces_the_dbt_python_model(tmp_path: Path) -> None:
    paths = Paths(warehouse=tmp_path)
    write_planted_raw(paths.build_db, n_items=120)
    run_dbt(["build", "--select", "+int_hmdr_fits", "--vars", VARS], paths, build_id="runner-parity")
    assert fit_runner.main(["--engine", "duckdb", "--db", str(paths.build_db), "--build-id", "runner-parity",
                            "--vars", VARS, "--table", "runner_fits"]) == 0
    dbt_rows, runner_rows = _rows(paths.build_db, "int_hmdr_fits"), _rows(paths.build_db, "runner_fits")
    assert len(dbt_rows) == len(runner_rows) > 0
    assert {r[0] for r in dbt_rows} == {"runner-parity"}  # fit_id is the build id (not the var's template text)
    for a, b in zip(dbt_rows, runner_rows):
        for x, y in zip(a, b):
            if isinstance(x, float) and isinstance(y, float):
                assert math.isclose(x, y, rel_tol=1e-9, abs_tol=1e-12) or (math.isnan(x) and math.isnan(y))
            else:
                assert x == y


def test_settings_are_the_keys_dbt_hands_the_model() -> None:
    keys = set(fit_runner.config_keys_read_by_model())
    settings = fit_runner.fit_settings({"build_id": "b1", "cv_folds": 3})
    assert set(settings) <= keys
    assert settings["build_id"] == "b1" and settings["cv_folds"] == 3
    assert "enabled" not in settings and "tags" not in settings
