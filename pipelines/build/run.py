"""The main job: ingest -> annotate -> dbt build -> fit -> checks -> publish, with progress per stage."""

from __future__ import annotations

import datetime as dt
import re
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from pipelines import __version__
from pipelines.core.config import SAMPLE_PATH, Paths
from pipelines.build.dbt_runner import run_dbt
from pipelines.core.lock import BuildLock
from pipelines.core.warehouse import connect

STAGES = ("ingest", "annotate", "dbt build", "fit", "checks", "publish")
_SAFE_VAR = re.compile(r"^[A-Za-z0-9_.:/+-]+$")


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


def new_build_id() -> str:
    """Sortable, unique build id: UTC timestamp plus a random suffix."""
    return dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ") + "-" + uuid.uuid4().hex[:6]


def _progress(console: Console) -> Progress:
    return Progress(
        SpinnerColumn(),
        TextColumn("[bold]{task.description:<12}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[note]}"),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    )


@contextmanager
def _stage(result: RunResult, name: str) -> Iterator[None]:
    t0 = time.perf_counter()
    try:
        yield
    except StageFailed:
        raise
    except Exception as exc:  # noqa: BLE001 - turned into a one-line stage failure
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        first_line = first_line.removeprefix(f"{name} failed: ").removeprefix(f"dbt {name.split()[-1]} failed: ")
        raise StageFailed(name, first_line) from exc
    finally:
        result.stage_seconds[name] = time.perf_counter() - t0


def run_pipeline(
    paths: Paths,
    inputs: Sequence[Path] | None = None,
    *,
    console: Console | None = None,
    ingest_options: dict | None = None,
    skip_ingest: bool = False,
    quality_thresholds: dict | None = None,
    annotator: str | None = None,
    llm_options: dict | None = None,
    dbt_vars: dict[str, object] | None = None,
) -> RunResult:
    """Run every stage under the build lock. Raises StageFailed (and records the build as failed).

    ``annotator``: ``offline`` or ``llm``; default ``llm`` when an LLM endpoint/model is configured
    (``PREFLENS_LLM_*`` or ``preflens.toml``), else ``offline``. ``llm_options`` go to ``annotate_llm``
    (``budget_usd``, ``concepts_file``, ``config``). ``dbt_vars``: fit settings passed to dbt (``--var`` on the
    command line), only the names in ``TUNABLE_VARS``.
    """
    extra_vars = check_dbt_vars(dbt_vars or {})
    console = console or Console()
    inputs = list(inputs) if inputs is not None else [SAMPLE_PATH]
    result = RunResult(build_id=new_build_id())
    result.annotator = resolve_annotator(annotator, paths)
    with BuildLock(paths.lock_file):
        _record_build_start(paths, result.build_id)
        try:
            with _progress(console) as progress:
                _run_stages(
                    paths, inputs, result, progress, ingest_options or {}, skip_ingest, quality_thresholds,
                    llm_options or {}, extra_vars,
                )
        except StageFailed as exc:
            result.published = False
            _record_build_end(paths, result, status="failed", stage=exc.stage, message=exc.reason)
            raise
        except KeyboardInterrupt:
            result.published = False
            _record_build_end(paths, result, status="failed", message="interrupted by the user")
            raise
    return result


