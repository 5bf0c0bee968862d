"""`preflens evaluate`: the paper's in-domain and out-of-domain protocols on the build warehouse (I/O side).

1. Reads the labelled pairs and their concept values of the last build (``intermediate`` schema, one query per
   representation) and builds each mechanism's design once per representation (``prepare_mechanism``).
2. Finds the evaluation to write (``checkpoint.open_evaluation``): a run killed before it finished is continued,
   a finished one with the same settings on the same features is reused (nothing is computed again), otherwise a
   new one starts (``fresh`` forces that).
3. Runs the units not done yet (``py_models.eval_protocols``) on ``n_jobs`` worker processes (``workers``),
   costliest mechanism and variant first, with a progress line per finished mechanism and variant (``progress``),
   writing finished units to ``ops.eval_pending`` every ``flush_seconds``; when all are done the rows move to
   ``ops.eval_results`` under the evaluation's ``eval_id``, stamped with the evaluated ``build_id``.
4. Builds the evaluation marts (``fct_eval_results``, ``rpt_model_comparison``) with dbt and publishes them with
   the build they evaluate (``publication``), or says what to run when that build is not the published one.
"""

from __future__ import annotations

import contextlib
import hashlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import duckdb
import numpy as np
import pandas as pd

from pipelines.core.config import Paths
from pipelines.core.lock import BuildLock, connect_build_db, held_by_this_process
from pipelines.evaluate.checkpoint import (
    RUNNING,
    EvalRecord,
    complete,
    done_keys,
    open_evaluation,
    settings_json,
    write_rows,
)
from pipelines.evaluate.progress import EvalProgress, stderr_line
from pipelines.evaluate.publication import Publication, publish_evaluation
from pipelines.evaluate.workers import DesignKey, resolve_jobs, run_units
from py_models.eval_protocols import (
    EVAL_COLUMNS,
    VARIANTS,
    EvalUnit,
    MechanismDesign,
    ProtocolSettings,
    plan_units,
    prepare_mechanism,
    sort_results,
)
from py_models.features import design_frame, representation_settings
from py_models.fit_job import rms_scale

__all__ = ["EvalRun", "comparison_table", "last_build_id", "load_features", "run_evaluation"]

#: finished units are written at most this often (seconds): a killed evaluation loses no more than that
FLUSH_SECONDS = 2.0


@dataclass
class EvalRun:
    eval_id: str
    build_id: str | None
    results: pd.DataFrame
    seconds: float
    n_units: int = 0  # units of the whole evaluation
    n_units_run: int = 0  # units this run computed (0 when it found the evaluation complete)
    resumed: bool = False  # continued (or found complete) an earlier run of the same evaluation
    publication: Publication | None = None


def load_features(con: duckdb.DuckDBPyConnection, representation: str) -> tuple[pd.DataFrame, list[str]]:
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


def load_designs(
    con: duckdb.DuckDBPyConnection, representations: Sequence[str], mechanisms: Sequence[str] | None
) -> tuple[dict[DesignKey, MechanismDesign], str]:
    """Every (representation, mechanism) design, built once, and a digest of them all (the resume key's data)."""
    designs: dict[DesignKey, MechanismDesign] = {}
    digest = hashlib.sha256()
    for rep in representations:
        df, cols = load_features(con, rep)
        names = df["mechanism"].astype(str)
        if mechanisms:
            unknown = sorted(set(mechanisms) - set(names))
            if unknown:
                raise ValueError(f"unknown mechanism(s): {unknown}")
        digest.update(repr((rep, cols)).encode("utf-8"))
        for mech in sorted(set(mechanisms) if mechanisms else set(names)):
            d = prepare_mechanism(df[names == mech], cols, rep)
            designs[(rep, mech)] = d
            digest.update(repr((rep, mech, d.mechanism_type, d.n_ties_dropped, d.y.tolist(), d.dom.tolist())).encode())
            digest.update(np.ascontiguousarray(d.X).tobytes())
    return designs, digest.hexdigest()


def last_build_id(con: duckdb.DuckDBPyConnection) -> str | None:
    row = con.execute(
        "select build_id from ops.builds where status = 'success' order by started_at desc limit 1"
    ).fetchall()
    return row[0][0] if row else None


def schedule(designs: dict[DesignKey, MechanismDesign], settings: ProtocolSettings) -> list[EvalUnit]:
    """Every unit, by (representation, mechanism, variant group), costliest group first, each group's units
    together: groups finish one after another (steady progress) and the cheap ones keep both workers busy at
    the end."""
    groups: dict[tuple[str, str, tuple[str, ...]], list[EvalUnit]] = {}
    for key in sorted(designs):
        for u in plan_units(designs[key], settings):
            groups.setdefault((u.representation, u.mechanism, u.variants[:1]), []).append(u)
    order = sorted(groups, key=lambda g: -sum(u.cost for u in groups[g]))
    return [u for g in order for u in groups[g]]


def _row_key(r: dict) -> tuple[str, str, str, int, str | None, str]:
    return (r["representation"], r["mechanism"], r["protocol"], int(r["split"]), r["held_out_domain"], r["variant"])


