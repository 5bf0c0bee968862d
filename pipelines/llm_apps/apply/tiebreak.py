"""`preflens apply tiebreak`: the paper's Tie Break (method.md §9, Table 3).

The judge's ties are its order-inconsistent pairs (``raw.labels`` winner ``tie`` of the judge mechanism, as
written by ``preflens judge``). On the ties the reference mechanism (e.g. human raters) labelled decisively, the
judge is re-asked with prompt E.11, "choose the response that better follows **only** these concepts", in both
orders, with the top-k concepts (with definitions, per the item's domain) from each source:

* ``random``: k random concepts of the catalog (seeded per item);
* ``judge``: the judge's own explanation (largest total weights b + s_d);
* ``reference``: the reference mechanism's explanation;
* ``difference``: the largest (reference − judge) weights: what the reference rewards that the judge misses.

A re-asked pair whose two orders agree is resolved; otherwise it stays a tie. Accuracy against the reference on
the tie subset scores a resolved pair 1 or 0 and an unresolved one 0.5, so leaving every tie unresolved scores
50%; the **gain** (percentage points) is the accuracy minus 50, as in Table 3.

Stated deviation: the paper trains both explanation models on non-tie examples with the resolved ties held out;
this uses the latest published fit (the judge's fit never sees its ties, which are not decisive; the
reference's fit may include those items).

Rows go to ``ops.app_tiebreak_results`` (run × source × item) and ``ops.app_tiebreak_runs`` (run × source).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import duckdb

from pipelines.core.warehouse import scalar
from pipelines.llm.client import LLMClient
from pipelines.llm.config import LLMConfig
from pipelines.llm.report import LLMRunReport
from pipelines.llm.types import CallSpec
from pipelines.llm_apps.apply.common import (
    ApplyError,
    Concept,
    Explanations,
    concepts_data,
    judge_mechanism,
    judge_model,
)
from pipelines.llm_apps.judge import JudgeVerdict, combine, judge_messages, side_from

TIEBREAK_VERSION = "tiebreak-v1"
SOURCES = ("random", "judge", "reference", "difference")

_TIEBREAK = """Please act as an impartial judge and compare the two responses (RESPONSE_A and RESPONSE_B) to the
user query in the QUERY block. Choose the response that better follows ONLY the concepts in the CONCEPTS block
(each with its name and definition; a high score on a concept is better). Ignore every other quality of the
responses. Avoid any position bias: the order in which the responses are presented must not influence your
decision."""


def tiebreak_spec(item: dict, concepts: list[Concept], swapped: bool) -> CallSpec:
    ra, rb = (item["response_b"], item["response_a"]) if swapped else (item["response_a"], item["response_b"])
    msgs = judge_messages(
        item["prompt"], ra, rb, instructions=_TIEBREAK, extra_blocks=[concepts_data(concepts)], tag=TIEBREAK_VERSION
    )
    return CallSpec(
        "tiebreak" + ("_ba" if swapped else "_ab"),
        "tiebreak",
        TIEBREAK_VERSION,
        msgs,
        JudgeVerdict,
        item_id=item["item_id"],
        concepts=[c.name for c in concepts],
        expected_output_tokens=12,
    )


@dataclass
class SourceResult:
    source: str
    n_ties: int = 0
    n_resolved: int = 0
    n_correct: int = 0
    accuracy: float | None = None
    gain_pp: float | None = None


@dataclass
class TiebreakReport(LLMRunReport):
    judge_mechanism: str
    reference_mechanism: str
    k: int
    n_ties: int = 0
    n_judge_labels: int = 0
    sources: dict[str, SourceResult] = field(default_factory=dict)

    def lines(self) -> list[str]:
        s = self.stats
        out = [
            f"Tie Break: judge {self.judge_mechanism} vs reference {self.reference_mechanism}, top-{self.k} "
            f"concepts; {self.n_ties} judge ties labelled decisively by the reference "
            f"(of {self.n_judge_labels} judge labels)"
        ]
        if self.dry_run:
            out.append(f"dry run: projected {s.projection()}")
            return out
        out.append(f"{'concepts':<12} {'resolved':>9} {'correct':>8} {'accuracy':>9} {'gain (pp)':>10}")
        for src in SOURCES:
            r = self.sources.get(src)
            if r is None or r.accuracy is None:
                continue
            out.append(f"{src:<12} {r.n_resolved:>9} {r.n_correct:>8} {100 * r.accuracy:>8.1f}% {r.gain_pp:>+10.1f}")
        return out + self.closing_lines()


def resolve_reference(con: duckdb.DuckDBPyConnection, reference: str) -> str:
    if ":" in reference:
        return reference
    row = con.execute(
        "select mechanism from raw.labels where mechanism_type = ? group by mechanism "
        "order by count(*) desc, mechanism limit 1",
        [reference],
    ).fetchone()
    if row is None:
        raise ApplyError(f"no {reference!r} mechanism in raw.labels")
    return row[0]


def run_tiebreak(
    con: duckdb.DuckDBPyConnection,
    serve_db: Path,
    config: LLMConfig,
    *,
    judge: str,
    reference: str = "human",
    k: int = 4,
    sources: tuple[str, ...] = SOURCES,
    seed: int = 0,
    dry_run: bool = False,
    budget_usd: float | None = None,
) -> TiebreakReport:
    jmech = judge_mechanism(judge)
    rmech = resolve_reference(con, reference)
    expl = Explanations(serve_db)
    jm, rm = expl.resolve(jmech), expl.resolve(rmech)
    report = TiebreakReport(jmech, rmech, k, dry_run=dry_run)
    report.n_judge_labels = int(scalar(con, "select count(*) from raw.labels where mechanism = ?", [jmech]))
    if not report.n_judge_labels:
        raise ApplyError(f"no labels of {jmech!r}: run `preflens judge --model {judge_model(judge)}` first")
    rows = con.execute(
        """select i.item_id, i.prompt, i.response_a, i.response_b, i.domain, r.winner
           from raw.labels j join raw.labels r on r.item_id = j.item_id and r.mechanism = ?
           join raw.items i on i.item_id = j.item_id
           where j.mechanism = ? and j.winner = 'tie' and r.winner in ('a', 'b') order by i.item_id""",
        [rmech, jmech],
    ).fetchall()
    items = [dict(zip(["item_id", "prompt", "response_a", "response_b", "domain", "ref"], r)) for r in rows]
    report.n_ties = len(items)
    plan: list[tuple[str, int, list[Concept]]] = []
    for n, it in enumerate(items):
        wj = expl.domain_weights(jm, it["domain"])
        wr = expl.domain_weights(rm, it["domain"])
        for src in sources:
            if src == "random":
                cs = expl.random_k(k, random.Random(f"{seed}\x1f{it['item_id']}"), sorted(set(wj) | set(wr)))
            elif src == "judge":
                cs = expl.top_k(wj, k)
            elif src == "reference":
                cs = expl.top_k(wr, k)
            elif src == "difference":
                cs = expl.top_k({c: wr.get(c, 0.0) - wj.get(c, 0.0) for c in set(wj) | set(wr)}, k)
            else:
                raise ApplyError(f"unknown concept source {src!r}; use {', '.join(SOURCES)}")
            plan.append((src, n, cs))
    specs = [tiebreak_spec(items[n], cs, sw) for _, n, cs in plan for sw in (False, True)]
    client = LLMClient(
        config.with_overrides(model=judge_model(judge)),
        con,
        command="apply-tiebreak",
        dry_run=dry_run,
        budget_usd=budget_usd,
    )
    run_id = client.run_id
    with client:
        results = client.run_sync(specs)
    report.record(client)
    if dry_run:
        return report
    out = []
    per: dict[str, SourceResult] = {s: SourceResult(s) for s in sources}
    for j, (src, n, cs) in enumerate(plan):
        r_ab, r_ba = results[2 * j], results[2 * j + 1]
        if not (r_ab.ok and r_ba.ok):
            continue  # not asked (budget) or failed: not scored
        it = items[n]
        v_ab, v_ba = side_from(r_ab.parsed.final_answer, False), side_from(r_ba.parsed.final_answer, True)
        w = combine(v_ab, v_ba)
        score = 0.5 if w == "tie" else float(w == it["ref"])
        sr = per[src]
        sr.n_ties += 1
        sr.n_resolved += w != "tie"
        sr.n_correct += w == it["ref"]
        sr.accuracy = (sr.accuracy or 0.0) + score
        out.append((run_id, src, it["item_id"], it["domain"], [c.name for c in cs], v_ab, v_ba, w, it["ref"], score))
    now = datetime.now(UTC).replace(tzinfo=None)
    run_rows = []
    for src, sr in per.items():
        if sr.n_ties:
            sr.accuracy = (sr.accuracy or 0.0) / sr.n_ties
            sr.gain_pp = 100 * (sr.accuracy - 0.5)
        run_rows.append(
            (
                run_id,
                src,
                jmech,
                rmech,
                k,
                sr.n_ties,
                sr.n_resolved,
                sr.n_correct,
                sr.accuracy,
                sr.gain_pp,
                expl.fit_id,
                seed,
                "budget_stopped" if report.budget_stopped else "completed",
                now,
            )
        )
    report.sources = per
    if out:
        con.executemany("insert into ops.app_tiebreak_results values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", out)
    con.executemany("insert into ops.app_tiebreak_runs values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", run_rows)
    return report
