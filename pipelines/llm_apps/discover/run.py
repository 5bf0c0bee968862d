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

import asyncio
import json
import random
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

import duckdb
from pydantic import BaseModel

from pipelines.llm_apps.discover.catalog import DEFINITION_RE, FIXED_CONCEPTS, LLMConcept, store_catalog
from pipelines.llm_apps.discover.stem import name_stems
from pipelines.llm.client import CallSpec, LLMClient
from pipelines.llm.config import LLMConfig
from pipelines.llm.prompting import block, concepts_block, messages

TAG_VERSION = "tag-v1"
N_B = 5            # triplets per batch / queries per tag-proposal call
N_C = 10           # concepts per batch
DEDUP_PER_CALL = 30
DEFINE_PER_CALL = 5


class TagProposal(BaseModel):
    domains: list[str]
    tasks: list[str]


class TagEntry(BaseModel):
    id: str
    domains: list[str]
    tasks: list[str]


class TagAssignment(BaseModel):
    tags: list[TagEntry]


class ProposedConcept(BaseModel):
    name: str
    description: str


class Proposal(BaseModel):
    concepts: list[ProposedConcept]


class Decision(BaseModel):
    id: str
    same: bool


class DedupAnswer(BaseModel):
    decisions: list[Decision]


class Definition(BaseModel):
    id: str
    definition: str


class DefineAnswer(BaseModel):
    definitions: list[Definition]


def _ids(field_name: str, ids: list[str]):  # noqa: ANN202
    def check(parsed: Any) -> str | None:
        got = [e.id for e in getattr(parsed, field_name)]
        return None if sorted(got) == sorted(ids) else "ids do not match the request"
    return check


@dataclass
class DiscoverReport:
    mechanism: str | None = None
    catalog_version: str | None = None
    domains: list[str] = field(default_factory=list)
    batches: int = 0
    candidates: int = 0
    flagged_pairs: int = 0
    merges: int = 0
    concepts: int = 0
    shared: int = 0
    dry_run: bool = False
    budget_stopped: bool = False
    stats: Any = None

    def lines(self) -> list[str]:
        s = self.stats
        if self.dry_run:
            return [f"discover dry run ({self.mechanism}): {len(self.domains)} domains, {self.batches} batches",
                    f"projected (tagging + proposals; dedup and definitions depend on the answers): {s.projected_calls} "
                    f"calls, {s.projected_prompt_tokens} in + {s.projected_completion_tokens} out tokens, "
                    f"${s.projected_cost_usd:.4f}"]
        out = [f"discover ({self.mechanism}): {len(self.domains)} domains, {self.batches} batches, {self.candidates} "
               f"distinct candidate names, {self.flagged_pairs} flagged pairs, {self.merges} merged",
               f"catalog {self.catalog_version}: {self.concepts} concepts ({self.shared} shared)",
               f"calls {s.calls} (cache hits {s.cache_hits}, failed {s.failed}), tokens {s.prompt_tokens} in / "
               f"{s.completion_tokens} out, ${s.cost_usd:.4f}"]
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
        row = con.execute("select mechanism from raw.labels group by 1 order by (min(mechanism_type) <> 'human'), "
                          "count(*) desc, mechanism limit 1").fetchone()
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


def _fmt_pair(t: dict, framing: str) -> str:
    if framing == "pair":
        return f"QUERY: {t['prompt']}\nCHOSEN: {t['chosen']}\nREJECTED: {t['rejected']}"
    return f"QUERY: {t['prompt']}\n{framing.upper()}: {t[framing]}"


