"""One build's context: its paths and id, the build record, the stages, and the one connection to the build DB.

The orchestrator (:mod:`pipelines.build.run`) creates one :class:`BuildContext` per build and hands each stage
what it needs (the connection, a progress callback). Only the context writes the build record
(``ops.builds``): the running row at the start, the stage entered (in ``failed_stage`` while the build runs,
so a build that dies is named by the stage it died in), and the final row.

dbt runs as a subprocess that opens the build file itself, so the connection is opened lazily and closed for
the duration of :meth:`BuildContext.dbt_running`; using it meanwhile is an error.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib.metadata import version

import duckdb
from rich.progress import Progress, TaskID

from pipelines import __version__
from pipelines.core.config import Paths
from pipelines.core.lock import connect_build_db

STAGES = ("ingest", "annotate", "dbt build", "fit", "checks", "publish")

#: the message of a build that was still ``running`` when the next build took the lock
INTERRUPTED = "interrupted: the process died mid-build"


class StageFailed(RuntimeError):
    """A pipeline stage failed; ``stage`` names it, the message is one line."""

    def __init__(self, stage: str, message: str) -> None:
        super().__init__(f"{stage} failed: {message}")
        self.stage = stage
        self.reason = message


@dataclass
class RunResult:
    """What a run did, for the terminal summary and for tests."""

    build_id: str
    stage_seconds: dict[str, float] = field(default_factory=dict)
    ingest: object | None = None
    annotated_items: int = 0
    annotator: str = "offline"
    annotator_version: str = ""
    llm_report: object | None = None
    quality: object | None = None
    published: bool = False


def _first_line(exc: Exception, stage: str) -> str:
    """One line for a failure in ``stage``, without a repeated ``<stage> failed:`` prefix."""
    text = str(exc).strip()
    line = text.splitlines()[0] if text else type(exc).__name__
    return line.removeprefix(f"{stage} failed: ").removeprefix(f"dbt {stage.split()[-1]} failed: ")


def _no_progress(done: int, total: int | None = None) -> None:
    """The progress callback of a build without a progress display."""


class BuildContext:
    """The state of one build (see the module docstring). Use under the build lock."""

    def __init__(self, paths: Paths, result: RunResult, progress: Progress | None = None) -> None:
        self.paths = paths
        self.result = result
        self.progress = progress
        self.current_stage: str | None = None
        self._con: duckdb.DuckDBPyConnection | None = None
        self._dbt_running = False
        self._stage_t0 = 0.0
        self._tasks: dict[str, TaskID] = (
            {name: progress.add_task(name, total=None, note="waiting", start=False) for name in STAGES}
            if progress is not None
            else {}
        )

    @property
    def build_id(self) -> str:
        return self.result.build_id

    # ------------------------------------------------------------------------------------------ connection

    @property
    def con(self) -> duckdb.DuckDBPyConnection:
        """The read-write connection to the build DB, opened on first use (never while dbt runs).

        Raises :class:`~pipelines.core.lock.BuildAlreadyRunning` when another process has the file open.
        """
        if self._dbt_running:
            raise RuntimeError("the build database is closed while dbt runs")
        if self._con is None:
            self._con = connect_build_db(self.paths.build_db)
        return self._con

    def close(self) -> None:
        """Close the connection (it reopens on the next use of :attr:`con`)."""
        if self._con is not None:
            self._con.close()
            self._con = None

    @contextmanager
    def dbt_running(self) -> Iterator[None]:
        """Close the connection for a dbt subprocess, which needs the build file to itself."""
        self.close()
        self._dbt_running = True
        try:
            yield
        finally:
            self._dbt_running = False

    # -------------------------------------------------------------------------------------------- record

    def begin(self) -> None:
        """Settle builds, ingests and LLM runs a dead process left ``running``, then record this build as running.

        We hold the build lock, so a ``running`` build died without cleaning up (kill -9, power). If its
        served copy was swapped in (the served ``fct_builds`` says it was published), its final row is taken
        from there; otherwise it is marked failed and interrupted, its ``failed_stage`` still naming the stage
        it had entered. The temporary files a killed publisher left in ``serve/`` are removed.
        """
        from pipelines.build.publish import remove_stale_temporaries
        from pipelines.ingest.runs import settle_interrupted_runs as settle_ingests
        from pipelines.llm.store import now_utc
        from pipelines.llm.store import settle_interrupted_runs as settle_llm_runs

        con = self.con
        # the ingest and LLM runs a dead process left running too (a build may be the next command to run)
        settle_ingests(con, found_by=f"build {self.build_id}", now=now_utc())
        settle_llm_runs(con, found_by=f"build {self.build_id}")
        self._recover_published(con)
        con.execute(
            "update ops.builds set status = 'failed', message = ?, published = false where status = 'running'",
            [INTERRUPTED],
        )
        remove_stale_temporaries(self.paths.serve_db, self.paths.exports_dir)
        con.execute(
            "insert into ops.builds (build_id, started_at, status, package_version) values (?, now(), 'running', ?)",
            [self.build_id, __version__],
        )

    def _recover_published(self, con: duckdb.DuckDBPyConnection) -> None:
        """Copy the final row of a ``running`` build from the served copy when that copy shows it published."""
        serve = self.paths.serve_db
        running = con.execute("select count(*) from ops.builds where status = 'running'").fetchall()[0][0]
        if not running or not serve.exists():
            return
        path = str(serve).replace("'", "''")
        try:
            con.execute(f"attach '{path}' as __preflens_served (read_only)")
        except duckdb.Error:  # an unreadable served copy is no evidence of a publication
            return
        try:
            con.execute(
                """update ops.builds b set status = s.status, failed_stage = s.failed_stage, message = s.message,
                       finished_at = s.finished_at, n_items = s.n_items, n_labels = s.n_labels,
                       n_annotations = s.n_annotations, annotator = s.annotator,
                       annotator_version = s.annotator_version, dbt_version = s.dbt_version,
                       quality_success = s.quality_success, published = s.published
                   from __preflens_served.marts.fct_builds s
                   where s.build_id = b.build_id and b.status = 'running' and s.published"""
            )
        except duckdb.Error:  # no fct_builds of this shape in the served copy: no evidence either
            pass
        finally:
            con.execute("detach __preflens_served")

    def _write_stage(self, stage: str) -> None:
        self.con.execute("update ops.builds set failed_stage = ? where build_id = ?", [stage, self.build_id])

    def write_end(
        self,
        con: duckdb.DuckDBPyConnection,
        *,
        status: str,
        stage: str | None = None,
        message: str | None = None,
    ) -> None:
        """Write this build's final row through ``con`` (the context's connection, or a publication's)."""
        counts = con.execute(
            "select (select count(*) from raw.items), (select count(*) from raw.labels),"
            " (select count(*) from raw.annotations)"
        ).fetchall()[0]
        r = self.result
        con.execute(
            """update ops.builds set finished_at = now(), status = ?, failed_stage = ?, message = ?,
                   n_items = ?, n_labels = ?, n_annotations = ?, annotator = ?, annotator_version = ?,
                   dbt_version = ?, quality_success = ?, published = ?
               where build_id = ?""",
            [
                status,
                stage,
                (message or "")[:2000] or None,
                *counts,
                r.annotator,
                r.annotator_version or None,
                version("dbt-core"),
                getattr(r.quality, "success", None),
                r.published,
                r.build_id,
            ],
        )

    def publication_record(self, con: duckdb.DuckDBPyConnection) -> None:
        """The final row of a published build; written in the publication's transaction (see publish.py)."""
        self.result.published = True
        self.write_end(con, status="success")

    def fail(self, stage: str | None, message: str) -> None:
        """Record the build as failed in ``stage`` (default: the stage it was in) and close the connection."""
        self.result.published = False
        try:
            self.write_end(self.con, status="failed", stage=stage or self.current_stage, message=message)
        finally:
            self.close()

    # -------------------------------------------------------------------------------------------- stages

    @contextmanager
    def stage(self, name: str, total: int | None = None) -> Iterator[Callable[[int, int | None], None]]:
        """Run one stage (or, with :meth:`enter` inside, several): time it, record it, name its failure.

        Yields the progress callback ``update(done, total)``. Any exception other than :class:`StageFailed`
        becomes a one-line ``StageFailed`` of the stage current when it was raised.
        """
        update = self.enter(name, total)
        try:
            yield update
        except StageFailed:
            raise
        except Exception as exc:  # noqa: BLE001 - turned into a one-line stage failure
            stage = self.current_stage or name
            raise StageFailed(stage, _first_line(exc, stage)) from exc
        finally:
            self._stop_clock()

    def enter(self, name: str, total: int | None = None) -> Callable[[int, int | None], None]:
        """Start stage ``name`` (ending the current one): record it, start its clock and progress bar."""
        self._stop_clock()
        self.current_stage = name
        self._write_stage(name)
        self._stage_t0 = time.perf_counter()
        if self.progress is None:
            return _no_progress
        progress, task = self.progress, self._tasks[name]
        progress.start_task(task)
        progress.update(task, total=total, note="")

        def update(done: int, total_: int | None = None) -> None:
            progress.update(task, completed=done, total=total_ if total_ is not None else progress.tasks[task].total)

        return update

    def done(self, name: str, note: str) -> None:
        """Show stage ``name`` as complete with ``note`` (e.g. ``skipped``, ``FAILED``, counts)."""
        if self.progress is None:
            return
        task = self._tasks[name]
        total = self.progress.tasks[task].total or 1
        self.progress.update(task, total=total, completed=total, note=note)
        self.progress.stop_task(task)

    def _stop_clock(self) -> None:
        if self.current_stage is not None and self.current_stage not in self.result.stage_seconds:
            self.result.stage_seconds[self.current_stage] = time.perf_counter() - self._stage_t0
