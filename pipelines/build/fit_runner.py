"""Run the HMDR fit outside dbt, reading the feature tables from DuckDB or Spark and writing the tall table back.

On DuckDB the fit is the dbt Python model ``int_hmdr_fits``. dbt Python models on Spark need Databricks, so on
the Spark target that model is disabled and this runner fills ``intermediate.int_hmdr_fits`` between two dbt
invocations (see ``pipelines/build/spark_flow.py`` and ``docs/scaling.md``).

The fit is *the dbt model's own code*: the runner loads ``int_hmdr_fits.py`` and calls its ``model(dbt, session)``
with a small stand-in for dbt's ``dbt`` object. ``dbt.ref(name).df()`` reads ``<schema>.<name>`` from the engine
as pandas; ``dbt.config.get(key)`` returns the model's ``config:`` block of ``_int__models.yml`` rendered with the
project's vars (plus ``--vars`` overrides), and -- like dbt, which finds the keys with its own AST parser
(``dbt.parser.models.PythonParseVisitor``) -- only for the keys dbt detects in the model file. So both engines
run the same calls (``pivot_features`` -> ``fit_mechanisms`` -> ``to_tall``) with the same settings, and a change
to the model cannot drift away from this runner.

    python -m pipelines.build.fit_runner --engine duckdb [--db PATH]       # default: the build DB of the warehouse
    python -m pipelines.build.fit_runner --engine spark                   # needs PREFLENS_SPARK_WAREHOUSE, `.[spark]`
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from types import ModuleType
from typing import Any

import pandas as pd
import yaml

from pipelines.core.config import DBT_PROJECT_DIR, default_paths

MODEL_NAME = "int_hmdr_fits"
MODEL_FILE = DBT_PROJECT_DIR / "models" / "intermediate" / f"{MODEL_NAME}.py"
MODELS_YML = DBT_PROJECT_DIR / "models" / "intermediate" / "_int__models.yml"
INPUT_SCHEMA = "intermediate"
# dbt-only keys of the model's config block; everything else is a fit setting the model reads
_DBT_ONLY_KEYS = {"enabled", "tags", "materialized", "meta", "docs", "schema", "alias"}

Reader = Callable[[str], pd.DataFrame]


# ---------------------------------------------------------------- settings, rendered like dbt renders them


def _render(value: Any, variables: Mapping[str, Any], native: bool = True) -> Any:
    """Render ``{{ var(...) }}`` / ``{{ env_var(...) }}`` in a yml string (native types, as dbt renders configs)."""
    if not isinstance(value, str) or "{{" not in value:
        return value
    import jinja2
    import jinja2.nativetypes

    def var(name: str, default: Any = None) -> Any:
        if name in variables:
            return variables[name]
        if default is None:
            raise KeyError(f"dbt var {name!r} is not defined in dbt_project.yml and has no default")
        return default

    def env_var(name: str, default: Any = None) -> str:
        if name in os.environ:
            return os.environ[name]
        if default is None:
            raise KeyError(f"env var {name!r} is required")
        return str(default)

    env = jinja2.nativetypes.NativeEnvironment() if native else jinja2.Environment()
    return env.from_string(value).render(var=var, env_var=env_var)


def project_vars(overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The ``vars:`` of dbt_project.yml (unrendered, as dbt keeps them), then ``overrides`` (like ``--vars``)."""
    project = yaml.safe_load((DBT_PROJECT_DIR / "dbt_project.yml").read_text())
    out = dict(project.get("vars") or {})
    out.update(overrides or {})
    return out


def config_keys_read_by_model() -> list[str]:
    """The keys dbt passes to the Python model: the ``dbt.config.get("key")`` calls its AST parser detects."""
    import ast

    from dbt.parser.models import PythonParseVisitor

    visitor = PythonParseVisitor(None)
    visitor.visit(ast.parse(MODEL_FILE.read_text(), filename=str(MODEL_FILE)))
    return [str(args[0]) for func, args, _ in visitor.dbt_function_calls if func == "get" and args]