async def _discover(client: LLMClient, pool: list[dict], report: DiscoverReport, *, batches_per_domain: int,
                    max_batches: int | None, shared_threshold: float, rng: random.Random,
                    con: duckdb.DuckDBPyConnection) -> list[LLMConcept] | None:
    by_domain: dict[str, list[dict]] = defaultdict(list)
    for t in pool:
        by_domain[t["domain"]].append(t)
    domains = sorted(by_domain)
    report.domains = domains
    # 1. tagging: propose lists
    prop_specs, prop_dom = [], []
    for d in domains:
        qs = by_domain[d]
        sample = rng.sample(qs, min(len(qs), max(N_B, len(qs) // 10)))
        for k in range(0, len(sample), N_B):
            batch = sample[k:k + N_B]
            text = "\n\n".join(f"- {t['prompt']}" for t in batch)
            prop_specs.append(CallSpec("tag", "tag-propose", "tag-propose-v1",
                                       messages("tag-propose-v1", _TAG_PROPOSE, [block("QUERIES", text)]), TagProposal,
                                       expected_output_tokens=60))
            prop_dom.append(d)
    props = await client.run(prop_specs)
    options: dict[str, dict[str, list[str]]] = {}
    for d in domains:
        cd, ct = Counter(), Counter()
        for dom, res in zip(prop_dom, props):
            if dom == d and res.ok:
                cd.update(_norm(x) for x in res.parsed.domains if x.strip())
                ct.update(_norm(x) for x in res.parsed.tasks if x.strip())
        options[d] = {"domains": [x for x, _ in cd.most_common(10)], "tasks": [x for x, _ in ct.most_common(10)]}
    # 1b. tag every query
    asg_specs, asg_batches = [], []
    for d in domains:
        qs = by_domain[d]
        for k in range(0, len(qs), 10):
            batch = qs[k:k + 10]
            ids = [f"q{j + 1}" for j in range(len(batch))]
            payload = json.dumps([{"id": i, "query": t["prompt"]} for i, t in zip(ids, batch)], ensure_ascii=False)
            asg_specs.append(CallSpec("tag", "tag-assign", "tag-assign-v1", messages(
                "tag-assign-v1", _TAG_ASSIGN, [block("OPTIONS", json.dumps(options[d])), block("QUERIES", payload)]),
                TagAssignment, check=_ids("tags", ids), expected_output_tokens=25 * len(batch)))
            asg_batches.append((batch, ids))
    asg = await client.run(asg_specs)
    tags: dict[str, tuple[list[str], list[str]]] = {}
    for (batch, ids), res in zip(asg_batches, asg):
        by_id = {e.id: e for e in res.parsed.tags} if res.ok else {}
        for i, t in zip(ids, batch):
            e = by_id.get(i)
            doms = [x for x in (e.domains if e else []) if x in options[t["domain"]]["domains"]]
            tks = [x for x in (e.tasks if e else []) if x in options[t["domain"]]["tasks"]]
            tags[t["item_id"]] = (["None", *doms], ["None", *tks])
    if not client.dry_run:
        domain_of = {t["item_id"]: t["domain"] for t in pool}
        con.executemany("insert or replace into raw.query_tags values (?, ?, ?, ?, ?)",
                        [(iid, TAG_VERSION, domain_of[iid], v[0], v[1]) for iid, v in tags.items()])
    # 2. batches and proposals
    per_domain = batches_per_domain
    if max_batches is not None:
        per_domain = max(1, min(per_domain, max_batches // max(1, len(domains))))
    specs, spec_dom = [], []
    fixed_names = ", ".join(c.name for c in FIXED_CONCEPTS)
    for d in domains:
        qs = by_domain[d]
        pairs = Counter()
        for t in qs:
            sd, tk = tags.get(t["item_id"], (["None"], ["None"]))
            pairs.update((a, b) for a in sd for b in tk)
        keys = sorted(pairs)
        weights = [pairs[k] for k in keys]
        start = rng.random() < 0.5
        for b in range(per_domain):
            sd, tk = rng.choices(keys, weights)[0]
            carriers = [t for t in qs if sd in tags.get(t["item_id"], (["None"], ["None"]))[0]
                        and tk in tags.get(t["item_id"], (["None"], ["None"]))[1]]
            batch = rng.sample(carriers, N_B) if len(carriers) >= N_B else rng.choices(carriers, k=N_B)
            framing = rng.choice(["pair", "chosen", "rejected"])
            different = (b % 2 == 0) == start
            ctx = []
            if sd != "None":
                ctx.append(f"Sub-domain: {sd}.")
            if tk != "None":
                ctx.append(f"Task: {tk}.")
            instr = " ".join([_FRAMING[framing], *ctx])
            if different:
                instr += f" Propose concepts completely different from these generic ones: {fixed_names}."
            instr += "\n" + _PROPOSE_TAIL
            text = "\n\n---\n\n".join(_fmt_pair(t, framing) for t in batch)
            specs.append(CallSpec("propose", "propose", "propose-v1", messages("propose-v1", instr,
                                  [block("PAIRS", text)]), Proposal, expected_output_tokens=400))
            spec_dom.append(d)
    report.batches = len(specs)
    results = await client.run(specs)
    if client.dry_run or client.budget_stopped:
        return None
    found: dict[str, dict[str, Any]] = {}
    for d, res in zip(spec_dom, results):
        if not res.ok:
            continue
        for c in res.parsed.concepts[:N_C]:
            n = _norm(c.name)
            if not n:
                continue
            e = found.setdefault(n, {"domains": set(), "batches": 0, "desc": []})
            e["domains"].add(d)
            e["batches"] += 1
            if len(e["desc"]) < 5 and c.description not in e["desc"]:
                e["desc"].append(c.description)
    report.candidates = len(found)
    # 3. dedup: flag by shared stems, LLM decides, union-find
    names = sorted(found)
    stems = {n: name_stems(n) for n in names}
    index: dict[str, list[str]] = defaultdict(list)
    for n in names:
        for s in stems[n]:
            index[s].append(n)
    flagged = sorted({(a, b) for grp in index.values() for i, a in enumerate(grp) for b in grp[i + 1:] if a != b})
    report.flagged_pairs = len(flagged)
    uf = _UF()
    dspecs, dchunks = [], []
    for k in range(0, len(flagged), DEDUP_PER_CALL):
        chunk = flagged[k:k + DEDUP_PER_CALL]
        ids = [f"p{j + 1}" for j in range(len(chunk))]
        payload = json.dumps([{"id": i, "a": a, "b": b} for i, (a, b) in zip(ids, chunk)], ensure_ascii=False)
        dspecs.append(CallSpec("dedup", "dedup", "dedup-v1", messages("dedup-v1", _DEDUP, [block("PAIRS", payload)]),
                               DedupAnswer, check=_ids("decisions", ids), expected_output_tokens=12 * len(chunk)))
        dchunks.append((chunk, ids))
    for (chunk, ids), res in zip(dchunks, await client.run(dspecs)):
        if res.ok:
            dec = {e.id: e.same for e in res.parsed.decisions}
            for i, (a, b) in zip(ids, chunk):
                if dec.get(i):
                    uf.union(a, b)
    groups: dict[str, list[str]] = defaultdict(list)
    for n in names:
        groups[uf.find(n)].append(n)
    merged: list[LLMConcept] = []
    n_dom = max(1, len(domains))
    for members in groups.values():
        doms = set().union(*(found[m]["domains"] for m in members))
        batches = sum(found[m]["batches"] for m in members)
        survivor = sorted(members, key=lambda m: (-len(found[m]["domains"]), -found[m]["batches"], m))[0]
        desc = [d for m in [survivor, *members] for d in found[m]["desc"]]
        desc = list(dict.fromkeys(desc))[:5]
        shared = len(doms) / n_dom >= shared_threshold
        merged.append(LLMConcept(survivor, "", " ".join(desc[:1]), "discovered", shared,
                                 () if shared else tuple(sorted(doms)), len(doms), batches,
                                 tuple(sorted(m for m in members if m != survivor))))
        merged[-1].__dict__["_descs"] = desc  # carried to the definition step
    report.merges = sum(len(c.merged_from) for c in merged)
    # 4. definitions, 5 per call
    merged.sort(key=lambda c: c.name)
    fspecs, fchunks = [], []
    for k in range(0, len(merged), DEFINE_PER_CALL):
        chunk = merged[k:k + DEFINE_PER_CALL]
        ids = [f"c{j + 1}" for j in range(len(chunk))]
        cb = concepts_block([(i, c.name, " | ".join(c.__dict__["_descs"])) for i, c in zip(ids, chunk)])

        def check(parsed: Any, ids: list[str] = ids) -> str | None:
            if sorted(e.id for e in parsed.definitions) != sorted(ids):
                return "ids do not match the request"
            bad = [e.id for e in parsed.definitions if not DEFINITION_RE.match(e.definition.strip())]
            return f"definitions not in the required form: {bad}" if bad else None

        fspecs.append(CallSpec("define", "define", "define-v1", messages("define-v1", _DEFINE, [cb]), DefineAnswer,
                               concepts=[c.name for c in chunk], check=check, expected_output_tokens=60 * len(chunk)))
        fchunks.append((chunk, ids))
    final: list[LLMConcept] = []
    for (chunk, ids), res in zip(fchunks, await client.run(fspecs)):
        if not res.ok:
            continue  # an undefined concept is left out (recorded as a failed call), never given a made-up definition
        dd = {e.id: e.definition.strip() for e in res.parsed.definitions}
        for i, c in zip(ids, chunk):
            final.append(LLMConcept(c.name, dd[i], c.description, c.origin, c.is_shared, c.domains, c.n_domains,
                                    c.n_batches, c.merged_from))
    have = {c.name.lower() for c in final}
    final += [c for c in FIXED_CONCEPTS if c.name.lower() not in have]
    return sorted(final, key=lambda c: c.name)


def discover(con: duckdb.DuckDBPyConnection, config: LLMConfig, *, mechanism: str | None = None,
             max_batches: int | None = None, batches_per_domain: int = 300, shared_threshold: float = 0.5,
             dry_run: bool = False, budget_usd: float | None = None, seed: int = 0) -> DiscoverReport:
    mech, pool = _pool(con, mechanism)
    report = DiscoverReport(mechanism=mech, dry_run=dry_run)
    if not pool:
        raise ValueError(f"no decisive labels for mechanism {mech!r}: ingest labelled pairs first")
    client = LLMClient(config, con, command="discover", dry_run=dry_run, budget_usd=budget_usd, seed=seed)
    with client:
        async def go() -> list[LLMConcept] | None:
            try:
                return await _discover(client, pool, report, batches_per_domain=batches_per_domain,
                                       max_batches=max_batches, shared_threshold=shared_threshold,
                                       rng=random.Random(seed), con=con)
            finally:
                await client.aclose()

        concepts = asyncio.run(go())
        client.flush()
        report.stats = client.stats
        report.budget_stopped = client.budget_stopped
    if concepts:
        report.catalog_version = store_catalog(con, concepts)
        report.concepts = len(concepts)
        report.shared = sum(c.is_shared for c in concepts)
    return report
