"""`preflens discover`: concept discovery (paper §2) with the configured LLM; stores a new catalog version.

1. **Tagging** (§2.2): per domain, 10% of the queries (≥ 5) in batches of 5 propose sub-domains and tasks;
   the 10 most frequent of each are kept; every query is then tagged from those lists (batches of 10 per
   call), with the wildcard 'None' always present. Tags go to ``raw.query_tags``.
2. **Batches** (§2.3): per domain up to ``batches_per_domain`` batches of 5 triplets: a (sub-domain, task) pair
   is drawn in proportion to its frequency, then 5 triplets carrying it. Each batch proposes 10 concepts under
   one of three framings drawn at random (pair / chosen only / rejected only); half the batches (alternating,
   random start) add "completely different from the fixed concepts". Labels come from one mechanism
   (``--mechanism``; default the first human mechanism); ties are skipped.
3. **Dedup** (§2.4): names sharing a stem after stop-word removal are flagged; the LLM decides flagged pairs
   (30 per call); merges are transitive (union-find); the survivor is the name found in more domains, then
   in more batches (then alphabetical, for determinism).
4. **Shared / specific**: shared when found in ≥ ``shared_threshold`` of the domains, else specific to the
   domains where its group was found. The 10 fixed concepts are injected as shared when not rediscovered.
5. **Definitions** (§2.5): "A high score indicates …; A low score indicates …", 5 concepts per call, from up to
   5 collected descriptions.
"""

from __future__ import annotations

import json
import random
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Annotated, Any

import duckdb
from pydantic import AfterValidator, BaseModel, Field

from pipelines.llm.answers import ids_check
from pipelines.llm.client import LLMClient
from pipelines.llm.config import LLMConfig
from pipelines.llm.prompting import block, chunks, entry_ids, messages, numbered_concepts
from pipelines.llm.report import LLMRunReport
from pipelines.llm.types import CallResult, CallSpec
from pipelines.llm_apps.discover.catalog import DEFINITION_RE, FIXED_CONCEPTS, LLMConcept, store_catalog
from pipelines.llm_apps.discover.stem import name_stems

TAG_VERSION = "tag-v1"
N_B = 5  # triplets per batch / queries per tag-proposal call
N_C = 10  # concepts per batch
DEDUP_PER_CALL = 30
DEFINE_PER_CALL = 5


def _has_letter(name: str) -> str:
    """A sub-domain, task or concept name must be words: "1234567890" is not a name (SmolLM2-135M answered it).
    A blank one passes here and is dropped where the answer is read."""
    if name.strip() and not any(ch.isalpha() for ch in name):
        raise ValueError(f"{name!r} is not a name: it has no letter")
    return name


Label = Annotated[str, AfterValidator(_has_letter)]


def _bound(**schema: Any) -> Any:
    """A field whose JSON schema carries these bounds (``maxItems``, ``maxLength``, ...) without validating them: a
    server that turns the schema into a grammar (llama.cpp) keeps a small model inside its output cap, and a longer
    answer from a server that does not is still read."""
    return Field(json_schema_extra=schema)


class TagProposal(BaseModel):
    domains: list[Label] = _bound(maxItems=10)
    tasks: list[Label] = _bound(maxItems=10)


class TagEntry(BaseModel):
    id: str
    domains: list[str]
    tasks: list[str]


class TagAssignment(BaseModel):
    tags: list[TagEntry]


class ProposedConcept(BaseModel):
    name: Label = _bound(maxLength=60)
    description: str = _bound(maxLength=240)


class Proposal(BaseModel):
    concepts: list[ProposedConcept] = _bound(minItems=N_C, maxItems=N_C)


class Decision(BaseModel):
    id: str
    same: bool


class DedupAnswer(BaseModel):
    decisions: list[Decision]


class Definition(BaseModel):
    id: str
    definition: str = _bound(maxLength=400)


class DefineAnswer(BaseModel):
    definitions: list[Definition]


