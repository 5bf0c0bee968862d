"""`preflens report`: the fitted-contrast and drift panels (issue 13.4) on a tiny served copy with hostile names."""

from __future__ import annotations

import html
import re
from pathlib import Path

import duckdb
import pandas as pd
import pytest

from pipelines.serve.report import build_report
from pipelines.serve.report.data import contrast_pairs, load_report_data, top_contrasts
from tests.conftest import HOSTILE_CONCEPT, HOSTILE_MECHANISM, write_mini_served

HUMAN = "human:raters"
REWARD = "reward:rm"
FIT = "20260101T000000Z-abc123"  # write_mini_served's fit


def _contrast_rows() -> pd.DataFrame:
    """rpt_mechanism_contrast rows (both orientations, as the mart has them) for two pairs.

    human vs the hostile judge: the hostile concept is distinguishable (+30, interval [+10, +50]), Length is a
    large but not distinguishable contrast, Hedging is 0 everywhere (left out); a 'general' domain fit too.
    human vs reward: every contrast 0 (the joint fit pooled them)."""
    base = [
        # (a, ta, b, tb, domain, concept, est, lo, hi, dist, n_shared)
        (HOSTILE_MECHANISM, "judge", HUMAN, "human", "__all__", HOSTILE_CONCEPT, 30.0, 10.0, 50.0, True, 40),
        (HOSTILE_MECHANISM, "judge", HUMAN, "human", "__all__", "Length", -45.0, -90.0, 5.0, False, 40),
        (HOSTILE_MECHANISM, "judge", HUMAN, "human", "__all__", "Clarity", 4.0, -2.0, 9.0, False, 40),
        (HOSTILE_MECHANISM, "judge", HUMAN, "human", "__all__", "Hedging", 0.0, 0.0, 0.0, False, 40),
        (HOSTILE_MECHANISM, "judge", HUMAN, "human", "general", "Length", -20.0, -40.0, -1.0, False, 20),
        (REWARD, "reward", HUMAN, "human", "__all__", "Length", 0.0, 0.0, 0.0, False, 30),
        (REWARD, "reward", HUMAN, "human", "__all__", "Clarity", 0.0, None, None, False, 30),
    ]
    rows = []
    for a, ta, b, tb, dom, c, est, lo, hi, dist, n in base:
        common = dict(fit_id=FIT, representation="comp", domain=dom, concept=c, selection_frequency=0.8)
        common.update(p_value=0.001 if dist else 0.4, p_adjusted=0.01 if dist else 0.6, distinguishable=dist)
        common.update(n_shared_items=n, n_pairs_a=n, n_pairs_b=n)
        for x, tx, y, ty, sign in ((a, ta, b, tb, 1.0), (b, tb, a, ta, -1.0)):
            flo, fhi = (lo, hi) if sign > 0 else (None if hi is None else -hi, None if lo is None else -lo)
            rows.append(
                dict(
                    common,
                    mechanism_a=x,
                    mechanism_type_a=tx,
                    mechanism_b=y,
                    mechanism_type_b=ty,
                    lift_diff_pct=sign * est,
                    lift_diff_ci_low=flo,
                    lift_diff_ci_high=fhi,
                    verdict="not distinguishable"
                    if not dist
                    else ("a rewards more" if sign * est > 0 else "b rewards more"),
                )
            )
    return pd.DataFrame(rows)


def _drift_rows(n_builds: int) -> pd.DataFrame:
    """rpt_concept_drift rows: ``n_builds`` published builds of every mechanism; in the last one the hostile
    judge's Length lift moves beyond both intervals."""
    rows = []
    mechs = [(HUMAN, "human"), (HOSTILE_MECHANISM, "judge"), (REWARD, "reward")]
    for k in range(n_builds):
        fit = f"2026010{k + 1}T000000Z-b{k}"
        for mech, mtype in mechs:
            for j, concept in enumerate(["Length", "Clarity", HOSTILE_CONCEPT]):
                lift = 10.0 * (j + 1) + (
                    40.0 if (k == n_builds - 1 and k and concept == "Length" and mtype == "judge") else k
                )
                moved = k > 0 and concept == "Length" and mtype == "judge" and k == n_builds - 1
                rows.append(
                    dict(
                        fit_id=fit,
                        built_at=pd.Timestamp(f"2026-01-0{k + 1}"),
                        build_number=k + 1,
                        mechanism=mech,
                        mechanism_type=mtype,
                        representation="comp",
                        control="none",
                        domain="__shared__",
                        concept=concept,
                        total_weight=lift / 50,
                        total_weight_ci_low=(lift - 5) / 50,
                        total_weight_ci_high=(lift + 5) / 50,
                        global_lift_pct=lift,
                        global_lift_ci_low=lift - 5,
                        global_lift_ci_high=lift + 5,
                        selection_frequency=0.9,
                        previous_fit_id=None if k == 0 else f"2026010{k}T000000Z-b{k - 1}",
                        lift_change=None if k == 0 else (40.0 - (k - 1) if moved else 1.0),
                        intervals_overlap=None if k == 0 else (not moved),
                    )
                )
    return pd.DataFrame(rows)


