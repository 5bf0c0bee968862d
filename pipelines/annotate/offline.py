"""The embedded offline annotator: comp-rep and score-rep for every catalog concept, no LLM needed.

``annotate_items`` turns items into long ``raw.annotations`` rows; ``annotate_pending`` fills the
warehouse incrementally (anti-join on (annotator, version), one committed batch at a time).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime

import duckdb
import numpy as np
import polars as pl

from pipelines.annotate.catalog import CONCEPTS, OFFLINE_ANNOTATOR, OFFLINE_ANNOTATOR_VERSION, Concept
from pipelines.annotate.scorers import compare, likert, measure_texts, relevance_mask

ANNOTATION_COLUMNS: tuple[str, ...] = (
    "item_id",
    "concept",
    "annotator",
    "annotator_version",
    "measure_a",
    "measure_b",
    "score_a",
    "score_b",
    "comp_value",
    "score_diff",
    "is_relevant",
    "is_consistent",
    "annotated_at",
)
CONCEPT_COLUMNS: tuple[str, ...] = (
    "concept",
    "annotator",
    "annotator_version",
    "description",
    "definition",
    "origin",
    "is_shared",
    "domains",
    "definition_hash",
    "measure_transform",
)

ANNOTATION_SCHEMA: dict[str, pl.DataType] = {
    "item_id": pl.String(),
    "concept": pl.String(),
    "annotator": pl.String(),
    "annotator_version": pl.String(),
    "measure_a": pl.Float64(),
    "measure_b": pl.Float64(),
    "score_a": pl.Int32(),
    "score_b": pl.Int32(),
    "comp_value": pl.Int32(),
    "score_diff": pl.Int32(),
    "is_relevant": pl.Boolean(),
    "is_consistent": pl.Boolean(),
    "annotated_at": pl.Datetime("us"),
}


#: concepts whose measure reads the prompt: not relevant for a pair without one (``raw.items.prompt`` NULL, e.g. an
#: AnnotatedPairs ``prompt: null``) instead of "equal". Such pairs could not be ingested before, so no stored
#: annotation changes and the annotator version stays.
PROMPT_READING: frozenset[str] = frozenset(
    {
        "lexical_overlap",
        "restatement",
        "prompt_copying",
        "instruction_following",
        "question_coverage",
        "key_term_coverage",
        "language_match",
        "numeric_answer",
        "explicit_answer",
    }
)


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def catalog_frame() -> pl.DataFrame:
    """The offline catalog as ``raw.concepts`` rows."""
    return pl.DataFrame(
        {
            "concept": [c.name for c in CONCEPTS],
            "annotator": OFFLINE_ANNOTATOR,
            "annotator_version": OFFLINE_ANNOTATOR_VERSION,
            "description": [c.description for c in CONCEPTS],
            "definition": [c.definition for c in CONCEPTS],
            "origin": [c.origin for c in CONCEPTS],
            "is_shared": [c.is_shared for c in CONCEPTS],
            "domains": pl.Series([None] * len(CONCEPTS), dtype=pl.List(pl.String)),
            "definition_hash": [c.definition_hash for c in CONCEPTS],
            "measure_transform": [c.transform for c in CONCEPTS],
        }
    ).select(CONCEPT_COLUMNS)


def annotate_items(
    items: pl.DataFrame, *, annotated_at: datetime | None = None, concepts: Sequence[Concept] = CONCEPTS
) -> pl.DataFrame:
    """Annotate items (item_id, prompt, response_a, response_b) on every concept (or ``concepts``).

    Returns one row per (item, concept) with the ``raw.annotations`` columns. Irrelevant concepts
    get scores 0, comp_value 0, score_diff 0 and is_relevant false (the measures are still kept).
    """
    n = items.height
    if n == 0:
        return pl.DataFrame(schema=ANNOTATION_SCHEMA)
    ts = annotated_at or _now()
    prompts = items["prompt"]
    both = measure_texts(
        pl.concat([prompts, prompts]), pl.concat([items["response_a"], items["response_b"]]), [c.key for c in concepts]
    )
    ma_frame, mb_frame = both.slice(0, n), both.slice(n, n)
    has_prompt = prompts.is_not_null().to_numpy()

    cols: dict[str, list[np.ndarray]] = {k: [] for k in ("ma", "mb", "sa", "sb", "comp", "rel")}
    for c in concepts:
        ma, mb = ma_frame[c.key].to_numpy(), mb_frame[c.key].to_numpy()
        rel = relevance_mask(c, ma_frame, mb_frame)
        if c.key in PROMPT_READING:  # nothing to compare with when the pair has no prompt (NULL): not relevant
            rel = rel & has_prompt
        cols["ma"].append(ma)
        cols["mb"].append(mb)
        cols["sa"].append(np.where(rel, likert(c, ma), 0))
        cols["sb"].append(np.where(rel, likert(c, mb), 0))
        cols["comp"].append(np.where(rel, compare(c, ma, mb), 0))
        cols["rel"].append(rel)
    flat = {k: np.concatenate(v) for k, v in cols.items()}  # concept-major order
    k = len(concepts)
    out = pl.DataFrame(
        {
            "item_id": pl.concat([items["item_id"]] * k),
            "concept": pl.Series([c.name for c in concepts]).gather(np.repeat(np.arange(k), n)),
            "measure_a": flat["ma"],
            "measure_b": flat["mb"],
            "score_a": flat["sa"].astype(np.int32),
            "score_b": flat["sb"].astype(np.int32),
            "comp_value": flat["comp"].astype(np.int32),
            "is_relevant": flat["rel"],
        }
    )
    return out.with_columns(
        annotator=pl.lit(OFFLINE_ANNOTATOR),
        annotator_version=pl.lit(OFFLINE_ANNOTATOR_VERSION),
        score_diff=(pl.col("score_a") - pl.col("score_b")).cast(pl.Int32),
        is_consistent=pl.lit(None, dtype=pl.Boolean),
        annotated_at=pl.lit(ts, dtype=pl.Datetime("us")),
    ).select(ANNOTATION_COLUMNS)


def upsert_catalog(con: duckdb.DuckDBPyConnection) -> None:
    """Insert or replace the offline catalog rows in ``raw.concepts``."""
    con.register("_offline_catalog", catalog_frame().to_arrow())
    try:
        cols = ", ".join(CONCEPT_COLUMNS)
        con.execute(f"insert or replace into raw.concepts ({cols}) select {cols} from _offline_catalog")
    finally:
        con.unregister("_offline_catalog")


_PENDING = """
    from raw.items i
    where not exists (
        select 1 from raw.annotations a
        where a.item_id = i.item_id and a.annotator = ? and a.annotator_version = ?
    )
