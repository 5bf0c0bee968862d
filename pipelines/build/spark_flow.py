"""Build the dbt project on Apache Spark (dbt-spark, ``method: session``): the scale-out path.

The flow, for a raw Parquet landing zone (one ``<table>.parquet`` per raw table):

1. ``dbt build --target spark --exclude source:hmdr+`` -- staging, features and every mart that does not need
   the fit. An on-run-start hook registers the raw Parquet files as the ``raw`` sources.
2. ``python -m pipelines.build.fit_runner --engine spark`` -- the HMDR fit (dbt Python models on Spark need
   Databricks), written to ``intermediate.int_hmdr_fits``. With ``--fit-engine mllib`` every point estimate is
   re-solved on Spark MLlib from the Spark feature tables (``pipelines/build/mllib_fit.py``).
3. ``dbt build --target spark --select source:hmdr+`` -- the fit's source tests and the marts that split it.

The fit runs in its own process: the local Derby metastore admits one JVM at a time.

    python -m pipelines.build.spark_flow [--warehouse DIR] [--spark-dir DIR]   # exports raw.* of the build DB first
    python -m pipelines.build.spark_flow --fit-engine mllib                     # point estimates on MLlib
    python -m pipelines.build.spark_flow --refit --fit-engine mllib             # steps 2-3 on an earlier build

The export reads the build file under the build lock (exit 3 while a build runs); the Spark steps read the
landing zone only.

Needs ``pip install -e '.[spark]'`` and Java 17+. See docs/scaling.md.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

import duckdb

from pipelines.build.dbt_runner import DbtResult, run_dbt
from pipelines.build.mllib_fit import FIT_ENGINES
from pipelines.core.config import REPO_ROOT, Paths, default_paths
from pipelines.core.lock import BuildAlreadyRunning, BuildLock, connect_build_db

FIT_SOURCE = "source:hmdr+"
#: what ``--fit-engine mllib`` reports per fit (MLlib's objective and weights next to the local solver's)
MLLIB_REPORT = "mllib_fit_report.json"


def export_raw_parquet(build_db: Path, landing: Path) -> dict[str, int]:
    """Copy every table of schemas ``raw`` and ``ops`` of a DuckDB build file to ``landing/<table>.parquet`` (the
    two schemas share no table name); row counts by table.

    Under the build lock of the file's folder, as every reader of the build file: while a build runs (or another
    process holds the file) it raises :class:`~pipelines.core.lock.BuildAlreadyRunning` before anything is written.
    """
    with BuildLock(Paths(warehouse=build_db.parent).lock_file):
        con = connect_build_db(build_db, read_only=True)
        try:
            landing.mkdir(parents=True, exist_ok=True)
            return _export(con, landing)
        finally:
            con.close()


def _export(con: duckdb.DuckDBPyConnection, landing: Path) -> dict[str, int]:
    """Write every table of schemas ``raw`` and ``ops`` that ``con`` sees to ``landing``; row counts by table."""
    tables = con.execute(
        "select schema_name, table_name from duckdb_tables() where schema_name in ('raw', 'ops') order by 2"
    ).fetchall()
    counts = {}
    for schema, table in tables:
        target = str(landing / f"{table}.parquet").replace("'", "''")
        con.execute(f"copy {schema}.\"{table}\" to '{target}' (format parquet)")
        row = con.execute(f'select count(*) from {schema}."{table}"').fetchone()
        counts[table] = int(row[0]) if row else 0
    return counts


def spark_env(spark_dir: Path, landing: Path) -> dict[str, str]:
    """Environment the spark profile target and the fit runner read (absolute paths)."""
    return {
        "PREFLENS_SPARK_WAREHOUSE": str(spark_dir.resolve()),
        "PREFLENS_RAW_PARQUET_DIR": str(landing.resolve()),
    }


def build_on_spark(
    spark_dir: Path,
    landing: Path,
    build_id: str,
    dbt_vars: str = "",
    *,
    target: str = "spark",
    fit_engine: str = "local",
    refit: bool = False,
) -> dict[str, float]:
    """Run the three-step Spark flow; returns the seconds of each step and the total.

    dbt artifacts go to ``spark_dir/dbt_target``; tables and the metastore live under ``spark_dir``.
    ``fit_engine``: ``local`` (the fit on the driver) or ``mllib`` (point estimates on Spark MLlib; the per-fit
    comparison goes to ``spark_dir/mllib_fit_report.json``). ``refit``: skip step 1 and reuse the features an
    earlier build left in ``spark_dir`` (the raw sources stay registered in its metastore).
    """
    if fit_engine not in FIT_ENGINES:
        raise ValueError(f"fit_engine must be one of {FIT_ENGINES}, got {fit_engine!r}")
    spark_dir.mkdir(parents=True, exist_ok=True)
    paths = Paths(warehouse=spark_dir.resolve())  # only its dbt_target dir is used on Spark
    env = spark_env(spark_dir, landing)
    var_args = ["--vars", dbt_vars] if dbt_vars else []
    timings: dict[str, float] = {}

    def dbt(step: str, args: list[str]) -> DbtResult:
        t0 = time.perf_counter()
        result = run_dbt(["build", "--target", target, *args, *var_args], paths, build_id, extra_env=env)
        timings[step] = time.perf_counter() - t0
        return result

    if not refit:
        dbt("dbt_features", ["--exclude", FIT_SOURCE])
    engine_args = ["--fit-engine", fit_engine]
    if fit_engine == "mllib":
        engine_args += ["--report", str((spark_dir / MLLIB_REPORT).resolve())]
    t0 = time.perf_counter()
    fit = subprocess.run(
        [
            sys.executable,
            "-m",
            "pipelines.build.fit_runner",
            "--engine",
            "spark",
            "--build-id",
            build_id,
            "--target",
            target,
            *engine_args,
            *(["--vars", dbt_vars] if dbt_vars else []),
        ],
        cwd=str(REPO_ROOT),
        env={**os.environ, **env, "PREFLENS_BUILD_ID": build_id},
        capture_output=True,
        text=True,
    )
    timings["fit"] = time.perf_counter() - t0
    if fit.returncode != 0:
        tail = (fit.stderr or fit.stdout).strip().splitlines()[-20:]
        raise RuntimeError("fit_runner on Spark failed:\n" + "\n".join(tail))
    env["PREFLENS_RAW_PARQUET_DIR"] = ""  # the raw sources stay registered from step 1
    dbt("dbt_marts", ["--select", FIT_SOURCE])
    timings["total"] = sum(timings.values())
    return timings


def dump_tables(out_dir: Path, schemas: tuple[str, ...] = ("marts",), target: str = "spark") -> dict[str, int]:
    """Write every table and view of ``schemas`` in the Spark catalog to ``out_dir/<schema>.<name>.parquet``.

    Run it in its own process (the Derby metastore admits one JVM); needs the spark env (see ``spark_env``).
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    from pipelines.build.fit_runner import spark_session

    out_dir.mkdir(parents=True, exist_ok=True)
    spark = spark_session(target)
    counts = {}
    try:
        for schema in schemas:
            for row in spark.sql(f"show tables in `{schema}`").collect():
                name = row["tableName"]
                if row["isTemporary"]:
                    continue
                frame = spark.table(f"`{schema}`.`{name}`").toPandas()
                pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), out_dir / f"{schema}.{name}.parquet")
                counts[f"{schema}.{name}"] = len(frame)
    finally:
        spark.stop()
    return counts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipelines.build.spark_flow", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--warehouse",
        type=Path,
        help="DuckDB warehouse whose raw.* tables to export (default: $PREFLENS_WAREHOUSE or ./warehouse)",
    )
    parser.add_argument(
        "--spark-dir", type=Path, help="Spark tables, metastore and dbt artifacts (default: <warehouse>/spark)"
    )
    parser.add_argument("--landing", type=Path, help="raw Parquet landing zone; when given, the export is skipped")
    parser.add_argument("--build-id", default=os.environ.get("PREFLENS_BUILD_ID", "spark-manual"))
    parser.add_argument("--vars", default="", help="dbt --vars YAML, passed to dbt and to the fit runner")
    parser.add_argument(
        "--fit-engine",
        choices=FIT_ENGINES,
        default="local",
        help="local: fit on the driver; mllib: point estimates on Spark MLlib (docs/scaling.md)",
    )
    parser.add_argument(
        "--refit", action="store_true", help="reuse the features of an earlier build in --spark-dir: fit and marts only"
    )
    parser.add_argument(
        "--dump",
        type=Path,
        metavar="DIR",
        help="only write the marts of an existing Spark build to DIR/<schema>.<name>.parquet",
    )
    args = parser.parse_args(argv)
    paths = Paths(warehouse=args.warehouse.resolve()) if args.warehouse else default_paths()
    spark_dir = (args.spark_dir or paths.warehouse / "spark").resolve()
    landing = args.landing
    if args.dump:
        os.environ.update(spark_env(spark_dir, landing or spark_dir / "raw_parquet"))
        counts = dump_tables(args.dump.resolve())
        print(f"wrote {len(counts)} relations to {args.dump}")
        return 0
    started = time.perf_counter()
    if landing is None and args.refit:
        landing = spark_dir / "raw_parquet"
    if landing is None:
        landing = spark_dir / "raw_parquet"
        try:
            counts = export_raw_parquet(paths.build_db, landing)
        except BuildAlreadyRunning as exc:  # exit 3, as every command that meets a build
            print(f"preflens: {exc}", file=sys.stderr)
            return 3
        print(f"exported raw tables to {landing}: " + ", ".join(f"{t}={n}" for t, n in counts.items()))
    timings = build_on_spark(
        spark_dir, landing.resolve(), args.build_id, args.vars, fit_engine=args.fit_engine, refit=args.refit
    )
    timings["wall_with_export"] = time.perf_counter() - started
    print("spark flow: " + ", ".join(f"{k} {v:.1f}s" for k, v in timings.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
