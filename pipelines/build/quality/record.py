"""Record one quality run: its rows in ``ops.quality_results`` and its HTML page (``warehouse/quality/index.html``)."""

from __future__ import annotations

from pathlib import Path

import duckdb

from pipelines.build.quality.docs import write_quality_report
from pipelines.build.quality.runner import QualityReport


def store_quality_results(con: duckdb.DuckDBPyConnection, build_id: str, report: QualityReport) -> None:
    """Append one ``ops.quality_results`` row per expectation of ``report``, stamped with ``build_id``."""
    frame = report.to_frame()
    frame.insert(0, "build_id", build_id)
    con.register("__preflens_quality_frame", frame)
    try:
        con.execute("insert into ops.quality_results by name select * from __preflens_quality_frame")
    finally:
        con.unregister("__preflens_quality_frame")


def record_quality_run(
    con: duckdb.DuckDBPyConnection, report: QualityReport, *, build_id: str, page: Path | None
) -> None:
    """Store the results of ``report`` for ``build_id`` and, when ``page`` is given, write its HTML page there."""
    store_quality_results(con, build_id, report)
    if page is not None:
        write_quality_report(report, page, build_id=build_id)
