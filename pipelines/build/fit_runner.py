"""Run the HMDR fit outside dbt, reading the feature tables from DuckDB or Spark and writing the tall table back.

On DuckDB the fit is the dbt Python model ``int_hmdr_fits``. dbt Python models on Spark need Databricks, so on
the Spark target that model is disabled and this runner fills ``intermediate.int_hmdr_fits`` between two dbt
invocations (see ``pipelines/build/spark_flow.py`` and ``docs/scaling.md``).

Both run the same code on the same inputs: the wide feature tables dbt pivots (``int_pair_features_<rep>``,
``Representation.feature_table``) and ``int_item_texts`` go to ``py_models.fit_build.fit_build`` with the settings of
``py_models.fit_settings.FitSettings.from_vars``, here from the project's dbt vars (``dbt_project.yml`` plus
``--vars`` overrides), in the model from its ``config:`` block, which renders the same vars.

    python -m pipelines.build.fit_runner --engine duckdb [--db PATH]       # default: the build DB of the warehouse
                                                                          # (under its build lock: exit 3 while a build runs)
    python -m pipelines.build.fit_runner --engine spark                   # needs PREFLENS_SPARK_WAREHOUSE, `.[spark]`
    python -m pipelines.build.fit_runner --engine spark --fit-engine mllib    # point estimates on Spark MLlib
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd
import yaml

from pipelines.build.mllib_fit import FIT_ENGINES
from pipelines.core.config import DBT_PROJECT_DIR, Paths, dbt_project_vars, default_paths
from pipelines.core.lock import BuildAlreadyRunning, BuildLock, file_held
from pipelines.core.warehouse import scalar
from py_models.fit_settings import FitSettings
from py_models.representations import representation_settings

MODEL_NAME = "int_hmdr_fits"
INPUT_SCHEMA = "intermediate"
TEXTS_TABLE = "int_item_texts"

Reader = Callable[[str], pd.DataFrame]


def fit_settings(build_id: str, overrides: Mapping[str, Any] | None = None) -> FitSettings:
    """The fit settings of this build: the project's dbt vars, then ``overrides`` (like ``--vars``)."""
    return FitSettings.from_vars({**dbt_project_vars(), **(overrides or {}), "build_id": build_id})


def read_features(read: Reader, settings: FitSettings) -> dict[str, pd.DataFrame]:
    """The wide feature table of every representation of ``settings``, by ``read(table_name)``."""
    return {rep: read(representation_settings(rep).feature_table) for rep in settings.representations}


def run_fit(
    read: Reader,
    build_id: str,
    overrides: Mapping[str, Any] | None = None,
    features: Mapping[str, pd.DataFrame] | None = None,
) -> pd.DataFrame:
    """The tall fit table, computed by ``fit_build`` on the tables ``read(table_name)`` returns (``features``:
    the feature tables already read by :func:`read_features`)."""
    from py_models.fit_build import fit_build

    settings = fit_settings(build_id, overrides)
    features = features if features is not None else read_features(read, settings)
    return fit_build(features, read(TEXTS_TABLE), settings)


def _render_env(value: Any) -> str:
    """A profiles.yml value with its ``{{ env_var(name[, default]) }}`` calls rendered (as dbt renders it)."""
    if not isinstance(value, str) or "{{" not in value:
        return str(value)
    import jinja2

    def env_var(name: str, default: Any = None) -> str:
        if name in os.environ:
            return os.environ[name]
        if default is None:
            raise KeyError(f"env var {name!r} is required")
        return str(default)

    return jinja2.Environment().from_string(value).render(env_var=env_var)


# ---------------------------------------------------------------- engines