@dataclass
class DiscoverReport(LLMRunReport):
    mechanism: str | None = None
    catalog_version: str | None = None
    domains: list[str] = field(default_factory=list)
    batches: int = 0
    candidates: int = 0
    flagged_pairs: int = 0
    merges: int = 0
    concepts: int = 0
    shared: int = 0

    def lines(self) -> list[str]:
        if self.dry_run:
            return [
                f"discover dry run ({self.mechanism}): {len(self.domains)} domains, {self.batches} batches",
                "projected (tagging + proposals; dedup and definitions depend on the answers): "
                f"{self.stats.projection()}",
            ]
        out = [
            f"discover ({self.mechanism}): {len(self.domains)} domains, {self.batches} batches, {self.candidates} "
            f"distinct candidate names, {self.flagged_pairs} flagged pairs, {self.merges} merged",
            f"catalog {self.catalog_version}: {self.concepts} concepts ({self.shared} shared)",
            self.usage_line(),
        ]
        if self.budget_stopped:
            out.append("budget reached: stopped early; no catalog stored (re-run to continue from the cache)")
        return out


class _UF:
    def __init__(self) -> None:
        self.p: dict[str, str] = {}

    def find(self, x: str) -> str:
        self.p.setdefault(x, x)
        while self.p[x] != x:
            self.p[x] = self.p[self.p[x]]
            x = self.p[x]
        return x

    def union(self, a: str, b: str) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.p[max(ra, rb)] = min(ra, rb)


def _norm(name: str) -> str:
    name = " ".join(name.strip().split())
    return name[:1].upper() + name[1:]


def _pool(con: duckdb.DuckDBPyConnection, mechanism: str | None) -> tuple[str | None, list[dict]]:
    if mechanism is None:
        row = con.execute(
            "select mechanism from raw.labels group by 1 order by (min(mechanism_type) <> 'human'), "
            "count(*) desc, mechanism limit 1"
        ).fetchone()
        mechanism = row[0] if row else None
    rows = con.execute(
        """select i.item_id, i.prompt, i.response_a, i.response_b, i.domain, l.winner from raw.labels l
           join raw.items i using (item_id) where l.mechanism = ? and l.winner in ('a', 'b') order by i.item_id""",
        [mechanism],
    ).fetchall()
    out = []
    for r in rows:
        chosen, rejected = (r[2], r[3]) if r[5] == "a" else (r[3], r[2])
        out.append({"item_id": r[0], "prompt": r[1], "chosen": chosen, "rejected": rejected, "domain": r[4]})
    return mechanism, out


_TAG_PROPOSE = """Task: for the user queries in the QUERIES block, propose the topical sub-domains they belong to and the
task types they ask for. Return JSON: {"domains": ["<sub-domain>", ...], "tasks": ["<task type>", ...]}."""
_TAG_ASSIGN = """Task: for each query in the QUERIES block (a JSON list of {id, query}), choose its sub-domains and task
types from the lists in the OPTIONS block, or "None" when none fits.
Return JSON: {"tags": [{"id": "<query id>", "domains": [...], "tasks": [...]}, ...]} with one entry per query id."""
_FRAMING = {
    "pair": "Each PAIRS entry shows a query, the CHOSEN response and the REJECTED response. Propose concepts that "
    "explain why the chosen response was preferred over the rejected one.",
    "chosen": "Each PAIRS entry shows a query and the response that was CHOSEN. Propose concepts that explain why "
    "it was chosen.",
    "rejected": "Each PAIRS entry shows a query and the response that was REJECTED. Propose concepts that explain why "
    "it was rejected.",
}
_PROPOSE_TAIL = """Propose exactly 10 concepts, specific to the domain and task where given. Each name is capitalised and
holds a single concept (e.g. "Structure", not "Structure and Organization"); each description is one sentence that
begins "A good response..." or "A bad response...".
Return JSON: {"concepts": [{"name": "<Name>", "description": "<one sentence>"}, ...]}."""
_DEDUP = """Task: for each pair in the PAIRS block (a JSON list of {id, a, b}), decide whether concepts a and b are
semantically identical, i.e. the score of any response would be the same for both.
Return JSON: {"decisions": [{"id": "<pair id>", "same": true|false}, ...]} with one entry per pair id."""
_DEFINE = """Task: for each concept in the CONCEPTS block (its "definition" field holds descriptions collected during
discovery), write a two-sentence definition of exactly this form: "A high score indicates the response ...; A low
score indicates the response ...".
Return JSON: {"definitions": [{"id": "<concept id>", "definition": "<the definition>"}, ...]}."""


