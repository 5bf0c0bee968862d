"""The new pairs of a score run: ingested and annotated in the run's own DuckDB file, then made features by dbt.

The pairs go through the project's ingest (pipelines/ingest) into ``<warehouse>/score/<score_id>.duckdb``, not into
the build database: scoring pairs must not add them (or their verdicts, which may contradict the stored ones) to
the next fit's training data. The file keeps its ``raw.quarantine`` for the rows that could not be loaded.

They are annotated with the fit's annotator version: the offline annotator (pipelines/annotate/offline.py) when
the fit used it (and only its current version can be re-run), the LLM annotator with the fit's catalog, prompt
version and model, reusing the warehouse's LLM cache (pipelines/score/llm_annotation.py), else (imported principle
annotations) the annotations of that version the build database already holds for the same items.

The features are dbt's (pipelines/score/features.py): the fit's concept catalog is copied into the run's file and
``int_item_concepts`` and the pivot ``concept_feature_table`` build them there, as they built the fit's.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd

from pipelines.annotate.catalog import OFFLINE_ANNOTATOR, OFFLINE_ANNOTATOR_VERSION
from pipelines.annotate.llm import LLM_ANNOTATOR
from pipelines.annotate.offline import annotate_pending
from pipelines.core.warehouse import connect
from pipelines.ingest import IngestError, ingest_paths
from pipelines.ingest.model import IngestSummary
from pipelines.score.features import build_item_features, read_item_features
from pipelines.score.fit import FitSpec, ScoreError
from pipelines.score.item_rows import copy_item_rows
from pipelines.score.llm_annotation import annotate_with_llm

_CATALOG_COLUMNS = (
    "concept, annotator, annotator_version, description, definition, origin, is_shared, domains, definition_hash, "
    "measure_transform"
)
_ANNOTATION_COLUMNS = (
    "item_id, concept, annotator, annotator_version, measure_a, measure_b, score_a, score_b, comp_value, "
    "score_diff, is_relevant, is_consistent, annotated_at"
)


@dataclass(frozen=True)
class NewPairs:
    """The scored run's pairs: one row per item (item_id, domain, winner of the mechanism or null) and the raw
    feature matrix in the fit's concept order."""

    pairs: pd.DataFrame
    X_raw: np.ndarray
    ingest: IngestSummary


def ingest_new_pairs(
    input_db: Path,
    files: list[Path],
    *,
    mechanism: str,
    fmt: str | None = None,
    domain: str | None = None,
    mechanism_type_default: str | None = None,
) -> IngestSummary:
    """Ingest ``files`` into ``input_db`` (created); ``mechanism`` names verdicts whose file names none. Pairs
    without a verdict are loaded too (items without a label row: scored, not compared)."""
    con = connect(input_db)
    try:
        return ingest_paths(
            con,
            files,
            fmt=fmt,
            domain=domain,
            mechanism=mechanism,
            mechanism_type_default=mechanism_type_default,
            allow_unlabelled=True,
        )
    except IngestError as exc:
        raise ScoreError(f"ingesting the pairs to score failed: {exc}") from exc
    finally:
        con.close()


def _copy_annotations(build: duckdb.DuckDBPyConnection, con: duckdb.DuckDBPyConnection, fit: FitSpec) -> None:
    """Copy the build database's annotations of the fit's annotator version for the run's items; every item must
    have them (they cannot be made here without the annotator's endpoint)."""
    copy_item_rows(
        build,
        con,
        "annotations",
        "t.annotator = ? and t.annotator_version = ?",
        [fit.annotator, fit.annotator_version],
        columns=_ANNOTATION_COLUMNS,
        verb="insert or replace",
    )
    _check_annotated(
        con,
        fit,
        "in the file or the warehouse (imported annotations cannot be made here): score a file that carries the "
        "fit's principle annotators (AnnotatedPairs)",
    )