def _run_stages(
    paths: Paths,
    inputs: list[Path],
    result: RunResult,
    progress: Progress,
    ingest_options: dict,
    skip_ingest: bool,
    quality_thresholds: dict | None,
    llm_options: dict,
    extra_vars: dict[str, str] | None = None,
) -> None:
    from pipelines.ingest import ingest_paths

    tasks = {name: progress.add_task(name, total=None, note="waiting", start=False) for name in STAGES}

    def start(name: str, total: int | None = None) -> Callable[[int, int | None], None]:
        task = tasks[name]
        progress.start_task(task)
        progress.update(task, total=total, note="")

        def update(done: int, total_: int | None = None) -> None:
            progress.update(task, completed=done, total=total_ if total_ is not None else progress.tasks[task].total)

        return update

    def finish(name: str, note: str) -> None:
        task = tasks[name]
        total = progress.tasks[task].total or 1
        progress.update(task, total=total, completed=total, note=note)
        progress.stop_task(task)

    if skip_ingest:
        finish("ingest", "skipped")
    else:
        with _stage(result, "ingest"):
            start("ingest", total=len(inputs))
            con = connect(paths.build_db)
            try:
                summary = ingest_paths(con, [Path(p) for p in inputs], **ingest_options)
            finally:
                con.close()
            result.ingest = summary
            finish("ingest", _ingest_note(summary))

    with _stage(result, "annotate"):
        update = start("annotate")
        note = _annotate_stage(paths, result, update, llm_options)
        finish("annotate", note)

    dbt_vars = {**(extra_vars or {}), "annotator": result.annotator, "annotator_version": result.annotator_version}
    for key, value in dbt_vars.items():
        if value and not _SAFE_VAR.match(value.replace(",", "")):
            raise StageFailed("dbt build", f"unsafe value for dbt var {key}: {value!r}")
    vars_arg = ["--vars", _yaml_inline(dbt_vars)]

    # the two dbt stages are the selectors `prefit` and `fit` of dbt_project/selectors.yml
    for stage, selection in (("dbt build", ["--selector", "prefit"]), ("fit", ["--selector", "fit"])):
        with _stage(result, stage):
            on_node = _node_counter(start(stage))
            res = run_dbt(["build", *selection, *vars_arg], paths, result.build_id, on_node=on_node)
            finish(stage, _dbt_note(res.counts))

    from pipelines.build.quality import run_quality_checks, write_quality_report
    from pipelines.build.publish import publish

    with _stage(result, "checks"):
        start("checks")
        thresholds = {
            **(quality_thresholds or {}),
            "annotator": result.annotator,
            "annotator_version": result.annotator_version or None,
        }
        report = run_quality_checks(paths.build_db, thresholds=thresholds)
        result.quality = report
        _store_quality(paths, result.build_id, report)
        write_quality_report(report, paths.quality_report, build_id=result.build_id)
        if not report.success:
            finish("checks", "FAILED")
            raise StageFailed("checks", "quality gate failed, not published:\n" + report.format_failures())
        warned = report.warnings()
        finish("checks", f"{len(report.results) - len(warned)} expectations passed"
               + (f", {len(warned)} recorded warnings" if warned else ""))

    with _stage(result, "publish"):
        start("publish")
        result.published = True  # recorded before the copy so the served fct_builds shows this build
        _record_build_end(paths, result, status="success")
        publish(paths.build_db, paths.serve_db, paths.exports_dir)
        finish("publish", str(paths.serve_db))


def resolve_annotator(annotator: str | None, paths: Paths) -> str:
    """``offline`` | ``llm``; None means ``llm`` if an LLM is configured, else ``offline``."""
    if annotator is None:
        from pipelines.llm.config import llm_configured

        return "llm" if llm_configured(paths.warehouse) else "offline"
    if annotator not in ("offline", "llm"):
        raise StageFailed("annotate", f"unknown annotator {annotator!r} (offline or llm)")
    return annotator


def _annotate_stage(
    paths: Paths, result: RunResult, update: Callable[[int, int | None], None], llm_options: dict
) -> str:
    """Annotate pending items with the chosen annotator; sets result.annotator_version; returns the note."""
    con = connect(paths.build_db)
    try:
        if result.annotator == "llm":
            from pipelines.annotate.llm import annotate_llm
            from pipelines.llm.config import load_llm_config

            opts = dict(llm_options)
            config = opts.pop("config", None) or load_llm_config(warehouse=paths.warehouse)
            report = annotate_llm(con, config, progress=update, **opts)
            result.llm_report = report
            result.annotator_version = report.annotator_version
            result.annotated_items = report.items_completed
            if report.budget_stopped:
                raise StageFailed("annotate", "LLM budget reached before every item was annotated; work so far "
                                  "is saved (raw.llm_cache, raw.annotation_votes); re-run with a larger --budget")
            s = report.stats
            return (f"{report.items_completed} items, {s.calls} calls, {s.cache_hits} cached, "
                    f"{s.failed} failed, ${s.cost_usd:.4f}")
        from pipelines.annotate.offline import OFFLINE_ANNOTATOR_VERSION, annotate_pending

        result.annotated_items = annotate_pending(con, progress=update)
        result.annotator_version = OFFLINE_ANNOTATOR_VERSION
        n_items = con.execute("select count(*) from raw.items").fetchall()[0][0]
    finally:
        con.close()
    return f"{result.annotated_items} new items, {n_items - result.annotated_items} reused"