_NO_TAGS: tuple[list[str], list[str]] = (["None"], ["None"])
_FIXED_NAMES = ", ".join(c.name for c in FIXED_CONCEPTS)
Tags = dict[str, tuple[list[str], list[str]]]  # item id -> (sub-domains, tasks), each with the wildcard 'None'


@dataclass
class _Candidate:
    """A proposed concept name: the domains and number of batches that proposed it, up to 5 descriptions."""

    domains: set[str] = field(default_factory=set)
    batches: int = 0
    descriptions: list[str] = field(default_factory=list)


def _fmt_pair(t: dict, framing: str) -> str:
    if framing == "pair":
        return f"QUERY: {t['prompt']}\nCHOSEN: {t['chosen']}\nREJECTED: {t['rejected']}"
    return f"QUERY: {t['prompt']}\n{framing.upper()}: {t[framing]}"


def _group_by_domain(pool: list[dict]) -> dict[str, list[dict]]:
    """The pool's pairs per domain, domains in sorted order."""
    by_domain: dict[str, list[dict]] = defaultdict(list)
    for t in pool:
        by_domain[t["domain"]].append(t)
    return {d: by_domain[d] for d in sorted(by_domain)}


async def _tag_options(
    client: LLMClient, by_domain: dict[str, list[dict]], rng: random.Random
) -> dict[str, dict[str, list[str]]]:
    """Step 1a: per domain, 10% of the queries (>= N_B) in batches of N_B propose sub-domains and tasks; the 10
    most frequent of each are the domain's options."""
    specs, spec_domain = [], []
    for d, qs in by_domain.items():
        sample = rng.sample(qs, min(len(qs), max(N_B, len(qs) // 10)))
        for batch in chunks(sample, N_B):
            text = "\n\n".join(f"- {t['prompt']}" for t in batch)
            specs.append(
                CallSpec(
                    "tag",
                    "tag-propose",
                    "tag-propose-v1",
                    messages("tag-propose-v1", _TAG_PROPOSE, [block("QUERIES", text)]),
                    TagProposal,
                    expected_output_tokens=60,
                )
            )
            spec_domain.append(d)
    results = await client.run(specs)
    options: dict[str, dict[str, list[str]]] = {}
    for d in by_domain:
        cd: Counter[str] = Counter()
        ct: Counter[str] = Counter()
        for dom, res in zip(spec_domain, results):
            if dom == d and res.ok:
                cd.update(_norm(x) for x in res.parsed.domains if x.strip())
                ct.update(_norm(x) for x in res.parsed.tasks if x.strip())
        options[d] = {"domains": [x for x, _ in cd.most_common(10)], "tasks": [x for x, _ in ct.most_common(10)]}
    return options


async def _tag_queries(
    client: LLMClient, by_domain: dict[str, list[dict]], options: dict[str, dict[str, list[str]]]
) -> Tags:
    """Step 1b: every query is tagged from its domain's options (10 queries per call); a tag outside the options
    is dropped, and a query whose call failed keeps only 'None'."""
    specs, batches = [], []
    for d, qs in by_domain.items():
        for batch in chunks(qs, 10):
            ids = entry_ids("q", len(batch))
            payload = json.dumps([{"id": i, "query": t["prompt"]} for i, t in zip(ids, batch)], ensure_ascii=False)
            specs.append(
                CallSpec(
                    "tag",
                    "tag-assign",
                    "tag-assign-v1",
                    messages(
                        "tag-assign-v1",
                        _TAG_ASSIGN,
                        [block("OPTIONS", json.dumps(options[d])), block("QUERIES", payload)],
                    ),
                    TagAssignment,
                    check=ids_check("tags", ids),
                    expected_output_tokens=25 * len(batch),
                )
            )
            batches.append((batch, ids))
    tags: Tags = {}
    for (batch, ids), res in zip(batches, await client.run(specs)):
        by_id = {e.id: e for e in res.parsed.tags} if res.ok else {}
        for i, t in zip(ids, batch):
            e = by_id.get(i)
            doms = [x for x in (e.domains if e else []) if x in options[t["domain"]]["domains"]]
            tks = [x for x in (e.tasks if e else []) if x in options[t["domain"]]["tasks"]]
            tags[t["item_id"]] = (["None", *doms], ["None", *tks])
    return tags


def _store_tags(con: duckdb.DuckDBPyConnection, pool: list[dict], tags: Tags) -> None:
    """Step 1c: the tags go to ``raw.query_tags`` (version ``TAG_VERSION``)."""
    domain_of = {t["item_id"]: t["domain"] for t in pool}
    con.executemany(
        "insert or replace into raw.query_tags values (?, ?, ?, ?, ?)",
        [(iid, TAG_VERSION, domain_of[iid], v[0], v[1]) for iid, v in tags.items()],
    )


def _proposal_instructions(framing: str, sub_domain: str, task: str, different: bool) -> str:
    """A batch's instructions: its framing, its sub-domain and task (unless 'None'), and, on every other batch,
    the request to move away from the fixed concepts."""
    context = [f"Sub-domain: {sub_domain}."] if sub_domain != "None" else []
    if task != "None":
        context.append(f"Task: {task}.")
    instructions = " ".join([_FRAMING[framing], *context])
    if different:
        instructions += f" Propose concepts completely different from these generic ones: {_FIXED_NAMES}."
    return instructions + "\n" + _PROPOSE_TAIL


def _proposal_specs(
    by_domain: dict[str, list[dict]], tags: Tags, per_domain: int, rng: random.Random
) -> tuple[list[CallSpec], list[str]]:
    """Step 2: per domain, ``per_domain`` batches of N_B triplets carrying one (sub-domain, task) pair drawn in
    proportion to its frequency, each under a random framing. Returns the specs and each one's domain."""
    specs, spec_domain = [], []
    for d, qs in by_domain.items():
        tag_of = {t["item_id"]: tags.get(t["item_id"], _NO_TAGS) for t in qs}
        pairs: Counter[tuple[str, str]] = Counter()
        for t in qs:
            sub_domains, tasks = tag_of[t["item_id"]]
            pairs.update((a, b) for a in sub_domains for b in tasks)
        keys = sorted(pairs)
        weights = [pairs[k] for k in keys]
        start = rng.random() < 0.5
        for b in range(per_domain):
            sd, tk = rng.choices(keys, weights)[0]
            carriers = [t for t in qs if sd in tag_of[t["item_id"]][0] and tk in tag_of[t["item_id"]][1]]
            batch = rng.sample(carriers, N_B) if len(carriers) >= N_B else rng.choices(carriers, k=N_B)
            framing = rng.choice(["pair", "chosen", "rejected"])
            instructions = _proposal_instructions(framing, sd, tk, different=(b % 2 == 0) == start)
            text = "\n\n---\n\n".join(_fmt_pair(t, framing) for t in batch)
            specs.append(
                CallSpec(
                    "propose",
                    "propose",
                    "propose-v1",
                    messages("propose-v1", instructions, [block("PAIRS", text)]),
                    Proposal,
                    expected_output_tokens=400,
                )
            )
            spec_domain.append(d)
    return specs, spec_domain


def _candidates(spec_domain: list[str], results: list[CallResult]) -> dict[str, _Candidate]:
    """Step 2b: the distinct normalised names among the first N_C concepts of each answered batch."""
    found: dict[str, _Candidate] = {}
    for d, res in zip(spec_domain, results):
        if not res.ok:
            continue
        for c in res.parsed.concepts[:N_C]:
            n = _norm(c.name)
            if not n:
                continue
            e = found.setdefault(n, _Candidate())
            e.domains.add(d)
            e.batches += 1
            if len(e.descriptions) < 5 and c.description not in e.descriptions:
                e.descriptions.append(c.description)
    return found


def _flagged_pairs(names: list[str]) -> list[tuple[str, str]]:
    """Step 3a: the pairs of names sharing a stem after stop-word removal."""
    index: dict[str, list[str]] = defaultdict(list)
    for n in names:
        for s in name_stems(n):
            index[s].append(n)
    return sorted({(a, b) for grp in index.values() for i, a in enumerate(grp) for b in grp[i + 1 :] if a != b})


async def _dedup_groups(client: LLMClient, names: list[str], flagged: list[tuple[str, str]]) -> list[list[str]]:
    """Step 3b: the LLM decides the flagged pairs (DEDUP_PER_CALL per call); merges are transitive (union-find).
    Returns the groups of names that are one concept."""
    uf = _UF()
    specs, asked = [], []
    for chunk in chunks(flagged, DEDUP_PER_CALL):
        ids = entry_ids("p", len(chunk))
        payload = json.dumps([{"id": i, "a": a, "b": b} for i, (a, b) in zip(ids, chunk)], ensure_ascii=False)
        specs.append(
            CallSpec(
                "dedup",
                "dedup",
                "dedup-v1",
                messages("dedup-v1", _DEDUP, [block("PAIRS", payload)]),
                DedupAnswer,
                check=ids_check("decisions", ids),
                expected_output_tokens=12 * len(chunk),
            )
        )
        asked.append((chunk, ids))
    for (chunk, ids), res in zip(asked, await client.run(specs)):
        if res.ok:
            same = {e.id: e.same for e in res.parsed.decisions}
            for i, (a, b) in zip(ids, chunk):
                if same.get(i):
                    uf.union(a, b)
    groups: dict[str, list[str]] = defaultdict(list)
    for n in names:
        groups[uf.find(n)].append(n)
    return list(groups.values())


def _merge(
    groups: list[list[str]], found: dict[str, _Candidate], n_domains: int, shared_threshold: float
) -> tuple[list[LLMConcept], dict[str, list[str]]]:
    """Step 4: one concept per group, named by its survivor (found in more domains, then in more batches, then
    alphabetical); shared when found in >= ``shared_threshold`` of the domains, else specific to the domains where
    its group was found. Returns the concepts sorted by name and up to 5 descriptions of each."""
    merged: list[LLMConcept] = []
    descriptions: dict[str, list[str]] = {}
    for members in groups:
        doms = set().union(*(found[m].domains for m in members))
        batches = sum(found[m].batches for m in members)
        survivor = sorted(members, key=lambda m: (-len(found[m].domains), -found[m].batches, m))[0]
        desc = list(dict.fromkeys(d for m in [survivor, *members] for d in found[m].descriptions))[:5]
        shared = len(doms) / max(1, n_domains) >= shared_threshold
        merged.append(
            LLMConcept(
                survivor,
                "",
                " ".join(desc[:1]),
                "discovered",
                shared,
                () if shared else tuple(sorted(doms)),
                len(doms),
                batches,
                tuple(sorted(m for m in members if m != survivor)),
            )
        )
        descriptions[survivor] = desc
    return sorted(merged, key=lambda c: c.name), descriptions


def _definitions_check(ids: list[str]) -> Callable[[Any], str | None]:
    """One definition per id, each in the form "A high score indicates the response ...; A low score ..."."""

    def form(parsed: Any) -> str | None:
        bad = [e.id for e in parsed.definitions if not DEFINITION_RE.match(e.definition.strip())]
        return f"definitions not in the required form: {bad}" if bad else None

    return ids_check("definitions", ids, then=form)


async def _define(client: LLMClient, merged: list[LLMConcept], descriptions: dict[str, list[str]]) -> list[LLMConcept]:
    """Step 5: a definition for each concept from its collected descriptions, DEFINE_PER_CALL per call. A concept
    whose call failed is left out (recorded as a failed call), never given a made-up definition."""
    specs, asked = [], []
    for chunk in chunks(merged, DEFINE_PER_CALL):
        ids, cb = numbered_concepts([(c.name, " | ".join(descriptions[c.name])) for c in chunk])
        specs.append(
            CallSpec(
                "define",
                "define",
                "define-v1",
                messages("define-v1", _DEFINE, [cb]),
                DefineAnswer,
                concepts=[c.name for c in chunk],
                check=_definitions_check(ids),
                expected_output_tokens=60 * len(chunk),
            )
        )
        asked.append((chunk, ids))
    defined: list[LLMConcept] = []
    for (chunk, ids), res in zip(asked, await client.run(specs)):
        if res.ok:
            by_id = {e.id: e.definition.strip() for e in res.parsed.definitions}
            defined += [replace(c, definition=by_id[i]) for i, c in zip(ids, chunk)]
    return defined


def _batches_per_domain(batches_per_domain: int, max_batches: int | None, n_domains: int) -> int:
    if max_batches is None:
        return batches_per_domain
    return max(1, min(batches_per_domain, max_batches // max(1, n_domains)))


async def _discover(
    client: LLMClient,
    pool: list[dict],
    report: DiscoverReport,
    *,
    batches_per_domain: int,
    max_batches: int | None,
    shared_threshold: float,
    rng: random.Random,
    con: duckdb.DuckDBPyConnection,
) -> list[LLMConcept] | None:
    """Steps 1-5 of the module docstring; the catalog sorted by name, or None in a dry run or when the budget
    stopped the run before the proposals were in."""
    by_domain = _group_by_domain(pool)
    report.domains = list(by_domain)
    options = await _tag_options(client, by_domain, rng)
    tags = await _tag_queries(client, by_domain, options)
    if not client.dry_run:
        _store_tags(con, pool, tags)
    per_domain = _batches_per_domain(batches_per_domain, max_batches, len(by_domain))
    specs, spec_domain = _proposal_specs(by_domain, tags, per_domain, rng)
    report.batches = len(specs)
    results = await client.run(specs)
    if client.dry_run or client.budget_stopped:
        return None
    found = _candidates(spec_domain, results)
    report.candidates = len(found)
    names = sorted(found)
    flagged = _flagged_pairs(names)
    report.flagged_pairs = len(flagged)
    merged, descriptions = _merge(await _dedup_groups(client, names, flagged), found, len(by_domain), shared_threshold)
    report.merges = sum(len(c.merged_from) for c in merged)
    final = await _define(client, merged, descriptions)
    have = {c.name.lower() for c in final}
    final += [c for c in FIXED_CONCEPTS if c.name.lower() not in have]
    return sorted(final, key=lambda c: c.name)


def discover(
    con: duckdb.DuckDBPyConnection,
    config: LLMConfig,
    *,
    mechanism: str | None = None,
    max_batches: int | None = None,
    batches_per_domain: int = 300,
    shared_threshold: float = 0.5,
    dry_run: bool = False,
    budget_usd: float | None = None,
    seed: int = 0,
) -> DiscoverReport:
    mech, pool = _pool(con, mechanism)
    report = DiscoverReport(mechanism=mech, dry_run=dry_run)
    if not pool:
        raise ValueError(f"no decisive labels for mechanism {mech!r}: ingest labelled pairs first")
    client = LLMClient(config, con, command="discover", dry_run=dry_run, budget_usd=budget_usd, seed=seed)
    with client:
        concepts = client.drive(
            lambda: _discover(
                client,
                pool,
                report,
                batches_per_domain=batches_per_domain,
                max_batches=max_batches,
                shared_threshold=shared_threshold,
                rng=random.Random(seed),
                con=con,
            )
        )
        client.flush()
        report.record(client)
    if concepts:
        report.catalog_version = store_catalog(con, concepts)
        report.concepts = len(concepts)
        report.shared = sum(c.is_shared for c in concepts)
    return report
