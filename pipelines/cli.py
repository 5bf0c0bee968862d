"""`preflens` command line: every stage on its own, and `run` for the whole main job."""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from rich.console import Console

from . import __version__
from .config import SAMPLE_PATH, Paths, default_paths

EPILOG = """examples:
  preflens run                               # whole job on the bundled sample (what `make run` does)
  preflens ingest data/*.jsonl.gz            # load pairs (canonical, hf, annotated_pairs, arena)
  preflens ingest prefs.parquet --format hf --domain legal --mechanism judge:my-judge
  preflens build                             # annotate new items, dbt build, fit, checks, publish (cron-safe)
  preflens summary                           # print the summary of the published copy
"""


def _paths(args: argparse.Namespace) -> Paths:
    if args.warehouse:
        os.environ["PREFLENS_WAREHOUSE"] = str(Path(args.warehouse).resolve())
    return default_paths()


def cmd_run(args: argparse.Namespace, console: Console) -> int:
    """ingest -> annotate -> dbt build -> fit -> checks -> publish, then the summary."""
    from .run import run_pipeline
    from .summary import load_summary, render_summary

    paths = _paths(args)
    inputs = [Path(p) for p in args.paths] if args.paths else [SAMPLE_PATH]
    console.print(f"[bold]preflens {__version__}[/] main job on {', '.join(str(p) for p in inputs)}")
    t0 = time.perf_counter()
    result = run_pipeline(paths, inputs, console=console)
    render_summary(load_summary(paths.serve_db), console)
    stages = ", ".join(f"{k} {v:.1f}s" for k, v in result.stage_seconds.items())
    console.print(f"Done in {time.perf_counter() - t0:.1f}s ({stages}). Build {result.build_id}.")
    console.print(f"Served copy for SQL/BI: {paths.serve_db}  (Parquet: {paths.exports_dir})")
    return 0


def cmd_build(args: argparse.Namespace, console: Console) -> int:
    """Everything after ingestion, on what the warehouse already holds (for cron)."""
    from .run import run_pipeline

    paths = _paths(args)
    result = run_pipeline(paths, [], console=console, skip_ingest=True)
    console.print(f"build {result.build_id} published to {paths.serve_db}")
    return 0


def cmd_ingest(args: argparse.Namespace, console: Console) -> int:
    """Load preference pairs into raw tables; bad rows go to raw.quarantine."""
    from .ingest import IngestError, ingest_paths
    from .lock import BuildLock
    from .warehouse import connect

    paths = _paths(args)
    options = {
        "fmt": args.format,
        "domain": args.domain,
        "mechanism": args.mechanism,
        "mechanism_type": args.mechanism_type,
    }
    with BuildLock(paths.lock_file):
        con = connect(paths.build_db)
        try:
            summary = ingest_paths(con, [Path(p) for p in args.paths], **options)
        except IngestError as exc:
            if exc.summary is not None:
                console.print("\n".join(exc.summary.lines()), markup=False, highlight=False)
            raise
        finally:
            con.close()
    console.print("\n".join(summary.lines()), markup=False, highlight=False)
    console.print(f"quarantined rows are in raw.quarantine of {paths.build_db}", markup=False)
    return 0


def cmd_annotate(args: argparse.Namespace, console: Console) -> int:
    """Annotate items that have no annotations for the current annotator version."""
    from .annotate.offline import annotate_pending
    from .lock import BuildLock
    from .warehouse import connect

    if args.annotator != "offline":
        console.print(f"[red]annotator {args.annotator!r} is not available yet; use 'offline'[/]")
        return 2
    paths = _paths(args)
    with BuildLock(paths.lock_file):
        con = connect(paths.build_db)
        try:
            n = annotate_pending(con)
        finally:
            con.close()
    console.print(f"annotated {n} new items with the offline annotator")
    return 0


def cmd_check(args: argparse.Namespace, console: Console) -> int:
    """Run the Great Expectations suites on the build warehouse."""
    from .quality import run_quality_checks

    paths = _paths(args)
    report = run_quality_checks(paths.build_db)
    if report.success:
        console.print(f"all {len(report.results)} expectations passed")
        return 0
    console.print(report.format_failures())
    return 1


def cmd_summary(args: argparse.Namespace, console: Console) -> int:
    """Print held-out accuracy and top concepts from the served copy."""
    from .summary import load_summary, render_summary

    paths = _paths(args)
    if not paths.serve_db.exists():
        console.print(f"[red]no served copy at {paths.serve_db}; run `preflens run` first[/]")
        return 1
    render_summary(load_summary(paths.serve_db, representation=args.representation), console, args.representation)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="preflens",
        description="Explain why a preference mechanism prefers one LLM response over another.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"preflens {__version__}")
    parser.add_argument("--warehouse", help="warehouse folder (default: $PREFLENS_WAREHOUSE or <repo>/warehouse)")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("run", help=cmd_run.__doc__, description=cmd_run.__doc__)
    p.add_argument("paths", nargs="*", help=f"input files (default: the bundled sample {SAMPLE_PATH.name})")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("ingest", help=cmd_ingest.__doc__, description=cmd_ingest.__doc__)
    p.add_argument("paths", nargs="+", help="JSONL / JSON / CSV / Parquet files, gzip allowed")
    p.add_argument("--format", choices=["canonical", "hf", "annotated_pairs", "arena"], help="default: inferred from the columns")
    p.add_argument("--domain", help="domain for formats that carry none (default: general)")
    p.add_argument("--mechanism", help="mechanism '<type>:<who>' for formats that carry none, e.g. judge:my-judge")
    p.add_argument("--mechanism-type", choices=["human", "judge", "reward"], help="default: the prefix of --mechanism")
    p.set_defaults(func=cmd_ingest)

    p = sub.add_parser("annotate", help=cmd_annotate.__doc__, description=cmd_annotate.__doc__)
    p.add_argument("--annotator", default="offline", help="offline (default; the embedded deterministic annotator)")
    p.set_defaults(func=cmd_annotate)

    p = sub.add_parser("build", help=cmd_build.__doc__, description=cmd_build.__doc__)
    p.set_defaults(func=cmd_build)

    p = sub.add_parser("check", help=cmd_check.__doc__, description=cmd_check.__doc__)
    p.set_defaults(func=cmd_check)

    p = sub.add_parser("summary", help=cmd_summary.__doc__, description=cmd_summary.__doc__)
    p.add_argument("--representation", choices=["comp", "score"], default="comp")
    p.set_defaults(func=cmd_summary)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: exit 0 on success, 1 on a failed stage (one-line reason), 2 on usage errors."""
    from .lock import BuildAlreadyRunning
    from .run import StageFailed

    args = build_parser().parse_args(argv)
    console = Console(stderr=False)
    err = Console(stderr=True)
    try:
        return int(args.func(args, console))
    except BuildAlreadyRunning as exc:
        err.print(f"preflens: {exc}")
        return 3
    except StageFailed as exc:
        err.print(f"preflens: {exc}", markup=False)
        return 1
    except KeyboardInterrupt:
        err.print("preflens: interrupted; finished work is kept, re-run to resume")
        return 130
    except Exception as exc:  # noqa: BLE001 - one clear line instead of a traceback
        if os.environ.get("PREFLENS_DEBUG"):
            raise
        name = type(exc).__name__
        err.print(f"preflens: {name}: {exc}", markup=False)
        return 1


if __name__ == "__main__":
    sys.exit(main())
