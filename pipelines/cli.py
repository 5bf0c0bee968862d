"""`preflens` command line: every stage on its own, and `run` for the whole main job."""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console

from pipelines import __version__
from pipelines.core.config import DEFAULT_WAREHOUSE_HELP, SAMPLE_PATH, Paths, default_paths
from pipelines.core.console import make_console, styled
from py_models.representations import REPRESENTATION_NAMES

if TYPE_CHECKING:  # the stage modules are imported by their commands, for a fast start
    from pipelines.llm_apps.apply.guide import GuideReport
    from pipelines.llm_apps.apply.tiebreak import TiebreakReport

EPILOG = """examples:
  preflens run                               # whole job on the bundled sample (what `make run` does)
  preflens ingest data/*.jsonl.gz            # load pairs (canonical, hf, annotated_pairs, arena)
  preflens ingest prefs.parquet --format hf --domain legal --mechanism judge:my-judge
  preflens build                             # annotate new items, dbt build, fit, checks, publish (cron-safe)
  preflens summary                           # print the summary of the published copy
  preflens report                            # self-contained HTML report -> warehouse/reports/
  preflens explain 1a59513dce4437dd          # why the model predicts this verdict (label_id or item_id)
  preflens evaluate --splits 25 --seeds 5    # in-domain + OOD protocols for HMDR and baselines (Table 1)
  preflens annotate --annotator llm --dry-run # projected LLM calls, tokens and $ (see README, "The LLM method")
  preflens judge --model gpt-4o-mini         # an LLM judge becomes mechanism judge:gpt-4o-mini (both orders)
  preflens apply guide --judge gpt-4o-mini --domain legal   # Judge Hack: top-k concepts vs random ones
  preflens apply tiebreak --judge gpt-4o-mini --reference human  # Tie Break (Table 3)
"""


