"""The short terminal summary after a run: held-out accuracy and top concepts per mechanism."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import duckdb
from rich.console import Console
from rich.table import Table
from rich.text import Text

from pipelines.core.console import Hanging, styled
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
class DomainTop:
    """The top concepts of one mechanism in one of its largest domains."""

    domain: str
    n_pairs: int
    own_weights: bool  # False: too few pairs for its own deviations s_d (the shared weights b only)
    concepts: list[tuple[str, float]]  # (concept, global lift %), largest first


@dataclass(frozen=True)
class MechanismSummary:
    mechanism: str
    mechanism_type: str
    n_pairs: int
    accuracy: float
    accuracy_length_only: float | None
    accuracy_style: float | None
    top_by_domain: list[DomainTop]


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
    by_mech: dict[str, dict[str, DomainTop]] = {}
    for mech, domain, n_pairs, own, _rank, concept, lift in effects:
        top = by_mech.setdefault(mech, {}).setdefault(domain, DomainTop(domain, int(n_pairs), bool(own), []))
        top.concepts.append((concept, float(lift)))
    out = []
    for mech, mtype, n_pairs, acc, acc_len, acc_style in metrics:
        domains = list(by_mech.get(mech, {}).values())
        out.append(MechanismSummary(mech, mtype, int(n_pairs), float(acc), _opt(acc_len), _opt(acc_style), domains))
    return representation, out


def _opt(v: float | None) -> float | None:
    return None if v is None else float(v)


# ------------------------------------------------------------------------------------------ terminal view

#: the marker of a domain whose pairs were too few for its own weights (explained in the footer)
SHARED_ONLY = "[shared b only]"
#: the narrowest domain column the table layout accepts; below it the summary is stacked, one block per mechanism
MIN_DOMAIN_COLUMN = 28
_N_DOMAINS = 3


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{100 * v:.1f}%"


def _domain_label(top: DomainTop) -> Text:
    label = Text(top.domain, style="bold")
    if not top.own_weights:
        label.append(f" {SHARED_ONLY}", style="italic")
    return label.append(f" (n={top.n_pairs})")


def _concepts(top: DomainTop, sep: str) -> Text:
    if not top.concepts:
        return Text("no positive driver", style="dim")
    return Text(sep).join(Text(f"{lift:+.1f}% {concept}") for concept, lift in top.concepts)


def _table_width(summaries: list[MechanismSummary]) -> tuple[int, int]:
    """(width of the mechanism column, width the table layout needs) with every name on one line."""
    mech = max([len("mechanism")] + [max(len(s.mechanism), len(_type_line(s))) for s in summaries])
    # five columns, each padded by one space per side, and six borders
    return mech, mech + len("62.9% / 60.8%") + _N_DOMAINS * MIN_DOMAIN_COLUMN + 5 * 2 + 6


def _type_line(s: MechanismSummary) -> str:
    return f"{s.mechanism_type}, n={s.n_pairs}"


def _table(summaries: list[MechanismSummary], mech_width: int) -> Table:
    table = Table(show_lines=True)
    table.add_column("mechanism", no_wrap=True, min_width=mech_width)
    table.add_column(Text("held-out acc\n(length / style)"), justify="right", no_wrap=True)
    for i in range(_N_DOMAINS):
        table.add_column(f"largest domain #{i + 1}: top 5 by lift", min_width=MIN_DOMAIN_COLUMN, overflow="ellipsis")
    for s in summaries:
        cells: list[Text] = [
            Text("\n").join([_domain_label(top), _concepts(top, "\n")]) for top in s.top_by_domain[:_N_DOMAINS]
        ]
        cells += [Text("")] * (_N_DOMAINS - len(cells))
        acc = styled(
            f"{100 * s.accuracy:.1f}%\n", (f"{_pct(s.accuracy_length_only)} / {_pct(s.accuracy_style)}", "dim")
        )
        table.add_row(styled((s.mechanism, "bold"), "\n", (_type_line(s), "dim")), acc, *cells)
    return table


def _stacked(s: MechanismSummary) -> list[Hanging]:
    """One block per mechanism: a head line, then one line per domain (wrapped at words, hanging indent)."""
    kind = "" if s.mechanism.startswith(f"{s.mechanism_type}:") else f"{s.mechanism_type}, "
    head = styled(
        (s.mechanism, "bold"),
        f"  {kind}n={s.n_pairs}, held-out ",
        (f"{100 * s.accuracy:.1f}%", "bold"),
        f" (length {_pct(s.accuracy_length_only)}, style {_pct(s.accuracy_style)})",
    )
    lines = [Hanging(head, indent=0, hang=4)]
    for top in s.top_by_domain[:_N_DOMAINS]:
        lines.append(Hanging(_domain_label(top).append(": ") + _concepts(top, ", "), indent=2, hang=6))
    return lines


def render_summary(summaries: list[MechanismSummary], console: Console, representation: str = "comp") -> None:
    """Print held-out accuracy and the top concepts (by global lift) in each mechanism's 3 largest domains.

    A table when every mechanism name fits on one line beside three domain columns of at least
    ``MIN_DOMAIN_COLUMN`` characters, else one block per mechanism. Every name is printed literally (``Text``
    only, never markup), whatever ``console`` it is given.
    """
    console.print(
        Text(
            f"Why each mechanism prefers a response ({representation}-rep; held-out = 5-fold out-of-fold)",
            style="bold",
        )
    )
    mech_width, needed = _table_width(summaries)
    if console.width >= needed:
        console.print(_table(summaries, mech_width))
    else:
        for s in summaries:
            console.print()
            for block in _stacked(s):
                console.print(block)
        console.print()
    by_type: dict[str, list[float]] = {}
    for s in summaries:
        by_type.setdefault(s.mechanism_type, []).append(s.accuracy)
    means = ", ".join(f"{t}: {100 * sum(v) / len(v):.1f}% (mean of {len(v)})" for t, v in sorted(by_type.items()))
    console.print(Text(f"Held-out accuracy by mechanism type: {means}"))
    scored = [s for s in summaries if s.accuracy_length_only is not None and s.accuracy_style is not None]
    if scored:
        n = len(scored)
        mean = [sum(v) / n for v in zip(*[(s.accuracy, s.accuracy_length_only, s.accuracy_style) for s in scored])]
        console.print(
            Text(
                f"Concepts {100 * mean[0]:.1f}% vs length only {100 * mean[1]:.1f}% vs style baseline "
                f"{100 * mean[2]:.1f}% (mean held-out accuracy of {n} mechanisms, same folds)"
            )
        )
    unit = (
        "standard deviation of the concept's A−B difference" if representation == "measure" else "unit of the concept"
    )
    console.print(
        Text(
            f"Lift = expected % change in P(preferred) per {unit} (50*(b+s_d)). "
            f"{SHARED_ONLY}: too few pairs in that domain for its own weights.",
            style="dim",
        )
    )
