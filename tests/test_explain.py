"""`preflens explain PAIR_ID`: one verdict's prediction and the concepts that pushed it each way."""

from __future__ import annotations

import json
import math
import subprocess
from pathlib import Path

import duckdb
import pytest
from rich.console import Console

from pipelines.serve.explain import ExplainError, load_explanation, render_explanation
from tests.conftest import HOSTILE_MECHANISM, HOSTILE_TEXT, SampleRun, env_with, venv_bin, write_mini_served


def explain(wh: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [venv_bin("preflens"), "explain", *args],
        env=env_with(PREFLENS_WAREHOUSE=str(wh), COLUMNS="160"),
        capture_output=True,
        text=True,
        timeout=300,
    )


# ------------------------------------------------------------------------------------------ fixture copy


@pytest.fixture
def mini(tmp_path: Path) -> Path:
    db = tmp_path / "serve" / "preflens.duckdb"
    db.parent.mkdir()
    write_mini_served(db)
    return db


def test_label_id_gives_one_verdict_with_both_directions(mini: Path) -> None:
    exp = load_explanation(mini, "label0101aaaaaa")
    assert exp["resolved_as"] == "label" and len(exp["verdicts"]) == 1
    v = exp["verdicts"][0]
    assert v["mechanism"] == HOSTILE_MECHANISM and 0 <= v["prob_a"] <= 1
    assert v["toward_a"] and v["toward_b"]
    assert all(c["contribution"] > 0 for c in v["toward_a"]) and all(c["contribution"] < 0 for c in v["toward_b"])
    z = sum(c["contribution"] for c in v["toward_a"] + v["toward_b"])
    assert math.isclose(v["refit_prob_a"], 1 / (1 + math.exp(-z)))


def test_item_id_lists_every_mechanism_and_filters(mini: Path) -> None:
    exp = load_explanation(mini, "item000000000001")
    assert exp["resolved_as"] == "item" and len(exp["verdicts"]) == 3
    one = load_explanation(mini, "item000000000001", mechanism="reward:rm")
    assert [v["mechanism"] for v in one["verdicts"]] == ["reward:rm"]
    assert load_explanation(mini, "label0102aa")["verdicts"][0]["label_id"] == "label0102aaaaaa"  # unique prefix
    with pytest.raises(ExplainError, match="mechanisms that judged it: .*human:raters"):
        load_explanation(mini, "item000000000001", mechanism="judge:nobody")


def test_unknown_and_ambiguous_ids(mini: Path) -> None:
    with pytest.raises(ExplainError, match="unknown pair id"):
        load_explanation(mini, "does-not-exist")
    with pytest.raises(ExplainError, match="ambiguous"):
        load_explanation(mini, "label00")
    with pytest.raises(ExplainError, match="no served copy"):
        load_explanation(mini.parent / "nothing.duckdb", "x")


def test_a_too_short_prefix_says_so_and_names_the_minimum(mini: Path) -> None:
    """Issue 11.14: 5 characters is a prefix too short to look up, not an unknown id."""
    from pipelines.serve.explain import MIN_PREFIX

    for short in ("label", "la", "x"):
        with pytest.raises(ExplainError, match=rf"too short.*at least {MIN_PREFIX} characters"):
            load_explanation(mini, short)
    assert load_explanation(mini, "label0101a")["verdicts"][0]["label_id"] == "label0101aaaaaa"
    bad = explain(mini.parent.parent, "label")
    assert bad.returncode == 1 and "too short" in bad.stderr and "unknown pair id" not in bad.stderr


def test_terminal_view_prints_untrusted_text_literally(mini: Path) -> None:
    console = Console(record=True, width=160, color_system=None)
    render_explanation(load_explanation(mini, "item000000000001"), console)
    out = console.export_text()
    assert "[bold red]not markup[/]" in out  # rich markup in the data is not interpreted
    assert "P(A wins)" in out and "actual winner" in out and "pushed toward A" in out and "pushed toward B" in out
    assert HOSTILE_MECHANISM in out and "local lift" in out


def test_piped_view_keeps_the_pair_text_whole(mini: Path) -> None:
    """In a log (not a terminal, 80 columns) the pair box wraps its text inside, it does not crop it."""
    env = env_with(PREFLENS_WAREHOUSE=str(mini.parent.parent))
    env.pop("COLUMNS", None)
    proc = subprocess.run(
        [venv_bin("preflens"), "explain", "label0101aaaaaa"], env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr
    box = [ln for ln in proc.stdout.splitlines() if ln.startswith("│")]
    assert box and all(len(ln) <= 80 for ln in box)
    inside = " ".join(" ".join(ln.strip("│ ").split()) for ln in box)
    assert f"prompt 1 {HOSTILE_TEXT}" in inside and f"B (m2): answer B 1 {HOSTILE_TEXT}" in inside


def test_cli_json_and_errors(mini: Path) -> None:
    wh = mini.parent.parent
    proc = explain(wh, "label0101aaaaaa", "--json")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["item"]["prompt"].endswith(HOSTILE_TEXT) and data["verdicts"][0]["label_id"] == "label0101aaaaaa"
    bad = explain(wh, "nope-nope")
    assert bad.returncode == 1 and "unknown pair id" in bad.stderr


# ----------------------------------------------------------------------------------------- the real sample


@pytest.mark.slow
def test_explain_on_the_sample(sample_run: SampleRun) -> None:
    wh = sample_run.warehouse
    con = duckdb.connect(str(sample_run.paths.serve_db), read_only=True)
    try:
        label, item, mech, prob = con.execute(
            """select p.label_id, p.item_id, p.mechanism, p.prob_a from marts.fct_predictions p
               join marts.fct_local_explanations l using (fit_id, label_id, mechanism, representation)
               where p.representation = 'measure' and p.fit_id = (select max(fit_id) from marts.fct_predictions)
               group by all order by count(*) desc, p.label_id limit 1"""
        ).fetchone()
        n_item = con.execute(
            "select count(*) from marts.fct_predictions where representation = 'measure' and item_id = ?", [item]
        ).fetchone()[0]
        n_local = con.execute(
            "select count(*) from marts.fct_local_explanations where representation = 'measure' "
            "and label_id = ? and contribution <> 0",
            [label],
        ).fetchone()[0]
    finally:
        con.close()
    proc = explain(wh, label)
    assert proc.returncode == 0, proc.stderr
    assert mech in proc.stdout and f"P(A wins) = {prob:.2f}" in proc.stdout and "actual winner" in proc.stdout
    assert "Prompt" in proc.stdout and "measure diff" in proc.stdout  # the lead representation by default
    data = json.loads(explain(wh, label, "--json").stdout)
    v = data["verdicts"][0]
    assert math.isclose(v["prob_a"], prob) and len(v["toward_a"]) + len(v["toward_b"]) == n_local >= 1
    assert data["item"]["prompt"]
    assert len(json.loads(explain(wh, item, "--json").stdout)["verdicts"]) == n_item
    one = json.loads(explain(wh, item, "--mechanism", mech, "--json").stdout)
    assert [x["mechanism"] for x in one["verdicts"]] == [mech]
    score = explain(wh, label, "--representation", "score")
    assert score.returncode == 0 and "score diff" in score.stdout
    bad = explain(wh, "0000000000000000")
    assert bad.returncode == 1 and "unknown pair id" in bad.stderr
