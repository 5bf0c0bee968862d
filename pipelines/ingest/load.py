"""Write one adapted file into the raw tables (one transaction), set-based via DuckDB over Arrow.

Canonical orientation: ``response_a`` is the response whose sha256 hex digest is smaller; when the input's order is
the reverse, ``model_a/model_b`` swap and the winner flips. ``item_id = sha256(prompt \\x1f ra \\x1f rb)[:16]``,
``label_id = sha256(item_id \\x1f mechanism)[:16]``; a pair without a prompt (NULL) has
``item_id = sha256(ra \\x1f rb)[:16]``.

A label row is ``new`` (first time this (item, mechanism) is seen), ``duplicate`` (same winner as the label already
stored, or as the first row for it earlier in this file) or ``conflict`` (different winner: quarantined as
'conflicting label'). A row without a winner (only when the adapters allowed unlabelled pairs, for `preflens score`)
is ``unlabelled``: its item is loaded, no label row is written. Per item, the first row seen sets prompt, domain,
models and source.
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime

import duckdb
import polars as pl

from pipelines.ingest.adapters import Adapted
from pipelines.ingest.concepts import write_concepts
from pipelines.ingest.model import RAW_TEXT_LIMIT, FileSummary, IngestError

R_CONFLICT = "conflicting label"

_STAGE_SQL = """
create temp table _ingest_stage as
with s as (
    select *, sha256(response_a) <= sha256(response_b) as _keep from _ingest_valid
), o as (
    select *,
        case when _keep then response_a else response_b end as ra,
        case when _keep then response_b else response_a end as rb,
        case when _keep then model_a else model_b end as ma,
        case when _keep then model_b else model_a end as mb,
        case when _keep or winner = 'tie' then winner when winner = 'a' then 'b' else 'a' end as cw
    from s
), k as (
    -- a pair without a prompt (NULL) hashes its two responses only
    select *, left(sha256(coalesce(prompt || chr(31), '') || ra || chr(31) || rb), 16) as item_id from o
), l as (
    select *, left(sha256(item_id || chr(31) || mechanism), 16) as label_id from k
)
select l.*,
    row_number() over (partition by l.label_id order by l._line) as _rn,
    first_value(l.cw) over (partition by l.label_id order by l._line) as _first_w,
    x.winner as _stored_w,
    case
        when l.winner is null then 'unlabelled'
        when x.winner is not null then (case when x.winner = l.cw then 'duplicate' else 'conflict' end)
        when row_number() over (partition by l.label_id order by l._line) = 1 then 'new'
        when l.cw = first_value(l.cw) over (partition by l.label_id order by l._line) then 'duplicate'
        else 'conflict'
    end as _status
from l left join raw.labels x on x.label_id = l.label_id
"""

_NEW_ITEMS_SQL = """
create temp table _ingest_new_items as
select item_id, prompt, ra as response_a, rb as response_b, domain, domain_source, source, source_item_id,
       ma as model_a, mb as model_b, _line