def _qi_duckdb(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def read_duckdb(db_path: Path, schema: str = INPUT_SCHEMA) -> tuple[Reader, Callable[[], None]]:
    """A reader of ``schema.<table>`` from a DuckDB file (read-only), and its close function."""
    con = duckdb.connect(str(db_path), read_only=True)
    return (lambda name: con.execute(f"select * from {_qi_duckdb(schema)}.{_qi_duckdb(name)}").df()), con.close


def write_duckdb(tall: pd.DataFrame, db_path: Path, schema: str = INPUT_SCHEMA, table: str = MODEL_NAME) -> int:
    """Replace ``schema.table`` in the DuckDB file with ``tall``; returns the row count."""
    con = duckdb.connect(str(db_path))
    try:
        con.register("_tall", tall)
        con.execute(f"create schema if not exists {_qi_duckdb(schema)}")
        con.execute(f"create or replace table {_qi_duckdb(schema)}.{_qi_duckdb(table)} as select * from _tall")
        con.unregister("_tall")
        return int(scalar(con, f"select count(*) from {_qi_duckdb(schema)}.{_qi_duckdb(table)}"))
    finally:
        con.close()


def spark_profile_parameters(target: str = "spark") -> dict[str, str]:
    """``server_side_parameters`` of the spark target in dbt_project/profiles.yml, env vars rendered."""
    profiles = yaml.safe_load((DBT_PROJECT_DIR / "profiles.yml").read_text())
    output = profiles["preflens"]["outputs"][target]
    return {str(k): _render_env(v) for k, v in (output.get("server_side_parameters") or {}).items()}


def spark_session(target: str = "spark"):  # -> pyspark.sql.SparkSession
    """A local SparkSession configured exactly like dbt-spark's ``method: session`` for this profile target."""
    from pyspark.sql import SparkSession

    builder = SparkSession.builder.enableHiveSupport()
    for key, value in spark_profile_parameters(target).items():
        builder = builder.config(key, value)
    return builder.getOrCreate()


def _qi_spark(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


def read_spark(spark, schema: str = INPUT_SCHEMA) -> Reader:
    """A reader of ``schema.<table>`` from the Spark catalog, as pandas (through Arrow)."""
    return lambda name: spark.table(f"{_qi_spark(schema)}.{_qi_spark(name)}").toPandas()


def write_spark(spark, tall: pd.DataFrame, schema: str = INPUT_SCHEMA, table: str = MODEL_NAME) -> int:
    """Replace ``schema.table`` in the Spark catalog with ``tall`` (Parquet); returns the row count."""
    import pyarrow as pa

    from py_models.fit_output import TALL_SCHEMA

    arrow_types = {
        "string": pa.string(),
        "int64": pa.int64(),
        "float64": pa.float64(),
        "boolean": pa.bool_(),
        "datetime64[us]": pa.timestamp("us"),  # fitted_at: orders fits in time (dim_latest_fit)
    }
    schema_pa = pa.schema([(col, arrow_types[TALL_SCHEMA.get(col, "string")]) for col in tall.columns])
    frame = spark.createDataFrame(pa.Table.from_pandas(tall, schema=schema_pa, preserve_index=False))
    spark.sql(f"create database if not exists {_qi_spark(schema)}")
    frame.write.mode("overwrite").format("parquet").saveAsTable(f"{_qi_spark(schema)}.{_qi_spark(table)}")
    return int(spark.table(f"{_qi_spark(schema)}.{_qi_spark(table)}").count())


# ---------------------------------------------------------------- CLI


def _fit_duckdb(db: Path, build_id: str, overrides: Mapping[str, Any], schema: str, table: str) -> int:
    """The fit on a DuckDB build file, under the build lock of its warehouse folder (it writes the file)."""
    with BuildLock(Paths(warehouse=db.parent).lock_file):
        try:
            read, close = read_duckdb(db, schema)
            try:
                tall = run_fit(read, build_id, overrides)
            finally:
                close()
            return write_duckdb(tall, db, schema, table)
        except duckdb.IOException as exc:
            refused = file_held(db, exc)
            if refused is None:
                raise
            raise refused from None


def _fit_spark(spark: Any, args: argparse.Namespace, overrides: Mapping[str, Any]) -> pd.DataFrame:
    """The fit on the Spark catalog; with ``--fit-engine mllib`` the point estimates re-solved on MLlib
    (``pipelines/build/mllib_fit.py``), one line per fit printed and, with ``--report``, written as JSON."""
    read = read_spark(spark, args.schema)
    if args.fit_engine == "local":
        return run_fit(read, args.build_id, overrides)
    import json

    from pipelines.build.mllib_fit import refit_on_mllib

    settings = fit_settings(args.build_id, overrides)
    features = read_features(read, settings)
    tall = run_fit(read, args.build_id, overrides, features)
    tall, refits = refit_on_mllib(spark, tall, features, args.schema, min_domain_samples=settings.min_domain_pairs)
    for r in refits:
        print(
            f"fit_runner: mllib {r.mechanism} / {r.representation}: {r.n_pairs} pairs, {r.n_iter} iterations, "
            f"objective {r.objective_at_mllib:.10g} (local solver {r.objective_local:.10g}), "
            f"largest weight gap {r.max_abs_weight_gap:.2e}"
        )
    if args.report:
        args.report.write_text(json.dumps([r.as_dict() for r in refits], indent=2))
    return tall


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipelines.build.fit_runner", description=__doc__.split("\n\n")[0])
    parser.add_argument("--engine", choices=["duckdb", "spark"], required=True)
    parser.add_argument("--db", type=Path, help="DuckDB file (default: the warehouse's build DB)")
    parser.add_argument(
        "--build-id", default=os.environ.get("PREFLENS_BUILD_ID", "manual"), help="fit id stamped on every row"
    )
    parser.add_argument("--vars", default="", help='dbt-style YAML dict of var overrides, e.g. "{cv_folds: 3}"')
    parser.add_argument("--schema", default=INPUT_SCHEMA, help="schema of the inputs and of the output table")
    parser.add_argument("--table", default=MODEL_NAME, help="output table name")
    parser.add_argument("--target", default="spark", help="profiles.yml target whose Spark settings to use")
    parser.add_argument(
        "--fit-engine",
        choices=FIT_ENGINES,
        default="local",
        help="spark only: mllib re-solves every point estimate on Spark MLlib (docs/scaling.md)",
    )
    parser.add_argument("--report", type=Path, help="with --fit-engine mllib: write the per-fit comparison as JSON")
    args = parser.parse_args(argv)
    if args.fit_engine != "local" and args.engine != "spark":
        parser.error("--fit-engine mllib needs --engine spark")
    overrides = yaml.safe_load(args.vars) if args.vars.strip() else {}
    if not isinstance(overrides, dict):
        parser.error("--vars must be a YAML mapping")
    started = time.perf_counter()
    if args.engine == "duckdb":
        db = (args.db or default_paths().build_db).resolve()
        try:
            n = _fit_duckdb(db, args.build_id, overrides, args.schema, args.table)
        except BuildAlreadyRunning as exc:
            print(f"fit_runner: {exc}", file=sys.stderr)
            return 3
    else:
        spark = spark_session(args.target)
        try:
            tall = _fit_spark(spark, args, overrides)
            n = write_spark(spark, tall, args.schema, args.table)
        finally:
            spark.stop()
    print(
        f"fit_runner: wrote {n} rows to {args.schema}.{args.table} ({args.engine}) in {time.perf_counter() - started:.1f}s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
