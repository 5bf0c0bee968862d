"""The main job: ingest -> annotate -> dbt build -> fit -> checks -> publish, with progress per stage."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from pipelines.build.build_vars import SAFE_VAR, TUNABLE_VARS, check_dbt_vars
from pipelines.build.context import STAGES, BuildContext, RunResult, StageFailed
from pipelines.build.dbt_runner import run_dbt
from pipelines.core.config import SAMPLE_PATH, Paths
from pipelines.core.ids import new_id
from pipelines.core.lock import BuildLock

if TYPE_CHECKING:  # pragma: no cover
    from pipelines.build.quality import QualityReport, QualityResult
    from pipelines.ingest import IngestSummary

__all__ = ["STAGES", "TUNABLE_VARS", "RunResult", "StageFailed", "check_dbt_vars", "resolve_annotator", "run_pipeline"]


def _progress(console: Console) -> Progress:
    return Progress(
        SpinnerColumn(),
        TextColumn("[bold]{task.description:<12}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[note]}", markup=False),  # notes carry paths and names: data, never markup
        TimeElapsedColumn(),
        console=console,
        transient=False,
    )


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
    dbt_vars: Mapping[str, object] | None = None,
) -> RunResult:
    """Run every stage under the build lock. Raises StageFailed (and records the build as failed).

    ``annotator``: ``offline`` or ``llm``; default ``llm`` when an LLM endpoint/model is configured
    (``PREFLENS_LLM_*`` or ``preflens.toml``), else ``offline``. ``llm_options`` go to ``annotate_llm``
    (``budget_usd``, ``concepts_file``, ``config``). ``dbt_vars``: fit settings passed to dbt (``--var`` on the
    command line, ``--vars`` or a named flag: :mod:`pipelines.build.build_vars`), only the names in
    ``TUNABLE_VARS``; they also set the quality thresholds of the same name.
    """
    extra_vars = check_dbt_vars(dbt_vars or {})
    console = console or Console()
    inputs = list(inputs) if inputs is not None else [SAMPLE_PATH]
    result = RunResult(build_id=new_id())
    result.annotator = resolve_annotator(annotator, paths)
    with BuildLock(paths.lock_file):
        progress = _progress(console)
        ctx = BuildContext(paths, result, progress)
        try:
            ctx.begin()
            try:
                with progress:
                    _run_stages(
                        ctx,
                        inputs,
                        ingest_options or {},
                        skip_ingest,
                        quality_thresholds,
                        llm_options or {},
                        extra_vars,
                    )
            except StageFailed as exc:
                ctx.fail(exc.stage, exc.reason)
                raise
            except KeyboardInterrupt:
                ctx.fail(None, "interrupted by the user")
                raise
        finally:
            ctx.close()
    return result


def _run_stages(
    ctx: BuildContext,
    inputs: list[Path],
    ingest_options: dict,
    skip_ingest: bool,
    quality_thresholds: dict | None,
    llm_options: dict,
    extra_vars: dict[str, str],
) -> None:
    from pipelines.ingest import ingest_paths

    result = ctx.result
    if skip_ingest:
        ctx.done("ingest", "skipped")
    else:
        with ctx.stage("ingest", total=len(inputs)):
            ingested = ingest_paths(ctx.con, [Path(p) for p in inputs], **ingest_options)
            result.ingest = ingested
            for warning in ingested.warnings():  # as `preflens ingest` prints them (a truncated gzip stream)
                _say(ctx, f"warning: {warning}")
            ctx.done("ingest", _ingest_note(ingested))

    with ctx.stage("annotate") as update:
        ctx.done("annotate", _annotate_stage(ctx, update, llm_options))

    dbt_vars = {**extra_vars, "annotator": result.annotator, "annotator_version": result.annotator_version}
    for key, value in dbt_vars.items():
        if value and not SAFE_VAR.match(value.replace(",", "")):
            raise StageFailed("dbt build", f"unsafe value for dbt var {key}: {value!r}")
    vars_arg = ["--vars", _yaml_inline(dbt_vars)]

    # the two dbt stages are the selectors `prefit` and `fit` of dbt_project/selectors.yml; their data tests are
    # recorded in ops.quality_results (also when one fails and stops the build) and shown on the quality page
    from pipelines.build.quality import recorded_dbt_tests

    build_tests: list[QualityResult] = []
    for stage, selection in (("dbt build", ["--selector", "prefit"]), ("fit", ["--selector", "fit"])):
        with (
            ctx.stage(stage) as update,
            recorded_dbt_tests(lambda: ctx.con, ctx.build_id, ctx.paths.dbt_target_dir, build_tests),
            ctx.dbt_running(),
        ):
            res = run_dbt(["build", *selection, *vars_arg], ctx.paths, ctx.build_id, on_node=_node_counter(update))
            ctx.done(stage, _dbt_note(res.counts))

    with ctx.stage("checks"):
        _check_and_publish(ctx, quality_thresholds, extra_vars, build_tests)


def _check_and_publish(
    ctx: BuildContext,
    quality_thresholds: dict | None,
    extra_vars: dict[str, str],
    build_tests: Sequence[QualityResult] = (),
) -> None:
    """The stages ``checks`` and ``publish``: one :func:`~pipelines.build.publish.check_and_publish` call.

    The results are stored and the HTML page written whatever the outcome; a failed gate stops the build
    (``checks`` failed) before anything is copied. The build's final row is written in the publication's
    transaction, so the served ``fct_builds`` shows this build as published while ``ops.builds`` says so only
    once the served copy has been swapped in.
    """
    from pipelines.build.publish import check_and_publish
    from pipelines.build.quality import thresholds_from_dbt_vars

    result, paths = ctx.result, ctx.paths
    thresholds = {
        **thresholds_from_dbt_vars(extra_vars),
        **(quality_thresholds or {}),
        "annotator": result.annotator,
        "annotator_version": result.annotator_version or None,
    }

    def checked(report: QualityReport) -> None:
        result.quality = report
        if not report.success:
            ctx.done("checks", "FAILED")
            raise StageFailed("checks", "quality gate failed, not published:\n" + report.format_failures())
        warned = report.warnings()
        ctx.done(
            "checks",
            f"{len(report.all_results) - len(warned)} checks passed"
            + (f", {len(warned)} recorded warnings" if warned else ""),
        )
        ctx.enter("publish")

    check_and_publish(
        ctx,  # its connection is closed while dbt runs the gates
        paths.serve_db,
        paths.exports_dir,
        thresholds=thresholds,
        build_id=ctx.build_id,
        report_page=paths.quality_report,
        on_checked=checked,
        record=ctx.publication_record,
        build_results=build_tests,
    )
    ctx.done("publish", str(paths.serve_db))


def resolve_annotator(annotator: str | None, paths: Paths) -> str:
    """``offline`` | ``llm``; None means ``llm`` if an LLM is configured, else ``offline``."""
    if annotator is None:
        from pipelines.llm.config import llm_configured

        return "llm" if llm_configured(paths.warehouse) else "offline"
    from pipelines.ingest.concepts import IMPORTED_ANNOTATOR

    if annotator not in ("offline", "llm", IMPORTED_ANNOTATOR):
        raise StageFailed("annotate", f"unknown annotator {annotator!r} (offline, llm or {IMPORTED_ANNOTATOR})")
    return annotator


def _annotate_stage(ctx: BuildContext, update: Callable[[int, int | None], None], llm_options: dict) -> str:
    """Annotate pending items with the chosen annotator; sets result.annotator_version; returns the note."""
    con, result, paths = ctx.con, ctx.result, ctx.paths
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
            raise StageFailed(
                "annotate",
                "LLM budget reached before every item was annotated; work so far "
                "is saved (raw.llm_cache, raw.annotation_votes); re-run with a larger --budget",
            )
        s = report.stats
        return (
            f"{report.items_completed} items, {s.calls} calls, {s.cache_hits} cached, "
            f"{s.failed} failed, ${s.cost_usd:.4f}"
        )
    from pipelines.ingest.concepts import IMPORTED_ANNOTATOR, active_version

    if result.annotator == IMPORTED_ANNOTATOR:  # concept annotations imported by `preflens ingest`: nothing to score
        import os

        try:
            result.annotator_version = active_version(con, os.environ.get("PREFLENS_ANNOTATOR_VERSION") or None)
        except LookupError as exc:
            raise StageFailed("annotate", str(exc)) from None
        n = con.execute(
            "select count(distinct item_id) from raw.annotations where annotator = ? and annotator_version = ?",
            [IMPORTED_ANNOTATOR, result.annotator_version],
        ).fetchall()[0][0]
        return f"imported {result.annotator_version}: {n} items"
    from pipelines.annotate.offline import OFFLINE_ANNOTATOR_VERSION, annotate_pending

    result.annotated_items = annotate_pending(con, progress=update)
    result.annotator_version = OFFLINE_ANNOTATOR_VERSION
    n_items = con.execute("select count(*) from raw.items").fetchall()[0][0]
    return f"{result.annotated_items} new items, {n_items - result.annotated_items} reused"


def _node_counter(update: Callable[[int, int | None], None]) -> Callable[[str, str, int], None]:
    """A fresh dbt node callback that advances one stage's progress bar."""
    done = [0]

    def on_node(_name: str, _status: str, total: int) -> None:
        done[0] += 1
        update(done[0], total or None)

    return on_node


def _yaml_inline(mapping: dict[str, str]) -> str:
    return "{" + ", ".join(f"{k}: '{v}'" for k, v in mapping.items()) + "}"


def _say(ctx: BuildContext, line: str) -> None:
    """Print one line above the progress display (literally: the run's console parses no markup)."""
    if ctx.progress is not None:
        ctx.progress.console.print(line, markup=False, highlight=False, soft_wrap=True)


def _ingest_note(summary: IngestSummary) -> str:
    """The ingest stage's note: the counts, and how many warnings were printed above it."""
    s = summary
    note = f"{s.loaded} loaded, {s.duplicates} duplicate, {s.quarantined} quarantined"
    n = len(s.warnings())
    return note + (f", {n} warning{'s' if n != 1 else ''} (printed above)" if n else "")


def _dbt_note(counts: dict[str, int]) -> str:
    return ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
