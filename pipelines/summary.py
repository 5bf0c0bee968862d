"""The short terminal summary after a run: held-out accuracy and top concepts per mechanism."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import duckdb
from rich.console import Console
from rich.table import Table


@dataclass(frozen=True)
class MechanismSummary:
    mechanism: str
    mechanism_type: str
    n_pairs: int
    accuracy: float
    top_by_domain: list[tuple[str, int, list[tuple[str, float]]]]  # (domain, n_pairs, [(concept, lift %)])


def load_summary(db_path: Path, representation: str = "comp", n_domains: int = 3, k: int = 5) -> list[MechanismSummary]:
    """Read the latest fit from a warehouse file (served copy or build DB), read-only."""
    con = duckdb.connect(str(db_path), read_only=True)
    try:
        fit_id = con.execute("select max(fit_id) from marts.fct_model_metrics").fetchall()[0][0]
        metrics = con.execute(
            """select mechanism, mechanism_type, n_pairs, accuracy from marts.fct_model_metrics
               where fit_id = ? and representation = ? and domain = '__all__'
               order by mechanism_type, n_pairs desc, mechanism""",
            [fit_id, representation],
        ).fetchall()
        effects = con.execute(
            """with domains as (
                   select mechanism, domain, max(n_pairs) as n_pairs, bool_or(has_domain_weights) as own,
                          row_number() over (partition by mechanism order by max(n_pairs) desc, domain) as d_rank
                   from marts.fct_concept_effects
                   where fit_id = ? and representation = ? and domain <> '__shared__'
                   group by mechanism, domain
               ),
               ranked as (
                   select e.mechanism, e.domain, d.n_pairs, d.own, d.d_rank, e.concept, e.global_lift_pct,
                          row_number() over (partition by e.mechanism, e.domain
                                             order by e.global_lift_pct desc, e.concept) as c_rank
                   from marts.fct_concept_effects e
                   join domains d using (mechanism, domain)
                   where e.fit_id = ? and e.representation = ? and d.d_rank <= ? and e.global_lift_pct > 0
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
    for mech, mtype, n_pairs, acc in metrics:
        domains = [(d, n, tops) for d, (n, tops) in by_mech.get(mech, {}).items()]
        out.append(MechanismSummary(mech, mtype, int(n_pairs), float(acc), domains))
    return out


def render_summary(summaries: list[MechanismSummary], console: Console, representation: str = "comp") -> None:
    """Print one table: mechanism, held-out accuracy, top concepts (by global lift) in its 3 largest domains."""
    table = Table(
        title=f"Why each mechanism prefers a response ({representation}-rep; held-out = 5-fold out-of-fold)",
        show_lines=True,
    )
    table.add_column("mechanism", overflow="fold")
    table.add_column("held-out acc", justify="right")
    for i in range(3):
        table.add_column(f"largest domain #{i + 1}: top 5 by lift", overflow="fold")
    for s in summaries:
        cells = []
        for domain, n, tops in s.top_by_domain[:3]:
            lines = [f"[bold]{domain}[/] (n={n})"] + [f"{c} {lift:+.1f}%" for c, lift in tops]
            if not tops:
                lines.append("[dim]no positive driver[/]")
            cells.append("\n".join(lines))
        cells += [""] * (3 - len(cells))
        table.add_row(f"{s.mechanism}\n[dim]{s.mechanism_type}, n={s.n_pairs}[/]", f"{100 * s.accuracy:.1f}%", *cells)
    console.print(table)
    by_type: dict[str, list[float]] = {}
    for s in summaries:
        by_type.setdefault(s.mechanism_type, []).append(s.accuracy)
    line = ", ".join(f"{t}: {100 * sum(v) / len(v):.1f}% (mean of {len(v)})" for t, v in sorted(by_type.items()))
    console.print(f"Held-out accuracy by mechanism type: {line}")
    console.print(
        "[dim]Lift = expected % change in P(preferred) per unit of the concept (50*(b+s_d)). "
        "'shared b only': too few pairs in that domain for its own weights.[/]"
    )