def _node_counter(update: Callable[[int, int | None], None]) -> Callable[[str, str, int], None]:
    """A fresh dbt node callback that advances one stage's progress bar."""
    done = [0]

    def on_node(_name: str, _status: str, total: int) -> None:
        done[0] += 1
        update(done[0], total or None)

    return on_node


#: dbt vars a caller may set per build (``preflens run/build --var KEY=VALUE``): the documented fit settings
TUNABLE_VARS: frozenset[str] = frozenset({
    "representations", "cv_folds", "top_k", "min_domain_pairs", "hmdr_select", "hmdr_grid", "hmdr_rule",
    "hmdr_grid_domains", "hmdr_alpha", "hmdr_lambda_shared", "hmdr_lambda_domain", "length_control",
    "hmdr_n_bootstrap", "fit_jobs",
})


def check_dbt_vars(values: dict[str, object]) -> dict[str, str]:
    """Validated extra dbt vars as strings (ValueError naming the bad key or value)."""
    out = {}
    for key, value in values.items():
        if key not in TUNABLE_VARS:
            raise ValueError(f"unknown setting {key!r}; settable: {', '.join(sorted(TUNABLE_VARS))}")
        text = str(value).strip()
        if text and not _SAFE_VAR.match(text.replace(",", "")):
            raise ValueError(f"unsafe value for setting {key}: {text!r}")
        out[key] = text
    return out


def _yaml_inline(mapping: dict[str, str]) -> str:
    return "{" + ", ".join(f"{k}: '{v}'" for k, v in mapping.items()) + "}"


def _ingest_note(summary: object) -> str:
    s = summary  # IngestSummary
    return f"{s.loaded} loaded, {s.duplicates} duplicate, {s.quarantined} quarantined"  # type: ignore[attr-defined]


def _dbt_note(counts: dict[str, int]) -> str:
    return ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))


def _record_build_start(paths: Paths, build_id: str) -> None:
    con = connect(paths.build_db)
    try:
        # We hold the build lock, so any build still marked running died without cleaning up (kill -9, power).
        con.execute(
            """update raw.builds set status = 'failed', message = 'interrupted: the process died mid-build',
                   published = false
               where status = 'running'"""
        )
        con.execute(
            "insert into raw.builds (build_id, started_at, status, package_version) values (?, now(), 'running', ?)",
            [build_id, __version__],
        )
    finally:
        con.close()


def _record_build_end(paths: Paths, result: RunResult, *, status: str, stage: str | None = None, message: str | None = None) -> None:
    from importlib.metadata import version

    con = connect(paths.build_db)
    try:
        counts = con.execute(
            "select (select count(*) from raw.items), (select count(*) from raw.labels), (select count(*) from raw.annotations)"
        ).fetchall()[0]
        con.execute(
            """update raw.builds set finished_at = now(), status = ?, failed_stage = ?, message = ?,
                   n_items = ?, n_labels = ?, n_annotations = ?, annotator = ?, annotator_version = ?,
                   dbt_version = ?, quality_success = ?, published = ?
               where build_id = ?""",
            [
                status,
                stage,
                (message or "")[:2000] or None,
                *counts,
                result.annotator,
                result.annotator_version or None,
                version("dbt-core"),
                getattr(result.quality, "success", None),
                result.published,
                result.build_id,
            ],
        )
    finally:
        con.close()


def _store_quality(paths: Paths, build_id: str, report: object) -> None:
    frame = report.to_frame()  # type: ignore[attr-defined]
    frame.insert(0, "build_id", build_id)
    con = connect(paths.build_db)
    try:
        con.register("quality_frame", frame)
        con.execute("insert into raw.quality_results by name select * from quality_frame")
        con.unregister("quality_frame")
    finally:
        con.close()