def add_panel_marts(db: Path, *, contrasts: pd.DataFrame | None, drift: pd.DataFrame | None) -> None:
    """Add rpt_mechanism_contrast / rpt_concept_drift to a write_mini_served copy (None = leave the mart out)."""
    con = duckdb.connect(str(db))
    try:
        for name, df in (("rpt_mechanism_contrast", contrasts), ("rpt_concept_drift", drift)):
            if df is not None:
                con.register("_df", df)
                con.execute(f"create table marts.{name} as select * from _df")
                con.unregister("_df")
    finally:
        con.close()


def _section(text: str, anchor: str, end_anchor: str) -> str:
    start = text.index(f'id="{anchor}"')
    end = text.index(f'id="{end_anchor}"', start) if end_anchor else len(text)
    return text[start:end]


@pytest.fixture
def served(tmp_path: Path) -> Path:
    db = tmp_path / "serve.duckdb"
    write_mini_served(db, with_ci=True)
    return db


def test_contrast_panel_per_pair_with_hostile_names_escaped_and_distinguishable_highlighted(
    served: Path, tmp_path: Path
) -> None:
    add_panel_marts(served, contrasts=_contrast_rows(), drift=_drift_rows(3))
    text = build_report(served, tmp_path / "r").read_text(encoding="utf-8")
    assert HOSTILE_CONCEPT not in text and HOSTILE_MECHANISM not in text
    panel = _section(text, "contrast-pairs", "lift-heatmaps")
    # one heading per pair, the judge as A against the humans (what the judge rewards more), hostile name escaped
    heads = re.findall(r"<h4 id=\"pair-\d+\">(.*?)</h4>", panel)
    assert len(heads) == 2, heads
    assert heads[0].startswith(html.escape(HOSTILE_MECHANISM)) and html.escape(HUMAN) in heads[0]
    assert heads[1].startswith(html.escape(REWARD))  # reward (later type) is A against the humans
    # the pair with a distinguishable contrast comes first, with its n shared items
    assert "40 shared items · 1 distinguishable contrast over 2 fits" in panel
    assert panel.count("<img") == 1  # the pooled pair has a note, not an empty chart
    assert "Every contrast of this pair is 0" in panel
    # the table: distinguishable row first and highlighted, Hedging (0, no interval) left out
    rows = re.findall(
        r"<tr( class=dist)?><td>(.*?)</td><td class=\"num\">(.*?)</td><td class=\"num\">(.*?)</td>", panel
    )
    assert rows[0] == (" class=dist", html.escape(HOSTILE_CONCEPT), "+30.0", "[+10.0, +50.0]")
    assert [r[1] for r in rows] == [html.escape(HOSTILE_CONCEPT), "Length", "Clarity"]
    assert all(r[0] == "" for r in rows[1:])


def test_contrast_ranking_and_limits(served: Path) -> None:
    add_panel_marts(served, contrasts=_contrast_rows(), drift=None)
    d = load_report_data(served)
    assert d.contrasts is not None
    assert set(d.contrasts["mechanism_b"]) == {HUMAN}  # one orientation per pair
    pairs = contrast_pairs(d.contrasts, 1)
    assert pairs[["mechanism_a", "mechanism_b"]].values.tolist() == [[HOSTILE_MECHANISM, HUMAN]]
    assert pairs["domains"].iloc[0] == ["general"] and int(pairs["n_shared_items"].iloc[0]) == 40
    top = top_contrasts(d.contrasts, HOSTILE_MECHANISM, HUMAN, "__all__", 2)
    assert top["concept"].tolist() == [HOSTILE_CONCEPT, "Length"]  # distinguishable first, then |estimate|


def test_contrast_panel_empty_states(served: Path, tmp_path: Path) -> None:
    add_panel_marts(served, contrasts=_contrast_rows().iloc[0:0], drift=None)
    text = build_report(served, tmp_path / "r").read_text(encoding="utf-8")
    assert "No mechanism pair shared enough items for a fitted contrast" in _section(
        text, "contrast-pairs", "lift-heatmaps"
    )
    other = tmp_path / "old.duckdb"
    write_mini_served(other)
    text = build_report(other, tmp_path / "r2").read_text(encoding="utf-8")
    assert "rpt_mechanism_contrast is not in this served copy" in text
    assert "rpt_concept_drift is not in this served copy" in _section(text, "drift", "")


def test_drift_panel_over_builds(served: Path, tmp_path: Path) -> None:
    add_panel_marts(served, contrasts=None, drift=_drift_rows(3))
    text = build_report(served, tmp_path / "r").read_text(encoding="utf-8")
    panel = _section(text, "drift", "")
    assert panel.count("<img") == 1
    assert "over the 3 published builds" in panel and "One published build so far" not in panel
    for k in range(3):
        assert f"2026010{k + 1}T000000Z-b{k}" in panel  # the build listing
    # the change beyond both intervals is listed, with the hostile mechanism escaped
    moved = panel[panel.index("beyond both intervals:") :]
    assert html.escape(HOSTILE_MECHANISM) in moved and "Length" in moved and "+50.0" in moved and "+39.0" in moved
    assert HOSTILE_MECHANISM not in text and HOSTILE_CONCEPT not in text


