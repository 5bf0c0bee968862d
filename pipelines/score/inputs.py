"""The new pairs of a score run: ingested and annotated in the run's own DuckDB file, then made features.

The pairs go through the project's ingest (pipelines/ingest) into ``<warehouse>/score/<score_id>.duckdb``, not into
the build database: scoring pairs must not add them (or their verdicts, which may contradict the stored ones) to
the next fit's training data. The file keeps its ``raw.quarantine`` for the rows that could not be loaded.

They are annotated with the fit's annotator version: the offline annotator (pipelines/annotate/offline.py) when
the fit used it (and only its current version can be re-run), else the annotations of that version the build
database already holds for the same items (an LLM annotator's cached answers, imported principle annotations).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd

from pipelines.annotate.catalog import OFFLINE_ANNOTATOR, OFFLINE_ANNOTATOR_VERSION
from pipelines.annotate.offline import annotate_pending
from pipelines.core.warehouse import connect
from pipelines.ingest import IngestError, ingest_paths
from pipelines.ingest.model import IngestSummary
from pipelines.score.fit import FitSpec, ScoreError
from py_models.frozen import measure_diff, pivot_features
from py_models.representations import representation_settings

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
    """Ingest ``files`` into ``input_db`` (created); ``mechanism`` names verdicts whose file names none."""
    con = connect(input_db)
    try:
        return ingest_paths(
            con, files, fmt=fmt, domain=domain, mechanism=mechanism, mechanism_type_default=mechanism_type_default
        )
    except IngestError as exc:
        raise ScoreError(f"ingesting the pairs to score failed: {exc}") from exc
    finally:
        con.close()


def _copy_annotations(build: duckdb.DuckDBPyConnection, con: duckdb.DuckDBPyConnection, fit: FitSpec) -> None:
    """Copy the build database's annotations of the fit's annotator version for the run's items; every item must
    have them (they cannot be made here without the annotator's endpoint)."""
    items = con.execute("select item_id from raw.items").df()
    build.register("_score_items", items)
    try:
        rows = build.sql(
            f"select {_ANNOTATION_COLUMNS} from raw.annotations a join _score_items using (item_id) "
            "where a.annotator = ? and a.annotator_version = ?",
            params=[fit.annotator, fit.annotator_version],
        ).to_arrow_table()
    finally:
        build.unregister("_score_items")
    con.register("_score_annotations", rows)
    try:
        con.execute(f"insert or replace into raw.annotations ({_ANNOTATION_COLUMNS}) select * from _score_annotations")
    finally:
        con.unregister("_score_annotations")
    missing = con.execute(
        "select count(*) from raw.items i where not exists (select 1 from raw.annotations a where a.item_id = i.item_id)"
    ).fetchall()[0][0]
    if missing:
        raise ScoreError(
            f"{missing} of {len(items)} pairs have no {fit.annotator} annotations of version {fit.annotator_version} "
            "(the fit's) in the warehouse: ingest and annotate them there first "
            f"(`preflens ingest FILE` then `preflens annotate --annotator {fit.annotator}`), then score them"
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
        else:
            _copy_annotations(build, con, fit)
    finally:
        con.close()


def new_pair_features(
    build: duckdb.DuckDBPyConnection, input_db: Path, fit: FitSpec, summary: IngestSummary
) -> NewPairs:
    """The run's pairs and their features in the fit's representation and concept order (the fit's catalog,
    from the build database, gives each concept's measure transform)."""
    rep = representation_settings(fit.representation)
    con = connect(input_db, read_only=True)
    try:
        pairs = con.execute(
            "select i.item_id, i.domain, l.winner from raw.items i "
            "left join raw.labels l on l.item_id = i.item_id and l.mechanism = ? order by i.item_id",
            [fit.mechanism],
        ).df()
        long = con.execute(
            "select item_id, concept, measure_a, measure_b, comp_value, score_diff, is_relevant from raw.annotations "
            "where annotator = ? and annotator_version = ?",
            [fit.annotator, fit.annotator_version],
        ).df()
    finally:
        con.close()
    if rep.value_column == "measure_diff":
        catalog = build.execute(
            "select concept, measure_transform from raw.concepts where annotator = ? and annotator_version = ?",
            [fit.annotator, fit.annotator_version],
        ).df()
        long = long.merge(catalog, on="concept", how="left")
        long["measure_diff"] = measure_diff(
            long["measure_a"], long["measure_b"], long["measure_transform"].to_numpy(dtype=object), long["is_relevant"]
        )
    X = pivot_features(long, pairs["item_id"].tolist(), fit.frozen.concepts, rep.value_column)
    return NewPairs(pairs, X, summary)
