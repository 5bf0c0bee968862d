"""Assemble the self-contained HTML report: escaped text, inline CSS, figures as base64 PNG data URIs.

Nothing in the page refers to the network: no scripts, fonts, stylesheets or images from a URL. Every
string that comes from the data (concept, domain and mechanism names, messages) goes through ``esc``.
"""

from __future__ import annotations

import html
import math
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime

import pandas as pd

from pipelines import __version__
from pipelines.serve.report import figures as F
from pipelines.serve.report.data import (
    ALL,
    SHARED,
    ReportData,
    agreement_matrix,
    contrast_domains,
    contrast_pairs,
    drift_top_concepts,
    human_minus_judge,
    largest_domains,
    lift_matrix,
    top_contrasts,
)
from pipelines.serve.report.glyphs import fonts_for

CSS = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 0 auto; max-width: 1360px;
       padding: 0 24px 48px; color: #222; line-height: 1.45; }
h1 { margin: 24px 0 4px; } h2 { border-bottom: 2px solid #ddd; padding-bottom: 4px; margin-top: 40px; }
h3 { margin: 28px 0 4px; } .muted { color: #666; } .small { font-size: 0.88em; }
table { border-collapse: collapse; margin: 8px 0 16px; font-size: 0.86em; }
th, td { border: 1px solid #ddd; padding: 3px 8px; text-align: left; vertical-align: top; }
th { background: #f3f3f3; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
img { max-width: 100%; height: auto; display: block; margin: 6px 0 10px; }
.box { background: #f6f8fa; border: 1px solid #e1e4e8; border-radius: 6px; padding: 10px 16px; margin: 12px 0; }
.toc ul { margin: 4px 0; } .toc li { margin: 1px 0; } .mechs { columns: 3; font-size: 0.9em; }
.note { background: #fff8e1; border-left: 4px solid #f0b429; padding: 6px 12px; margin: 10px 0; }
.tag { display: inline-block; font-size: 0.8em; padding: 0 6px; border-radius: 8px; color: #fff; }
.human { background: #1b9e77; } .judge { background: #d95f02; } .reward { background: #7570b3; }
.other { background: #777; } b.best { color: #08519c; }
tr.dist td { background: #fde0ef; font-weight: 600; } .dist-mark { color: #c51b7d; font-weight: 700; }
"""


def esc(value: object) -> str:
    """HTML-escape any value (quotes included)."""
    return html.escape("" if value is None else str(value), quote=True)


def _img(b64: str, alt: str) -> str:
    return f'<img alt="{esc(alt)}" src="data:image/png;base64,{b64}">'


def _fmt(v: object, kind: str = "") -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "—"
    if kind == "pct" and isinstance(v, int | float):
        return f"{100 * float(v):.1f}%"
    if kind == "lift" and isinstance(v, int | float):
        return f"{float(v):+.1f}"
    if isinstance(v, float):
        return f"{v:.3g}"
    return str(v)


def table(df: pd.DataFrame, formats: dict[str, str] | None = None, max_rows: int = 200) -> str:
    """An escaped HTML table; ``formats`` maps column -> 'pct' | 'lift' | '' ."""
    formats = formats or {}
    head = "".join(f"<th>{esc(c)}</th>" for c in df.columns)
    body = []
    for _, row in df.head(max_rows).iterrows():
        cells = []
        for c in df.columns:
            v = row[c]
            num = isinstance(v, int | float) and not isinstance(v, bool)
            cells.append(f"<td{' class=num' if num else ''}>{esc(_fmt(v, formats.get(c, '')))}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    more = f'<p class="muted small">{len(df) - max_rows} more rows not shown.</p>' if len(df) > max_rows else ""
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>{more}"


def _tag(mtype: object) -> str:
    t = str(mtype) if mtype in ("human", "judge", "reward") else "other"
    return f'<span class="tag {t}">{esc(mtype)}</span>'


# ------------------------------------------------------------------------------------------------ sections


def _header(d: ReportData, toc: Sequence[tuple[str, str, Iterable[tuple[str, str]]]]) -> str:
    b = d.build
    build = esc(b.get("build_id", "unknown"))
    status = esc(b.get("status", ""))
    finished = esc(b.get("finished_at", ""))
    counts = ", ".join(f"{v:,} {esc(k)}" for k, v in d.counts.items())
    toc_items = []
    for anchor, title, subs in toc:
        sub = "".join(f'<li><a href="#{a}">{esc(t)}</a></li>' for a, t in subs)
        sub = f'<ul class="mechs">{sub}</ul>' if sub else ""
        toc_items.append(f'<li><a href="#{anchor}">{esc(title)}</a>{sub}</li>')
    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    return f"""
<h1>preflens report</h1>
<p class="muted">What each preference mechanism rewards, in concepts. Build <code>{build}</code>
({status}, finished {finished}) · fit <code>{esc(d.fit_id)}</code> · {esc(d.representation)}-rep ·
generated {esc(now)} by preflens {esc(__version__)} from <code>{esc(d.serve_db)}</code></p>
<p><b>Data:</b> {counts}.</p>
<div class="box"><b>How to read lift.</b> A concept's <i>global lift</i> in a domain is 50·(b + s<sub>d</sub>) %:
roughly how much (in %) the probability that a response is preferred changes when the response is better on
that concept than the other one (one comp-rep unit), everything else fixed (method §5). Positive = the mechanism
rewards the concept, negative = it penalises it, 0 = the L1 model dropped it. <b>Light bars</b> are the part
shared by all domains (50·b), <b>dark bars</b> the domain's own deviation (50·s<sub>d</sub>), starting where the
light bar ends, and the <b>diamond</b> the total. Domains with too few pairs for their own deviations use b
alone (marked <i>shared b only</i>). Concepts are annotated by the offline or LLM annotator; lifts describe
what the mechanism's verdicts correlate with, not causes.</div>
<div class="toc box"><b>Contents</b><ol>{"".join(toc_items)}</ol></div>
"""


def _figure1_section(d: ReportData, max_domains: int, top_k: int, order: list[str], anchors: dict[str, str]) -> str:
    parts = [
        f"""<h2 id="global">1. Global explanations per mechanism (the paper's Figure 1)</h2>
<p>For each mechanism: a <b>Shared</b> panel (the weights b common to all its domains) and its
{max_domains} largest domains, each with its top {top_k} concepts ranked by |global lift|.
{
            "Whiskers are 95% bootstrap intervals of the total lift (very wide ones are cut at the panel edge)."
            if d.has_ci
            else '<span class="muted">No bootstrap intervals in this build (no whiskers).</span>'
        }
{
            "Grey concepts were selected (non-zero) in fewer than half of the bootstrap fits: treat them as unstable."
            if d.has_selection
            else ""
        }
{
            "Measure-rep: a lift is per standard deviation of the concept&#39;s transformed A &minus; B difference "
            "(e.g. of the log length ratio); marts.dim_concepts.measure_transform and marts.fct_concept_effects.feature_scale "
            "convert it back to raw units (weight per raw unit = total_weight / feature_scale)."
            if d.representation == "measure"
            else ""
        }</p>"""
    ]
    acc = (
        d.metrics[(d.metrics["representation"] == d.representation) & (d.metrics["variant"] == "hmdr")]
        .drop_duplicates("mechanism")
        .set_index("mechanism")
        if not d.metrics.empty
        else pd.DataFrame()
    )
    for mech in order:
        e = d.effects[d.effects["mechanism"] == mech]
        mtype = e["mechanism_type"].iloc[0]
        doms = largest_domains(d.effects, mech, max_domains)
        n_dom = int(
            (
                d.effects[(d.effects["mechanism"] == mech) & (d.effects["domain"] != SHARED)]
                .groupby("domain")["n_pairs"]
                .max()
                > 0
            ).sum()
        )
        no_own = doms.loc[~doms["has_domain_weights"].astype(bool), "domain"].tolist()
        info = [
            f"{int(e.loc[e['domain'] == SHARED, 'n_pairs'].max() or 0)} pairs in {n_dom} "
            f"domain{'' if n_dom == 1 else 's'}"
        ]
        if mech in acc.index:
            a = acc.loc[mech]
            info.append(
                f"held-out accuracy {100 * a['accuracy']:.1f}% [{100 * a['acc_low']:.1f}, {100 * a['acc_high']:.1f}]"
            )
        if n_dom > len(doms):
            info.append(f"showing the {len(doms)} largest domains")
        if no_own:
            info.append("shared b only (too few pairs for own weights): " + ", ".join(no_own))
        shown = e[e["domain"].isin(doms["domain"])]
        if len(doms) and not (shown["deviation_lift_pct"].abs() >= 0.05).any():
            info.append("no domain deviates from b here: the domain panels repeat the shared one")
        head = (
            f'<h3 id="{anchors[mech]}">{esc(mech)} {_tag(mtype)}</h3><p class="muted small">{esc(" · ".join(info))}</p>'
        )
        if not (e["global_lift_pct"].abs() > 1e-9).any():
            parts.append(
                head + '<p class="note">The L1 model kept no concept for this mechanism (every lift is 0): '
                "the concepts do not explain its verdicts in this build.</p>"
            )
            continue
        fig = F.figure1(d.effects, mech, doms, top_k, has_ci=d.has_ci, has_selection=d.has_selection)
        parts.append(head + _img(F.to_png_base64(fig), f"Figure 1 for {mech}"))
    return "\n".join(parts)


def _length_control_section(d: ReportData, order: list[str], top_k: int) -> str:
    """Top shared concepts with and without length as an unpenalised covariate (Arena-style control)."""
    c = d.controlled
    if c.empty:
        return ""
    plain = d.effects[d.effects["domain"] == SHARED]
    parts = [
        f"""<h3 id="length-control">At equal length</h3>
<p>Length dominates judges and reward models and hides everything else. Each mechanism was refitted with the log
word-count ratio as an unpenalised covariate, so these shared lifts ({esc(d.representation)}-rep) read "with length
held fixed"; the plain top concepts are beside them.</p>"""
    ]
    rows = []
    for mech in order:
        cm = c[(c["mechanism"] == mech) & (c["global_lift_pct"].abs() > 1e-9)]
        if cm.empty:
            continue
        top_c = cm.reindex(cm["global_lift_pct"].abs().sort_values(ascending=False).index).head(top_k)
        pm = plain[(plain["mechanism"] == mech) & (plain["global_lift_pct"].abs() > 1e-9)]
        top_p = pm.reindex(pm["global_lift_pct"].abs().sort_values(ascending=False).index).head(top_k)
        rows.append(
            {
                "mechanism": mech,
                "top concepts, plain": "; ".join(f"{r.concept} {r.global_lift_pct:+.1f}%" for r in top_p.itertuples()),
                "top concepts at equal length": "; ".join(
                    f"{r.concept} {r.global_lift_pct:+.1f}%" for r in top_c.itertuples()
                ),
            }
        )
    if not rows:
        return ""
    parts.append(table(pd.DataFrame(rows)))
    return "\n".join(parts)


def _fitted_contrasts(d: ReportData, pairs_n: int, top_k: int) -> str:
    """One forest plot per mechanism pair (domain ``__all__`` first, then its per-domain fits) and a table."""
    head = '<h3 id="contrast-pairs">Fitted contrasts per mechanism pair</h3>'
    c = d.contrasts
    if c is None:
        return head + (
            '<p class="note">marts.rpt_mechanism_contrast is not in this served copy (built before fitted contrasts): '
            "rebuild with <code>preflens run</code> to get them.</p>"
        )
    if c.empty:
        return head + (
            '<p class="note">No mechanism pair shared enough items for a fitted contrast in this build '
            "(var contrast_min_shared_items, docs/contrasts.md).</p>"
        )
    if pairs_n <= 0:
        return head + '<p class="muted small">Not drawn (--contrast-pairs 0).</p>'
    reps = sorted(set(c["representation"]))
    pairs = contrast_pairs(c, pairs_n)
    n_all = len(contrast_pairs(c, 10**6))
    shown = (
        f"{len(pairs)} of {n_all} pairs (most distinguishable contrasts first, then most shared items)"
        if n_all > len(pairs)
        else (f"all {n_all} pair{'' if n_all == 1 else 's'}")
    )
    parts = [
        head,
        f"""<p>One joint HMDR over both mechanisms' verdicts on the items both judged (docs/contrasts.md): the point is
the contrast <i>A &minus; B</i> = 50&middot;(&delta;<sub>A</sub> &minus; &delta;<sub>B</sub>) in lift points
(positive: A rewards the concept more than B), the line its 95% item-bootstrap interval, the vertical line zero.
<span class="dist-mark">Highlighted</span> contrasts are distinguishable from zero (Benjamini&ndash;Hochberg
adjusted p &le; the fit's FDR over the pair's concepts, and the interval excludes 0); grey ones are not. Per pair:
the top {top_k} concepts, distinguishable first, then by |estimate|, on the shared items of all domains
(<code>__all__</code>) first, then the pair's own domain fits. Showing {esc(shown)};
{esc(", ".join(reps))}-rep.</p>""",
    ]
    if d.representation not in reps:
        parts.append(
            f'<p class="note">The contrasts are fitted in the build\'s lead representation ({esc(", ".join(reps))}), '
            f"not in the {esc(d.representation)}-rep of the rest of this report.</p>"
        )
    for i, p in enumerate(pairs.to_dict("records")):
        a, b = str(p["mechanism_a"]), str(p["mechanism_b"])
        n_dist = int(p["n_distinguishable"])
        own: list[str] = [str(x) for x in p["domains"]]
        doms = [ALL, *own[:2]] if (c["domain"] == ALL).any() else own[:3]
        panels: list[tuple[str, str, pd.DataFrame]] = []
        for dom in doms:
            top = top_contrasts(c, a, b, dom, top_k)
            sub = c[(c["mechanism_a"] == a) & (c["mechanism_b"] == b) & (c["domain"] == dom)]
            n_items = int(sub["n_shared_items"].max()) if not sub.empty else 0
            label = "all domains" if dom == ALL else dom
            panels.append((dom, f"{label} — {n_items} shared items", top))
        info = (
            f"{int(p['n_shared_items'])} shared items · {n_dist} distinguishable contrast{'' if n_dist == 1 else 's'}"
            f" over {len(doms)} fit{'' if len(doms) == 1 else 's'}"
        )
        parts.append(
            f'<h4 id="pair-{i}">{esc(a)} {_tag(p["mechanism_type_a"])} vs {esc(b)} {_tag(p["mechanism_type_b"])}</h4>'
            f'<p class="muted small">{esc(info)}</p>'
        )
        if all(t.empty for _, _, t in panels):
            parts.append(
                '<p class="note">Every contrast of this pair is 0: the joint fit put all concepts in the shared '
                "weights (the two mechanisms are not told apart by the concepts).</p>"
            )
            continue
        fig = F.contrast_forest([(title, t) for _, title, t in panels], a, b)
        parts.append(_img(F.to_png_base64(fig), f"fitted contrasts {a} vs {b}"))
        parts.append(_contrast_table(panels[0][2], panels[0][0]))
    return "\n".join(parts)


def _contrast_table(top: pd.DataFrame, domain: str) -> str:
    """The first panel's contrasts as an escaped table, distinguishable rows highlighted."""
    if top.empty:
        return ""
    rows = []
    los = pd.to_numeric(top["lift_diff_ci_low"], errors="coerce").to_numpy(dtype=float)
    his = pd.to_numeric(top["lift_diff_ci_high"], errors="coerce").to_numpy(dtype=float)
    for r, lo, hi in zip(top.itertuples(index=False), los, his):
        ci = "—" if math.isnan(lo) or math.isnan(hi) else f"[{lo:+.1f}, {hi:+.1f}]"
        cells = [
            esc(r.concept),
            f'<td class="num">{esc(f"{r.lift_diff_pct:+.1f}")}</td>',
            f'<td class="num">{esc(ci)}</td>',
            f'<td class="num">{esc(_fmt(r.selection_frequency, "pct"))}</td>',
            f'<td class="num">{esc(_fmt(r.p_adjusted))}</td>',
            "<td>yes</td>" if r.distinguishable else "<td>no</td>",
        ]
        cells[0] = f"<td>{cells[0]}</td>"
        rows.append(f"<tr{' class=dist' if r.distinguishable else ''}>{''.join(cells)}</tr>")
    return (
        f'<p class="small">{esc("all domains" if domain == ALL else domain)}:</p><table><thead><tr><th>concept</th>'
        "<th>A − B (lift points)</th><th>95% interval</th><th>selected</th><th>BH-adjusted p</th>"
        f"<th>distinguishable</th></tr></thead><tbody>{''.join(rows)}</tbody></table>"
    )


def _drift_section(d: ReportData, order: list[str], top_n: int) -> str:
    """Each mechanism's top shared concepts over the published builds (rpt_concept_drift)."""
    parts = ['<h2 id="drift">5. Drift across published builds</h2>']
    dr = d.drift
    if dr is None:
        parts.append(
            '<p class="note">marts.rpt_concept_drift is not in this served copy (built before drift tracking).</p>'
        )
        return "\n".join(parts)
    if dr.empty:
        parts.append(
            f'<p class="note">No published build has a {esc(d.representation)}-rep fit in marts.rpt_concept_drift '
            "yet.</p>"
        )
        return "\n".join(parts)
    builds = pd.DataFrame(dr.groupby("fit_id", as_index=False)["built_at"].min()).sort_values(["built_at", "fit_id"])
    if len(builds) < 2:
        only = builds.iloc[0]
        parts.append(
            f'<p class="note">One published build so far (<code>{esc(only["fit_id"])}</code>, built '
            f"{esc(only['built_at'])}): drift needs a second one. Each later published build adds a point per "
            "concept here (marts.rpt_concept_drift).</p>"
        )
        return "\n".join(parts)
    parts.append(f"""<p>Shared lift 50&middot;b ({esc(d.representation)}-rep, plain fit) of each mechanism's top
{top_n} concepts (by |lift| in its latest build) over the {len(builds)} published builds, oldest first. Bands and
bars are 95% bootstrap intervals where the build has them; a <b>ring</b> marks a change since the previous build
beyond both intervals (<code>intervals_overlap</code> false). Only published builds count.</p>""")
    listing = pd.DataFrame(
        {"build": range(1, len(builds) + 1), "fit_id": builds["fit_id"], "built at": builds["built_at"].astype(str)}
    )
    parts.append(table(listing))
    mechs = [m for m in order if m in set(dr["mechanism"])] + sorted(set(dr["mechanism"]) - set(order))
    panels, single = [], []
    for mech in mechs:
        rows = dr[dr["mechanism"] == mech]
        if rows["fit_id"].nunique() < 2:
            single.append(mech)
            continue
        concepts = drift_top_concepts(dr, mech, top_n)
        if concepts:
            panels.append((mech, rows, concepts))
    if panels:
        fig = F.drift_lines(panels, builds)
        parts.append(_img(F.to_png_base64(fig), "concept lift over published builds"))
    if single:
        parts.append(f'<p class="small muted">Only one published build for: {esc(", ".join(single))}.</p>')
    last = dr.groupby("mechanism")["build_number"].transform("max")
    moved = dr[(dr["build_number"] == last) & ~dr["intervals_overlap"].astype("boolean").fillna(True)]
    if not moved.empty:
        t = moved.assign(_abs=moved["lift_change"].abs()).sort_values("_abs", ascending=False).head(30)
        t = t[["mechanism", "concept", "global_lift_pct", "lift_change"]].rename(
            columns={"global_lift_pct": "lift now", "lift_change": "change since previous build"}
        )
        parts.append(
            '<p class="small">Changes in the latest build beyond both intervals:</p>'
            + table(t, {"lift now": "lift", "change since previous build": "lift"})
        )
    return "\n".join(parts)


def _contrast_section(d: ReportData, order: list[str], n_domains: int, pairs_n: int = 6, top_k: int = 8) -> str:
    parts = [
        """<h2 id="contrast">2. Mechanism contrast</h2>
<p>Global lift of every concept (rows) for every mechanism (columns, coloured by type: <span style="color:#1b9e77">
human</span>, <span style="color:#d95f02">judge</span>, <span style="color:#7570b3">reward</span>). Blue = the
mechanism rewards more of the concept, red = less. Columns marked * have no weights of their own in that
domain (they show b). Concepts with zero lift everywhere are left out.</p>"""
    ]
    parts.append(_fitted_contrasts(d, pairs_n, top_k))
    parts.append(
        '<h3 id="lift-heatmaps">Lift per concept and mechanism</h3><p class="small">Separate fits, side by side '
        "(no interval on the differences; the fitted contrasts above have one).</p>"
    )
    doms = contrast_domains(d.effects, n_domains)
    mats = {dom: lift_matrix(d.effects, dom, order) for dom in doms}
    vmax = max([1.0] + [float(m.abs().max().max()) for m in mats.values() if not m.empty])
    for dom, m in mats.items():
        if m.empty:
            continue
        e = d.effects[(d.effects["domain"] == dom)]
        no_own = set() if dom == SHARED else set(e.loc[~e["has_domain_weights"].astype(bool), "mechanism"])
        title = "Shared weights b (all domains)" if dom == SHARED else f"Domain: {dom}"
        parts.append(
            f"<h3>{esc(title)}</h3>"
            + _img(F.to_png_base64(F.lift_heatmap(m, title, vmax, no_own)), f"lift heat map {dom}")
        )
    diff, used = human_minus_judge(d.effects)
    parts.append('<h3 id="human-judge">Human minus judge</h3>')
    if diff.empty:
        parts.append('<p class="note">No domain was judged by both a human and a judge mechanism.</p>')
    else:
        parts.append(f"""<p>Per concept, the mean lift of the human mechanisms minus the mean lift of the LLM-judge
mechanisms, within each domain judged by both and then averaged over those {len(used)} domains
({esc(", ".join(used))}). Green bars: what humans reward more than judges; orange: what judges reward
more.</p>""")
        fig = F.diverging_bars(diff, f"Human − judge lift per concept ({d.representation}-rep)")
        parts.append(_img(F.to_png_base64(fig), "human minus judge lift"))
    return "\n".join(parts)


def _data_section(d: ReportData, order: list[str]) -> str:
    parts = ['<h2 id="data">3. Data and quality</h2>', '<h3 id="pairs">Labelled pairs per domain and mechanism</h3>']
    if not d.pairs.empty:
        m = d.pairs.pivot_table(index="domain", columns="mechanism", values="n_pairs", aggfunc="sum")
        m = m[[c for c in order if c in m.columns] + sorted(set(m.columns) - set(order))]
        m = m.loc[m.sum(axis=1).sort_values(ascending=False).index]
        fig = F.count_heatmap(
            m, "Labelled pairs per domain (rows) and mechanism (columns)", label="pairs (log scale)", log=True
        )
        parts.append(_img(F.to_png_base64(fig), "pairs per domain and mechanism"))
    parts.append('<h3 id="agreement">Agreement between mechanisms on shared items</h3>')
    if d.agreement.empty:
        parts.append('<p class="note">No agreement table (marts.rpt_mechanism_agreement) in this build.</p>')
    else:
        min_items = 10
        rate, _n = agreement_matrix(d.agreement, min_items=min_items)
        if not rate.empty:
            names = [c for c in order if c in rate.index] + sorted(set(rate.index) - set(order))
            rate = rate.reindex(index=names, columns=names)
            fig = F.count_heatmap(
                rate,
                f"Share of shared items (≥ {min_items} both decisive) where both pick the same winner",
                cmap="viridis",
                fmt="{:.0%}",
                vmin=0.4,
                vmax=1.0,
                label="agreement",
            )
            parts.append(_img(F.to_png_base64(fig), "agreement between mechanisms"))
        a = d.agreement[d.agreement["mechanism_a"] < d.agreement["mechanism_b"]]
        a = a.sort_values(["n_both_decisive", "mechanism_a"], ascending=[False, True])
        cols = [
            c
            for c in ("mechanism_a", "mechanism_b", "n_shared_items", "n_both_decisive", "agreement_rate")
            if c in a.columns
        ]
        parts.append(
            '<p class="small">Each pair once, most shared items first:</p>'
            + table(a[cols], {"agreement_rate": "pct"}, max_rows=30)
        )
    parts.append('<h3 id="annotation">Annotation quality per concept</h3>')
    q = d.annotation_quality
    if q.empty:
        parts.append('<p class="note">No annotation quality table in this build.</p>')
    else:
        rate_cols = [
            (c, n)
            for c, n in (
                ("relevance_rate", "relevant"),
                ("equal_rate", "equal (tie on concept)"),
                ("swap_inconsistency_rate", "swap-inconsistent"),
                ("failure_rate", "failed"),
            )
            if c in q.columns and q[c].notna().any()
        ]
        fail_cols = [c for c in q.columns if "fail" in c.lower()]
        explain = [
            "<b>relevant</b>: share of items where the concept applies",
            "<b>equal</b>: relevant but both responses score the same",
        ]
        if "swap_inconsistency_rate" in q.columns:
            explain.append(
                "<b>swap-inconsistent</b>: the verdict flips when A and B are swapped"
                + (
                    ""
                    if q["swap_inconsistency_rate"].notna().any()
                    else " (not measured: the offline annotator is deterministic)"
                )
            )
        if fail_cols:
            explain.append("<b>failures</b>: annotations that could not be parsed")
        parts.append(f'<p class="small">{"; ".join(explain)}.</p>')
        if rate_cols:
            parts.append(_img(F.to_png_base64(F.annotation_quality_bars(q, rate_cols)), "annotation quality"))
        fmts = {c: "pct" for c in q.columns if c.endswith("_rate")}
        parts.append(table(q, fmts))
    return "\n".join(parts)


def _model_section(d: ReportData, order: list[str]) -> str:
    parts = ['<h2 id="model">4. Model quality</h2>', '<h3 id="accuracy">Held-out accuracy per mechanism</h3>']
    m = d.metrics
    if m.empty:
        parts.append('<p class="note">No metrics in this build.</p>')
    else:
        parts.append("""<p>Out-of-fold accuracy of the HMDR explanation model at predicting each mechanism's
verdicts (5-fold cross-fitting), with 95% Wilson intervals on the number of pairs. Near 50% = the concepts do
not explain this mechanism; the lifts above are then weak evidence.</p>""")
        model = m[m["variant"] == "hmdr"]
        parts.append(_img(F.to_png_base64(F.accuracy_dots(model, order)), "held-out accuracy"))
        parts.append(_baselines(m, d.representation))
        t = m.copy()
        t["95% interval"] = [f"[{100 * lo:.1f}%, {100 * hi:.1f}%]" for lo, hi in zip(t["acc_low"], t["acc_high"])]
        t = t[
            [
                "mechanism",
                "mechanism_type",
                "representation",
                "variant",
                "protocol",
                "n_pairs",
                "accuracy",
                "95% interval",
                "log_loss",
            ]
        ]
        parts.append(table(t, {"accuracy": "pct"}))
    parts.append('<h3 id="comparison">Model comparison (Table-1 style)</h3>')
    parts.append(_comparison(d))
    return "\n".join(parts)


def _baselines(m: pd.DataFrame, representation: str) -> str:
    """One line: the concept model's mean held-out accuracy against the length-only and style baselines."""
    w = m[m["representation"] == representation].pivot_table(
        index="mechanism", columns="variant", values="accuracy", aggfunc="first"
    )
    need = ["hmdr", "length_only", "style"]
    if not set(need) <= set(w.columns):
        return ""
    w = w.dropna(subset=need)
    if w.empty:
        return ""
    mean = {k: 100 * float(w[k].mean()) for k in need}
    weak = [str(x) for x in w.index[w["hmdr"] <= w["length_only"]]]
    note = f" The concepts do not beat length alone for: {esc(', '.join(weak))}." if weak else ""
    return f"""<p><b>Faithfulness ({esc(representation)}-rep, mean of {len(w)} mechanisms, same folds):</b>
concepts {mean["hmdr"]:.1f}% vs length only {mean["length_only"]:.1f}% vs the 15-feature style baseline
{mean["style"]:.1f}%.{note}</p>"""


def _first(cols: Sequence[str], *names: str) -> str | None:
    return next((n for n in names if n in cols), None)


def _comparison(d: ReportData) -> str:
    c = d.model_comparison
    if c is None:
        return (
            '<p class="note">marts.rpt_model_comparison is not in this served copy: the comparison of model '
            "variants in-domain and out-of-domain is skipped.</p>"
        )
    if c.empty:
        return '<p class="note">marts.rpt_model_comparison is empty in this build.</p>'
    cols = list(c.columns)
    acc = _first(cols, "mean_accuracy", "accuracy", "mean")
    lo, hi = _first(cols, "accuracy_ci_low", "ci_low"), _first(cols, "accuracy_ci_high", "ci_high")
    if not (acc and "variant" in cols and "mechanism" in cols):
        return '<p class="small">marts.rpt_model_comparison:</p>' + table(c)
    if "eval_id" in cols:
        c = c[c["eval_id"] == c["eval_id"].max()]
    if "representation" in cols and (c["representation"] == d.representation).any():
        c = c[c["representation"] == d.representation]
    proto = "protocol" if "protocol" in cols else None

    def cell(r: pd.Series) -> str:
        s = f"{100 * r[acc]:.1f}"
        if lo and hi and pd.notna(r[lo]) and pd.notna(r[hi]):
            s += f" [{100 * r[lo]:.1f}, {100 * r[hi]:.1f}]"
        return s

    c = c.assign(_cell=c.apply(cell, axis=1))
    c["_best"] = c.groupby(["mechanism", proto] if proto else ["mechanism"])[acc].transform("max") == c[acc]
    keys = [proto, "variant"] if proto else ["variant"]
    combos = c[keys].drop_duplicates().sort_values(keys).itertuples(index=False)
    combos = [tuple(x) for x in combos]
    head = "".join(f"<th>{esc(' · '.join(str(v) for v in k))}</th>" for k in combos)
    lookup: dict[tuple, tuple[str, bool]] = {}
    for rd in c.to_dict("records"):
        lookup.setdefault((rd["mechanism"], *(rd[k] for k in keys)), (rd["_cell"], bool(rd["_best"])))
    rows = []
    for mech in sorted(c["mechanism"].unique()):
        cells = []
        for k in combos:
            hit = lookup.get((mech, *k))
            if hit is None:
                cells.append("<td>—</td>")
            else:
                txt = esc(hit[0])
                cells.append(f'<td class="num">{f"<b class=best>{txt}</b>" if hit[1] else txt}</td>')
        rows.append(f"<tr><td>{esc(mech)}</td>{''.join(cells)}</tr>")
    return f"""<p>Mean accuracy (%) over splits with 95% intervals, {esc(d.representation)}-rep; in-domain =
random held-out pairs, ood = a whole held-out domain predicted with b only. Bold = best variant per mechanism and
protocol.</p><table><thead><tr><th>mechanism</th>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table>"""


# ------------------------------------------------------------------------------------------------- page


def _names(d: ReportData) -> set[str]:
    """Every text value of the report's frames: the names its figures may draw."""
    frames = [v for v in vars(d).values() if isinstance(v, pd.DataFrame)]
    columns = [f[c] for f in frames for c in f.columns if not pd.api.types.is_numeric_dtype(f[c])]
    return {v for col in columns for v in col.dropna().unique() if isinstance(v, str)}


def render_report(
    d: ReportData,
    *,
    max_domains: int = 5,
    top_k: int = 8,
    contrast_domains_n: int = 3,
    contrast_pairs_n: int = 6,
    drift_top: int = 4,
    progress: Callable[[str], None] | None = None,
) -> str:
    """The whole report as one HTML string."""
    step = progress or (lambda _msg: None)
    order = d.mechanism_order
    anchors = {m: f"mech-{i}" for i, m in enumerate(order)}
    toc = [
        ("global", "Global explanations per mechanism (Figure 1)", [(anchors[m], m) for m in order]),
        (
            "contrast",
            "Mechanism contrast",
            [
                ("contrast-pairs", "Fitted contrasts per mechanism pair"),
                ("lift-heatmaps", "Lift per concept and mechanism"),
                ("human-judge", "Human minus judge"),
            ],
        ),
        (
            "data",
            "Data and quality",
            [
                ("pairs", "Pairs per domain and mechanism"),
                ("agreement", "Agreement between mechanisms"),
                ("annotation", "Annotation quality per concept"),
            ],
        ),
        ("model", "Model quality", [("accuracy", "Held-out accuracy"), ("comparison", "Model comparison")]),
        ("drift", "Drift across published builds", []),
    ]
    with fonts_for(_names(d)) as glyphs:
        step("figure 1 per mechanism")
        body = [_figure1_section(d, max_domains, top_k, order, anchors)]
        body.append(_length_control_section(d, order, min(top_k, 5)))
        step("mechanism contrast")
        body.append(_contrast_section(d, order, contrast_domains_n, contrast_pairs_n, min(top_k, 10)))
        step("data and quality")
        body.append(_data_section(d, order))
        step("model quality")
        body.append(_model_section(d, order))
        step("drift")
        body.append(_drift_section(d, order, drift_top))
    glyph_note = glyphs.note()
    if glyph_note:
        step(f"note: {glyph_note}")
    notes = "".join(f'<p class="note">{esc(n)}</p>' for n in [*d.notes, *([glyph_note] if glyph_note else [])])
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>preflens report — {esc(d.build.get("build_id", d.fit_id))}</title>
<style>{CSS}</style></head>
<body>
{_header(d, toc)}
{notes}
{"".join(body)}
<p class="muted small">Generated by preflens {esc(__version__)}. Source tables: marts.fct_concept_effects,
fct_model_metrics, fct_pair_features_comp, rpt_mechanism_agreement, rpt_annotation_quality (and
rpt_model_comparison, rpt_mechanism_contrast, rpt_concept_drift when present) in the served copy.</p>
</body></html>
"""
