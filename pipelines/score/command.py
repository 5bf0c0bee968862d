"""The `preflens score` command: its arguments, the run, and what it prints (the agreement and drift table)."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from rich.console import Console

from py_models.representations import REPRESENTATION_NAMES

if TYPE_CHECKING:  # the scoring stack (pandas, the model) is imported by the command itself, for a fast start
    from pipelines.score.run import ScoreResult

HELP = "Score new pairs with a frozen published fit: predicted winner, P(A wins), explanations, agreement and drift."


def add_score_parser(sub: Any, paths_of: Callable[[argparse.Namespace], Any]) -> None:
    """Add ``score`` to the subcommands ``sub`` (``paths_of(args)``: the warehouse paths of the command line)."""
    p = sub.add_parser("score", help=HELP, description=HELP)
    p.add_argument(
        "paths",
        nargs="+",
        help="files of pairs (any format `preflens ingest` reads), gzip allowed; with or without verdicts",
    )
    p.add_argument("--fit", default="latest", metavar="FIT_ID|latest", help="the published fit to apply")
    p.add_argument("--mechanism", required=True, help="the mechanism whose fit is applied, e.g. judge:gpt-4")
    p.add_argument("--representation", choices=REPRESENTATION_NAMES, help="default: the fit's lead representation")
    p.add_argument(
        "--format",
        choices=["canonical", "hf", "annotated_pairs", "icai_csv", "arena"],
        help="default: inferred from the columns",
    )
    p.add_argument("--domain", help="domain for formats that carry none (default: general)")
    p.add_argument(
        "--mechanism-type-default",
        choices=["human", "judge", "reward"],
        help="type of verdicts whose file names none (AnnotatedPairs 'unknown' annotators, ICAI CSV preferred_text)",
    )
    p.set_defaults(func=lambda args, console: cmd_score(args, console, paths_of(args)))


def _missing(x: Any) -> bool:
    import pandas as pd

    return bool(pd.isna(x))


def _pct(x: Any) -> str:
    return "-" if _missing(x) else f"{100 * float(x):.1f}"


def render(result: ScoreResult, console: Console) -> None:
    """The run's summary: what was scored, how many were compared and why the others were not, then agreement
    against the fit's held-out accuracy per domain."""
    from pipelines.score.comparison import describe
    from pipelines.score.run import DRIFT_SUITE
    from py_models.frozen import ALL_DOMAINS

    fit = result.fit
    n = len(result.pairs)
    console.print(
        f"score {result.score_id}: {n} pairs scored with fit {fit.fit_id} of {fit.mechanism} "
        f"({fit.representation}, annotator {fit.annotator_version}); {describe(result.pairs['comparison'])}"
    )
    console.print("\n".join(result.ingest.lines()))
    if result.agreement.empty:
        console.print("no verdicts of the mechanism in the input: nothing to compare (no drift check)")
    else:
        console.print("domain | pairs | agreement % [95% CI] | fit held-out % [95% CI] (n) | drift")
        rows: list[dict[Any, Any]] = result.agreement.to_dict("records")
        for r in rows:
            drift = "n/a" if _missing(r["drift"]) else ("DRIFT" if r["drift"] else "ok")
            fit_n = "-" if _missing(r["fit_n_pairs"]) else str(int(r["fit_n_pairs"]))
            console.print(
                f"{r['domain']} | {int(r['n_pairs'])} | {_pct(r['agreement'])} [{_pct(r['agreement_ci_low'])}, "
                f"{_pct(r['agreement_ci_high'])}] | {_pct(r['fit_accuracy'])} [{_pct(r['fit_ci_low'])}, "
                f"{_pct(r['fit_ci_high'])}] ({fit_n}) | {drift}"
            )
        flagged = result.drift_domains
        if flagged:
            where = "overall" if ALL_DOMAINS in flagged else "in some domains"
            console.print(
                f"drift signal {where} ({', '.join(flagged)}): the agreement dropped below the fit's held-out "
                f"interval; recorded (not blocking) in ops.quality_results, suite {DRIFT_SUITE}"
            )
        else:
            console.print("no drift: agreement within the fit's held-out interval")
    console.print(f"results: ops.scored_pairs / marts.fct_scored_pairs, score_id {result.score_id}")


def cmd_score(args: argparse.Namespace, console: Console, paths: Any) -> int:
    """Run one score and print it; exit 0 also on a drift signal (it is recorded, not blocking)."""
    from pipelines.score.run import score_paths

    result = score_paths(
        paths,
        args.paths,
        mechanism=args.mechanism,
        fit=args.fit,
        representation=args.representation,
        fmt=args.format,
        domain=args.domain,
        mechanism_type_default=args.mechanism_type_default,
    )
    render(result, console)
    return 0
