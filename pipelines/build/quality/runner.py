"""Run the checks of a build database: the quality gates (dbt singular tests), then the publication contract
(Great Expectations). The row and column invariants are not run here: ``dbt build`` tests them as it builds."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import duckdb

from pipelines.build.quality.contract import check_contract, published_relations
from pipelines.build.quality.dbt_tests import run_gate_tests
from pipelines.build.quality.handle import BuildFile, BuildHandle
from pipelines.build.quality.results import GREAT_EXPECTATIONS, QualityReport, QualityResult
from pipelines.build.quality.specs import MARTS, table_columns
from pipelines.build.quality.thresholds import QualityThresholds, coerce_thresholds


def _with_active_annotator(con: duckdb.DuckDBPyConnection, th: QualityThresholds) -> QualityThresholds:
    """``th`` naming the annotator version the marts were built from, when it names none and there is one."""
    if th.annotator is not None or table_columns(con, MARTS, "fct_pair_concepts") is None:
        return th
    rows = con.execute(f"select distinct annotator, annotator_version from {MARTS}.fct_pair_concepts").fetchall()
    if len(rows) != 1:
        return th  # none, or several (an invariant fails then): dbt's defaults (macros/active_annotator.sql)
    (annotator, version) = rows[0]
    return replace(th, annotator=annotator, annotator_version=version)


def run_quality_checks(
    db: Path | str | BuildHandle,
    *,
    thresholds: QualityThresholds | Mapping[str, Any] | None = None,
    build_id: str = "checks",
) -> QualityReport:
    """Check the build database before publication: run the gates, then the publication contract.

    ``db`` is the path of ``<warehouse>/preflens.duckdb`` (attached read-only here, closed after) or a
    :class:`~pipelines.build.quality.handle.BuildHandle` (its connection is closed while dbt runs the gates, then
    used for the contract). ``thresholds`` is a :class:`QualityThresholds` or a dict of its fields. dbt writes its
    artifacts to ``<warehouse>/dbt_target`` and the gates' failing rows to schema ``audit``. Never raises for data
    problems: inspect ``report.success``.
    """
    own = isinstance(db, str | Path)
    handle: BuildHandle = BuildFile.at(Path(db)) if isinstance(db, str | Path) else db
    t0 = time.perf_counter()
    try:
        th = _with_active_annotator(handle.con, coerce_thresholds(thresholds))
        report = QualityReport(thresholds=th)
        with handle.dbt_running():
            gates = run_gate_tests(handle.paths, th, build_id=build_id)
        report.timings["gates"] = time.perf_counter() - t0
        report.results += gates.results
        for name, (table, reason) in sorted(gates.skipped.items()):
            report.skip(name, table, reason)
        if gates.manifest:
            report.results += check_contract(handle.con, published_relations(gates.manifest), timings=report.timings)
        else:
            report.results.append(
                QualityResult(
                    "publication",
                    MARTS,
                    "publication_contract",
                    None,
                    False,
                    error="dbt wrote no manifest.json, so the published models are unknown",
                    engine=GREAT_EXPECTATIONS,
                )
            )
    finally:
        if own and isinstance(handle, BuildFile):
            handle.close()
    report.timings["total"] = time.perf_counter() - t0
    return report