def test_drift_panel_with_one_build_says_so_instead_of_an_empty_chart(served: Path, tmp_path: Path) -> None:
    add_panel_marts(served, contrasts=None, drift=_drift_rows(1))
    panel = _section(build_report(served, tmp_path / "r").read_text(encoding="utf-8"), "drift", "")
    assert "One published build so far" in panel and "20260101T000000Z-b0" in panel
    assert "<img" not in panel


def test_drift_panel_without_rows_in_this_representation(served: Path, tmp_path: Path) -> None:
    add_panel_marts(served, contrasts=None, drift=_drift_rows(2).assign(representation="measure"))
    panel = _section(build_report(served, tmp_path / "r").read_text(encoding="utf-8"), "drift", "")
    assert "No published build has a comp-rep fit" in panel and "<img" not in panel


def test_contrast_panel_from_the_fact_table_when_the_report_mart_is_absent(served: Path) -> None:
    """fct_mechanism_contrasts holds each pair once (a < b by name, estimate in weight units): the report
    reads it at its fit, in lift points, oriented like the report mart (the judge against the humans)."""
    rpt = _contrast_rows()
    fct = rpt[rpt["mechanism_a"] < rpt["mechanism_b"]].rename(
        columns={"lift_diff_ci_low": "ci_low", "lift_diff_ci_high": "ci_high"}
    )
    fct = fct.assign(estimate=fct["lift_diff_pct"] / 50, ci_low=fct["ci_low"] / 50, ci_high=fct["ci_high"] / 50)
    fct = fct.drop(columns=["lift_diff_pct", "verdict"])
    other_fit = fct.assign(fit_id="19990101T000000Z-old", estimate=99.0)
    con = duckdb.connect(str(served))
    try:
        con.register("_df", pd.concat([fct, other_fit]))
        con.execute("create table marts.fct_mechanism_contrasts as select * from _df")
    finally:
        con.close()
    d = load_report_data(served)
    assert d.contrasts is not None
    top = top_contrasts(d.contrasts, HOSTILE_MECHANISM, HUMAN, "__all__", 3)
    assert top["concept"].tolist() == [HOSTILE_CONCEPT, "Length", "Clarity"]
    assert top["lift_diff_pct"].tolist() == pytest.approx([30.0, -45.0, 4.0])
    assert top[["lift_diff_ci_low", "lift_diff_ci_high"]].iloc[0].tolist() == pytest.approx([10.0, 50.0])


def test_cli_limits_pairs_and_drift_concepts(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from pipelines.cli import main

    db = tmp_path / "wh" / "serve" / "preflens.duckdb"
    db.parent.mkdir(parents=True)
    write_mini_served(db, with_ci=True)
    add_panel_marts(db, contrasts=_contrast_rows(), drift=_drift_rows(2))
    out = tmp_path / "r.html"
    args = ["--warehouse", str(tmp_path / "wh"), "report", "--contrast-pairs", "1", "--drift-top", "1"]
    assert main([*args, "--output", str(out)]) == 0
    text = out.read_text(encoding="utf-8")
    assert len(re.findall(r'<h4 id="pair-\d+">', text)) == 1 and "Showing 1 of 2 pairs" in text
    assert "top 1 concepts" in " ".join(_section(text, "drift", "").split())
    assert main([*args[:3], "--contrast-pairs", "0", "--output", str(out)]) == 0
    assert "Not drawn (--contrast-pairs 0)" in out.read_text(encoding="utf-8")
    with pytest.raises(SystemExit) as exc:
        main([*args[:3], "--contrast-pairs", "-1"])
    assert exc.value.code == 2 and "argument --contrast-pairs: " in capsys.readouterr().err


def test_drift_legends_stand_beside_the_lines_not_over_them() -> None:
    """Each drift chart's legend lies outside its plotting area, so it can never hide a line or a band."""
    from pipelines.serve.report import figures

    drift = _drift_rows(4)
    builds = drift[["fit_id", "built_at"]].drop_duplicates().sort_values("built_at")
    panels = [(m, rows, ["Length", "Clarity", HOSTILE_CONCEPT]) for m, rows in drift.groupby("mechanism", sort=True)]
    fig = figures.drift_lines(panels, builds)
    try:
        fig.canvas.draw()
        renderer = fig.canvas.get_renderer()  # type: ignore[attr-defined]
        shown = [ax for ax in fig.axes if ax.get_visible()]
        assert len(shown) == 3
        for ax in shown:
            legend = ax.get_legend()
            assert legend is not None
            box, area = legend.get_window_extent(renderer), ax.get_window_extent(renderer)
            assert box.x0 >= area.x1 - 1 or box.y0 >= area.y1 - 1 or box.y1 <= area.y0 + 1 or box.x1 <= area.x0 + 1
            assert box.x1 <= fig.bbox.x1 + 1  # and stays on the figure
    finally:
        import matplotlib.pyplot as plt

        plt.close(fig)