def fit_settings(overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The ``int_hmdr_fits`` config block of ``_int__models.yml``, rendered with the project vars, limited to the
    keys dbt hands to the model (see ``config_keys_read_by_model``)."""
    variables = project_vars(overrides)
    models = yaml.safe_load(MODELS_YML.read_text()).get("models") or []
    entry = next((m for m in models if m.get("name") == MODEL_NAME), None)
    if entry is None:
        raise RuntimeError(f"{MODELS_YML} declares no model {MODEL_NAME}")
    config = entry.get("config") or {}
    keys = set(config_keys_read_by_model())
    return {k: _render(v, variables) for k, v in config.items() if k in keys and k not in _DBT_ONLY_KEYS}


# ---------------------------------------------------------------- the dbt stand-in


class _Relation:
    def __init__(self, name: str, read: Reader) -> None:
        self.name = name
        self._read = read

    def df(self) -> pd.DataFrame:
        return self._read(self.name)


class _Config:
    def __init__(self, values: Mapping[str, Any]) -> None:
        self._values = dict(values)

    def __call__(self, **_: Any) -> None:  # dbt.config(materialized=...) sets dbt-side options only
        return None

    def get(self, key: str, default: Any = None) -> Any:
        return self._values.get(key, default)


class _Dbt:
    """What ``int_hmdr_fits.model`` uses of dbt's ``dbt`` object: ref(...).df(), config(...), config.get(...)."""

    def __init__(self, read: Reader, settings: Mapping[str, Any]) -> None:
        self._read = read
        self.config = _Config(settings)

    def ref(self, name: str, *_: Any, **__: Any) -> _Relation:
        return _Relation(name, self._read)

    def is_incremental(self) -> bool:
        return False


def load_model() -> ModuleType:
    """Import ``dbt_project/models/intermediate/int_hmdr_fits.py`` as a module."""
    spec = importlib.util.spec_from_file_location(f"_dbt_model_{MODEL_NAME}", MODEL_FILE)
    if spec is None or spec.loader is None:
        raise RuntimeError(f"cannot load {MODEL_FILE}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_fit(read: Reader, build_id: str, overrides: Mapping[str, Any] | None = None) -> pd.DataFrame:
    """The tall fit table, computed by the dbt model's ``model()`` on frames from ``read(table_name)``."""
    settings = fit_settings({**(overrides or {}), "build_id": build_id})
    return load_model().model(_Dbt(read, settings), None)


# ---------------------------------------------------------------- engines


def _qi_duckdb(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def read_duckdb(db_path: Path, schema: str = INPUT_SCHEMA) -> tuple[Reader, Callable[[], None]]:
    """A reader of ``schema.<table>`` from a DuckDB file (read-only), and its close function."""
    import duckdb

    con = duckdb.connect(str(db_path), read_only=True)
    return (lambda name: con.execute(f"select * from {_qi_duckdb(schema)}.{_qi_duckdb(name)}").df()), con.close


def write_duckdb(tall: pd.DataFrame, db_path: Path, schema: str = INPUT_SCHEMA, table: str = MODEL_NAME) -> int:
    """Replace ``schema.table`` in the DuckDB file with ``tall``; returns the row count."""
    import duckdb

    con = duckdb.connect(str(db_path))
    try:
        con.register("_tall", tall)
        con.execute(f"create schema if not exists {_qi_duckdb(schema)}")
        con.execute(f"create or replace table {_qi_duckdb(schema)}.{_qi_duckdb(table)} as select * from _tall")
        con.unregister("_tall")
        return int(con.execute(f"select count(*) from {_qi_duckdb(schema)}.{_qi_duckdb(table)}").fetchone()[0])
    finally:
        con.close()


def spark_profile_parameters(target: str = "spark") -> dict[str, str]:
    """``server_side_parameters`` of the spark target in dbt_project/profiles.yml, env vars rendered."""
    profiles = yaml.safe_load((DBT_PROJECT_DIR / "profiles.yml").read_text())
    output = profiles["preflens"]["outputs"][target]
    return {str(k): str(_render(v, {}, native=False)) for k, v in (output.get("server_side_parameters") or {}).items()}


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

    arrow_types = {"string": pa.string(), "int64": pa.int64(), "float64": pa.float64(), "boolean": pa.bool_()}
    schema_pa = pa.schema([(col, arrow_types[TALL_SCHEMA.get(col, "string")]) for col in tall.columns])
    frame = spark.createDataFrame(pa.Table.from_pandas(tall, schema=schema_pa, preserve_index=False))
    spark.sql(f"create database if not exists {_qi_spark(schema)}")
    frame.write.mode("overwrite").format("parquet").saveAsTable(f"{_qi_spark(schema)}.{_qi_spark(table)}")
    return int(spark.table(f"{_qi_spark(schema)}.{_qi_spark(table)}").count())


# ---------------------------------------------------------------- CLI


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipelines.build.fit_runner", description=__doc__.split("\n\n")[0])
    parser.add_argument("--engine", choices=["duckdb", "spark"], required=True)
    parser.add_argument("--db", type=Path, help="DuckDB file (default: the warehouse's build DB)")
    parser.add_argument("--build-id", default=os.environ.get("PREFLENS_BUILD_ID", "manual"), help="fit id stamped on every row")
    parser.add_argument("--vars", default="", help="dbt-style YAML dict of var overrides, e.g. \"{cv_folds: 3}\"")
    parser.add_argument("--schema", default=INPUT_SCHEMA, help="schema of the inputs and of the output table")
    parser.add_argument("--table", default=MODEL_NAME, help="output table name")
    parser.add_argument("--target", default="spark", help="profiles.yml target whose Spark settings to use")
    args = parser.parse_args(argv)
    overrides = yaml.safe_load(args.vars) if args.vars.strip() else {}
    if not isinstance(overrides, dict):
        parser.error("--vars must be a YAML mapping")
    started = time.perf_counter()
    if args.engine == "duckdb":
        db = (args.db or default_paths().build_db).resolve()
        read, close = read_duckdb(db, args.schema)
        try:
            tall = run_fit(read, args.build_id, overrides)
        finally:
            close()
        n = write_duckdb(tall, db, args.schema, args.table)
    else:
        spark = spark_session(args.target)
        try:
            tall = run_fit(read_spark(spark, args.schema), args.build_id, overrides)
            n = write_spark(spark, tall, args.schema, args.table)
        finally:
            spark.stop()
    print(f"fit_runner: wrote {n} rows to {args.schema}.{args.table} ({args.engine}) in {time.perf_counter() - started:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
