"""Imported concept annotations: AnnotatedPairs ``principle`` annotators -> ``raw.concepts`` + ``raw.annotations``.

A principle annotator of Feedback Forensics / ICAI ("Select the response that is more concise") is not a preference
mechanism: it says which response shows a trait more. Each one becomes a concept of the annotator
:data:`IMPORTED_ANNOTATOR` and each of its votes a comp-rep cell (``comp_value`` +1 when A was selected, -1 when B
was, 0 when neither was; not relevant when the vote is ``no_pref_reason: not_applicable``). It has no raw measure and
no 1-7 score: ``measure_a/b`` are null, ``score_a/b`` and ``score_diff`` are 0, so a fit on it uses comp-rep.

The annotator version is the principle set's identity, ``ap-<sha256 of the sorted concept names and descriptions>``:
files with the same principles (e.g. Feedback Forensics' 40 default traits on several datasets or domains) share one
version, so one HMDR fit explains the verdicts of all of them, shared weights plus per-domain deviations. A file
with another principle set gets another version; both stay queryable.
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter

import duckdb
import polars as pl

#: ``raw.annotations.annotator`` of concept annotations imported from AnnotatedPairs principle annotators
IMPORTED_ANNOTATOR = "annotated_pairs"
IMPORTED_ORIGIN = "imported"
VERSION_PREFIX = "ap-"
PRINCIPLE_LEAD = "Select the response that"
NOT_APPLICABLE = "not_applicable"

R_CONCEPT_CONFLICT = "conflicting concept annotation"
R_NO_ITEM = "concept annotation of a comparison whose pair was not loaded (no verdict of it is in the warehouse)"

#: the columns of :attr:`pipelines.ingest.adapters.Adapted.concepts` (all String except ``_line``, ``comp_value``,
#: ``is_relevant``)
CONCEPT_ROW_SCHEMA: dict[str, pl.DataType] = {
    "_line": pl.Int64(),
    "_raw": pl.String(),
    "prompt": pl.String(),
    "response_a": pl.String(),
    "response_b": pl.String(),
    "concept": pl.String(),
    "comp_value": pl.Int32(),
    "is_relevant": pl.Boolean(),
    "_reason": pl.String(),
}

_LEAD = re.compile(r"^\s*select\s+the\s+response\s+that\s+", re.IGNORECASE)


def concept_name(description: str) -> str:
    """The concept name of a principle: its text without the leading "Select the response that" and the final
    period, capitalised ("Select the response that is more concise" -> "Is more concise")."""
    text = _LEAD.sub("", description.strip()).rstrip(". ").strip() or description.strip()
    return text[:1].upper() + text[1:]


def principle_text(name: str) -> str:
    """The principle clause of a concept name, lower-cased first letter ("Is more concise" -> "is more concise")."""
    return name[:1].lower() + name[1:]


def definition(name: str) -> str:
    """The paper-style definition of an imported comp-rep concept."""
    clause = principle_text(name)
    return f"A high score indicates the response {clause}; A low score indicates the other response {clause}"


def _hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def name_principles(principles: dict[str, str]) -> dict[str, str]:
    """Annotator id -> concept name; names that two principles would share get the annotator id appended."""
    names = {aid: concept_name(desc) for aid, desc in principles.items()}
    counts = Counter(names.values())
    return {aid: (f"{n} [{aid}]" if counts[n] > 1 else n) for aid, n in names.items()}


def imported_version(concepts: dict[str, str]) -> str:
    """The annotator version of a principle set (concept name -> description): ``ap-<12 hex digits>``."""
    key = "\x1e".join(f"{name}\x1f{desc}" for name, desc in sorted(concepts.items()))
    return VERSION_PREFIX + _hash(key)[:12]


def catalog_frame(concepts: dict[str, str], version: str) -> pl.DataFrame:
    """The ``raw.concepts`` rows of one imported principle set (concept name -> the principle's text)."""
    names = sorted(concepts)
    defs = [definition(n) for n in names]
    return pl.DataFrame(
        {
            "concept": names,
            "annotator": [IMPORTED_ANNOTATOR] * len(names),
            "annotator_version": [version] * len(names),
            "description": [concepts[n] for n in names],
            "definition": defs,
            "origin": [IMPORTED_ORIGIN] * len(names),
            "is_shared": [True] * len(names),
            "domains": pl.Series([None] * len(names), dtype=pl.List(pl.String)),
            "definition_hash": [_hash(d)[:16] for d in defs],
            "measure_transform": pl.Series([None] * len(names), dtype=pl.String),
        }
    )


def vote_value(pref: object, no_pref_reason: object) -> tuple[int, bool] | None:
    """``(comp_value, is_relevant)`` of one principle vote, or None when ``pref`` is not a|b|null."""
    if pref is None:
        return (0, False) if str(no_pref_reason or "").strip().lower() == NOT_APPLICABLE else (0, True)
    p = str(pref).strip().lower()
    return {"a": (1, True), "b": (-1, True)}.get(p)


_STAGE_SQL = """
create temp table _concept_stage as
with s as (
    select *, sha256(response_a) <= sha256(response_b) as _keep from _concept_valid
), k as (
    select *,
        left(sha256(coalesce(prompt || chr(31), '')
            || case when _keep then response_a else response_b end || chr(31)
            || case when _keep then response_b else response_a end), 16) as item_id,
        cast(case when _keep then comp_value else -comp_value end as integer) as cv
    from s
)
select k.*,
    x.comp_value as _stored_cv, x.is_relevant as _stored_rel,
    row_number() over (partition by k.item_id, k.concept order by k._line) as _rn,
    first_value(k.cv) over (partition by k.item_id, k.concept order by k._line) as _first_cv,
    first_value(k.is_relevant) over (partition by k.item_id, k.concept order by k._line) as _first_rel,
    exists (select 1 from raw.items i where i.item_id = k.item_id) as _has_item
from k
left join raw.annotations x
    on x.item_id = k.item_id and x.concept = k.concept and x.annotator = $annotator and x.annotator_version = $version
"""

_STATUS_SQL = """
create temp table _concept_status as
select *,
    case
        when not _has_item then 'no_item'
        when _stored_cv is not null then
            (case when _stored_cv = cv and _stored_rel = is_relevant then 'duplicate' else 'conflict' end)
        when _rn = 1 then 'new'
        when cv = _first_cv and is_relevant = _first_rel then 'duplicate'
        else 'conflict'
    end as _status
from _concept_stage
"""


def write_concepts(
    con: duckdb.DuckDBPyConnection,
    rows: pl.DataFrame,
    catalog: pl.DataFrame | None,
    version: str | None,
    params: dict[str, object],
) -> tuple[int, int, Counter[str], pl.DataFrame]:
    """Write imported concept annotations inside the caller's transaction, after the file's items are loaded.

    ``rows``: :data:`CONCEPT_ROW_SCHEMA` rows (``_reason`` set on the ones to quarantine). Returns (new cells,
    cells already stored with the same value, quarantine reasons, the quarantine rows as ``source_line, reason,
    raw_text``). A cell whose item is not in ``raw.items`` or that contradicts a stored or earlier value is
    quarantined, never overwritten.
    """
    reasons: Counter[str] = Counter()
    qschema = {"source_line": pl.Int64, "reason": pl.String, "raw_text": pl.String}
    if rows.height == 0 or version is None or catalog is None:
        return 0, 0, reasons, pl.DataFrame(schema=qschema)
    bad = rows.filter(pl.col("_reason").is_not_null())
    good = rows.filter(pl.col("_reason").is_null()).drop("_reason")
    con.register("_concept_catalog", catalog.to_arrow())
    con.register("_concept_valid", good.to_arrow())
    keys = {"annotator": IMPORTED_ANNOTATOR, "version": version}
    try:
        cols = ", ".join(catalog.columns)
        con.execute(f"insert or ignore into raw.concepts ({cols}) select {cols} from _concept_catalog")
        con.execute(_STAGE_SQL, keys)
        con.execute(_STATUS_SQL)
        con.execute(
            """insert into raw.annotations (item_id, concept, annotator, annotator_version, measure_a, measure_b,
                   score_a, score_b, comp_value, score_diff, is_relevant, is_consistent, annotated_at)
               select item_id, concept, $annotator, $version, null, null, 0, 0, cv, 0, is_relevant, null, $now
               from _concept_status where _status = 'new'""",
            {**keys, "now": params["now"]},
        )
        counts = dict(con.execute("select _status, count(*) from _concept_status group by all").fetchall())
        late = pl.DataFrame(
            pl.from_arrow(
                con.sql(
                    f"""select _line as source_line,
                           case _status when 'no_item' then '{R_NO_ITEM}' else '{R_CONCEPT_CONFLICT}' end as reason,
                           _raw as raw_text
                        from _concept_status where _status in ('no_item', 'conflict') order by _line"""
                ).to_arrow_table()
            )
        )
    finally:
        for t in ("_concept_stage", "_concept_status"):
            con.execute(f"drop table if exists {t}")
        for v in ("_concept_catalog", "_concept_valid"):
            try:
                con.unregister(v)
            except duckdb.Error:
                pass
    quarantine = pl.concat(
        [
            bad.select(
                pl.col("_line").alias("source_line"),
                pl.col("_reason").alias("reason"),
                pl.col("_raw").alias("raw_text"),
            ),
            late.cast(qschema),  # type: ignore[arg-type]
        ]
    )
    reasons.update(quarantine["reason"].to_list())
    return counts.get("new", 0), counts.get("duplicate", 0), reasons, quarantine


def active_version(con: duckdb.DuckDBPyConnection, requested: str | None = None) -> str:
    """The imported annotator version a build uses: ``requested`` (``PREFLENS_ANNOTATOR_VERSION``) when given, else
    the one imported last (its newest ``annotated_at``). ``LookupError`` names what exists when there is none."""
    versions = [
        r[0]
        for r in con.execute(
            """select annotator_version from raw.annotations where annotator = ?
               group by annotator_version order by max(annotated_at) desc, annotator_version desc""",
            [IMPORTED_ANNOTATOR],
        ).fetchall()
    ]
    if requested:
        if requested not in versions:
            have = ", ".join(versions) or "none"
            raise LookupError(f"no imported concept annotations of version {requested!r} (imported versions: {have})")
        return requested
    if not versions:
        raise LookupError(
            "no imported concept annotations: ingest an AnnotatedPairs file with principle annotators first"
        )
    return versions[0]
