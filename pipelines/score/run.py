"""One score run: new pairs -> the frozen fit's verdicts, explanations and agreement, recorded in schema ops.

Under the build lock: the fit is read from the fit marts (fit.py), the pairs are ingested and annotated in the
run's own file (inputs.py), scored with the frozen weights (py_models.frozen), and the results written in one
transaction to ``ops.score_runs``, ``ops.scored_pairs``, ``ops.scored_explanations``, ``ops.score_agreement``.
Every pair is scored; only those carrying a decisive verdict of the mechanism are compared, and each pair's
``comparison`` says which, or why not (no verdict, a tie, only another mechanism's verdict: score/comparison.py),
counted in ``ops.score_runs``. Where the new pairs carry the mechanism's verdicts, each domain's agreement is also
recorded in ``ops.quality_results`` as a non-blocking check (suite ``score_drift``): failed = a drift signal.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pandas as pd

from pipelines.build.quality.record import store_results
from pipelines.build.quality.results import QualityResult
from pipelines.core.config import Paths
from pipelines.core.ids import new_id
from pipelines.core.lock import locked_build_db
from pipelines.ingest.model import IngestSummary
from pipelines.score.comparison import COMPARED, COUNT_COLUMNS, comparison_status, counts, items_with_other_verdicts
from pipelines.score.fit import FitSpec, ScoreError, load_fit
from pipelines.score.inputs import annotate_new_pairs, ingest_new_pairs, new_pair_features
from py_models.frozen import ALL_DOMAINS, agreement_table

#: the quality_results suite of the drift checks
DRIFT_SUITE = "score_drift"
DRIFT_EXPECTATION = "agreement_not_below_fit_interval"


@dataclass(frozen=True)
class ScoreResult:
    """What one score run wrote, for the command to print."""

    score_id: str
    fit: FitSpec
    input_db: Path
    ingest: IngestSummary
    pairs: pd.DataFrame  # ops.scored_pairs rows
    explanations: pd.DataFrame  # ops.scored_explanations rows
    agreement: pd.DataFrame  # ops.score_agreement rows (empty: no verdicts of the mechanism)

    @property
    def drift_domains(self) -> list[str]:
        """Domains ('__all__' = overall) whose agreement dropped beyond the fit's interval."""
        flagged = self.agreement[self.agreement["drift"].fillna(False).astype(bool)]
        return flagged["domain"].tolist()


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def drift_results(agreement: pd.DataFrame, fit: FitSpec) -> list[QualityResult]:
    """One non-blocking check per domain with a held-out figure to compare: failed where the agreement's interval
    lies wholly below the fit's held-out interval."""
    out = []
    rows: list[dict[Any, Any]] = agreement[agreement["drift"].notna()].to_dict("records")
    for r in rows:
        out.append(
            QualityResult(
                suite=DRIFT_SUITE,
                table="fct_scored_pairs",
                expectation_type=DRIFT_EXPECTATION,
                column=None,
                success=not bool(r["drift"]),
                expected=(
                    f"{fit.mechanism} / {r['domain']}: agreement with fit {fit.fit_id} ({fit.representation}) not below "
                    f"its held-out accuracy {r['fit_accuracy']:.3f} [{r['fit_ci_low']:.3f}, {r['fit_ci_high']:.3f}] "
                    f"(n={int(r['fit_n_pairs'])})"
                ),
                observed=(
                    f"agreement {r['agreement']:.3f} [{r['agreement_ci_low']:.3f}, {r['agreement_ci_high']:.3f}] "
                    f"on {int(r['n_pairs'])} pairs"
                ),
                unexpected_count=int(r["n_pairs"] - r["n_agree"]),
                unexpected_percent=float(100.0 * (1.0 - r["agreement"])),
                blocking=False,
                engine="preflens score",
            )
        )
    return out


def _insert(con: duckdb.DuckDBPyConnection, table: str, frame: pd.DataFrame) -> None:
    if frame.empty:
        return
    con.register("_score_frame", frame)
    try:
        con.execute(f"insert into ops.{table} by name select * from _score_frame")
    finally:
        con.unregister("_score_frame")