def _run_pending(
    con: duckdb.DuckDBPyConnection,
    record: EvalRecord,
    build_id: str | None,
    designs: dict[DesignKey, MechanismDesign],
    units: list[EvalUnit],
    settings: ProtocolSettings,
    jobs: int,
    progress: Callable[[str], None] | None,
    flush_seconds: float,
) -> int:
    """Run the units of a running evaluation that have no rows yet, writing them every ``flush_seconds``, then
    complete it; returns how many units ran."""
    done = done_keys(con, record.eval_id)
    todo = [u for u in units if not all(k in done for k in u.keys())]
    tracker = EvalProgress(units, todo, progress) if progress is not None else None
    if tracker is not None:
        n_mechs = len({m for _, m in designs})
        tracker.start(
            record.eval_id, n_mechs, sorted({r for r, _ in designs}), min(jobs, max(len(todo), 1)), record.resumed
        )
    buffer: list[dict] = []
    n_run, last_flush = 0, time.perf_counter()
    results = run_units(designs, todo, settings, jobs)
    try:
        for unit, rows, secs, n_conv, cpu in results:
            buffer += [r for r in rows if _row_key(r) not in done]
            n_run += 1
            if tracker is not None:
                tracker.unit_done(unit, secs, n_conv, cpu)
            if time.perf_counter() - last_flush >= flush_seconds:
                write_rows(con, record.eval_id, build_id, buffer, settings.n_splits, settings.n_seeds)
                buffer, last_flush = [], time.perf_counter()
    finally:  # what finished is kept, also when a unit failed or the user pressed Ctrl-C
        results.close()  # stops the workers now, not when the generator is collected
        write_rows(con, record.eval_id, build_id, buffer, settings.n_splits, settings.n_seeds)
    n_rows = complete(con, record.eval_id, len(units))
    if tracker is not None:
        tracker.finish(n_rows)
    return n_run


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
    publish: bool = True,
    fresh: bool = False,
    progress: Callable[[str], None] | None = stderr_line,
    flush_seconds: float = FLUSH_SECONDS,
) -> EvalRun:
    """Run (or continue) the evaluation, build the evaluation marts and publish them, under the build lock.

    The lock is the caller's when this process holds it already (``preflens evaluate``), else taken here; another
    process holding it (or the build file) raises :class:`~pipelines.core.lock.BuildAlreadyRunning` before the
    build file is opened (exit 3 in the CLI).

    ``n_jobs``: worker processes (1 = none, <= 0 = every core); ``fresh``: a new evaluation even if one with the
    same settings exists; ``progress``: where the progress lines go (None: nowhere); ``publish`` (with
    ``build_marts``): re-publish the served copy with the new marts when the evaluated build is the published one.
    """
    t0 = time.perf_counter()
    reps = list(dict.fromkeys(representations))
    settings = ProtocolSettings(
        protocols=tuple(protocols),
        variants=tuple(variants),
        n_splits=n_splits,
        n_seeds=n_seeds,
        seed=seed,
        min_domain_samples=min_domain_pairs,
    )
    jobs = resolve_jobs(n_jobs)
    with _build_lock(paths):
        return _evaluate_locked(
            paths, reps, mechanisms, variants, settings, jobs, build_marts, publish, fresh, progress, flush_seconds, t0
        )


def _build_lock(paths: Paths) -> contextlib.AbstractContextManager[Any]:
    """The build lock: none to take when this process holds it already, else ``BuildLock`` (raises
    ``BuildAlreadyRunning`` when another process holds it)."""
    if held_by_this_process(paths.lock_file):
        return contextlib.nullcontext()
    return BuildLock(paths.lock_file)


def _evaluate_locked(
    paths: Paths,
    reps: list[str],
    mechanisms: Sequence[str] | None,
    variants: Sequence[str],
    settings: ProtocolSettings,
    jobs: int,
    build_marts: bool,
    publish: bool,
    fresh: bool,
    progress: Callable[[str], None] | None,
    flush_seconds: float,
    t0: float,
) -> EvalRun:
    """``run_evaluation``'s work, with the build lock held."""
    con = connect_build_db(paths.build_db)
    try:
        build_id = last_build_id(con)
        designs, features = load_designs(con, reps, mechanisms)
        key = {
            **settings.key(),
            "representations": sorted(reps),
            "mechanisms": sorted(set(mechanisms)) if mechanisms else None,
            "features_sha256": features,
        }
        record = open_evaluation(con, build_id, settings_json(key), fresh=fresh)
        units = schedule(designs, settings)
        n_run = 0
        if record.status == RUNNING:
            n_run = _run_pending(con, record, build_id, designs, units, settings, jobs, progress, flush_seconds)
        elif progress is not None:
            progress(
                f"evaluate {record.eval_id}: complete already with these settings on these features; nothing to run"
            )
        cols = ", ".join(EVAL_COLUMNS)
        res = con.execute(f"select {cols} from ops.eval_results where eval_id = ?", [record.eval_id]).df()
    finally:
        con.close()
    res = sort_results(res, variants)
    run = EvalRun(
        eval_id=record.eval_id,
        build_id=build_id,
        results=res,
        seconds=0.0,
        n_units=len(units),
        n_units_run=n_run,
        resumed=record.resumed,
    )
    say = progress or (lambda _line: None)
    if build_marts:
        from pipelines.build.dbt_runner import run_dbt

        t = time.perf_counter()
        run_dbt(["build", "--select", "stg_ops__eval_results+"], paths, build_id or record.eval_id)
        say(f"evaluate: evaluation marts built by dbt in {time.perf_counter() - t:.1f}s")
        if publish:
            t = time.perf_counter()
            run.publication = publish_evaluation(paths, build_id)
            state = "published" if run.publication.published else "not published"
            say(f"evaluate: served copy {state} ({time.perf_counter() - t:.1f}s)")
    run.seconds = time.perf_counter() - t0
    return run


def comparison_table(con: duckdb.DuckDBPyConnection, eval_id: str, representation: str = "comp") -> pd.DataFrame:
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

    def rank(column: Any) -> tuple[int, str]:
        variant, protocol = column
        return order.get(str(variant), 99), str(protocol)

    wide = wide.reindex(columns=sorted(wide.columns, key=rank))
    wide.loc["MEAN"] = wide.mean(numeric_only=True)
    return (100 * wide).round(1)