class CommandFailed(Exception):
    """A command cannot do its job: ``main`` prints ``preflens: <message>`` on stderr and exits with ``code``."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


def _paths(args: argparse.Namespace) -> Paths:
    if args.warehouse:
        os.environ["PREFLENS_WAREHOUSE"] = str(Path(args.warehouse).resolve())
    return default_paths()


def cmd_run(args: argparse.Namespace, console: Console) -> int:
    """ingest -> annotate -> dbt build -> fit -> checks -> publish, then the summary."""
    from pipelines.build.build_vars import build_settings
    from pipelines.build.run import run_pipeline
    from pipelines.serve.summary import load_summary, render_summary

    paths = _paths(args)
    inputs = [Path(p) for p in args.paths] if args.paths else [SAMPLE_PATH]
    console.print(styled((f"preflens {__version__}", "bold"), " main job on ", ", ".join(str(p) for p in inputs)))
    t0 = time.perf_counter()
    result = run_pipeline(
        paths,
        inputs,
        console=console,
        annotator=args.annotator,
        ingest_options={"mechanism_type_default": args.mechanism_type_default},
        llm_options=_llm_options(args),
        dbt_vars=build_settings(args),
    )
    _print_llm_report(result.llm_report, console)
    rep, summaries = load_summary(paths.serve_db)
    render_summary(summaries, console, rep)
    stages = ", ".join(f"{k} {v:.1f}s" for k, v in result.stage_seconds.items())
    console.print(f"Done in {time.perf_counter() - t0:.1f}s ({stages}). Build {result.build_id}.")
    console.print(f"Served copy for SQL/BI: {paths.serve_db}  (Parquet: {paths.exports_dir})")
    return 0


def cmd_build(args: argparse.Namespace, console: Console) -> int:
    """Everything after ingestion, on what the warehouse already holds (for cron)."""
    from pipelines.build.build_vars import build_settings
    from pipelines.build.run import run_pipeline

    paths = _paths(args)
    result = run_pipeline(
        paths, [], console=console, skip_ingest=True, annotator=args.annotator, dbt_vars=build_settings(args)
    )
    console.print(f"build {result.build_id} published to {paths.serve_db}")
    return 0


def cmd_ingest(args: argparse.Namespace, console: Console) -> int:
    """Load preference pairs into raw tables; bad rows go to raw.quarantine."""
    from pipelines.core.lock import locked_build_db
    from pipelines.ingest import IngestError, ingest_paths

    paths = _paths(args)
    options = {
        "fmt": args.format,
        "domain": args.domain,
        "mechanism": args.mechanism,
        "mechanism_type": args.mechanism_type,
        "mechanism_type_default": args.mechanism_type_default,
    }
    with locked_build_db(paths) as con:
        try:
            summary = ingest_paths(con, [Path(p) for p in args.paths], **options)
        except IngestError as exc:
            if exc.summary is not None:
                console.print("\n".join(exc.summary.lines()))
            raise
    console.print("\n".join(summary.lines()))
    console.print(f"quarantined rows are in raw.quarantine of {paths.build_db}")
    return 0


def _add_mechanism_type_default(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--mechanism-type-default",
        choices=["human", "judge", "reward"],
        help="type of verdicts whose file names none (AnnotatedPairs 'unknown' annotators, ICAI CSV preferred_text)",
    )


def cmd_export(args: argparse.Namespace, console: Console) -> int:
    """Write the served copy as Feedback Forensics / ICAI AnnotatedPairs v2 JSON (pairs, mechanisms, concepts), or one
    published table (--table) as CSV or Parquet."""
    from pipelines.serve.export import ExportError, export_annotated_pairs

    paths = _paths(args)
    if args.format != "annotated_pairs" or args.table:
        from pipelines.serve.table_export import TableExportError, export_table

        if not args.table or args.format == "annotated_pairs":
            raise CommandFailed("a table export needs --table NAME and --format csv or parquet")
        try:
            done = export_table(paths.serve_db, args.table, Path(args.path), args.format)
        except TableExportError as exc:
            raise CommandFailed(str(exc)) from None
        console.print("\n".join(done.lines()))
        return 0
    try:
        result = export_annotated_pairs(
            paths.serve_db,
            Path(args.path),
            concepts=args.concepts,
            mechanisms=args.mechanism,
            default_mechanism=args.default_mechanism,
        )
    except ExportError as exc:
        raise CommandFailed(str(exc)) from None
    console.print("\n".join(result.lines()))
    return 0


def _llm_options(args: argparse.Namespace) -> dict:
    opts: dict = {}
    if getattr(args, "budget", None) is not None:
        opts["budget_usd"] = args.budget
    if getattr(args, "concepts", None):
        opts["concepts_file"] = Path(args.concepts)
    return opts


def _print_llm_report(report: object, console: Console) -> None:
    if report is not None and hasattr(report, "lines"):
        for line in report.lines():
            console.print(line)


def cmd_annotate(args: argparse.Namespace, console: Console) -> int:
    """Annotate items that have no annotations for the current annotator version."""
    from pipelines.annotate.offline import annotate_pending
    from pipelines.core.lock import locked_build_db

    if args.annotator == "llm":
        return _cmd_annotate_llm(args, console)
    if args.annotator != "offline":
        raise CommandFailed(f"unknown annotator {args.annotator!r}; use 'offline' or 'llm'", code=2)
    paths = _paths(args)
    with locked_build_db(paths) as con:
        n = annotate_pending(con)
    console.print(f"annotated {n} new items with the offline annotator")
    return 0


def _cmd_annotate_llm(args: argparse.Namespace, console: Console) -> int:
    from pipelines.annotate.llm import annotate_llm
    from pipelines.core.lock import locked_build_db
    from pipelines.llm.config import load_llm_config

    paths = _paths(args)
    config = load_llm_config(warehouse=paths.warehouse)
    if not config.model:
        raise CommandFailed(
            "no LLM configured: set PREFLENS_LLM_MODEL (and PREFLENS_LLM_BASE_URL for a non-OpenAI "
            "endpoint) or an [llm] table in preflens.toml",
            code=2,
        )
    with locked_build_db(paths) as con:
        report = annotate_llm(con, config, dry_run=args.dry_run, **_llm_options(args))
    _print_llm_report(report, console)
    return 0


def cmd_discover(args: argparse.Namespace, console: Console) -> int:
    """Discover concepts with the LLM (paper §2) and store a new catalog version."""
    from pipelines.core.lock import locked_build_db
    from pipelines.llm.config import load_llm_config
    from pipelines.llm_apps.discover.run import discover

    paths = _paths(args)
    config = load_llm_config(warehouse=paths.warehouse)
    if not config.model:
        raise CommandFailed(
            "no LLM configured: set PREFLENS_LLM_MODEL / PREFLENS_LLM_BASE_URL or an [llm] table in preflens.toml",
            code=2,
        )
    with locked_build_db(paths) as con:
        report = discover(
            con,
            config,
            mechanism=args.mechanism,
            max_batches=args.max_batches,
            batches_per_domain=args.batches_per_domain,
            shared_threshold=args.shared_threshold,
            dry_run=args.dry_run,
            budget_usd=args.budget,
            seed=args.seed,
        )
    _print_llm_report(report, console)
    return 0


def cmd_check(args: argparse.Namespace, console: Console) -> int:
    """Run the quality gates (dbt tests) and the publication contract (Great Expectations) on the build warehouse
    and write its quality page (under the build lock: exit 3 while a build runs)."""
    from pipelines.build.quality import run_quality_checks, write_quality_report
    from pipelines.core.lock import BuildLock, connect_build_db

    paths = _paths(args)
    if not paths.build_db.exists():
        raise CommandFailed(f"no build warehouse at {paths.build_db}; run `preflens run` first")
    with BuildLock(paths.lock_file):  # never during a build: exit 3 (and the page is the build's to write)
        connect_build_db(paths.build_db, read_only=True).close()  # a file another process holds: exit 3 too
        report = run_quality_checks(paths.build_db)
        page = write_quality_report(report, paths.quality_report)
    if report.success:
        console.print(f"quality gates and publication contract: {report.format_failures()}; report: {page}")
        return 0
    console.print(report.format_failures())
    console.print(f"report: {page}")
    return 1


def cmd_summary(args: argparse.Namespace, console: Console) -> int:
    """Print held-out accuracy and top concepts from the served copy."""
    from pipelines.serve.summary import load_summary, render_summary

    paths = _paths(args)
    if not paths.serve_db.exists():
        raise CommandFailed(f"no served copy at {paths.serve_db}; run `preflens run` first")
    rep, summaries = load_summary(paths.serve_db, representation=args.representation)
    render_summary(summaries, console, rep)
    return 0


def cmd_evaluate(args: argparse.Namespace, console: Console) -> int:
    """In-domain and out-of-domain protocols for HMDR and its baselines; results to ops.eval_results + marts."""
    from pipelines.core.lock import BuildLock, connect_build_db
    from pipelines.evaluate.runner import comparison_table, run_evaluation

    paths = _paths(args)
    if not paths.build_db.exists():
        raise CommandFailed(f"no build warehouse at {paths.build_db}; run `preflens run` first")
    reps = list(REPRESENTATION_NAMES) if args.representation == "all" else [args.representation]
    with BuildLock(paths.lock_file):
        ev = run_evaluation(
            paths,
            representations=reps,
            mechanisms=args.mechanism or None,
            n_splits=args.splits,
            n_seeds=args.seeds,
            n_jobs=args.jobs,
            seed=args.seed,
            protocols=["in_domain", "ood"] if args.protocol == "both" else [args.protocol],
            fresh=args.fresh,
            publish=not args.no_publish,
        )
        con = connect_build_db(paths.build_db, read_only=True)  # still under the lock: never beside a build
        try:
            for rep in reps:
                table = comparison_table(con, ev.eval_id, rep)
                console.print(styled((f"Mean accuracy % ({rep}-rep), eval {ev.eval_id}", "bold")))
                console.print(table.to_string(), soft_wrap=True)
        finally:
            con.close()
    console.print(
        f"{len(ev.results)} result rows in {ev.seconds:.1f}s -> ops.eval_results, marts.fct_eval_results, "
        f"marts.rpt_model_comparison of {paths.build_db}"
    )
    if ev.publication is not None:
        console.print(ev.publication.message, markup=False, highlight=False, soft_wrap=True)
    return 0


def cmd_report(args: argparse.Namespace, console: Console) -> int:
    """Write the visual report (one self-contained HTML file) from the served copy; prints its path."""
    from pipelines.serve.report import ReportDataError, build_report

    paths = _paths(args)
    try:
        out = build_report(
            paths.serve_db,
            paths.warehouse / "reports",
            representation=args.representation,
            max_domains=args.max_domains,
            top_k=args.top,
            contrast_domains=args.contrast_domains,
            contrast_pairs=args.contrast_pairs,
            drift_top=args.drift_top,
            output=Path(args.output) if args.output else None,
            progress=lambda step: console.print(f"  {step}"),
        )
    except ReportDataError as exc:
        raise CommandFailed(str(exc)) from exc
    console.print(f"report written to {out}", soft_wrap=True)
    return 0


def cmd_explain(args: argparse.Namespace, console: Console) -> int:
    """Explain one verdict: the pair, P(A wins), the actual winner and the concepts that pushed each way."""
    import json

    from pipelines.serve.explain import ExplainError, load_explanation, render_explanation

    paths = _paths(args)
    try:
        exp = load_explanation(
            paths.serve_db, args.pair_id, mechanism=args.mechanism, representation=args.representation
        )
    except ExplainError as exc:
        raise CommandFailed(str(exc)) from exc
    if args.json:
        print(json.dumps(exp, indent=2, ensure_ascii=False, default=str))
    else:
        render_explanation(exp, console, limit=args.top)
    return 0


def _judge_config(args: argparse.Namespace, model: str | None):
    from pipelines.llm.config import load_llm_config

    config = load_llm_config(warehouse=_paths(args).warehouse)
    return config.with_overrides(model=model) if model else config


def cmd_judge(args: argparse.Namespace, console: Console) -> int:
    """Have an LLM judge the pairs (both orders; order-inconsistent = tie) and store it as a mechanism."""
    from pipelines.core.lock import locked_build_db
    from pipelines.llm_apps.judge import judge_items

    paths = _paths(args)
    config = _judge_config(args, args.model)
    if not config.model:
        raise CommandFailed("no judge model: give --model or set PREFLENS_LLM_MODEL", code=2)
    with locked_build_db(paths) as con:
        try:
            report = judge_items(
                con,
                config,
                mechanism=args.mechanism_name,
                cot=args.cot,
                shots=args.shots,
                ensemble=args.ensemble,
                shots_from=args.shots_from,
                limit=args.limit,
                dry_run=args.dry_run,
                budget_usd=args.budget,
                seed=args.seed,
            )
        except ValueError as exc:
            raise CommandFailed(str(exc), code=2) from exc
    _print_llm_report(report, console)
    if not args.dry_run and report.items_judged:
        console.print("run `preflens build` to explain the new mechanism")
    return 0


def cmd_apply(args: argparse.Namespace, console: Console) -> int:
    """The paper's applications: `guide` (Judge Hack, §8) and `tiebreak` (Tie Break, §9)."""
    from pipelines.core.lock import locked_build_db
    from pipelines.llm_apps.apply.common import ApplyError, judge_model

    paths = _paths(args)
    config = _judge_config(args, judge_model(args.judge))
    report: GuideReport | TiebreakReport
    with locked_build_db(paths) as con:
        try:
            if args.application == "guide":
                from pipelines.llm_apps.apply.guide import run_guide

                report = run_guide(
                    con,
                    paths.serve_db,
                    config,
                    judge=args.judge,
                    domain=args.domain,
                    k=args.k,
                    generator=args.generator,
                    n_prompts=args.n_prompts,
                    seed=args.seed,
                    dry_run=args.dry_run,
                    budget_usd=args.budget,
                )
            else:
                from pipelines.llm_apps.apply.tiebreak import run_tiebreak

                report = run_tiebreak(
                    con,
                    paths.serve_db,
                    config,
                    judge=args.judge,
                    reference=args.reference,
                    k=args.k,
                    seed=args.seed,
                    dry_run=args.dry_run,
                    budget_usd=args.budget,
                )
        except ApplyError as exc:
            raise CommandFailed(str(exc)) from exc
    _print_llm_report(report, console)
    return 0


