"""matplotlib figures of the visual report (Agg backend), each returned as a base64 PNG for inline embedding.

Text drawn by matplotlib comes from the data (concept, mechanism and domain names): ``_t`` escapes the ``$``
that would otherwise switch matplotlib into math mode, so a hostile name is drawn literally, and keeps only the
characters the report's fonts can draw (``glyphs``).
"""

from __future__ import annotations

import base64
import io
import math

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.artist import Artist  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402

from pipelines.serve.report import glyphs  # noqa: E402
from pipelines.serve.report.data import SHARED, top_concepts  # noqa: E402

LIGHT = "#9ecae1"  # shared contribution 50·b
DARK = "#08519c"  # domain deviation 50·s_d
GREY_LIGHT = "#e0e0e0"
GREY_DARK = "#9e9e9e"
TYPE_COLORS = {"human": "#1b9e77", "judge": "#d95f02", "reward": "#7570b3"}
RARE = 0.5  # selection frequency below which a concept is greyed
DPI = 90


def _t(text: object, width: int | None = None) -> str:
    """Data text safe for matplotlib: no math mode, only characters the report's fonts can draw (the others
    become ``glyphs.REPLACEMENT``, recorded once), optionally shortened in the middle."""
    s = str(text)
    if width and len(s) > width:
        keep = width - 1
        s = s[: keep - keep // 3] + "…" + s[-(keep // 3) :]
    return glyphs.current().text(s).replace("$", r"\$")


def to_png_base64(fig: Figure) -> str:
    """Render and close a figure; the PNG as base64 text."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, bbox_inches="tight")
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode("ascii")


# -------------------------------------------------------------------------------------------- Figure 1


def figure1(
    effects: pd.DataFrame,
    mechanism: str,
    domains: pd.DataFrame,
    k: int,
    *,
    has_ci: bool,
    has_selection: bool,
) -> Figure:
    """The paper's Figure 1 for one mechanism: a Shared panel plus one panel per domain.

    Light bar: shared contribution 50·b; dark bar (narrow, starting where the light bar ends): domain
    deviation 50·s_d; diamond: total lift 50·(b + s_d); whisker: 95% bootstrap CI of the total; grey: the
    concept was selected (non-zero) in fewer than half of the bootstrap fits.
    """
    e = effects[effects["mechanism"] == mechanism]
    n_shared = int(e.loc[e["domain"] == SHARED, "n_pairs"].max() or 0)
    panels: list[tuple[str, str, bool]] = [(SHARED, f"Shared (b) — all {n_shared} pairs", True)]
    for domain, n_pairs, has_domain_weights in zip(
        domains["domain"], domains["n_pairs"], domains["has_domain_weights"]
    ):
        own = bool(has_domain_weights)
        label = f"{domain} — {int(n_pairs)} pairs" + ("" if own else "\n(shared b only: too few pairs)")
        panels.append((domain, label, own))
    ncols = min(3, len(panels))
    nrows = math.ceil(len(panels) / ncols)
    tops = {d: top_concepts(effects, mechanism, d, k) for d, _, _ in panels}
    bars, cis = 1.0, 0.0
    for t in tops.values():
        if not t.empty:
            bars = max(bars, float(t["global_lift_pct"].abs().max()), float(t["shared_lift_pct"].abs().max()))
            if has_ci:
                cis = max(
                    [cis] + [float(v) for v in (t["ci_low"].abs().max(), t["ci_high"].abs().max()) if pd.notna(v)]
                )
    # the axis fits the bars; very wide whiskers are cut at twice the largest bar (the cut shows at the edge)
    lim = max(bars * 1.3, min(cis * 1.05, bars * 2.0))
    k = max([1] + [len(t) for t in tops.values()])  # panels as tall as the fullest one, not always k rows
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.6 * ncols, 0.32 * k * nrows + 1.1 * nrows + 0.6), squeeze=False)
    for ax in axes.flat[len(panels) :]:
        ax.set_visible(False)
    for ax, (domain, label, own) in zip(axes.flat, panels):
        _panel(ax, tops[domain], domain == SHARED, label, own, lim, k, has_ci, has_selection)
    handles = [
        Patch(color=LIGHT, label="shared contribution 50·b"),
        Patch(color=DARK, label="domain deviation 50·s_d"),
        Line2D([], [], marker="D", color="black", linestyle="none", markersize=5, label="total lift"),
    ]
    if has_ci:
        handles.append(Line2D([], [], color="black", linewidth=1, label="95% bootstrap CI"))
    if has_selection:
        handles.append(Patch(color=GREY_LIGHT, label=f"grey: selected in < {RARE:.0%} of bootstrap fits"))
    fig.legend(
        handles=handles, loc="lower center", ncol=len(handles), frameon=False, fontsize=9, bbox_to_anchor=(0.5, -0.01)
    )
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    return fig


def _panel(
    ax, top: pd.DataFrame, is_shared: bool, label: str, own: bool, lim: float, k: int, has_ci: bool, has_selection: bool
) -> None:
    ax.set_title(
        _t(label), fontsize=10, loc="left", color="black" if own else "#666666", fontstyle="normal" if own else "italic"
    )
    ax.axvline(0, color="#444444", linewidth=0.8)
    ax.set_xlim(-lim, lim)
    ax.set_ylim(k - 0.5, -0.5)
    ax.grid(axis="x", color="#eeeeee", linewidth=0.6)
    ax.set_axisbelow(True)
    ax.tick_params(axis="both", labelsize=8)
    ax.set_xlabel("lift (% change in P(preferred))", fontsize=8)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    if top.empty:
        ax.set_yticks([])
        ax.text(0, (k - 1) / 2, "no concept with non-zero lift", ha="center", va="center", fontsize=9, color="#666666")
        return
    y = np.arange(len(top))
    rare = (top["selection_frequency"].fillna(1.0) < RARE).to_numpy() if has_selection else np.zeros(len(top), bool)
    shared = top["shared_lift_pct"].to_numpy(dtype=float)
    total = top["global_lift_pct"].to_numpy(dtype=float)
    dev = np.zeros_like(total) if is_shared else top["deviation_lift_pct"].to_numpy(dtype=float)
    light = np.where(rare, GREY_LIGHT, LIGHT)
    dark = np.where(rare, GREY_DARK, DARK)
    ax.barh(y, shared, height=0.7, color=light, edgecolor="none")
    has_dev = np.abs(dev) > 1e-9
    if has_dev.any():
        ax.barh(y[has_dev], dev[has_dev], left=shared[has_dev], height=0.34, color=dark[has_dev], edgecolor="none")
    if has_ci:
        lo = top["ci_low"].to_numpy(dtype=float)
        hi = top["ci_high"].to_numpy(dtype=float)
        ok = ~(np.isnan(lo) | np.isnan(hi))
        if ok.any():
            ax.errorbar(
                total[ok],
                y[ok],
                xerr=[np.clip(total[ok] - lo[ok], 0, None), np.clip(hi[ok] - total[ok], 0, None)],
                fmt="none",
                ecolor="black",
                elinewidth=0.9,
                capsize=2.5,
            )
    ax.scatter(total, y, marker="D", s=16, c=np.where(rare, GREY_DARK, "black"), zorder=3)
    for yi, tv, r in zip(y, total, rare):
        ax.text(
            tv + (0.04 * lim if tv >= 0 else -0.04 * lim),
            yi - 0.3,
            f"{tv:+.1f}",
            fontsize=7,
            ha="left" if tv >= 0 else "right",
            va="center",
            color=GREY_DARK if r else "#222222",
        )
    ax.set_yticks(y)
    ax.set_yticklabels([_t(c, 24) for c in top["concept"]], fontsize=8)
    for tick, r in zip(ax.get_yticklabels(), rare):
        if r:
            tick.set_color(GREY_DARK)


# -------------------------------------------------------------------------------------- contrast figures


def lift_heatmap(matrix: pd.DataFrame, title: str, vmax: float, no_own: set[str] | None = None) -> Figure:
    """concept x mechanism lift heat map (blue = more of the concept is preferred, red = less)."""
    no_own = no_own or set()
    n_r, n_c = matrix.shape
    fig, ax = plt.subplots(figsize=(max(6.0, 0.55 * n_c + 3), max(2.5, 0.3 * n_r + 2.4)))
    im = ax.imshow(matrix.to_numpy(dtype=float), cmap="RdBu", vmin=-vmax, vmax=vmax, aspect="auto")
    ax.set_xticks(range(n_c))
    ax.set_xticklabels(
        [_t(c, 30) + (" *" if c in no_own else "") for c in matrix.columns], rotation=50, ha="right", fontsize=8
    )
    for tick, c in zip(ax.get_xticklabels(), matrix.columns):
        tick.set_color(TYPE_COLORS.get(str(c).split(":", 1)[0], "black"))
    ax.set_yticks(range(n_r))
    ax.set_yticklabels([_t(c, 24) for c in matrix.index], fontsize=8)
    vals = matrix.to_numpy(dtype=float)
    for i in range(n_r):
        for j in range(n_c):
            v = vals[i, j]
            if not np.isnan(v) and abs(v) >= 0.5:
                ax.text(
                    j,
                    i,
                    f"{v:.0f}",
                    ha="center",
                    va="center",
                    fontsize=6.5,
                    color="white" if abs(v) > 0.6 * vmax else "black",
                )
    ax.set_title(_t(title), fontsize=11, loc="left")
    cb = fig.colorbar(im, ax=ax, fraction=0.03, pad=0.02)
    cb.set_label("global lift %", fontsize=8)
    fig.tight_layout()
    return fig


def diverging_bars(frame: pd.DataFrame, title: str) -> Figure:
    """Human-minus-judge lift per concept: blue = humans reward it more, orange = judges reward it more."""
    n = len(frame)
    fig, ax = plt.subplots(figsize=(8.5, max(2.5, 0.28 * n + 1.6)))
    y = np.arange(n)
    diff = frame["diff"].to_numpy(dtype=float)
    ax.barh(y, diff, color=np.where(diff >= 0, TYPE_COLORS["human"], TYPE_COLORS["judge"]), height=0.7)
    ax.axvline(0, color="#444444", linewidth=0.8)
    lim = max(1.0, float(np.nanmax(np.abs(diff))) if n else 1.0) * 1.35
    ax.set_xlim(-lim, lim)
    for yi, d, h, j in zip(y, diff, frame["human"], frame["judge"]):
        # the label sits on the other side of zero, so it never runs into the concept names
        ax.text(
            -0.02 * lim if d >= 0 else 0.02 * lim,
            float(yi),
            f"{d:+.1f}  (human {h:+.1f}, judge {j:+.1f})",
            va="center",
            ha="right" if d >= 0 else "left",
            fontsize=7,
            color="#333333",
        )
    ax.set_yticks(y)
    ax.set_yticklabels([_t(c, 24) for c in frame["concept"]], fontsize=8)
    ax.set_xlabel("mean human lift − mean judge lift (percentage points)", fontsize=9)
    ax.text(
        0.99,
        1.0,
        "humans reward more →",
        transform=ax.transAxes,
        ha="right",
        va="bottom",
        fontsize=8,
        color=TYPE_COLORS["human"],
    )
    ax.text(
        0.01,
        1.0,
        "← judges reward more",
        transform=ax.transAxes,
        ha="left",
        va="bottom",
        fontsize=8,
        color=TYPE_COLORS["judge"],
    )
    ax.set_title(_t(title), fontsize=11, loc="left", pad=16)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    fig.tight_layout()
    return fig


# ------------------------------------------------------------------------------------ data and quality


def count_heatmap(
    matrix: pd.DataFrame,
    title: str,
    *,
    cmap: str = "Blues",
    fmt: str = "{:.0f}",
    vmin: float | None = None,
    vmax: float | None = None,
    label: str = "",
    log: bool = False,
) -> Figure:
    """A generic annotated heat map (rows x columns) with blanks for missing cells."""
    n_r, n_c = matrix.shape
    vals = matrix.to_numpy(dtype=float)
    fig, ax = plt.subplots(figsize=(max(6.0, 0.5 * n_c + 3.5), max(2.5, 0.32 * n_r + 2.6)))
    masked = np.ma.masked_invalid(vals)
    if log and np.isfinite(vals).any():
        norm = matplotlib.colors.LogNorm(vmin=max(1.0, float(np.nanmin(vals))), vmax=max(2.0, float(np.nanmax(vals))))
        im = ax.imshow(masked, cmap=cmap, norm=norm, aspect="auto")
    else:
        im = ax.imshow(masked, cmap=cmap, vmin=vmin, vmax=vmax, aspect="auto")
    ax.set_facecolor("#f7f7f7")
    ax.set_xticks(range(n_c))
    ax.set_xticklabels([_t(c, 30) for c in matrix.columns], rotation=50, ha="right", fontsize=8)
    for tick, c in zip(ax.get_xticklabels(), matrix.columns):
        tick.set_color(TYPE_COLORS.get(str(c).split(":", 1)[0], "black"))
    ax.set_yticks(range(n_r))
    ax.set_yticklabels([_t(c, 30) for c in matrix.index], fontsize=8)
    for tick, c in zip(ax.get_yticklabels(), matrix.index):
        tick.set_color(TYPE_COLORS.get(str(c).split(":", 1)[0], "black"))
    top = np.nanmax(vals) if np.isfinite(vals).any() else 1.0
    lo = np.nanmin(vals) if np.isfinite(vals).any() else 0.0
    for i in range(n_r):
        for j in range(n_c):
            v = vals[i, j]
            if np.isfinite(v):
                lo_, hi_ = (vmin if vmin is not None else lo), (vmax if vmax is not None else top)
                if log:
                    lo_, v_, hi_ = np.log(max(lo_, 1.0)), np.log(max(v, 1.0)), np.log(max(hi_, 2.0))
                else:
                    v_ = v
                rel = (v_ - lo_) / max(1e-9, hi_ - lo_)
                ax.text(
                    j, i, fmt.format(v), ha="center", va="center", fontsize=6.5, color="white" if rel > 0.6 else "black"
                )
    ax.set_title(_t(title), fontsize=11, loc="left")
    cb = fig.colorbar(im, ax=ax, fraction=0.03, pad=0.02)
    if label:
        cb.set_label(label, fontsize=8)
    fig.tight_layout()
    return fig


def annotation_quality_bars(quality: pd.DataFrame, rate_columns: list[tuple[str, str]]) -> Figure:
    """Grouped horizontal bars per concept for the rate columns present (relevance, equal, swap, failure)."""
    q = quality.sort_values("concept")
    labels = [
        _t(f"{c}" if q["annotator"].nunique() <= 1 else f"{c} [{a}]", 32) for c, a in zip(q["concept"], q["annotator"])
    ]
    n, m = len(q), len(rate_columns)
    fig, ax = plt.subplots(figsize=(8.5, max(2.5, 0.09 * n * (m + 1) + 1.4)))
    y = np.arange(n)
    h = 0.8 / max(m, 1)
    colors = ["#4292c6", "#bdbdbd", "#e6550d", "#a50f15"]
    for i, (col, name) in enumerate(rate_columns):
        ax.barh(
            y - 0.4 + h * (i + 0.5),
            q[col].fillna(0).to_numpy(dtype=float),
            height=h,
            label=name,
            color=colors[i % len(colors)],
        )
    ax.set_yticks(y)
    ax.set_yticklabels(labels, fontsize=8)
    ax.set_ylim(n - 0.5, -0.5)
    ax.set_xlim(0, 1)
    ax.xaxis.set_major_formatter(matplotlib.ticker.PercentFormatter(1.0))
    ax.legend(fontsize=8, loc="lower left", bbox_to_anchor=(0.0, 1.0), ncol=len(rate_columns), frameon=False)
    ax.set_title("Annotation quality per concept", fontsize=11, loc="left", pad=22)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    fig.tight_layout()
    return fig


# ----------------------------------------------------------------------------------------- model quality


def accuracy_dots(metrics: pd.DataFrame, order: list[str]) -> Figure:
    """Held-out accuracy per mechanism with Wilson 95% intervals; one marker per representation."""
    mechs = [m for m in order if m in set(metrics["mechanism"])]
    mechs += sorted(set(metrics["mechanism"]) - set(mechs))
    reps = sorted(metrics["representation"].unique())
    fig, ax = plt.subplots(figsize=(9, max(2.5, 0.34 * len(mechs) + 1.4)))
    offsets = np.linspace(-0.15, 0.15, len(reps)) if len(reps) > 1 else [0.0]
    markers = {"comp": "o", "score": "s"}
    for off, rep in zip(offsets, reps):
        r = metrics[metrics["representation"] == rep].set_index("mechanism")
        ys, xs, lo, hi, cols = [], [], [], [], []
        for i, m in enumerate(mechs):
            if m in r.index:
                row = r.loc[m]
                row = row.iloc[0] if isinstance(row, pd.DataFrame) else row
                ys.append(i + off)
                xs.append(row["accuracy"])
                lo.append(row["accuracy"] - row["acc_low"])
                hi.append(row["acc_high"] - row["accuracy"])
                cols.append(TYPE_COLORS.get(str(row["mechanism_type"]), "black"))
        ax.errorbar(xs, ys, xerr=[lo, hi], fmt="none", ecolor="#888888", elinewidth=1, capsize=2)
        ax.scatter(
            xs,
            ys,
            c=cols,
            marker=markers.get(rep, "o"),
            s=28,
            zorder=3,
            label=f"{rep}-rep",
            edgecolors="black" if rep == "score" else "none",
            linewidths=0.5,
        )
    ax.axvline(0.5, color="#999999", linestyle="--", linewidth=0.8)
    ax.text(0.5, -0.7, " chance", fontsize=7, color="#777777", va="bottom")
    ax.set_yticks(range(len(mechs)))
    ax.set_yticklabels([_t(m, 40) for m in mechs], fontsize=8)
    for tick, m in zip(ax.get_yticklabels(), mechs):
        tick.set_color(TYPE_COLORS.get(m.split(":", 1)[0], "black"))
    ax.set_ylim(len(mechs) - 0.5, -0.9)
    ax.set_xlim(0.2, 1.0)
    ax.xaxis.set_major_formatter(matplotlib.ticker.PercentFormatter(1.0))
    ax.set_xlabel("held-out accuracy (out-of-fold), 95% Wilson interval", fontsize=9)
    legend: list[Artist] = [
        Line2D([], [], marker=markers.get(r, "o"), color="#555555", linestyle="none", label=f"{r}-rep") for r in reps
    ]
    legend += [Patch(color=c, label=t) for t, c in TYPE_COLORS.items()]
    ax.legend(handles=legend, fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    ax.grid(axis="x", color="#eeeeee")
    ax.set_axisbelow(True)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    ax.set_title("How well the explanation model reproduces each mechanism", fontsize=11, loc="left")
    fig.tight_layout()
    return fig


# ------------------------------------------------------------------------------ fitted contrasts and drift

HIGHLIGHT = "#c51b7d"  # a contrast distinguishable from zero (BH-adjusted, interval excludes 0)
MUTED = "#8c8c8c"


def contrast_forest(
    panels: list[tuple[str, pd.DataFrame]], mechanism_a: str, mechanism_b: str, *, has_ci: bool = True
) -> Figure:
    """Forest plot of the fitted contrasts of one mechanism pair, one panel per (title, top contrasts) frame.

    Point: estimate 50·(δ_A − δ_B) in lift points; line: its item-bootstrap interval; vertical line: zero.
    Distinguishable contrasts are drawn in ``HIGHLIGHT`` (bold label), the others grey. Each panel has its own
    axis; intervals far beyond the largest estimate are cut at the edge and marked with an arrow head.
    """
    ncols = min(3, len(panels))
    k = max([1] + [len(t) for _, t in panels])
    fig, axes = plt.subplots(1, ncols, figsize=(4.8 * ncols, 0.3 * k + 1.6), squeeze=False)
    for ax, (title, top) in zip(axes.flat, panels[:ncols]):
        _forest_panel(ax, title, top, k)
    handles = [
        Line2D([], [], marker="o", color=HIGHLIGHT, linewidth=1.6, label="distinguishable from 0 (BH, 95% interval)"),
        Line2D([], [], marker="o", color=MUTED, linewidth=1.0, label="not distinguishable"),
    ]
    fig.legend(handles=handles, loc="lower center", ncol=2, frameon=False, fontsize=8, bbox_to_anchor=(0.5, -0.02))
    fig.suptitle(
        f"A = {_t(mechanism_a, 40)}   minus   B = {_t(mechanism_b, 40)}",
        fontsize=10,
        x=0.01,
        ha="left",
        fontweight="bold",
    )
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    return fig


def _forest_panel(ax, title: str, top: pd.DataFrame, k: int) -> None:
    ax.set_title(_t(title), fontsize=9, loc="left")
    ax.axvline(0, color="#444444", linewidth=0.9)
    ax.set_ylim(k - 0.5, -0.5)
    ax.grid(axis="x", color="#eeeeee", linewidth=0.6)
    ax.set_axisbelow(True)
    ax.tick_params(axis="both", labelsize=8)
    ax.set_xlabel("A − B, lift points", fontsize=8)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    if top.empty:
        ax.set_xlim(-1, 1)
        ax.set_yticks([])
        ax.text(0, (k - 1) / 2, "every contrast is 0", ha="center", va="center", fontsize=9, color="#666666")
        return
    est = top["lift_diff_pct"].to_numpy(dtype=float)
    lo = top["lift_diff_ci_low"].to_numpy(dtype=float)
    hi = top["lift_diff_ci_high"].to_numpy(dtype=float)
    dist = top["distinguishable"].astype(bool).to_numpy()
    big = max(1.0, float(np.nanmax(np.abs(est))))
    reach = float(np.nanmax(np.abs(np.concatenate([lo, hi])))) if np.isfinite(np.concatenate([lo, hi])).any() else 0
    lim = max(big * 1.3, min(reach * 1.08, big * 3.0))
    ax.set_xlim(-lim, lim)
    y = np.arange(len(top))
    for yi, e, a, b, d in zip(y, est, lo, hi, dist):
        color = HIGHLIGHT if d else MUTED
        if np.isfinite(a) and np.isfinite(b):
            ax.plot(
                [max(a, -lim), min(b, lim)], [yi, yi], color=color, linewidth=1.8 if d else 1.1, solid_capstyle="butt"
            )
            for end, edge, mark in ((a, -lim, "<"), (b, lim, ">")):
                if abs(end) > lim and np.sign(end) == np.sign(edge):
                    ax.plot([edge], [yi], marker=mark, color=color, markersize=4)
        ax.plot([e], [yi], marker="o", color=color, markersize=5 if d else 4, zorder=3)
        if abs(e) < 0.05:  # 0: the concept sits in the shared weights; only its interval is drawn
            continue
        ax.text(
            e,
            yi - 0.32,
            f"{e:+.1f}",
            fontsize=6.5,
            ha="center",
            va="bottom",
            color=HIGHLIGHT if d else "#555555",
            fontweight="bold" if d else "normal",
        )
    ax.set_yticks(y)
    ax.set_yticklabels([_t(c, 24) for c in top["concept"]], fontsize=8)
    for tick, d in zip(ax.get_yticklabels(), dist):
        if d:
            tick.set_color(HIGHLIGHT)
            tick.set_fontweight("bold")


DRIFT_COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b"]


def drift_lines(panels: list[tuple[str, pd.DataFrame, list[str]]], builds: pd.DataFrame) -> Figure:
    """Global lift of each mechanism's top concepts over the published builds, one panel per mechanism.

    ``panels``: (mechanism, its drift rows, its top concepts); ``builds``: fit_id, built_at in order (the x
    axis, numbered 1..n). Bands are the 95% bootstrap intervals where present; a hollow ring marks a change
    beyond both intervals (``intervals_overlap`` false)."""
    ncols = min(3, len(panels))
    nrows = math.ceil(len(panels) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(5.9 * ncols, 2.9 * nrows + 0.5), squeeze=False)
    for ax in axes.flat[len(panels) :]:
        ax.set_visible(False)
    order = {f: i + 1 for i, f in enumerate(builds["fit_id"])}
    for ax, (mech, rows, concepts) in zip(axes.flat, panels):
        ax.set_title(_t(mech, 44), fontsize=9, loc="left", color=TYPE_COLORS.get(str(mech).split(":", 1)[0], "black"))
        ax.axhline(0, color="#999999", linewidth=0.7)
        for j, concept in enumerate(concepts):
            r = rows[rows["concept"] == concept].assign(_x=lambda f: f["fit_id"].map(order)).sort_values("_x")
            color = DRIFT_COLORS[j % len(DRIFT_COLORS)]
            x = r["_x"].to_numpy(dtype=float)
            v = r["global_lift_pct"].to_numpy(dtype=float)
            lo = r["global_lift_ci_low"].to_numpy(dtype=float)
            hi = r["global_lift_ci_high"].to_numpy(dtype=float)
            ok = np.isfinite(lo) & np.isfinite(hi)
            if ok.any():
                ax.fill_between(x[ok], lo[ok], hi[ok], color=color, alpha=0.10, linewidth=0)
                ax.errorbar(
                    x[ok], v[ok], yerr=[v[ok] - lo[ok], hi[ok] - v[ok]], fmt="none", ecolor=color, elinewidth=0.8
                )
            ax.plot(x, v, marker="o", markersize=3.5, color=color, linewidth=1.4, label=_t(concept, 22))
            moved = (~r["intervals_overlap"].astype("boolean").fillna(True)).to_numpy(dtype=bool)  # null: no interval
            if moved.any():
                ax.scatter(x[moved], v[moved], s=70, facecolors="none", edgecolors=color, linewidths=1.4, zorder=4)
        # the axis fits the lifts; intervals far wider than them are cut at the edge (as in Figure 1)
        shown = rows[rows["concept"].isin(concepts)]
        top = max(1.0, float(shown["global_lift_pct"].abs().max()))
        low = float(np.nanmin([shown["global_lift_ci_low"].min(), shown["global_lift_pct"].min()]))
        high = float(np.nanmax([shown["global_lift_ci_high"].max(), shown["global_lift_pct"].max()]))
        ax.set_ylim(max(low, -1.8 * top) - 0.05 * top, min(high, 1.8 * top) + 0.05 * top)
        ax.set_xticks(range(1, len(order) + 1))
        ax.set_xlim(0.7, len(order) + 0.3)
        ax.tick_params(axis="both", labelsize=7)
        ax.set_ylabel("global lift %", fontsize=7)
        ax.grid(axis="y", color="#eeeeee", linewidth=0.6)
        for side in ("top", "right"):
            ax.spines[side].set_visible(False)
        # beside the axes, never over a line
        ax.legend(fontsize=6.5, loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False, borderaxespad=0.3)
    for ax in axes[-1]:
        ax.set_xlabel("published build (1 = oldest)", fontsize=7)
    fig.tight_layout()
    return fig
