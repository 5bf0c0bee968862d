"""The short terminal summary after a run: held-out accuracy and top concepts per mechanism."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import duckdb
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from pipelines.serve.served import connect_served, latest_fit_id
from py_models.representations import lead_representation


def resolve_representation(con: duckdb.DuckDBPyConnection, requested: str | None) -> str:
    """``requested``, or the lead representation of the latest fit (measure when fitted, else comp)."""
    if requested:
        return requested
    rows = con.execute(
        "select distinct representation from marts.fct_model_metrics where fit_id = ?",
        [latest_fit_id(con, "fct_model_metrics")],
    ).fetchall()
    return lead_representation(r[0] for r in rows)


@dataclass(frozen=True)
class MechanismSummary:
    mechanism: str
    mechanism_type: str
    n_pairs: int
    accuracy: float
    accuracy_length_only: float | None
    accuracy_style: float | None
    top_by_domain: list[tuple[str, int, list[tuple[str, float]]]]  # (domain, n_pairs, [(concept, lift %)])


def load_summary(
    db_path: Path, representation: str | None = None, n_domains: int = 3, k: int = 5
) -> tuple[str, list[MechanismSummary]]:
    """Read the latest fit from a warehouse file (served copy or build DB), read-only; returns the
    representation shown (``None`` = the lead one) and one summary per mechanism."""
    con = connect_served(db_path)
    try:
        representation = resolve_representation(con, representation)
        fit_id = latest_fit_id(con, "fct_model_metrics")
        metrics = con.execute(
            """select mechanism, mechanism_type,
                      max(n_pairs) filter (where variant = 'hmdr'),
                      max(accuracy) filter (where variant = 'hmdr'),
                      max(accuracy) filter (where variant = 'length_only'),
                      max(accuracy) filter (where variant = 'style')
               from marts.fct_model_metrics
               where fit_id = ? and representation = ? and domain = '__all__'
               group by mechanism, mechanism_type
               having max(accuracy) filter (where variant = 'hmdr') is not null
               order by mechanism_type, 3 desc, mechanism""",
            [fit_id, representation],
        ).fetchall()
        effects = con.execute(
            """with domains as (
                   select mechanism, domain, max(n_pairs) as n_pairs, bool_or(has_domain_weights) as own,
                          row_number() over (partition by mechanism order by max(n_pairs) desc, domain) as d_rank
                   from marts.fct_concept_effects
                   where fit_id = ? and representation = ? and domain <> '__shared__' and control = 'none'
                   group by mechanism, domain
               ),
               ranked as (
                   select e.mechanism, e.domain, d.n_pairs, d.own, d.d_rank, e.concept, e.global_lift_pct,
                          row_number() over (partition by e.mechanism, e.domain
                                             order by e.global_lift_pct desc, e.concept) as c_rank
                   from marts.fct_concept_effects e
                   join domains d using (mechanism, domain)
                   where e.fit_id = ? and e.representation = ? and d.d_rank <= ? and e.global_lift_pct > 0
                     and e.control = 'none'
               )
               select mechanism, domain, n_pairs, own, d_rank, concept, global_lift_pct
               from ranked where c_rank <= ? order by mechanism, d_rank, c_rank""",
            [fit_id, representation, fit_id, representation, n_domains, k],
        ).fetchall()
    finally:
        con.close()
    by_mech: dict[str, dict[str, tuple[int, list[tuple[str, float]]]]] = {}
    for mech, domain, n_pairs, own, _rank, concept, lift in effects:
        label = domain if own else f"{domain} [shared b only]"
        by_mech.setdefault(mech, {}).setdefault(label, (int(n_pairs), []))[1].append((concept, float(lift)))
    out = []
    for mech, mtype, n_pairs, acc, acc_len, acc_style in metrics:
        domains = [(d, n, tops) for d, (n, tops) in by_mech.get(mech, {}).items()]
        out.append(MechanismSummary(mech, mtype, int(n_pairs), float(acc), _opt(acc_len), _opt(acc_style), domains))
    return representation, out


def _opt(v: float | None) -> float | None:
    return None if v is None else float(v)


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{100 * v:.1f}%"


def render_summary(summaries: list[MechanismSummary], console: Console, representation: str = "comp") -> None:
    """Print one table: mechanism, held-out accuracy, top concepts (by global lift) in its 3 largest domains."""
    table = Table(
        title=f"Why each mechanism prefers a response ({representation}-rep; held-out = 5-fold out-of-fold)",
        show_lines=True,
    )
    table.add_column("mechanism", overflow="fold")
    table.add_column("held-out acc\n(length / style)", justify="right")
    for i in range(3):
        table.add_column(f"largest domain #{i + 1}: top 5 by lift", overflow="fold")
    for s in summaries:
        cells = []
        for domain, n, tops in s.top_by_domain[:3]:
            lines = [f"[bold]{escape(domain)}[/] (n={n})"] + [f"{escape(c)} {lift:+.1f}%" for c, lift in tops]
            if not tops:
                lines.append("[dim]no positive driver[/]")
            cells.append("\n".join(lines))
        cells += [""] * (3 - len(cells))
        acc = f"{100 * s.accuracy:.1f}%\n[dim]{_pct(s.accuracy_length_only)} / {_pct(s.accuracy_style)}[/]"
        table.add_row(f"{escape(s.mechanism)}\n[dim]{escape(s.mechanism_type)}, n={s.n_pairs}[/]", acc, *cells)
    console.print(table)
    by_type: dict[str, list[float]] = {}
    for s in summaries:
        by_type.setdefault(s.mechanism_type, []).append(s.accuracy)
    line = ", ".join(f"{t}: {100 * sum(v) / len(v):.1f}% (mean of {len(v)})" for t, v in sorted(by_type.items()))
    console.print(f"Held-out accuracy by mechanism type: {escape(line)}")
    scored = [s for s in summaries if s.accuracy_length_only is not None and s.accuracy_style is not None]
    if scored:
        n = len(scored)
        mean = [sum(v) / n for v in zip(*[(s.accuracy, s.accuracy_length_only, s.accuracy_style) for s in scored])]
        console.print(
            f"Concepts {100 * mean[0]:.1f}% vs length only {100 * mean[1]:.1f}% vs style baseline "
            f"{100 * mean[2]:.1f}% (mean held-out accuracy of {n} mechanisms, same folds)"
        )
    console.print(
        "[dim]Lift = expected % change in P(preferred) per "
        + (
            "standard deviation of the concept's A−B difference"
            if representation == "measure"
            else "unit of the concept"
        )
        + " (50*(b+s_d)). "
        "'shared b only': too few pairs in that domain for its own weights.[/]"
    )
