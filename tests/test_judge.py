"""`preflens judge`: the paper's judge prompt in both orders, ties when the orders disagree, idempotent, cached,
dry run and budget, untrusted text wrapped as data -- against the local test server's planted judge."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from pipelines.core.warehouse import connect
from pipelines.llm_apps.judge import judge_items, judge_spec
from tests.conftest import env_with, venv_bin
from tests.llm_server import LLMTestServer
from tests.planted import HOSTILE, HUMAN, JUDGE, add_item, cfg, planted_items


@pytest.fixture
def server():
    with LLMTestServer() as srv:
        yield srv


@pytest.fixture
def con(tmp_path: Path):
    c = connect(tmp_path / "w.duckdb")
    yield c
    c.close()


def _labels(con, mech: str) -> dict[str, str]:
    return dict(con.execute("select item_id, winner from raw.labels where mechanism = ?", [mech]).fetchall())


def test_judge_both_orders_ties_when_inconsistent(server, con) -> None:
    ties = planted_items(con, n_ties=6, n_decisive=4)
    rep = judge_items(con, cfg(server))
    assert rep.mechanism == f"judge:{JUDGE}"
    st = server.stats()
    assert st["by_tag"] == {"judge-v1": 2 * 10}  # both orders for every item
    got = _labels(con, rep.mechanism)
    assert len(got) == 10 and rep.items_judged == 10
    assert {got[i] for i in ties} == {"tie"}  # equal list counts: position bias -> order-inconsistent
    decisive = {
        i: w
        for i, w in con.execute("select item_id, winner from raw.labels where mechanism = ?", [HUMAN]).fetchall()
        if i not in ties
    }
    assert all(got[i] == w for i, w in decisive.items())  # more list items wins, in the item's orientation
    assert rep.ties == 6 and rep.wins_a + rep.wins_b == 4
    row = con.execute(
        "select mechanism_type, protocol, source_file from raw.labels where mechanism = ? limit 1", [rep.mechanism]
    ).fetchone()
    assert row[0] == "judge" and json.loads(row[1])["orders"] == "both" and row[2] == "preflens judge"


def test_rerun_adds_nothing_and_cache_means_zero_calls(server, con) -> None:
    planted_items(con, n_ties=3, n_decisive=3)
    judge_items(con, cfg(server))
    n1, calls1 = con.execute("select count(*) from raw.labels").fetchone()[0], server.stats()["requests"]
    rep = judge_items(con, cfg(server))
    assert rep.items_pending == 0 and con.execute("select count(*) from raw.labels").fetchone()[0] == n1
    con.execute("delete from raw.labels where mechanism = ?", [f"judge:{JUDGE}"])
    rep = judge_items(con, cfg(server))
    assert rep.items_judged == 6 and rep.stats.cache_hits == 12
    assert server.stats()["requests"] == calls1  # answered from raw.llm_cache: zero calls


def test_cot_and_kshot_ensemble_majority(server, con) -> None:
    planted_items(con, n_ties=4, n_decisive=4)
    rep = judge_items(con, cfg(server), cot=True, limit=3)
    assert rep.mechanism == f"judge:{JUDGE}+cot" and rep.items_judged == 3
    rep = judge_items(con, cfg(server), shots=2, ensemble=3)
    assert rep.mechanism == f"judge:{JUDGE}+2shotx3" and rep.items_judged == 8
    assert rep.protocol["shots_from"] == HUMAN
    got = _labels(con, rep.mechanism)
    assert sorted(got.values()).count("tie") == 4  # the planted judge ignores the demonstrations
    with pytest.raises(ValueError, match="ensemble needs --shots"):
        judge_items(con, cfg(server), ensemble=3)


def test_dry_run_makes_zero_calls(server, con) -> None:
    planted_items(con, n_ties=3, n_decisive=2)
    rep = judge_items(con, cfg(server), dry_run=True)
    assert server.stats()["requests"] == 0
    assert rep.stats.projected_calls == 10 and rep.items_pending == 5
    assert con.execute("select count(*) from raw.labels where mechanism_type = 'judge'").fetchone()[0] == 0
    assert any("dry run" in line for line in rep.lines())


def test_budget_stops_cleanly(server, con) -> None:
    planted_items(con, n_ties=6, n_decisive=4)
    c = cfg(server, concurrency=1, prices={JUDGE: (1000.0, 1000.0)}, max_tokens=50)
    # upper bound per call ~ (prompt/3 + 50 tokens) * $0.001: a $1 budget allows a few calls, not 20
    rep = judge_items(con, c, budget_usd=1.0)
    assert rep.budget_stopped
    assert 0 < server.stats()["requests"] < 20
    assert rep.stats.cost_usd <= 1.0
    assert rep.items_judged + rep.incomplete == 10 and rep.incomplete > 0
    status = con.execute("select status from raw.llm_runs where run_id = ?", [rep.run_id]).fetchone()[0]
    assert status == "budget_stopped"


def test_untrusted_text_is_wrapped_as_data(server, con) -> None:
    add_item(con, HOSTILE, "- a\n- b " + HOSTILE, "- a")
    rep = judge_items(con, cfg(server))
    # the forged end marker cannot close the block; the table name in the text is just text
    assert rep.items_judged == 1 and list(_labels(con, rep.mechanism).values()) == ["a"]
    assert con.execute("select count(*) from raw.items").fetchone()[0] == 1
    spec = judge_spec({"item_id": "x", "prompt": HOSTILE, "response_a": HOSTILE, "response_b": "b"}, False)
    user = spec.messages[1]["content"]
    assert user.count("<<<END RESPONSE_A>>>") == 1 and "\u2039\u2039\u2039END RESPONSE_A" in user
    assert "DATA block" in spec.messages[0]["content"]


def test_faults_are_retried(server, con) -> None:
    add_item(con, "q [[fault:500:1]] [[fault:malformed:1]]", "- a\n- b", "- a")
    rep = judge_items(con, cfg(server))
    assert rep.items_judged == 1 and server.stats()["faults"]


def test_cli_judge_dry_run_and_run(server, tmp_path: Path) -> None:
    wh = tmp_path / "wh"
    c = connect(wh / "preflens.duckdb")
    planted_items(c, n_ties=2, n_decisive=2)
    c.close()
    env = env_with(PREFLENS_WAREHOUSE=str(wh), PREFLENS_LLM_BASE_URL=server.base_url, COLUMNS="200")
    r = subprocess.run(
        [venv_bin("preflens"), "judge", "--model", JUDGE, "--dry-run"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr
    assert "dry run" in r.stdout and server.stats()["requests"] == 0
    r = subprocess.run(
        [venv_bin("preflens"), "judge", "--model", JUDGE], env=env, capture_output=True, text=True, timeout=120
    )
    assert r.returncode == 0, r.stderr
    assert "4/4 items judged" in r.stdout and "tie (order-inconsistent) 2" in r.stdout
