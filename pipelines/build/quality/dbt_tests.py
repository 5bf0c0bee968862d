"""dbt data tests as quality results: run the gates, and read what any dbt run's tests found.

Every dbt test stores its failing rows in schema ``audit`` of the build file (``store_failures``,
``dbt_project/dbt_project.yml``). :func:`read_test_results` turns a run's ``run_results.json``, with the test
metadata of its ``manifest.json`` (name, attached model, column, arguments, severity), into
:class:`~pipelines.build.quality.results.QualityResult` rows: ``blocking`` is severity error, ``unexpected_count``
the number of failing rows and ``observed`` where they are. :func:`run_gate_tests` runs the quality gates
(``dbt test --select tag:gate`` with the thresholds as vars); a gate disabled by a threshold of ``None`` is
reported as skipped.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb

from pipelines.build.dbt_runner import DbtError, run_dbt
from pipelines.build.quality.results import DBT, QualityResult
from pipelines.build.quality.specs import qualified, quote_ident, table_columns
from pipelines.build.quality.thresholds import QualityThresholds
from pipelines.core.config import Paths

GATE_SELECTOR = "tag:gate"
#: the var values dbt renders into SQL unquoted (macros/active_annotator.sql): checked before dbt sees them
_UNQUOTED_VARS = ("annotator", "annotator_version")


@dataclass
class GateRun:
    """The outcome of one run of the gates: a result per gate that ran, the skipped gates and dbt's manifest."""

    results: list[QualityResult] = field(default_factory=list)
    #: gate name -> (table, reason) for the gates a threshold of None disabled
    skipped: dict[str, tuple[str, str]] = field(default_factory=dict)
    manifest: dict[str, Any] = field(default_factory=dict)


def _load(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path}: unreadable dbt artifact ({exc})") from exc
    if not isinstance(data, dict):
        raise ValueError(f"{path}: not a dbt artifact (a JSON object expected)")
    return data


def _relation(node: Mapping[str, Any]) -> str:
    """``schema.name`` of a model or source node."""
    name = node.get("alias") or node.get("identifier") or node.get("name")
    return f"{node.get('schema')}.{name}"


def _audit_relation(node: Mapping[str, Any]) -> str:
    """Where dbt stored the test's failing rows: ``audit.<test>`` (the catalog left out)."""
    schema = node.get("schema") or "audit"
    return f"{schema}.{node.get('alias') or node.get('name')}"


