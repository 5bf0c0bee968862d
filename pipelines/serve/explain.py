"""`preflens explain PAIR_ID`: why the explanation model predicts what it predicts for one pair.

PAIR_ID is a ``label_id`` (one verdict of one mechanism) or an ``item_id`` (the pair; every mechanism that
judged it, or the one given with ``--mechanism``); a unique prefix of at least 6 characters also works.
Everything is read from the served copy (latest fit): ``fct_predictions`` (out-of-fold P(A wins), actual
winner), ``fct_local_explanations`` (per concept value, contribution to the logit and local lift, from the
model refitted on all pairs) and ``dim_items`` (prompt and responses, untrusted text).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
from rich.console import Console, Group
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from pipelines.serve.served import connect_served, latest_fit_id, table_columns

MIN_PREFIX = 6


class ExplainError(LookupError):
    """Unknown id, or no explanation for the requested mechanism / representation."""


@dataclass(frozen=True)
class _Query:
    con: duckdb.DuckDBPyConnection
    fit_id: str
    representation: str


def _resolve(con: duckdb.DuckDBPyConnection, pair_id: str) -> tuple[str, str]:
    """('label' | 'item', full id) for an exact id or a unique prefix; ExplainError otherwise."""
    pid = pair_id.strip()
    for kind, col in (("label", "label_id"), ("item", "item_id")):
        if con.execute(f"select 1 from marts.fct_pair_features_comp where {col} = ? limit 1", [pid]).fetchone():
            return kind, pid
    if len(pid) < MIN_PREFIX:
        raise ExplainError(
            f"pair id {pair_id!r} is too short: give a full label_id or item_id, or a unique prefix of at least "
            f"{MIN_PREFIX} characters"
        )
    if re.fullmatch(r"[A-Za-z0-9_-]+", pid):
        hits: set[tuple[str, str]] = set()
        for kind, col in (("label", "label_id"), ("item", "item_id")):
            rows = con.execute(
                f"select distinct {col} from marts.fct_pair_features_comp where starts_with({col}, ?) limit 3", [pid]
            ).fetchall()
            hits |= {(kind, r[0]) for r in rows}
        if len(hits) == 1:
            return next(iter(hits))
        if len(hits) > 1:
            raise ExplainError(f"{pair_id!r} is ambiguous: matches {', '.join(sorted(h[1] for h in hits))}")
    raise ExplainError(
        f"unknown pair id {pair_id!r}: give a label_id or item_id from marts.fct_predictions "
        "(e.g. `select label_id, item_id, mechanism from marts.fct_predictions limit 5`)"
    )


def _shorten(text: str | None, width: int) -> str:
    s = " ".join((text or "").split())
    return s if len(s) <= width else s[: width - 1].rstrip() + "…"


def load_explanation(
    serve_db: Path,
    pair_id: str,
    *,
    mechanism: str | None = None,
    representation: str | None = None,
) -> dict[str, Any]:
    """The explanation of one label (or of every verdict on one item) as plain data (JSON-ready);
    ``representation`` None = the lead one (measure when fitted, else comp)."""
    con = connect_served(serve_db, error=ExplainError)
    try:
        fit_id = latest_fit_id(con, "fct_predictions")
        if fit_id is None:
            raise ExplainError(f"{serve_db} holds no predictions yet; run `preflens run` first")
        from pipelines.serve.summary import resolve_representation

        representation = resolve_representation(con, representation)
        kind, full_id = _resolve(con, pair_id)
        col = "label_id" if kind == "label" else "item_id"
        preds = con.execute(
            f"""select p.label_id, p.item_id, p.mechanism, f.mechanism_type, p.domain, p.prob_a,
                       p.predicted_winner, p.actual_winner, p.is_correct, p.used_domain_weights, p.fold
                from marts.fct_predictions p
                left join marts.fct_pair_features_comp f using (label_id)
                where p.fit_id = ? and p.representation = ? and p.{col} = ?
                order by f.mechanism_type, p.mechanism""",
            [fit_id, representation, full_id],
        ).fetchall()
        judged = con.execute(
            f"select mechanism, winner, item_id from marts.fct_pair_features_comp where {col} = ? order by mechanism",
            [full_id],
        ).fetchall()
        item_id = judged[0][2]
        if mechanism is not None:
            preds = [p for p in preds if p[2] == mechanism]
            if not preds:
                names = ", ".join(sorted({j[0] for j in judged})) or "none"
                raise ExplainError(
                    f"mechanism {mechanism!r} has no {representation}-rep prediction for {full_id}; "
                    f"mechanisms that judged it: {names}"
                )
        if not preds:
            verdicts = ", ".join(f"{m}: {w}" for m, w, _ in judged)
            raise ExplainError(
                f"{full_id} was judged ({verdicts}) but has no {representation}-rep prediction in "
                "the latest fit (ties and skipped mechanisms are not fitted)"
            )
        item = _item(con, item_id)
        out_verdicts = []
        for label_id, _item_id, mech, mtype, domain, prob_a, pred, actual, correct, own, fold in preds:
            rows = con.execute(
                """select concept, value, contribution, local_lift_pct from marts.fct_local_explanations
                   where fit_id = ? and representation = ? and label_id = ? and mechanism = ?
                   order by abs(contribution) desc, concept""",
                [fit_id, representation, label_id, mech],
            ).fetchall()
            concepts = [
                {
                    "concept": c,
                    "value": float(v),
                    "contribution": float(ct),
                    "local_lift_pct": float(ll),
                    "toward": "a" if ct > 0 else "b",
                }
                for c, v, ct, ll in rows
                if ct != 0
            ]
            z = sum(c["contribution"] for c in concepts)
            out_verdicts.append(
                {
                    "label_id": label_id,
                    "mechanism": mech,
                    "mechanism_type": mtype,
                    "domain": domain,
                    "prob_a": float(prob_a),
                    "predicted_winner": pred,
                    "actual_winner": actual,
                    "is_correct": bool(correct) if correct is not None else None,
                    "used_domain_weights": bool(own) if own is not None else None,
                    "fold": fold,
                    "refit_prob_a": 1.0 / (1.0 + math.exp(-z)),
                    "toward_a": [c for c in concepts if c["toward"] == "a"],
                    "toward_b": [c for c in concepts if c["toward"] == "b"],
                }
            )
        return {
            "pair_id": pair_id,
            "resolved_as": kind,
            "item_id": item_id,
            "fit_id": fit_id,
            "representation": representation,
            "item": item,
            "verdicts": out_verdicts,
        }
    finally:
        con.close()


def _item(con: duckdb.DuckDBPyConnection, item_id: str) -> dict[str, Any]:
    if not table_columns(con, "dim_items"):
        return {"item_id": item_id, "prompt": None, "response_a": None, "response_b": None}
    row = con.execute(
        "select item_id, domain, source, prompt, response_a, response_b, model_a, model_b "
        "from marts.dim_items where item_id = ?",
        [item_id],
    ).fetchone()
    if row is None:
        return {"item_id": item_id, "prompt": None, "response_a": None, "response_b": None}
    keys = ("item_id", "domain", "source", "prompt", "response_a", "response_b", "model_a", "model_b")
    return dict(zip(keys, row))


# ------------------------------------------------------------------------------------------ terminal view


def _value_text(value: float, representation: str) -> str:
    if representation == "comp":
        return "A higher" if value > 0 else "B higher" if value < 0 else "equal"
    if representation == "measure":
        return f"A−B {value:+.2f} sd"
    return f"A−B {value:+g}"


def _concept_table(title: str, rows: list[dict[str, Any]], representation: str, style: str, limit: int) -> Table:
    t = Table(title=Text(title, style=f"bold {style}"), title_justify="left", expand=False, show_edge=False)
    t.add_column("concept")
    t.add_column({"comp": "value", "measure": "measure diff"}.get(representation, "score diff"))
    t.add_column("logit", justify="right")
    t.add_column("local lift", justify="right")
    for c in rows[:limit]:
        t.add_row(
            Text(str(c["concept"])),
            _value_text(c["value"], representation),
            f"{c['contribution']:+.2f}",
            f"{c['local_lift_pct']:+.1f}%",
        )
    if not rows:
        t.add_row(Text("(none)", style="dim"), "", "", "")
    elif len(rows) > limit:
        t.add_row(Text(f"… {len(rows) - limit} more (--json for all)", style="dim"), "", "", "")
    return t


def render_explanation(exp: dict[str, Any], console: Console, width: int = 360, limit: int = 8) -> None:
    """Print the explanation: the pair (shortened), then per verdict the prediction and the concepts."""
    item = exp["item"]
    head = Text()
    head.append(f"item {exp['item_id']}", style="bold")
    if item.get("domain"):
        head.append(f" · domain {item['domain']}")
    if item.get("source"):
        head.append(f" · source {item['source']}")
    body = [head]
    if item.get("response_a") is None:  # a pair without a prompt has prompt None but its responses
        body.append(Text("(pair text not in this served copy: marts.dim_items is missing)", style="dim"))
    else:
        for label, key, model in (
            ("Prompt", "prompt", None),
            ("A", "response_a", "model_a"),
            ("B", "response_b", "model_b"),
        ):
            t = Text()
            t.append(f"{label}", style="bold cyan")
            if model and item.get(model):
                t.append(f" ({item[model]})", style="dim")
            t.append(": ")
            if item.get(key) is None:  # the pair was imported without a prompt (raw.items.prompt NULL)
                t.append("(none: this pair was imported without a prompt)", style="dim")
            else:
                t.append(_shorten(item.get(key), width))
            body.append(t)
    # a box of the console's width, its text wrapped inside it even in a log (soft wrap would crop it)
    console.print(Panel(Group(*body), title="pair", title_align="left"), soft_wrap=False)
    for v in exp["verdicts"]:
        p = v["prob_a"]
        line = Text()
        line.append(f"{v['mechanism']}", style="bold")
        line.append(
            f" ({v['mechanism_type']}) · domain {v['domain']}"
            + ("" if v["used_domain_weights"] else " (shared weights b only)")
            + "\n"
        )
        line.append(f"P(A wins) = {p:.2f}", style="bold")
        line.append(f" out-of-fold → predicts {str(v['predicted_winner']).upper()}; actual winner ")
        line.append(str(v["actual_winner"]).upper(), style="bold")
        ok = v["is_correct"]
        line.append("  ✓ correct" if ok else "  ✗ wrong" if ok is not None else "", style="green" if ok else "red")
        line.append(
            f"\nconcept contributions come from the model refitted on all pairs "
            f"(its P(A wins) = {v['refit_prob_a']:.2f}); label {v['label_id']}",
            style="dim",
        )
        console.print(line)
        if not (v["toward_a"] or v["toward_b"]):
            console.print(
                Text(
                    "no concept moved this prediction: every concept the model uses is equal for A and B "
                    "here, or the model uses none (P = 0.5)",
                    style="yellow",
                )
            )
        else:
            console.print(_concept_table("pushed toward A", v["toward_a"], exp["representation"], "green", limit))
            console.print(_concept_table("pushed toward B", v["toward_b"], exp["representation"], "magenta", limit))
        console.print()
    console.print(
        Text(
            "logit = (b + s_d)·x, the concept's additive share of the log-odds that A wins; local lift = "
            "% change in P(A wins) if A were one more unit better on the concept (method §5).",
            style="dim",
        )
    )
