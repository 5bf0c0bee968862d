"""`preflens evaluate`: the paper's in-domain and out-of-domain protocols on the build warehouse (I/O side).

Reads the decisive labelled pairs and their concept values from the build DuckDB (``intermediate`` schema of the
last `preflens run` / `build`), runs ``py_models.eval_protocols`` for every mechanism and model variant, appends the
rows to ``ops.eval_results`` (created here) under a fresh ``eval_id`` stamped with the evaluated ``build_id``,
then builds the evaluation marts (``fct_eval_results``, ``rpt_model_comparison``) with dbt. The served copy picks
them up at the next `preflens build`.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd

from pipelines.core.config import Paths
from pipelines.core.ids import new_id
from py_models.eval_protocols import EVAL_COLUMNS, VARIANTS, run_protocols
from py_models.features import design_frame, representation_settings
from py_models.fit_job import rms_scale


@dataclass
class EvalRun:
    eval_id: str
    build_id: str | None
    results: pd.DataFrame
    seconds: float


def load_features(con, representation: str) -> tuple[pd.DataFrame, list[str]]:
    """Labelled pairs x concept values of the last build: the wide feature table the main fit reads
    (``intermediate.int_pair_features_<representation>``).

    Measure-rep columns are divided by their RMS over all pairs of each mechanism (label-free, so no label
    information leaks into the test parts; the main fit scales on each training part instead)."""
    rep = representation_settings(representation)
    df, cols = design_frame(con.sql(f"select * from intermediate.{rep.feature_table}").df())
    if df.empty:
        raise RuntimeError("no labelled pairs in the build warehouse; run `preflens run` first")
    if not cols:
        raise RuntimeError(f"no concept has a {representation}-rep value in this build")
    if rep.standardize:
        for _, idx in df.groupby("mechanism").groups.items():
            block = df.loc[idx, cols].to_numpy(dtype=float)
            df.loc[idx, cols] = block / rms_scale(block)
    return df, cols


def last_build_id(con) -> str | None:
    row = con.execute(
        "select build_id from ops.builds where status = 'success' order by started_at desc limit 1"
    ).fetchall()
    return row[0][0] if row else None


def run_evaluation(
    paths: Paths,
    *,
    representations: Sequence[str] = ("measure",),
    mechanisms: Sequence[str] | None = None,
    variants: Sequence[str] = VARIANTS,
    protocols: Sequence[str] = ("in_domain", "ood"),
    n_splits: int = 25,
    n_seeds: int = 5,
    n_jobs: int = 2,
    seed: int = 0,
    min_domain_pairs: int = 20,
    build_marts: bool = True,
) -> EvalRun:
    """Run the protocols, write ops.eval_results, build the evaluation marts. Caller holds the build lock."""
    from pipelines.core.warehouse import connect

    t0 = time.perf_counter()
    con = connect(paths.build_db)
    try:
        build_id = last_build_id(con)
        parts = []
        for rep in representations:
            df, cols = load_features(con, rep)
            if mechanisms:
                unknown = sorted(set(mechanisms) - set(df["mechanism"].astype(str)))
                if unknown:
                    raise ValueError(f"unknown mechanism(s): {unknown}")
            parts.append(
                run_protocols(
                    df,
                    cols,
                    representation=rep,
                    n_jobs=n_jobs,
                    mechanisms=mechanisms,
                    variants=tuple(variants),
                    protocols=tuple(protocols),
                    n_splits=n_splits,
                    n_seeds=n_seeds,
                    seed=seed,
                    min_domain_samples=min_domain_pairs,
                )
            )
        res = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=EVAL_COLUMNS)
        eval_id = new_id("eval")
        out = res.copy()
        out.insert(0, "created_at", pd.Timestamp.now(tz="UTC").tz_localize(None))
        out.insert(0, "build_id", build_id)
        out.insert(0, "eval_id", eval_id)
        out["n_splits"] = n_splits
        out["n_seeds"] = n_seeds
        cols_sql = ", ".join(out.columns)
        con.register("eval_frame", out)
        con.execute(f"insert into ops.eval_results ({cols_sql}) select {cols_sql} from eval_frame")
        con.unregister("eval_frame")
    finally:
        con.close()
    if build_marts:
        from pipelines.build.dbt_runner import run_dbt

        run_dbt(["build", "--select", "stg_ops__eval_results+"], paths, build_id or eval_id)
    return EvalRun(eval_id=eval_id, build_id=build_id, results=res, seconds=time.perf_counter() - t0)


def comparison_table(con, eval_id: str, representation: str = "comp") -> pd.DataFrame:
    """Table-1 layout from marts.rpt_model_comparison: mechanism x (variant, protocol) mean accuracy %."""
    df = con.execute(
        "select mechanism, variant, protocol, mean_accuracy from marts.rpt_model_comparison "
        "where eval_id = ? and representation = ?",
        [eval_id, representation],
    ).df()
    if df.empty:
        return df
    wide = df.pivot_table(index="mechanism", columns=["variant", "protocol"], values="mean_accuracy")
    order = {v: i for i, v in enumerate(VARIANTS)}
    wide = wide[sorted(wide.columns, key=lambda c: (order.get(c[0], 99), c[1]))]
    wide.loc["MEAN"] = wide.mean(numeric_only=True)
    return (100 * wide).round(1)
