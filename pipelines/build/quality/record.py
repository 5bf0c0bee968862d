"""Record quality results: rows of ``ops.quality_results`` and the HTML page (``warehouse/quality/index.html``).

Two moments record them: the checks stage (:func:`record_quality_run`: the gates and the publication contract)
and each ``dbt build`` of a build (:func:`recorded_dbt_tests`: the invariants its data tests checked, recorded
also when one failed and stopped the build, so the build history shows which).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import duckdb

from pipelines.build.quality.dbt_tests import read_test_results
from pipelines.build.quality.docs import write_quality_report
from pipelines.build.quality.results import QualityReport, QualityResult


def store_results(con: duckdb.DuckDBPyConnection, build_id: str, results: Iterable[QualityResult]) -> None:
    """Append one ``ops.quality_results`` row per result, stamped with ``build_id``."""
    frame = QualityReport(results=list(results)).to_frame()
    if frame.empty:
        return
    frame.insert(0, "build_id", build_id)
    con.register("__preflens_quality_frame", frame)
    try:
        con.execute("insert into ops.quality_results by name select * from __preflens_quality_frame")
    finally:
        con.unregister("__preflens_quality_frame")


def store_quality_results(con: duckdb.DuckDBPyConnection, build_id: str, report: QualityReport) -> None:
    """Append the rows of this run of ``report`` (not its ``build_results``: recorded when they ran)."""
    store_results(con, build_id, report.results)


def record_quality_run(
    con: duckdb.DuckDBPyConnection, report: QualityReport, *, build_id: str, page: Path | None
) -> None:
    """Store the results of ``report`` for ``build_id`` and, when ``page`` is given, write its HTML page there."""
    store_quality_results(con, build_id, report)
    if page is not None:
        write_quality_report(report, page, build_id=build_id)


@contextlib.contextmanager
def recorded_dbt_tests(
    connect: Callable[[], duckdb.DuckDBPyConnection],
    build_id: str,
    target_dir: Path,
    into: list[QualityResult] | None = None,
) -> Iterator[None]:
    """Around one ``dbt build``: its data tests' results, read from ``target_dir``, go to ``ops.quality_results``
    (through ``connect()``, called once dbt is done) and to ``into``, whether the build passed or failed.

    A dbt that stopped before running anything leaves no fresh ``run_results.json``: nothing is recorded. When
    recording fails after dbt failed, dbt's error is the one raised (the recording error is added to its notes).
    """
    started = time.time()

    def record() -> None:
        con = connect()
        results = read_test_results(target_dir, since=started, con=con)
        if results:
            store_results(con, build_id, results)
            if into is not None:
                into.extend(results)

    try:
        yield
    except Exception as exc:
        try:
            record()
        except Exception as recording:  # noqa: BLE001 - dbt's failure is what the build reports
            exc.add_note(f"its data test results were not recorded: {recording}")
        raise
    record()