"""


def annotate_pending(
    con: duckdb.DuckDBPyConnection,
    *,
    batch_size: int = 2000,
    progress: Callable[[int, int], None] | None = None,
) -> int:
    """Annotate every item in ``raw.items`` without offline annotations of the current version.

    Each batch is inserted and committed on its own, so an interrupted run resumes where it
    stopped; a second run finds nothing pending and returns 0. Returns the number of items annotated.
    """
    if batch_size < 1:
        raise ValueError("batch_size must be >= 1")
    upsert_catalog(con)
    key = [OFFLINE_ANNOTATOR, OFFLINE_ANNOTATOR_VERSION]
    total = int(con.execute(f"select count(*) {_PENDING}", key).fetchall()[0][0])
    done = 0
    if progress:
        progress(0, total)
    cols = ", ".join(ANNOTATION_COLUMNS)
    while done < total:
        arrow = con.sql(
            f"select item_id, prompt, response_a, response_b {_PENDING} order by item_id limit ?",
            params=[*key, batch_size],
        ).to_arrow_table()
        batch = pl.DataFrame(pl.from_arrow(arrow))
        if batch.height == 0:
            break
        rows = annotate_items(batch)
        con.execute("begin transaction")
        try:
            con.register("_offline_batch", rows.to_arrow())
            con.execute(f"insert into raw.annotations ({cols}) select {cols} from _offline_batch")
            con.execute("commit")
        except BaseException:
            con.execute("rollback")
            raise
        finally:
            con.unregister("_offline_batch")
        done += batch.height
        if progress:
            progress(min(done, total), total)
    return done