def _parents(node: Mapping[str, Any], manifest: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    out = []
    for uid in (node.get("depends_on") or {}).get("nodes") or []:
        parent = manifest.get("nodes", {}).get(uid) or manifest.get("sources", {}).get(uid)
        if parent is not None:
            out.append(parent)
    return out


def _text(value: Any) -> str:
    return json.dumps(value, default=str, ensure_ascii=False) if not isinstance(value, str) else value


def _expected(node: Mapping[str, Any], dbt_vars: Mapping[str, Any]) -> str:
    """The test's arguments (``values=["a", "b"]``), the gate's threshold, and ``severity warn`` when it warns."""
    meta = (node.get("config") or {}).get("meta") or {}
    kwargs = ((node.get("test_metadata") or {}).get("kwargs")) or {}
    parts = [f"{k}={_text(v)}" for k, v in kwargs.items() if k not in ("model", "column_name")]
    threshold = meta.get("threshold")
    if threshold:
        parts.append(f"{threshold}={_text(dbt_vars.get(threshold))}")
    if (node.get("config") or {}).get("severity", "error").lower() == "warn":
        parts.append("severity warn")
    return ", ".join(parts) or "no failing rows"


def result_of_test(
    node: Mapping[str, Any],
    outcome: Mapping[str, Any],
    manifest: Mapping[str, Any],
    dbt_vars: Mapping[str, Any],
    stored: int | None = None,
    measured: str | None = None,
) -> QualityResult:
    """One test of a run as a result: a generic test belongs to the model it is attached to, a singular one (a gate)
    is its own suite over the relations it reads. ``stored``: the rows its audit table holds (dbt reports 0 for a
    test that passed within an allowance, e.g. ``max_labels_without_features``), else dbt's failure count.
    ``measured``: what a failing gate measured against its threshold (:func:`measured_against_threshold`), put
    before the failing-row count in ``observed``."""
    meta_name = (node.get("test_metadata") or {}).get("name")
    attached = manifest.get("nodes", {}).get(node.get("attached_node") or "") or manifest.get("sources", {}).get(
        node.get("attached_node") or ""
    )
    if attached is not None:
        suite = str(attached.get("name"))
        table = _relation(attached)
    else:
        suite = str(node.get("name"))
        table = ", ".join(sorted({_relation(p) for p in _parents(node, manifest)})) or "?"
    status = str(outcome.get("status") or "").lower()
    severity = str((node.get("config") or {}).get("severity") or "error").lower()
    failures = outcome.get("failures")
    n_failing = stored if stored is not None else int(failures) if isinstance(failures, int) else None
    where = _audit_relation(node)
    common: dict[str, Any] = {
        "suite": suite,
        "table": table,
        "expectation_type": str(meta_name or node.get("name")),
        "column": node.get("column_name") or None,
        "expected": _expected(node, dbt_vars),
        "engine": DBT,
    }
    if status == "skipped":
        reason = "not run: a node it depends on failed"
        return QualityResult(**common, success=True, observed=f"skipped: {reason}", skipped=True)
    if status in ("error", "runtime error"):
        message = str(outcome.get("message") or "error").strip().splitlines()
        return QualityResult(**common, success=False, error=" ".join(m.strip() for m in message)[:1000], blocking=True)
    observed = f"{n_failing if n_failing is not None else '?'} failing rows in {where}"
    if measured and status in ("fail", "warn"):
        observed = f"{measured}; {_rows(n_failing)} in {where}"
    return QualityResult(
        **common,
        success=status == "pass",
        observed=observed,
        unexpected_count=n_failing,
        blocking=status == "fail" or (status == "pass" and severity == "error"),
    )


def _rows(n: int | None) -> str:
    return f"{n if n is not None else '?'} failing row{'' if n == 1 else 's'}"


#: the failing rows of a gate that are shown in its message (the worst first); the others are counted
MEASURED_ROWS_SHOWN = 3


def _value(value: Any, percent: bool) -> str:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(value)
    return f"{value:.1%}" if percent else f"{value:g}"


def measured_against_threshold(
    con: duckdb.DuckDBPyConnection | None, node: Mapping[str, Any], dbt_vars: Mapping[str, Any], stored: int | None
) -> str | None:
    """What a gate measured, stated against its threshold, from its failing rows (``None`` for a test that does not
    declare it). A gate declares it in its ``config(meta=...)`` beside ``threshold`` (the dbt var it is held to):

    - ``measure``: the column of its failing rows holding the measured value, ``percent`` to show it as one, ``of``
      the columns naming what was measured and ``out_of`` a ``[part, whole]`` pair of count columns. Read from the
      audit table, worst first: ``swap_inconsistency_rate 60.0% (9 of 15) > 35.0% (max_swap_inconsistency_rate)
      for offline v1``;
    - ``counted``: ``[singular, plural]`` words for one failing row, when the measure is their number:
      ``3 decisive labels without features > 0 allowed (max_labels_without_features)``.
    """
    meta = (node.get("config") or {}).get("meta") or {}
    threshold_var = meta.get("threshold")
    if not threshold_var or threshold_var not in dbt_vars:
        return None
    threshold = dbt_vars[threshold_var]
    counted = meta.get("counted")
    if counted and stored is not None:
        words = counted[0] if stored == 1 else counted[-1]
        return f"{stored} {words} > {_value(threshold, False)} allowed ({threshold_var})"
    measure = meta.get("measure")
    if not measure or con is None:
        return None
    schema, name = str(node.get("schema") or "audit"), str(node.get("alias") or node.get("name"))
    columns = table_columns(con, schema, name) or []
    of = [c for c in meta.get("of") or [] if c in columns]
    out_of = [c for c in meta.get("out_of") or [] if c in columns]
    if measure not in columns:
        return None
    selected = ", ".join(quote_ident(c) for c in [measure, *out_of, *of])
    rows = con.execute(
        f"select {selected} from {qualified(schema, name)} order by {quote_ident(measure)} desc nulls last"
    ).fetchall()
    if not rows:
        return None
    percent = bool(meta.get("percent"))
    parts = []
    for row in rows[:MEASURED_ROWS_SHOWN]:
        text = f"{measure} {_value(row[0], percent)}"
        if len(out_of) == 2:
            text += f" ({row[1]} of {row[2]})"
        text += f" > {_value(threshold, percent)} ({threshold_var})"
        names = [str(v) for v in row[1 + len(out_of) :]]
        parts.append(text + (f" for {' '.join(names)}" if names else ""))
    if len(rows) > MEASURED_ROWS_SHOWN:
        parts.append(f"and {len(rows) - MEASURED_ROWS_SHOWN} more")
    return "; ".join(parts)


def _generated_at(artifact: Mapping[str, Any]) -> float | None:
    """When dbt wrote ``artifact`` (epoch seconds), from its metadata. (Not ``invocation_started_at``: a partially
    parsed manifest keeps the one of the run that parsed it.)"""
    meta = artifact.get("metadata") or {}
    stamp = meta.get("generated_at")
    if not stamp:
        return None
    try:
        when = dt.datetime.fromisoformat(str(stamp).replace("Z", "+00:00"))
    except ValueError:
        return None
    return (when if when.tzinfo else when.replace(tzinfo=dt.UTC)).timestamp()


def load_artifact(path: Path, *, since: float | None = None) -> dict[str, Any] | None:
    """A dbt artifact (``run_results.json``, ``manifest.json``), or ``None`` when it is missing or, with ``since``,
    was written before ``since`` (by an earlier run)."""
    if not path.exists():
        return None
    data = _load(path)
    if since is not None:
        written = _generated_at(data)
        if written is None or written < since:
            return None
    return data


def _stored_rows(con: duckdb.DuckDBPyConnection | None, node: Mapping[str, Any]) -> int | None:
    """The number of rows in the test's audit table, or ``None`` (no connection, no such table)."""
    if con is None:
        return None
    schema, name = str(node.get("schema") or "audit"), str(node.get("alias") or node.get("name"))
    if table_columns(con, schema, name) is None:
        return None
    return int(con.execute(f"select count(*) from {qualified(schema, name)}").fetchall()[0][0])


def read_test_results(
    target_dir: Path,
    *,
    since: float | None = None,
    dbt_vars: Mapping[str, Any] | None = None,
    con: duckdb.DuckDBPyConnection | None = None,
) -> list[QualityResult] | None:
    """The data tests of the last dbt run in ``target_dir``, sorted by suite; ``None`` when it wrote no
    ``run_results.json`` (with ``since``: none from a dbt started since then, e.g. one that stopped while parsing).
    With ``con`` (to the build DB the run tested), the failing-row count of each test is the rows its audit table
    holds."""
    run_results = load_artifact(target_dir / "run_results.json", since=since)
    if run_results is None:
        return None
    manifest = _load(target_dir / "manifest.json")
    run_id = (run_results.get("metadata") or {}).get("invocation_id")
    if run_id != (manifest.get("metadata") or {}).get("invocation_id"):
        raise ValueError(f"{target_dir}: manifest.json is not from the dbt run that wrote run_results.json")
    nodes = manifest.get("nodes", {})
    out = []
    for r in run_results.get("results", []):
        node = nodes.get(r.get("unique_id"))
        if node is None or not str(r.get("unique_id", "")).startswith("test."):
            continue
        stored = _stored_rows(con, node)
        measured = measured_against_threshold(con, node, dbt_vars or {}, stored)
        out.append(result_of_test(node, r, manifest, dbt_vars or {}, stored, measured))
    return sorted(out, key=lambda r: (r.suite, r.expectation_type, r.column or "", r.expected))


def _disabled_gates(manifest: Mapping[str, Any], dbt_vars: Mapping[str, Any]) -> dict[str, tuple[str, str]]:
    """The gates a threshold of ``None`` left out of this run: name -> (what it reads, why it is skipped)."""
    out: dict[str, tuple[str, str]] = {}
    for versions in (manifest.get("disabled") or {}).values():
        for node in versions:
            config = node.get("config") or {}
            threshold = (config.get("meta") or {}).get("threshold")
            if node.get("resource_type") != "test" or "gate" not in (config.get("tags") or node.get("tags") or []):
                continue
            if threshold and dbt_vars.get(threshold) is None:
                reads = [".".join(source) for source in node.get("sources") or []]
                reads += [_model_relation(manifest, ref.get("name")) for ref in node.get("refs") or []]
                out[str(node["name"])] = (
                    ", ".join(sorted(set(reads))) or "?",
                    f"{threshold} threshold is None (gate disabled)",
                )
    return out


def _model_relation(manifest: Mapping[str, Any], name: str | None) -> str:
    """``schema.name`` of the model called ``name`` (just the name when the manifest does not have it)."""
    for node in manifest.get("nodes", {}).values():
        if node.get("resource_type") == "model" and node.get("name") == name:
            return _relation(node)
    return str(name)


def _check_unquoted(dbt_vars: Mapping[str, Any]) -> None:
    from pipelines.build.build_vars import SAFE_VAR

    for key in _UNQUOTED_VARS:
        value = dbt_vars.get(key)
        if value is not None and not SAFE_VAR.match(str(value)):
            raise ValueError(f"unsafe value for dbt var {key}: {value!r}")


def run_gate_tests(paths: Paths, thresholds: QualityThresholds, *, build_id: str) -> GateRun:
    """Run the quality gates on ``paths.build_db`` (the file must not be open in this process), with the thresholds
    as dbt vars. A failing gate is a failed result, a dbt that could not run them one failed ``dbt_test`` result."""
    dbt_vars = thresholds.gate_vars()
    _check_unquoted(dbt_vars)
    started = time.time()
    problem: DbtError | None = None
    try:
        run_dbt(
            ["test", "--select", GATE_SELECTOR, "--resource-type", "test", "--vars", json.dumps(dbt_vars)],
            paths,
            build_id,
        )
    except DbtError as exc:  # a failing gate makes dbt exit 1: the run's results say which
        problem = exc
    con = duckdb.connect(str(paths.build_db), read_only=True)
    try:
        results = read_test_results(paths.dbt_target_dir, since=started, dbt_vars=dbt_vars, con=con)
    finally:
        con.close()
    manifest = load_artifact(paths.dbt_target_dir / "manifest.json", since=started) or {}
    run = GateRun(results=results or [], skipped=_disabled_gates(manifest, dbt_vars), manifest=manifest)
    if results is None or (problem is not None and all(r.success for r in results)):
        # dbt stopped before (or without) a failing test to show for it: its own message is the result
        detail = str(problem) if problem is not None else "dbt wrote no run_results.json"
        run.results.append(
            QualityResult("gates", "-", "dbt_test", None, False, "the gates ran", error=detail, engine=DBT)
        )
    return run
