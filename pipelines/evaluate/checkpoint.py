"""The evaluation's record in the build DB: which run a re-run continues, which units are done, batched writes.

An evaluation is one row of ``ops.eval_runs``, keyed by the evaluated build and ``settings``: the canonical JSON
of the protocol settings and a digest of the features, so only the same computation on the same data is ever
resumed. While it runs, each finished unit's rows are appended to ``ops.eval_pending`` (in batches, one
transaction each, so a unit is there whole or not at all); the units with rows there are done. When every unit
is done, the rows move to ``ops.eval_results`` and the run becomes ``complete`` in one transaction, so
``ops.eval_results`` (and the marts and the served copy built from it) only ever hold whole evaluations. A
re-run of a complete evaluation finds it and computes nothing. Callers hold the build lock.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import duckdb
import pandas as pd

from pipelines.core.ids import new_id
from pipelines.core.warehouse import scalar
from py_models.eval_protocols import EVAL_COLUMNS

__all__ = ["EvalRecord", "open_evaluation", "done_keys", "write_rows", "complete", "settings_json", "UnitKey"]

RUNNING, COMPLETE, ABANDONED = "running", "complete", "abandoned"
UnitKey = tuple[str, str, str, int, str | None, str]  # representation, mechanism, protocol, split, held-out, variant
_KEY_COLUMNS = "representation, mechanism, protocol, split, held_out_domain, variant"
_FRAME = "__preflens_eval_rows"


@dataclass(frozen=True)
class EvalRecord:
    """The evaluation this run writes: a new one, an interrupted one continued, or a complete one found."""

    eval_id: str
    status: str  # running | complete
    resumed: bool  # an earlier run of the same evaluation exists (interrupted, or complete)


def _utc_now() -> pd.Timestamp:
    return pd.Timestamp.now(tz="UTC").tz_localize(None)


def settings_json(settings: Mapping[str, Any]) -> str:
    """Canonical JSON (sorted keys, no spaces) of the settings: equal settings give equal text."""
    return json.dumps(settings, sort_keys=True, separators=(",", ":"), default=str)


def open_evaluation(
    con: duckdb.DuckDBPyConnection, build_id: str | None, settings: str, *, fresh: bool = False
) -> EvalRecord:
    """The evaluation of ``build_id`` with ``settings``: the latest running or complete one, or (none, or
    ``fresh``) a new running one. Running evaluations that can no longer be resumed (another build, or the same
    one when ``fresh``) are marked abandoned and their pending rows dropped."""
    con.execute("begin transaction")
    try:
        stale = con.execute(
            "select eval_id from ops.eval_runs where status = ? and (build_id is distinct from ? or (? and settings = ?))",
            [RUNNING, build_id, fresh, settings],
        ).fetchall()
        for (eval_id,) in stale:
            con.execute("delete from ops.eval_pending where eval_id = ?", [eval_id])
            con.execute(
                "update ops.eval_runs set status = ?, finished_at = now() where eval_id = ?", [ABANDONED, eval_id]
            )
        found = None
        if not fresh:
            found = con.execute(
                "select eval_id, status from ops.eval_runs where build_id is not distinct from ? and settings = ? "
                "and status in (?, ?) order by status = ? desc, started_at desc limit 1",
                [build_id, settings, RUNNING, COMPLETE, COMPLETE],
            ).fetchone()
        if found is not None:
            record = EvalRecord(eval_id=str(found[0]), status=str(found[1]), resumed=True)
        else:
            record = EvalRecord(eval_id=new_id("eval"), status=RUNNING, resumed=False)
            con.execute(
                "insert into ops.eval_runs (eval_id, build_id, settings, status, started_at) values (?, ?, ?, ?, now())",
                [record.eval_id, build_id, settings, RUNNING],
            )
        con.execute("commit")
    except BaseException:
        con.execute("rollback")
        raise
    return record


def done_keys(con: duckdb.DuckDBPyConnection, eval_id: str) -> set[UnitKey]:
    """The (representation, mechanism, protocol, split, held-out domain, variant) that have rows already."""
    rows = con.execute(f"select distinct {_KEY_COLUMNS} from ops.eval_pending where eval_id = ?", [eval_id]).fetchall()
    return {(str(r[0]), str(r[1]), str(r[2]), int(r[3]), None if r[4] is None else str(r[4]), str(r[5])) for r in rows}


def write_rows(
    con: duckdb.DuckDBPyConnection,
    eval_id: str,
    build_id: str | None,
    rows: Iterable[dict[str, Any]],
    n_splits: int,
    n_seeds: int,
) -> int:
    """Append finished units' rows to ``ops.eval_pending`` in one statement (one transaction); returns the count."""
    frame = pd.DataFrame(list(rows), columns=EVAL_COLUMNS)
    if frame.empty:
        return 0
    frame.insert(0, "created_at", _utc_now())
    frame.insert(0, "build_id", build_id)
    frame.insert(0, "eval_id", eval_id)
    frame["n_splits"] = n_splits
    frame["n_seeds"] = n_seeds
    frame["held_out_domain"] = frame["held_out_domain"].astype(object)
    con.register(_FRAME, frame)
    try:
        con.execute(f"insert into ops.eval_pending by name select * from {_FRAME}")
    finally:
        con.unregister(_FRAME)
    return len(frame)


def complete(con: duckdb.DuckDBPyConnection, eval_id: str, n_units: int) -> int:
    """Move the evaluation's rows to ``ops.eval_results`` (one creation time: now) and mark it complete, in one
    transaction; returns its row count. A no-op for a complete evaluation."""
    con.execute("begin transaction")
    try:
        status = scalar(con, "select status from ops.eval_runs where eval_id = ?", [eval_id])
        if status == RUNNING:
            con.execute(
                "insert into ops.eval_results by name "
                "select * replace (?::timestamp as created_at) from ops.eval_pending where eval_id = ?",
                [_utc_now(), eval_id],
            )
            con.execute("delete from ops.eval_pending where eval_id = ?", [eval_id])
            n_rows = int(scalar(con, "select count(*) from ops.eval_results where eval_id = ?", [eval_id]))
            con.execute(
                "update ops.eval_runs set status = ?, n_units = ?, n_rows = ?, finished_at = now() where eval_id = ?",
                [COMPLETE, n_units, n_rows, eval_id],
            )
        else:
            n_rows = int(scalar(con, "select count(*) from ops.eval_results where eval_id = ?", [eval_id]))
        con.execute("commit")
    except BaseException:
        con.execute("rollback")
        raise
    return n_rows
