"""`preflens apply guide`: the paper's Judge Hack (method.md §8). Guide generation with a judge's concepts.

For a judge mechanism and a domain:

1. the judge's **top-k concepts** (latest fit, comp-rep, largest total weight b + s_d in that domain; b alone for a
   domain the fit did not see) with their definitions;
2. ``--n-prompts`` queries of the domain drawn (seeded) from ``raw.items``;
3. for each query the generator writes (a) a response asked to "consider the following concepts" with the top-k
   concepts (Box E.13) and (b) the same with **k random concepts** of the catalog (drawn per query, seeded);
4. the judge (the paper's judge prompt, §7.1) compares (a) with (b) **in both orders**: both orders prefer (a)
   = win, both prefer (b) = loss, order-inconsistent = tie;
5. WR = (wins + ½ ties) / n with a 95% Wilson interval (ties as half successes).

Differences from the paper, stated: the paper compares explanation and random responses each against a
*vanilla* response (two WRs); this compares them head to head (one WR, > 50% means the explanation helps more),
and queries come from the warehouse (unseen by the fit only if they were not labelled).

Rows go to ``ops.app_guide_results`` (one per query) and ``ops.app_guide_runs`` (one per run), keyed by run id.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
from pydantic import BaseModel

from pipelines.core.ids import new_id
from pipelines.llm.client import LLMClient
from pipelines.llm.config import LLMConfig
from pipelines.llm.prompting import block, messages
from pipelines.llm.report import BUDGET_NOTE
from pipelines.llm.types import CallSpec, RunStats
from pipelines.llm_apps.apply.common import (
    ApplyError,
    Concept,
    Explanations,
    concepts_data,
    judge_mechanism,
    judge_model,
    wilson,
)
from pipelines.llm_apps.judge import combine, judge_spec, side_from

GENERATE_VERSION = "generate-v1"
GENERATE_MAX_TOKENS = 2048  # a free-text response: its schema does not bound it (override: [llm.stage_max_tokens])

_GEN_VANILLA = """Generate a response to the user query in the QUERY block.
Return JSON: {"response": "<your response>"}."""

_GEN_CONCEPTS = """Generate a response to the user query in the QUERY block. When writing it, consider the
following concepts (the CONCEPTS block gives each concept's name and definition; a high score is what to aim for).
Return JSON: {"response": "<your response>"}."""


class Generation(BaseModel):
    response: str


def generate_spec(query: str, concepts: list[Concept] | None, item_id: str | None = None) -> CallSpec:
    if concepts:
        msgs = messages(GENERATE_VERSION, _GEN_CONCEPTS, [block("QUERY", query), concepts_data(concepts)])
    else:
        msgs = messages(GENERATE_VERSION, _GEN_VANILLA, [block("QUERY", query)])
    return CallSpec(
        "generate",
        "generate",
        GENERATE_VERSION,
        msgs,
        Generation,
        item_id=item_id,
        concepts=[c.name for c in concepts] if concepts else None,
        expected_output_tokens=400,
        max_output_tokens=GENERATE_MAX_TOKENS,
    )


@dataclass
class GuideReport:
    judge_mechanism: str
    generator: str
    domain: str
    k: int
    top_concepts: list[str]
    n: int = 0
    wins: int = 0
    ties: int = 0
    losses: int = 0
    win_rate: float | None = None
    ci: tuple[float, float] | None = None
    dry_run: bool = False
    budget_stopped: bool = False
    run_id: str | None = None
    stats: list[RunStats] = field(default_factory=list)

    def lines(self) -> list[str]:
        out = [
            f"Judge Hack: judge {self.judge_mechanism}, generator {self.generator}, domain {self.domain}, "
            f"top-{self.k} concepts {self.top_concepts}"
        ]
        if self.dry_run:
            calls = sum(s.projected_calls for s in self.stats)
            cost = sum(s.projected_cost_usd for s in self.stats)
            out.append(
                f"dry run: projected {calls} calls, ${cost:.4f} (judge calls estimated with the warehouse "
                "responses' lengths)"
            )
            return out
        if self.n and self.ci is not None:
            ci_low, ci_high = self.ci
            out.append(
                f"top-k vs random concepts over {self.n} queries: win {self.wins}, tie {self.ties}, lose "
                f"{self.losses}; WR {100 * (self.win_rate or 0):.1f}% (95% Wilson CI "
                f"{100 * ci_low:.1f}-{100 * ci_high:.1f}%)  [run {self.run_id}]"
            )
        else:
            out.append("no comparison completed")
        calls = sum(s.calls for s in self.stats)
        hits = sum(s.cache_hits for s in self.stats)
        cost = sum(s.cost_usd for s in self.stats)
        out.append(f"calls {calls} (cache hits {hits}), ${cost:.4f}")
        if self.budget_stopped:
            out.append(BUDGET_NOTE)
        return out


def run_guide(
    con: duckdb.DuckDBPyConnection,
    serve_db: Path,
    config: LLMConfig,
    *,
    judge: str,
    domain: str,
    k: int = 4,
    generator: str | None = None,
    n_prompts: int = 50,
    seed: int = 0,
    dry_run: bool = False,
    budget_usd: float | None = None,
) -> GuideReport:
    expl = Explanations(serve_db)
    mech = expl.resolve(judge_mechanism(judge))
    weights = expl.domain_weights(mech, domain)
    top = expl.top_k(weights, k)
    pool = sorted(weights)
    jmodel = judge_model(judge)
    gen_model = generator or jmodel
    report = GuideReport(mech, gen_model, domain, k, [c.name for c in top], dry_run=dry_run)
    rows = con.execute(
        "select item_id, prompt, response_a, response_b from raw.items where domain = ? order by item_id", [domain]
    ).fetchall()
    if not rows:
        raise ApplyError(f"no items in domain {domain!r}")
    seen: dict[str, tuple] = {}
    for r in rows:
        seen.setdefault(r[1], r)
    queries = list(seen.values())
    rng = random.Random(seed)
    queries = rng.sample(queries, min(n_prompts, len(queries)))
    rand_sets = [expl.random_k(k, random.Random(f"{seed}\x1f{q[0]}"), pool) for q in queries]

    run_id = new_id()
    report.run_id = None if dry_run else run_id
    # 1. generation
    gen_specs: list[CallSpec] = []
    for q, rs in zip(queries, rand_sets):
        gen_specs += [generate_spec(q[1], top, q[0]), generate_spec(q[1], rs, q[0])]
    gen_client = LLMClient(
        config.with_overrides(model=gen_model), con, command="apply-guide", dry_run=dry_run, budget_usd=budget_usd
    )
    with gen_client:
        gen_res = gen_client.run_sync(gen_specs)
    report.stats.append(gen_client.stats)
    report.budget_stopped = gen_client.budget_stopped
    # 2. judging, both orders
    pairs: list[tuple[int, dict[str, Any]]] = []
    for n, q in enumerate(queries):
        ra, rb = gen_res[2 * n], gen_res[2 * n + 1]
        if dry_run:
            pairs.append((n, {"item_id": q[0], "prompt": q[1], "response_a": q[2], "response_b": q[3]}))
        elif ra.ok and rb.ok:
            pairs.append(
                (
                    n,
                    {
                        "item_id": q[0],
                        "prompt": q[1],
                        "response_a": ra.parsed.response,
                        "response_b": rb.parsed.response,
                    },
                )
            )
    judge_specs = [judge_spec(p, sw, stage="guide_judge") for _, p in pairs for sw in (False, True)]
    remaining = None if budget_usd is None else max(0.0, budget_usd - gen_client.stats.cost_usd)
    judge_client = LLMClient(
        config.with_overrides(model=jmodel), con, command="apply-guide", dry_run=dry_run, budget_usd=remaining
    )
    with judge_client:
        j_res = judge_client.run_sync(judge_specs) if not report.budget_stopped else []
    report.stats.append(judge_client.stats)
    report.budget_stopped = report.budget_stopped or judge_client.budget_stopped
    if dry_run:
        return report
    now = datetime.now(UTC).replace(tzinfo=None)
    out = []
    for j, (n, p) in enumerate(pairs):
        if 2 * j + 1 >= len(j_res):
            break
        r_ab, r_ba = j_res[2 * j], j_res[2 * j + 1]
        if not (r_ab.ok and r_ba.ok):
            continue
        v_ab, v_ba = side_from(r_ab.parsed.final_answer, False), side_from(r_ba.parsed.final_answer, True)
        w = combine(v_ab, v_ba)
        outcome = {"a": "win", "b": "lose", "tie": "tie"}[w]
        report.wins += outcome == "win"
        report.losses += outcome == "lose"
        report.ties += outcome == "tie"
        q = queries[n]
        out.append(
            (
                run_id,
                q[0],
                domain,
                [c.name for c in top],
                [c.name for c in rand_sets[n]],
                p["response_a"],
                p["response_b"],
                v_ab,
                v_ba,
                outcome,
            )
        )
    report.n = len(out)
    if report.n:
        report.win_rate = (report.wins + 0.5 * report.ties) / report.n
        report.ci = wilson(report.wins + 0.5 * report.ties, report.n)
    if out:
        con.executemany("insert into ops.app_guide_results values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", out)
    con.execute(
        "insert into ops.app_guide_runs values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [
            run_id,
            judge,
            mech,
            gen_model,
            domain,
            k,
            len(queries),
            report.n,
            report.wins,
            report.ties,
            report.losses,
            report.win_rate,
            report.ci[0] if report.ci else None,
            report.ci[1] if report.ci else None,
            [c.name for c in top],
            expl.fit_id,
            seed,
            "budget_stopped" if report.budget_stopped else "completed",
            now,
        ],
    )
    return report


def report_json(report: GuideReport) -> str:
    return json.dumps({k: v for k, v in report.__dict__.items() if k != "stats"}, default=str)