def _at_least(minimum: int) -> Callable[[str], int]:
    """An argparse type: a whole number >= ``minimum`` (argparse prints the message and exits 2)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {value}")
        return value

    return parse


def _usd(text: str) -> float:
    """An argparse type: an amount of dollars >= 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an amount in USD, got {text!r}") from None
    if not value >= 0:  # also rejects nan
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {text}")
    return value


def _share(text: str) -> float:
    """An argparse type: a share in (0, 1]."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number between 0 and 1, got {text!r}") from None
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"must be more than 0 and at most 1, got {text}")
    return value


def _warehouse_everywhere(parser: argparse.ArgumentParser) -> None:
    """Accept ``--warehouse`` after every subcommand too (and list it in its ``--help``). Given there, it wins; not
    given, the value before the subcommand (or the default) stays: ``SUPPRESS`` leaves the attribute alone."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for subparser in dict.fromkeys(action.choices.values()):
                subparser.add_argument(
                    "--warehouse", metavar="DIR", default=argparse.SUPPRESS, help=DEFAULT_WAREHOUSE_HELP
                )
                _warehouse_everywhere(subparser)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="preflens",
        description="Explain why a preference mechanism prefers one LLM response over another.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"preflens {__version__}")
    parser.add_argument("--warehouse", metavar="DIR", help=DEFAULT_WAREHOUSE_HELP)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("run", help=cmd_run.__doc__, description=cmd_run.__doc__)
    p.add_argument("paths", nargs="*", help=f"input files (default: the bundled sample {SAMPLE_PATH.name})")
    p.add_argument(
        "--annotator",
        choices=["offline", "llm", "annotated_pairs"],
        default=None,
        help="default: llm when an LLM is configured (PREFLENS_LLM_* or preflens.toml), else offline; "
        "annotated_pairs: the imported principle annotations (docs/commands.md)",
    )
    _add_mechanism_type_default(p)
    p.add_argument("--budget", type=_usd, metavar="USD", help="llm: stop before spending more than this")
    p.add_argument("--concepts", metavar="YAML", help="llm: user concepts to add / reword / remove")
    from pipelines.build.build_vars import add_build_settings

    add_build_settings(p)  # the settings of `preflens build`: --vars YAML, --var KEY=VALUE, --n-bootstrap N, ...
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("ingest", help=cmd_ingest.__doc__, description=cmd_ingest.__doc__)
    p.add_argument("paths", nargs="+", help="JSONL / JSON / CSV / Parquet files, gzip allowed")
    p.add_argument(
        "--format",
        choices=["canonical", "hf", "annotated_pairs", "icai_csv", "arena"],
        help="default: inferred from the columns",
    )
    p.add_argument("--domain", help="domain for formats that carry none (default: general)")
    p.add_argument("--mechanism", help="mechanism '<type>:<who>' for formats that carry none, e.g. judge:my-judge")
    p.add_argument("--mechanism-type", choices=["human", "judge", "reward"], help="default: the prefix of --mechanism")
    _add_mechanism_type_default(p)
    p.set_defaults(func=cmd_ingest)

    p = sub.add_parser("export", help=cmd_export.__doc__, description=cmd_export.__doc__)
    p.add_argument("path", metavar="PATH", help="the file to write (replaced atomically)")
    p.add_argument(
        "--format",
        choices=["annotated_pairs", "csv", "parquet"],
        default="annotated_pairs",
        help="annotated_pairs: AnnotatedPairs v2 JSON (default); csv or parquet: the --table",
    )
    p.add_argument("--table", help="with --format csv|parquet: a table of schema marts, e.g. fct_mechanism_contrasts")
    p.add_argument("--concepts", action="store_true", help="also each concept of the served annotator as a principle")
    p.add_argument("--mechanism", action="append", help="only this mechanism (repeatable; default all)")
    p.add_argument("--default-mechanism", help="the file's default annotator (default: the largest human mechanism)")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("annotate", help=cmd_annotate.__doc__, description=cmd_annotate.__doc__)
    p.add_argument(
        "--annotator",
        default="offline",
        help="offline (default; the embedded deterministic annotator) or llm (the configured endpoint)",
    )
    p.add_argument("--dry-run", action="store_true", help="llm: print projected calls, tokens and $; call nothing")
    p.add_argument("--budget", type=_usd, metavar="USD", help="llm: stop cleanly before spending more than this")
    p.add_argument("--concepts", metavar="YAML", help="llm: user concepts to add / reword / remove")
    p.set_defaults(func=cmd_annotate)

    p = sub.add_parser("discover", help=cmd_discover.__doc__, description=cmd_discover.__doc__)
    p.add_argument(
        "--mechanism", default=None, help="whose labels drive discovery (default: the first human mechanism)"
    )
    p.add_argument(
        "--max-batches", type=_at_least(1), default=None, help="cap on proposal batches in total (cheap trial runs)"
    )
    p.add_argument("--batches-per-domain", type=_at_least(1), default=300, help="paper: 300")
    p.add_argument("--shared-threshold", type=_share, default=0.5, help="share of domains to be shared (paper: 0.5)")
    p.add_argument("--seed", type=_at_least(0), default=0)
    p.add_argument("--dry-run", action="store_true", help="print projected calls, tokens and $; call nothing")
    p.add_argument("--budget", type=_usd, metavar="USD", help="stop cleanly before spending more than this")
    p.set_defaults(func=cmd_discover)

    p = sub.add_parser("build", help=cmd_build.__doc__, description=cmd_build.__doc__)
    p.add_argument(
        "--annotator",
        choices=["offline", "llm", "annotated_pairs"],
        default=None,
        help="as for `preflens run` (annotated_pairs: the imported principle annotations)",
    )
    add_build_settings(p)  # --vars YAML, --var KEY=VALUE, --n-bootstrap N, ...
    p.set_defaults(func=cmd_build)

    p = sub.add_parser("check", help=cmd_check.__doc__, description=cmd_check.__doc__)
    p.set_defaults(func=cmd_check)

    p = sub.add_parser("evaluate", help=cmd_evaluate.__doc__, description=cmd_evaluate.__doc__)
    p.add_argument(
        "--representation",
        choices=[*REPRESENTATION_NAMES, "all"],
        default="measure",
        help="representation(s) to evaluate (default measure, the lead one; 'all' = every one)",
    )
    p.add_argument("--protocol", choices=["in_domain", "ood", "both"], default="both")
    p.add_argument("--splits", type=_at_least(1), default=25, help="in-domain random splits (default 25)")
    p.add_argument("--seeds", type=_at_least(1), default=5, help="OOD seeds per held-out domain (default 5)")
    p.add_argument("--mechanism", action="append", help="only this mechanism (repeatable; default all)")
    p.add_argument("--jobs", type=_at_least(1), default=2, help="worker processes (default 2; 1 = none)")
    p.add_argument("--seed", type=_at_least(0), default=0)
    p.add_argument(
        "--fresh", action="store_true", help="start a new evaluation, even if one with these settings exists"
    )
    p.add_argument(
        "--no-publish", action="store_true", help="do not re-publish the served copy with the evaluation marts"
    )
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("summary", help=cmd_summary.__doc__, description=cmd_summary.__doc__)
    p.add_argument(
        "--representation",
        choices=REPRESENTATION_NAMES,
        default=None,
        help="default: measure when it was fitted (offline concepts), else comp",
    )
    p.set_defaults(func=cmd_summary)

    p = sub.add_parser("report", help=cmd_report.__doc__, description=cmd_report.__doc__)
    p.add_argument(
        "--representation",
        choices=REPRESENTATION_NAMES,
        default=None,
        help="default: measure when it was fitted (offline concepts), else comp",
    )
    p.add_argument(
        "--max-domains", type=_at_least(1), default=5, help="domain panels per mechanism (largest first; default 5)"
    )
    p.add_argument("--top", type=_at_least(1), default=8, help="concepts per panel, by |global lift| (default 8)")
    p.add_argument(
        "--contrast-domains",
        type=_at_least(0),
        default=3,
        help="domains with a concept x mechanism heat map besides the shared one (default 3)",
    )
    p.add_argument(
        "--contrast-pairs",
        type=_at_least(0),
        default=6,
        help="mechanism pairs with a fitted-contrast panel, most distinguishable first (default 6)",
    )
    p.add_argument(
        "--drift-top", type=_at_least(1), default=4, help="concepts per mechanism in the drift panel (default 4)"
    )
    p.add_argument(
        "--output",
        metavar="HTML",
        help="file to write (default: <warehouse>/reports/preflens_report_<build>_<rep>.html)",
    )
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("explain", help=cmd_explain.__doc__, description=cmd_explain.__doc__)
    p.add_argument(
        "pair_id", metavar="PAIR_ID", help="a label_id (one verdict) or an item_id (every mechanism that judged it)"
    )
    p.add_argument("--mechanism", help="only this mechanism's verdict (for an item_id)")
    p.add_argument(
        "--representation",
        choices=REPRESENTATION_NAMES,
        default=None,
        help="default: measure when it was fitted (offline concepts), else comp",
    )
    p.add_argument(
        "--top", type=_at_least(1), default=8, help="concepts shown per direction (default 8; --json has all)"
    )
    p.add_argument("--json", action="store_true", help="print the explanation as JSON (full texts, all concepts)")
    p.set_defaults(func=cmd_explain)

    p = sub.add_parser("judge", help=cmd_judge.__doc__, description=cmd_judge.__doc__)
    p.add_argument("--model", help="the judge model (default: PREFLENS_LLM_MODEL); endpoint from PREFLENS_LLM_BASE_URL")
    p.add_argument("--mechanism-name", help="mechanism to write (default judge:<model>[+cot][+<K>shotx<N>])")
    p.add_argument("--cot", action="store_true", help="chain of thought: a short explanation before the answer")
    p.add_argument(
        "--shots", type=_at_least(0), default=0, help="k-shot demonstrations per call (default 0: zero-shot)"
    )
    p.add_argument("--ensemble", type=_at_least(1), default=1, help="with --shots: N demonstration sets, majority vote")
    p.add_argument(
        "--shots-from", help="mechanism whose decisive labels give the demonstrations (default: largest human)"
    )
    p.add_argument("--limit", type=_at_least(1), help="judge at most N pending items")
    p.add_argument("--seed", type=_at_least(0), default=0)
    p.add_argument("--dry-run", action="store_true", help="print projected calls, tokens and $; call nothing")
    p.add_argument("--budget", type=_usd, metavar="USD", help="stop cleanly before spending more than this")
    p.set_defaults(func=cmd_judge)

    p = sub.add_parser("apply", help=cmd_apply.__doc__, description=cmd_apply.__doc__)
    app = p.add_subparsers(dest="application", required=True)
    for name, helptext in [
        ("guide", "Judge Hack: generate with the judge's top-k concepts vs k random ones"),
        ("tiebreak", "Tie Break: re-ask the judge's ties with concepts from four sources"),
    ]:
        q = app.add_parser(name, help=helptext, description=helptext)
        q.add_argument("--judge", required=True, help="judge model M (mechanism judge:M) or a full mechanism name")
        q.add_argument("--k", type=_at_least(1), default=4, help="concepts per prompt (paper: 4)")
        q.add_argument("--seed", type=_at_least(0), default=0)
        q.add_argument("--dry-run", action="store_true", help="print projected calls and $; call nothing")
        q.add_argument("--budget", type=_usd, metavar="USD", help="stop cleanly before spending more than this")
        if name == "guide":
            q.add_argument("--domain", required=True, help="the domain whose top-k concepts guide generation")
            q.add_argument("--generator", help="generator model (default: the judge model)")
            q.add_argument("--n-prompts", type=_at_least(1), default=50, help="queries of the domain (paper: 50)")
        else:
            q.add_argument(
                "--reference",
                default="human",
                help="reference mechanism: 'human' (largest human mechanism) or a full name, e.g. human:experts",
            )
        q.set_defaults(func=cmd_apply)
    from pipelines.score.command import add_score_parser

    add_score_parser(sub, _paths)  # `preflens score`: new pairs scored with a frozen published fit, drift
    _warehouse_everywhere(parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: exit 0 on success, 1 on a failed stage (one-line reason), 2 on usage errors."""
    from pipelines.build.run import StageFailed
    from pipelines.core.lock import BuildAlreadyRunning

    args = build_parser().parse_args(argv)
    console = make_console()
    err = make_console(stderr=True)

    def fail(message: object, code: int) -> int:
        err.print(f"preflens: {message}", soft_wrap=True)
        return code

    try:
        return int(args.func(args, console))
    except CommandFailed as exc:
        return fail(exc, exc.code)
    except BuildAlreadyRunning as exc:
        return fail(exc, 3)
    except StageFailed as exc:
        return fail(exc, 1)
    except KeyboardInterrupt:
        return fail("interrupted; finished work is kept, re-run to resume", 130)
    except Exception as exc:  # noqa: BLE001 - one clear line instead of a traceback
        if os.environ.get("PREFLENS_DEBUG"):
            raise
        # the message, never the class name; an error without one still says where to look
        return fail(str(exc).strip() or "unexpected error with no message; set PREFLENS_DEBUG=1 for the traceback", 1)


if __name__ == "__main__":
    sys.exit(main())