def _write(con: duckdb.DuckDBPyConnection, result: ScoreResult, files: Sequence[Path]) -> None:
    overall = result.agreement[result.agreement["domain"] == ALL_DOMAINS]
    first = overall.iloc[0] if not overall.empty else None
    n = counts(result.pairs["comparison"])
    run = pd.DataFrame(
        {
            "score_id": [result.score_id],
            "fit_id": [result.fit.fit_id],
            "mechanism": [result.fit.mechanism],
            "representation": [result.fit.representation],
            "annotator": [result.fit.annotator],
            "annotator_version": [result.fit.annotator_version],
            "files": [[str(Path(f).resolve()) for f in files]],
            "input_db": [str(result.input_db)],
            "n_pairs": [len(result.pairs)],
            "n_decisive": [n[COMPARED]],
            **{column: [n[status]] for status, column in COUNT_COLUMNS.items()},
            "agreement": [None if first is None else float(first["agreement"])],
            "fit_accuracy": [result.fit.overall_accuracy],
            "drift": [None if first is None or pd.isna(first["drift"]) else bool(first["drift"])],
            "scored_at": [_now()],
        }
    )
    con.execute("begin transaction")
    try:
        _insert(con, "score_runs", run)
        _insert(con, "scored_pairs", result.pairs)
        _insert(con, "scored_explanations", result.explanations)
        _insert(con, "score_agreement", result.agreement)
        store_results(con, result.score_id, drift_results(result.agreement, result.fit))
        con.execute("commit")
    except BaseException:
        con.execute("rollback")
        raise


def score_paths(
    paths: Paths,
    files: Sequence[str | Path],
    *,
    mechanism: str,
    fit: str = "latest",
    representation: str | None = None,
    fmt: str | None = None,
    domain: str | None = None,
    mechanism_type_default: str | None = None,
    progress: Callable[[str], None] | None = None,
) -> ScoreResult:
    """Score the pairs of ``files`` with the frozen published fit ``fit`` (an id or ``latest``) of ``mechanism``."""
    say = progress or (lambda _msg: None)
    inputs = [Path(f) for f in files]
    if not inputs:
        raise ScoreError("no input files given")
    score_id = new_id("score-")
    input_db = paths.warehouse / "score" / f"{score_id}.duckdb"
    with locked_build_db(paths) as con:
        spec = load_fit(con, fit, mechanism, representation)
        say(f"fit {spec.fit_id}: {spec.mechanism} ({spec.representation}), annotator {spec.annotator_version}")
        summary = ingest_new_pairs(
            input_db, inputs, mechanism=mechanism, fmt=fmt, domain=domain, mechanism_type_default=mechanism_type_default
        )
        say(f"ingested into {input_db}")
        annotate_new_pairs(con, input_db, spec)
        new = new_pair_features(con, input_db, spec, summary)
        if new.pairs.empty:
            raise ScoreError(f"no pair could be loaded from the input (see raw.quarantine of {input_db})")
        scored, explained = spec.frozen.score(new.X_raw, new.pairs["domain"].tolist(), row_ids=new.pairs["item_id"])
        pairs = new.pairs.reset_index(drop=True).assign(
            score_id=score_id,
            predicted_winner=scored["predicted_winner"].to_numpy(),
            prob_a=scored["prob_a"].to_numpy(),
            logit=scored["logit"].to_numpy(),
            used_domain_weights=scored["used_domain_weights"].to_numpy(),
        )
        pairs["comparison"] = comparison_status(pairs, items_with_other_verdicts(input_db, spec.mechanism))
        decisive = pairs["comparison"] == COMPARED
        pairs["agrees"] = pd.array(
            np.where(decisive, pairs["winner"] == pairs["predicted_winner"], False), dtype="boolean"
        )
        pairs.loc[~decisive, "agrees"] = pd.NA
        explanations = explained.rename(columns={"row_id": "item_id"})[
            ["item_id", "concept", "value", "weight", "contribution", "local_lift_pct"]
        ].assign(score_id=score_id)
        agreement = (
            agreement_table(pairs[decisive], spec.held_out).assign(score_id=score_id)
            if decisive.any()
            else pd.DataFrame(columns=["score_id", "domain", "drift"])
        )
        result = ScoreResult(score_id, spec, input_db, summary, pairs, explanations, agreement)
        _write(con, result, inputs)
    return result