def _check_annotated(con: duckdb.DuckDBPyConnection, fit: FitSpec, remedy: str) -> None:
    """Every item of the score file ``con`` must have annotations of the fit's annotator version."""
    missing, total = con.execute(
        "select count(*) filter (where not exists (select 1 from raw.annotations a where a.item_id = i.item_id "
        "and a.annotator = ? and a.annotator_version = ?)), count(*) from raw.items i",
        [fit.annotator, fit.annotator_version],
    ).fetchall()[0]
    if missing:
        raise ScoreError(
            f"{missing} of {total} pairs have no {fit.annotator} annotations of version {fit.annotator_version} "
            f"(the fit's) {remedy}"
        )


def annotate_new_pairs(build: duckdb.DuckDBPyConnection, input_db: Path, fit: FitSpec) -> None:
    """Annotate the items of ``input_db`` with the fit's annotator version."""
    con = connect(input_db)
    try:
        if fit.annotator == OFFLINE_ANNOTATOR:
            if fit.annotator_version != OFFLINE_ANNOTATOR_VERSION:
                raise ScoreError(
                    f"fit {fit.fit_id} used offline annotator version {fit.annotator_version}; this preflens has "
                    f"{OFFLINE_ANNOTATOR_VERSION} and cannot reproduce it: score with a fit of the current version"
                )
            annotate_pending(con)
        elif fit.annotator == LLM_ANNOTATOR:
            report = annotate_with_llm(build, con, fit)
            _check_annotated(
                con,
                fit,
                f"after the LLM run ({report.failed_calls} failed calls, kept in raw.llm_cache of {input_db}): "
                "score again to retry them",
            )
        else:
            _copy_annotations(build, con, fit)
    finally:
        con.close()


def copy_fit_catalog(build: duckdb.DuckDBPyConnection, con: duckdb.DuckDBPyConnection, fit: FitSpec) -> int:
    """Copy the fit's concept catalog (``raw.concepts`` of its annotator version) from the build database into the
    score file ``con``, replacing its rows of that version: each concept's measure transform for dbt. Returns the
    number of concepts."""
    rows = build.sql(
        f"select {_CATALOG_COLUMNS} from raw.concepts where annotator = ? and annotator_version = ?",
        params=[fit.annotator, fit.annotator_version],
    ).to_arrow_table()
    if rows.num_rows == 0:
        raise ScoreError(
            f"the build database has no concept catalog of {fit.annotator} version {fit.annotator_version} "
            f"(raw.concepts), the fit's ({fit.fit_id})"
        )
    con.register("_fit_catalog", rows)
    try:
        con.execute("begin transaction")
        con.execute(
            "delete from raw.concepts where annotator = ? and annotator_version = ?",
            [fit.annotator, fit.annotator_version],
        )
        con.execute(f"insert into raw.concepts ({_CATALOG_COLUMNS}) select * from _fit_catalog")
        con.execute("commit")
    except BaseException:
        con.execute("rollback")
        raise
    finally:
        con.unregister("_fit_catalog")
    return rows.num_rows


def load_new_pairs(input_db: Path, fit: FitSpec, summary: IngestSummary) -> NewPairs:
    """The run's pairs (every item, its domain, the mechanism's verdict or null) and the features dbt built for
    them (:mod:`pipelines.score.features`) in the fit's concept order."""
    con = connect(input_db, read_only=True)
    try:
        pairs = con.execute(
            "select i.item_id, i.domain, l.winner from raw.items i "
            "left join raw.labels l on l.item_id = i.item_id and l.mechanism = ? order by i.item_id",
            [fit.mechanism],
        ).df()
        X = read_item_features(con, input_db, fit, pairs["item_id"].astype(str).tolist())
    finally:
        con.close()
    return NewPairs(pairs, X, summary)


def new_pair_features(
    build: duckdb.DuckDBPyConnection, input_db: Path, fit: FitSpec, summary: IngestSummary
) -> NewPairs:
    """The run's pairs and their features in the fit's representation and concept order: the fit's catalog (from
    the build database) is copied into the run's file, dbt builds the item features there with the fit's own
    transform and pivot, and they are read back."""
    con = connect(input_db)
    try:
        copy_fit_catalog(build, con, fit)
    finally:
        con.close()
    build_item_features(input_db, fit, run_id=input_db.stem)
    return load_new_pairs(input_db, fit, summary)
