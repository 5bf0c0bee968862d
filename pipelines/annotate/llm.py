"""The LLM annotator (paper §3): relevance filter, comp-rep in both orders, score-rep; per item, incremental.

For every item (never per item × mechanism: one annotation serves every mechanism) and every concept of
the active catalog that applies to the item's domain (shared ∪ specific(domain)) and has no verdict yet
for its current definition hash:

1. **Relevance** (Box E.7): one call per item (chunks of ``relevance_chunk_size`` concepts) marks each pending
   concept relevant or not. Not relevant is stored as ``is_relevant = false`` with all values 0, distinct
   from *equal* (relevant, comp 0).
2. **Comp-rep** (Box E.8): the relevant concepts in chunks of ≤ 20, **each chunk asked twice**: responses in
   canonical order (A, B) and swapped (B, A). Answers map 1 → +1, 2 → −1, 0 → 0; the swapped answer is
   un-flipped (its 1 means B, so −1). If the two votes differ the value is 0 and ``is_consistent = false``;
   both raw votes are kept in ``raw.annotation_votes``.
3. **Score-rep** (Box E.9): 1–7 per response, 0 = not relevant to that response. ``score_mode = joint`` scores
   both responses (independently, each against the query) in one call per chunk; ``separate`` makes one call
   per response per chunk (the paper's text). **Rule when one side is not relevant:** ``score_diff = 0``
   whenever either score is 0; both scores are kept as given.

An item's cells are written only when all its calls succeeded; a failed call (recorded with its raw text
in ``raw.llm_cache``) leaves the item pending for the next run, never guessed, and the next run re-issues
only the failed calls (the rest are cache hits). ``raw.annotations`` (annotator
``llm``, version ``llm-<prompt version>:<model>``) is re-projected from the cells for the active catalog, so
adding a concept or pair costs only the new cells, rewording a concept re-asks only that concept, and a
new model or prompt version writes a new annotator version while old ones stay queryable.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
from pydantic import BaseModel, Field

from pipelines.core.warehouse import scalar
from pipelines.llm.answers import ids_check
from pipelines.llm.client import LLMClient
from pipelines.llm.config import LLMConfig
from pipelines.llm.prompting import block, chunks, entry_ids, messages, numbered_concepts
from pipelines.llm.report import LLMRunReport
from pipelines.llm.types import CallSpec
from pipelines.llm_apps.discover.catalog import LLMConcept, active_catalog

LLM_ANNOTATOR = "llm"
PROMPT_VERSION = "p1"  # bump when any template below changes (it is part of the annotator version)
_UNSAFE = re.compile(r"[^A-Za-z0-9_.:/+-]")
EXPLANATION_MAX_CHARS = 160  # "one sentence"; about 40 tokens, the per-concept output the caps are sized for


def annotator_version(config: LLMConfig) -> str:
    return "llm-" + PROMPT_VERSION + ":" + _UNSAFE.sub("_", config.model or "unknown")


# ---- answer schemas -------------------------------------------------------------------------------------


class RelevanceVerdict(BaseModel):
    id: str
    relevant: bool


class RelevanceAnswer(BaseModel):
    verdicts: list[RelevanceVerdict]


class _Explained(BaseModel):
    """One concept's entry in an answer: its id, then a short explanation written before the verdict. The schema
    sent bounds the explanation (``maxLength``, not validated: a longer one is kept) so that a server holding the
    model to the schema (llama.cpp) keeps the answer within its output cap."""

    id: str
    explanation: str = Field("", json_schema_extra={"maxLength": EXPLANATION_MAX_CHARS})


class CompVerdict(_Explained):
    answer: int = Field(ge=0, le=2)


class CompAnswer(BaseModel):
    verdicts: list[CompVerdict]


class JointScore(_Explained):
    score_1: int = Field(ge=0, le=7)
    score_2: int = Field(ge=0, le=7)


class JointScoreAnswer(BaseModel):
    scores: list[JointScore]


class SingleScore(_Explained):
    score: int = Field(ge=0, le=7)


class SingleScoreAnswer(BaseModel):
    scores: list[SingleScore]


# ---- prompts --------------------------------------------------------------------------------------------

_REL = """Task: for each concept in the CONCEPTS block, decide whether it is relevant to evaluating responses to
this query, i.e. whether the two responses could meaningfully differ on it. Both responses are shown for context.
Return JSON: {"verdicts": [{"id": "<concept id>", "relevant": true|false}, ...]} with exactly one entry per concept id."""

_COMP = """Task: compare RESPONSE_1 and RESPONSE_2 to the QUERY on each concept in the CONCEPTS block, using its
definition. For each concept write a short explanation, then the answer: 1 if RESPONSE_1 should score higher on the
concept, 2 if RESPONSE_2 should score higher, 0 if they are equal or the concept is not relevant.
Return JSON: {"verdicts": [{"id": "<concept id>", "explanation": "<one sentence>", "answer": 0|1|2}, ...]} with
exactly one entry per concept id."""

_SCORE_JOINT = """Task: score RESPONSE_1 and RESPONSE_2 *independently* (each on its own, against the QUERY) on each
concept in the CONCEPTS block, using its definition, on a 1-7 scale (7 = the high end of the definition,
1 = the low end). Use 0 if the concept is not relevant to that response. Write a short explanation first.
Return JSON: {"scores": [{"id": "<concept id>", "explanation": "<one sentence>", "score_1": 0-7, "score_2": 0-7}, ...]}
with exactly one entry per concept id."""

_SCORE_SINGLE = """Task: score the RESPONSE to the QUERY on each concept in the CONCEPTS block, using its definition,
on a 1-7 scale (7 = the high end of the definition, 1 = the low end). Use 0 if the concept is not relevant.
Write a short explanation first.
Return JSON: {"scores": [{"id": "<concept id>", "explanation": "<one sentence>", "score": 0-7}, ...]} with exactly one
entry per concept id."""


def _concept_spec(
    item: dict,
    chunk: Sequence[LLMConcept],
    responses: Sequence[tuple[str, str]],
    *,
    stage: str,
    template: str,
    version: str,
    instructions: str,
    schema: type[BaseModel],
    answer_list: str,
    tokens_per_concept: int,
) -> CallSpec:
    """One call about an item's query, its ``responses`` ((block name, text)) and a chunk of concepts; the answer's
    list ``answer_list`` holds one entry per concept id. The template ``version`` also tags the prompt."""
    ids, concepts = numbered_concepts([(c.name, c.definition) for c in chunk])
    blocks = [block("QUERY", item["prompt"]), *(block(name, text) for name, text in responses), concepts]
    return CallSpec(
        stage,
        template,
        version,
        messages(version, instructions, blocks),
        schema,
        item_id=item["item_id"],
        concepts=[c.name for c in chunk],
        check=ids_check(answer_list, ids),
        expected_output_tokens=tokens_per_concept * len(chunk) + 10,
    )


def _both(item: dict, swapped: bool = False) -> list[tuple[str, str]]:
    r1, r2 = (item["response_b"], item["response_a"]) if swapped else (item["response_a"], item["response_b"])
    return [("RESPONSE_1", r1), ("RESPONSE_2", r2)]


def relevance_spec(item: dict, chunk: Sequence[LLMConcept]) -> CallSpec:
    return _concept_spec(
        item,
        chunk,
        _both(item),
        stage="relevance",
        template="relevance",
        version="relevance-v1",
        instructions=_REL,
        schema=RelevanceAnswer,
        answer_list="verdicts",
        tokens_per_concept=12,
    )


def comp_spec(item: dict, chunk: Sequence[LLMConcept], swapped: bool) -> CallSpec:
    return _concept_spec(
        item,
        chunk,
        _both(item, swapped),
        stage="comp_ba" if swapped else "comp_ab",
        template="comp",
        version="comp-v1",
        instructions=_COMP,
        schema=CompAnswer,
        answer_list="verdicts",
        tokens_per_concept=40,
    )


def score_joint_spec(item: dict, chunk: Sequence[LLMConcept]) -> CallSpec:
    return _concept_spec(
        item,
        chunk,
        _both(item),
        stage="score",
        template="score-joint",
        version="score-joint-v1",
        instructions=_SCORE_JOINT,
        schema=JointScoreAnswer,
        answer_list="scores",
        tokens_per_concept=40,
    )


def score_single_spec(item: dict, chunk: Sequence[LLMConcept], side: str) -> CallSpec:
    return _concept_spec(
        item,
        chunk,
        [("RESPONSE", item[f"response_{side}"])],
        stage=f"score_{side}",
        template="score-single",
        version="score-single-v1",
        instructions=_SCORE_SINGLE,
        schema=SingleScoreAnswer,
        answer_list="scores",
        tokens_per_concept=35,
    )


# ---- the run ----------------------------------------------------------------------------------------------


@dataclass
class AnnotateReport(LLMRunReport):
    annotator_version: str
    catalog: str
    n_concepts: int
    items_pending: int = 0
    items_completed: int = 0
    cells_written: int = 0
    inconsistent_cells: int = 0
    failed_calls: int = 0

    def lines(self) -> list[str]:
        s = self.stats
        out = [f"LLM annotator {self.annotator_version}, catalog {self.catalog} ({self.n_concepts} concepts)"]
        if self.dry_run:
            out.append(f"dry run: {self.items_pending} items pending; cache hits {s.cache_hits}")
            out.append(
                f"projected: {s.projection()} "
                "(upper bound: every concept assumed relevant where relevance is not cached yet)"
            )
            for stage, d in sorted(s.by_stage.items()):
                out.append(
                    f"  {stage:<10} {int(d.get('projected_calls', 0)):>7} calls  "
                    f"{int(d.get('projected_prompt_tokens', 0)):>10} in  "
                    f"{int(d.get('projected_completion_tokens', 0)):>9} out  ${d.get('projected_cost_usd', 0):.4f}"
                )
            return out
        out.append(
            f"{self.items_completed}/{self.items_pending} pending items completed, {self.cells_written} cells "
            f"written ({self.inconsistent_cells} order-inconsistent -> 0)"
        )
        return out + self.closing_lines()


_VOTE_INSERT = """insert or replace into raw.annotation_votes (item_id, concept, definition_hash, annotator_version,
    is_relevant, vote_ab, vote_ba, comp_value, is_consistent, score_a, score_b, relevance_key, comp_key_ab, comp_key_ba,
    score_key, annotated_at) values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"""


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def write_concepts(con: duckdb.DuckDBPyConnection, version: str, concepts: Sequence[LLMConcept]) -> None:
    con.execute("delete from raw.concepts where annotator = ? and annotator_version = ?", [LLM_ANNOTATOR, version])
    con.executemany(
        "insert into raw.concepts (concept, annotator, annotator_version, description, definition, origin, is_shared,"
        " domains, definition_hash) values (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [
            (
                c.name,
                LLM_ANNOTATOR,
                version,
                c.description or c.name,
                c.definition,
                c.origin,
                c.is_shared,
                list(c.domains) or None,
                c.definition_hash,
            )
            for c in concepts
        ],
    )


def project_annotations(con: duckdb.DuckDBPyConnection, version: str) -> int:
    """Rebuild raw.annotations (annotator llm, ``version``) from the cells for the catalog in raw.concepts.

    Items with at least one cell get a row per annotated cell, plus a not-relevant / 0 row for every concept
    that does not apply to the item's domain. Cells still pending (a failed call) have no row yet.
    """
    con.execute("begin transaction")
    try:
        con.execute(
            "delete from raw.annotations where annotator = ? and annotator_version = ?", [LLM_ANNOTATOR, version]
        )
        con.execute(
            """
            insert into raw.annotations (item_id, concept, annotator, annotator_version, measure_a, measure_b, score_a,
                score_b, comp_value, score_diff, is_relevant, is_consistent, annotated_at)
            with cat as (
                select concept, definition_hash, is_shared, domains from raw.concepts
                where annotator = $1 and annotator_version = $2
            ), done_items as (
                select distinct v.item_id from raw.annotation_votes v
                join cat on v.concept = cat.concept and v.definition_hash = cat.definition_hash
                where v.annotator_version = $2
            )
            select d.item_id, cat.concept, $1, $2, null, null,
                   coalesce(v.score_a, 0), coalesce(v.score_b, 0), coalesce(v.comp_value, 0),
                   case when coalesce(v.score_a, 0) = 0 or coalesce(v.score_b, 0) = 0 then 0 else v.score_a - v.score_b end,
                   coalesce(v.is_relevant, false), case when v.is_relevant then v.is_consistent end,
                   coalesce(v.annotated_at, now()::timestamp)
            from done_items d join raw.items i on i.item_id = d.item_id cross join cat
            left join raw.annotation_votes v
              on v.item_id = d.item_id and v.concept = cat.concept and v.definition_hash = cat.definition_hash
             and v.annotator_version = $2
            -- a cell as annotated, or a concept that does not apply to the item's domain (not relevant);
            -- applicable cells still pending (a failed call) get no row until they are annotated
            where v.item_id is not null or not (cat.is_shared or list_contains(coalesce(cat.domains, []), i.domain))
            """,
            [LLM_ANNOTATOR, version],
        )
        con.execute("commit")
    except BaseException:
        con.execute("rollback")
        raise
    return int(
        scalar(
            con,
            "select count(*) from raw.annotations where annotator = ? and annotator_version = ?",
            [LLM_ANNOTATOR, version],
        )
    )


def pending_work(
    con: duckdb.DuckDBPyConnection, version: str, concepts: Sequence[LLMConcept], item_ids: Sequence[str] | None = None
) -> list[tuple[dict, list[LLMConcept]]]:
    """(item, pending concepts) for every item with at least one applicable concept lacking a current verdict."""
    done = set(
        con.execute(
            "select item_id, concept, definition_hash from raw.annotation_votes where annotator_version = ?", [version]
        ).fetchall()
    )
    rows = con.execute(
        "select item_id, prompt, response_a, response_b, domain from raw.items order by item_id"
    ).fetchall()
    wanted = set(item_ids) if item_ids is not None else None
    out = []
    for r in rows:
        if wanted is not None and r[0] not in wanted:
            continue
        item = {"item_id": r[0], "prompt": r[1], "response_a": r[2], "response_b": r[3], "domain": r[4]}
        pend = [c for c in concepts if c.applies_to(item["domain"]) and (r[0], c.name, c.definition_hash) not in done]
        if pend:
            out.append((item, pend))
    return out


async def _annotate_async(
    client: LLMClient,
    work: list[tuple[dict, list[LLMConcept]]],
    version: str,
    report: AnnotateReport,
    progress: Callable[[int, int], None] | None,
) -> None:
    cfg = client.config
    # phase 1: relevance
    rel_specs: list[tuple[int, CallSpec, list[LLMConcept]]] = []
    for i, (item, pend) in enumerate(work):
        for chunk in chunks(pend, cfg.relevance_chunk_size):
            rel_specs.append((i, relevance_spec(item, chunk), chunk))
    rel_results = await client.run([s for _, s, _ in rel_specs])
    relevant: dict[int, dict[str, bool]] = {}
    rel_key: dict[tuple[int, str], str] = {}
    rel_failed: set[int] = set()
    for (i, spec, chunk), res in zip(rel_specs, rel_results):
        if res.status == "projected":
            for c in chunk:
                relevant.setdefault(i, {})[c.name] = True
        elif res.ok:
            by_id = {v.id: v.relevant for v in res.parsed.verdicts}
            for cid, c in zip(entry_ids("c", len(chunk)), chunk):
                relevant.setdefault(i, {})[c.name] = by_id[cid]
                rel_key[(i, c.name)] = spec.key
        else:
            rel_failed.add(i)
    if progress:
        progress(0, len(work))
    # phase 2: comp-rep (both orders) and score-rep on the relevant concepts
    specs: list[CallSpec] = []
    plan: list[tuple[int, str, list[LLMConcept], int]] = []  # (item idx, kind, chunk, spec index)
    for i, (item, pend) in enumerate(work):
        if i in rel_failed:
            continue
        rel = [c for c in pend if relevant.get(i, {}).get(c.name)]
        for chunk in chunks(rel, cfg.comp_chunk_size):
            for swapped in (False, True):
                plan.append((i, "ba" if swapped else "ab", chunk, len(specs)))
                specs.append(comp_spec(item, chunk, swapped))
        if cfg.score_mode != "off":
            for chunk in chunks(rel, cfg.score_chunk_size):
                if cfg.score_mode == "joint":
                    plan.append((i, "score", chunk, len(specs)))
                    specs.append(score_joint_spec(item, chunk))
                else:
                    for side in ("a", "b"):
                        plan.append((i, f"score_{side}", chunk, len(specs)))
                        specs.append(score_single_spec(item, chunk, side))
    results = await client.run(specs) if specs else []
    if client.dry_run:
        return
    # assemble cells
    cells: dict[tuple[int, str], dict[str, Any]] = {}
    broken: set[tuple[int, str]] = set()
    for i, kind, chunk, si in plan:
        res = results[si]
        ids = entry_ids("c", len(chunk))
        if not res.ok:
            for c in chunk:
                broken.add((i, c.name))
            if res.status == "failed":
                report.failures.append(f"{work[i][0]['item_id']} {kind}: {res.error}")
            continue
        for cid, c in zip(ids, chunk):
            cell = cells.setdefault((i, c.name), {})
            if kind in ("ab", "ba"):
                a = next(v.answer for v in res.parsed.verdicts if v.id == cid)
                vote = {1: 1, 2: -1, 0: 0}[a]
                cell["vote_" + kind] = -vote if kind == "ba" else vote
                cell["key_" + kind] = res.spec.key
            elif kind == "score":
                sc = next(v for v in res.parsed.scores if v.id == cid)
                cell["score_a"], cell["score_b"], cell["key_score"] = sc.score_1, sc.score_2, res.spec.key
            else:
                sc = next(v for v in res.parsed.scores if v.id == cid)
                cell["score_" + kind[-1]] = sc.score
                cell["key_score"] = res.spec.key
    ts = _now()
    for i, (item, pend) in enumerate(work):
        if i in rel_failed:
            continue
        complete = True
        rows: list[tuple] = []
        for c in pend:
            is_rel = relevant.get(i, {}).get(c.name)
            if is_rel is None or (i, c.name) in broken:
                complete = False
                continue
            rk = rel_key.get((i, c.name))
            if not is_rel:
                row = (
                    item["item_id"],
                    c.name,
                    c.definition_hash,
                    version,
                    False,
                    None,
                    None,
                    0,
                    None,
                    0,
                    0,
                    rk,
                    None,
                    None,
                    None,
                    ts,
                )
            else:
                cell = cells.get((i, c.name), {})
                if (
                    "vote_ab" not in cell
                    or "vote_ba" not in cell
                    or (cfg.score_mode != "off" and ("score_a" not in cell or "score_b" not in cell))
                ):
                    complete = False
                    continue
                consistent = cell["vote_ab"] == cell["vote_ba"]
                comp = cell["vote_ab"] if consistent else 0
                row = (
                    item["item_id"],
                    c.name,
                    c.definition_hash,
                    version,
                    True,
                    cell["vote_ab"],
                    cell["vote_ba"],
                    comp,
                    consistent,
                    cell.get("score_a", 0),
                    cell.get("score_b", 0),
                    rk,
                    cell["key_ab"],
                    cell["key_ba"],
                    cell.get("key_score"),
                    ts,
                )
            rows.append(row)
        # An item's cells are written together, only when all of them are complete: a resumed run then sees
        # the same pending set, so the same chunks, so every finished call is a cache hit.
        if complete:
            for row in rows:
                client.persist(_VOTE_INSERT, row)
                report.inconsistent_cells += 1 if row[8] is False else 0
            report.cells_written += len(rows)
            report.items_completed += 1
    if progress:
        progress(len(work), len(work))


def annotate_llm(
    con: duckdb.DuckDBPyConnection,
    config: LLMConfig,
    *,
    dry_run: bool = False,
    budget_usd: float | None = None,
    concepts_file: Path | None = None,
    item_ids: Sequence[str] | None = None,
    progress: Callable[[int, int], None] | None = None,
    catalog: tuple[str, Sequence[LLMConcept]] | None = None,
) -> AnnotateReport:
    """Annotate every pending (item, concept) cell with the configured LLM; see the module docstring.

    ``catalog``: (label, concepts) to annotate with instead of the active catalog (``preflens score``: a fit's)."""
    version = annotator_version(config)
    label, concepts = catalog if catalog is not None else active_catalog(con, concepts_file)
    report = AnnotateReport(annotator_version=version, catalog=label, n_concepts=len(concepts), dry_run=dry_run)
    work = pending_work(con, version, concepts, item_ids)
    report.items_pending = len(work)
    client = LLMClient(config, con, command="annotate", dry_run=dry_run, budget_usd=budget_usd)
    with client:
        if not dry_run:
            write_concepts(con, version, concepts)
        if work:
            client.drive(lambda: _annotate_async(client, work, version, report, progress))
        client.flush()
        report.record(client)
        report.failed_calls = client.stats.failed
    if not dry_run:
        project_annotations(con, version)
    return report