from _ingest_stage
where _status <> 'conflict' and item_id not in (select item_id from raw.items)
qualify row_number() over (partition by item_id order by _line) = 1
"""


def write_file(
    con: duckdb.DuckDBPyConnection,
    adapted: Adapted,
    summary: FileSummary,
    ingest_id: str,
    now: datetime,
) -> FileSummary:
    """Load ``adapted`` (already validated) into raw.* inside one transaction and fill ``summary``'s counts."""
    frame = adapted.frame
    bad = frame.filter(pl.col("_reason").is_not_null())
    good = frame.filter(pl.col("_reason").is_null()).drop("_reason")
    summary.rows_read = adapted.rows_read
    summary.skipped = sum(adapted.skips.values())
    summary.skip_reasons = Counter(adapted.skips)
    quarantine = pl.concat(
        [
            pl.DataFrame(
                {
                    "source_line": [i.line for i in adapted.issues],
                    "reason": [i.reason for i in adapted.issues],
                    "raw_text": [i.raw_text for i in adapted.issues],
                },
                schema={"source_line": pl.Int64, "reason": pl.String, "raw_text": pl.String},
            ),
            bad.select(
                pl.col("_line").alias("source_line"),
                pl.col("_reason").alias("reason"),
                pl.col("_raw").str.slice(0, RAW_TEXT_LIMIT).alias("raw_text"),
            ),
        ]
    )
    params = {"ingest_id": ingest_id, "file": summary.path, "now": now}
    con.execute("begin transaction")
    try:
        con.register("_ingest_valid", good.to_arrow())
        con.register("_ingest_quarantine", quarantine.to_arrow())
        con.execute(_STAGE_SQL)
        con.execute(_NEW_ITEMS_SQL)
        con.execute(
            """insert into raw.items
               select item_id, prompt, response_a, response_b, domain, source, source_item_id, model_a, model_b,
                      $ingest_id, $now
               from _ingest_new_items""",
            {k: params[k] for k in ("ingest_id", "now")},
        )
        new_domains = con.execute(
            """insert into raw.domains
               select domain, domain_source, $ingest_id from _ingest_new_items
               where domain not in (select domain from raw.domains)
               qualify row_number() over (partition by domain order by _line) = 1""",
            {"ingest_id": ingest_id},
        ).fetchone()
        con.execute(
            """insert into raw.labels
               select label_id, item_id, mechanism, mechanism_type, cw, protocol, source_pair_id, $file, _line,
                      $ingest_id, $now
               from _ingest_stage where _status = 'new'""",
            params,
        )
        # imported concept annotations (AnnotatedPairs principle annotators), once the file's items are in
        c_new, c_dup, _, c_quarantine = write_concepts(
            con, adapted.concepts, adapted.catalog, adapted.concept_version, params
        )
        if c_quarantine.height:
            quarantine = pl.concat([quarantine, c_quarantine])
            con.unregister("_ingest_quarantine")
            con.register("_ingest_quarantine", quarantine.to_arrow())
        summary.annotations, summary.annotation_duplicates = c_new, c_dup
        # A row already quarantined from the same file, line and reason (a re-run) is not recorded twice.
        con.execute(
            f"""insert into raw.quarantine
                select * from (
                    select $ingest_id, $file as source_file, source_line, reason, raw_text, $now
                    from _ingest_quarantine
                    union all
                    select $ingest_id, $file, _line, '{R_CONFLICT}', left(_raw, {RAW_TEXT_LIMIT}), $now
                    from _ingest_stage where _status = 'conflict'
                ) as q
                where not exists (
                    select 1 from raw.quarantine as r
                    where r.source_file = q.source_file and r.source_line = q.source_line and r.reason = q.reason
                )""",
            params,
        )
        counts = dict(con.execute("select _status, count(*) from _ingest_stage group by all").fetchall())
        new_items = con.execute("select count(*) from _ingest_new_items").fetchone()
        summary.new_items = new_items[0] if new_items else 0
        summary.new_domains = int(new_domains[0]) if new_domains else 0
        summary.loaded = counts.get("new", 0)
        summary.duplicates = counts.get("duplicate", 0)
        summary.unlabelled = counts.get("unlabelled", 0)
        summary.quarantine_reasons = Counter(quarantine["reason"].to_list())
        if counts.get("conflict"):
            summary.quarantine_reasons[R_CONFLICT] += counts["conflict"]
        summary.quarantined = sum(summary.quarantine_reasons.values())
        if not summary.reconciles():
            raise IngestError(
                f"internal error: counts of {summary.path} do not reconcile (read {summary.rows_read} != loaded "
                f"{summary.loaded} + duplicates {summary.duplicates} + quarantined {summary.quarantined} + skipped "
                f"{summary.skipped} + without a verdict {summary.unlabelled})"
            )
        con.execute("commit")
        summary.committed = True
    except BaseException:
        con.execute("rollback")
        raise
    finally:
        for t in ("_ingest_stage", "_ingest_new_items"):
            con.execute(f"drop table if exists {t}")
        for v in ("_ingest_valid", "_ingest_quarantine"):
            try:
                con.unregister(v)
            except duckdb.Error:
                pass
    return summary
