"""`preflens score` on pairs that carry no verdict: scored (prediction, P(A wins), explanation), never compared.

The ingest's ``allow_unlabelled`` (only the score path passes it): a row without a winner becomes an item with no
label row, in every format where a verdict can be absent; a winner that is present but invalid is still
quarantined; the main `preflens ingest` keeps requiring a winner. Then one real score run on a copy of the shared
sample warehouse, on a hand-made file mixing plain pairs, verdicts of the mechanism, a tie, another mechanism's
verdict and a bad winner.
"""

from __future__ import annotations

import csv
import gzip
import json
from pathlib import Path
from typing import Any

import duckdb
import polars as pl
import pytest

from pipelines.core.config import SAMPLE_PATH, Paths
from pipelines.core.warehouse import connect
from pipelines.ingest import IngestSummary, ingest_paths
from tests.conftest import SampleRun, preflens

MECHANISM = "judge:gpt-3.5-turbo"
OTHER = "judge:gpt-4"


def q(con: duckdb.DuckDBPyConnection, sql: str, *params: Any) -> list[tuple]:
    return con.execute(sql, list(params)).fetchall()


def quarantine(con: duckdb.DuckDBPyConnection, path: Path) -> list[tuple[int, str]]:
    return q(
        con,
        "select source_line, reason from raw.quarantine where source_file = ? order by source_line, reason",
        str(path.resolve()),
    )


def assert_reconciles(summary: IngestSummary) -> None:
    for f in summary.files:
        done = f.loaded + f.duplicates + f.quarantined + f.skipped + f.unlabelled
        assert f.rows_read == done + f.annotations + f.annotation_duplicates, f


@pytest.fixture()
def con(tmp_path: Path):
    c = connect(tmp_path / "score.duckdb")
    yield c
    c.close()


def pair(prompt: str, **kw: Any) -> dict[str, Any]:
    """A plain pair: no winner, no mechanism."""
    return {"prompt": prompt, "response_a": f"first answer to {prompt}", "response_b": f"other reply to {prompt}"} | kw


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


# ------------------------------------------------------------------ the ingest, per format


def test_canonical_jsonl_rows_without_a_winner_become_items_without_labels(con, tmp_path: Path) -> None:
    path = write_jsonl(
        tmp_path / "pairs.jsonl",
        [
            pair("p1"),  # 1 no winner key
            pair("p2", winner=None),  # 2 winner null
            pair("p3", winner="  "),  # 3 winner blank: no verdict
            pair("p4", winner="a", mechanism=MECHANISM),  # 4 a verdict
            pair("p5", winner="left"),  # 5 a winner present but invalid
            {"prompt": "p6", "response_a": "only one"},  # 6 no response_b: still quarantined
            pair("p7", winner="tie", mechanism="robot:x"),  # 7 a verdict of an unknown type: still quarantined
        ],
    )
    s = ingest_paths(con, [path], mechanism=MECHANISM, allow_unlabelled=True)
    f = s.files[0]
    assert (f.rows_read, f.loaded, f.unlabelled, f.quarantined) == (7, 1, 3, 3)
    assert quarantine(con, path) == [
        (5, "unknown winner value"),
        (6, "missing required column 'response_b'"),
        (7, "missing required column 'mechanism'"),  # as in `preflens ingest`: robot is no type
    ]
    assert sorted(p for (p,) in q(con, "select prompt from raw.items")) == ["p1", "p2", "p3", "p4"]
    assert q(con, "select mechanism, source_line from raw.labels") == [(MECHANISM, 4)]
    assert_reconciles(s)
    assert any("without a verdict 3" in line for line in s.lines())


def test_a_file_of_plain_pairs_alone_is_usable(con, tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "plain.jsonl", [pair("x"), pair("y")])
    s = ingest_paths(con, [path], allow_unlabelled=True)  # no mechanism needed: there are no verdicts
    assert (s.files[0].unlabelled, s.files[0].error, s.new_items) == (2, None, 2)
    assert q(con, "select count(*) from raw.labels") == [(0,)]


def test_the_same_plain_pair_twice_is_one_item(con, tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "twice.jsonl", [pair("x"), pair("x"), pair("x", winner="b", mechanism=MECHANISM)])
    s = ingest_paths(con, [path], allow_unlabelled=True)
    assert (s.files[0].unlabelled, s.loaded, s.new_items) == (2, 1, 1)
    assert_reconciles(s)


def test_csv_without_a_winner_column_and_with_blank_winner_cells(con, tmp_path: Path) -> None:
    no_col = tmp_path / "no_col.csv"
    with no_col.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["prompt", "response_a", "response_b", "domain"])
        w.writerow(["c1", "ra1", "rb1", "coding"])
        w.writerow(["c2", "ra2", "rb2", "coding"])
    blank = tmp_path / "blank.csv"
    with blank.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["prompt", "response_a", "response_b", "winner", "mechanism"])
        w.writerow(["c3", "ra3", "rb3", "", ""])  # 2 no verdict
        w.writerow(["c4", "ra4", "rb4", "b", MECHANISM])  # 3 a verdict
        w.writerow(["c5", "ra5", "rb5", "FOO", MECHANISM])  # 4 a bad winner
    s = ingest_paths(con, [no_col, blank], allow_unlabelled=True)
    assert [(f.unlabelled, f.loaded, f.quarantined) for f in s.files] == [(2, 0, 0), (1, 1, 1)]
    assert quarantine(con, blank) == [(4, "unknown winner value")]
    assert q(con, "select domain, count(*) from raw.items group by 1 order by 1") == [("coding", 2), ("general", 2)]
    assert_reconciles(s)


def test_parquet_without_a_winner(con, tmp_path: Path) -> None:
    path = tmp_path / "pairs.parquet"
    pl.DataFrame(
        {
            "prompt": ["q1", "q2", "q3"],
            "response_a": ["a1", "a2", "a3"],
            "response_b": ["b1", "b2", "b3"],
            "winner": [None, "a", "sideways"],
            "mechanism": [None, MECHANISM, MECHANISM],
        }
    ).write_parquet(path)
    s = ingest_paths(con, [path], allow_unlabelled=True)
    assert (s.files[0].unlabelled, s.loaded, s.quarantined) == (1, 1, 1)
    assert quarantine(con, path) == [(3, "unknown winner value")]
    assert_reconciles(s)


def test_icai_csv_with_a_blank_preferred_text(con, tmp_path: Path) -> None:
    path = tmp_path / "icai.csv"
    path.write_text("text_a,text_b,preferred_text\nt1,u1,\nt2,u2,text_a\nt3,u3,text_c\n", encoding="utf-8")
    s = ingest_paths(con, [path], mechanism=MECHANISM, allow_unlabelled=True)
    assert (s.files[0].unlabelled, s.loaded, s.quarantined) == (1, 1, 1)
    assert quarantine(con, path) == [(4, "unknown winner value")]
    assert q(con, "select count(*) from raw.items") == [(2,)]


def test_arena_battle_without_a_winner(con, tmp_path: Path) -> None:
    def conv(user: str, answer: str) -> list[dict[str, str]]:
        return [{"role": "user", "content": user}, {"role": "assistant", "content": answer}]

    rows = [
        {"question_id": "b1", "model_a": "x", "model_b": "y", "conversation_a": conv("u1", "a1"),
         "conversation_b": conv("u1", "b1"), "winner": None},
        {"question_id": "b2", "model_a": "x", "model_b": "y", "conversation_a": conv("u2", "a2"),
         "conversation_b": conv("u2", "b2"), "winner": "model_a"},
        {"question_id": "b3", "model_a": "x", "model_b": "y", "conversation_a": conv("u3", "a3"),
         "conversation_b": conv("u3", "b3"), "winner": "nobody"},
    ]  # fmt: skip
    path = write_jsonl(tmp_path / "arena.jsonl", rows)
    s = ingest_paths(con, [path], allow_unlabelled=True)
    assert s.files[0].format == "arena"
    assert (s.files[0].unlabelled, s.loaded, s.quarantined) == (1, 1, 1)
    assert quarantine(con, path) == [(3, "unknown winner value")]


def test_annotated_pairs_comparisons_without_a_verdict(con, tmp_path: Path) -> None:
    doc = {
        "metadata": {"version": "2.0", "dataset_name": "toy"},
        "annotators": {
            "h1": {"name": "alice", "type": "human"},
            "p1": {"description": "Select the response that is more concise", "type": "principle"},
        },
        "comparisons": [
            {"id": "c1", "prompt": "w", "response_a": {"text": "al"}, "response_b": {"text": "be"}, "annotations": {}},
            {"id": "c2", "prompt": None, "response_a": {"text": "x"}, "response_b": {"text": "y"}},
            {"id": "c3", "prompt": "q", "response_a": {"text": "s"}, "response_b": {"text": "t"},
             "annotations": {"p1": {"pref": "a"}}},
            {"id": "c4", "prompt": "r", "response_a": {"text": "u"}, "response_b": {"text": "v"},
             "annotations": {"h1": {"pref": "a"}}},
            {"id": "c5", "prompt": "s", "response_a": {"text": "m"}, "response_b": {"text": "n"},
             "annotations": {"h1": {"pref": "maybe"}}},
        ],
    }  # fmt: skip
    path = tmp_path / "ap.json"
    path.write_text(json.dumps(doc), encoding="utf-8")
    s = ingest_paths(con, [path], allow_unlabelled=True)
    f = s.files[0]
    # c1, c2: no annotations; c3: a concept annotation only (its pair is an item too); c4 a verdict; c5 a bad one
    assert (f.unlabelled, f.loaded, f.annotations, f.quarantined) == (3, 1, 1, 1)
    assert quarantine(con, path) == [(5, "unknown winner value")]
    assert q(con, "select source_item_id from raw.items order by 1") == [("c1",), ("c2",), ("c3",), ("c4",)]
    assert_reconciles(s)


# ------------------------------------------------------------------ the main ingest still requires a verdict


def test_main_ingest_still_quarantines_a_missing_winner(tmp_path: Path) -> None:
    jsonl = write_jsonl(
        tmp_path / "pairs.jsonl",
        [pair("p1"), pair("p2", winner="a", mechanism=MECHANISM), pair("p3", winner=None, mechanism=MECHANISM)],
    )
    blank = tmp_path / "blank.csv"
    blank.write_text(f"prompt,response_a,response_b,winner,mechanism\nc1,r1,r2,,{MECHANISM}\n", encoding="utf-8")
    warehouse = tmp_path / "warehouse"
    proc = preflens(warehouse, "ingest", str(jsonl), str(blank), "--mechanism", MECHANISM)
    assert proc.returncode == 1, proc.stdout + proc.stderr  # the CSV has no usable row
    assert "without a verdict" not in proc.stdout
    con = duckdb.connect(str(Paths(warehouse=warehouse).build_db), read_only=True)
    try:
        assert quarantine(con, jsonl) == [
            (1, "missing required column 'winner'"),
            (3, "missing required column 'winner'"),
        ]
        assert quarantine(con, blank) == [(2, "unknown winner value")]  # as before: a CSV cell is never null
        assert q(con, "select prompt from raw.items") == [("p2",)]
    finally:
        con.close()


# ------------------------------------------------------------------ a real score run on the sample


def _mixed_file(path: Path) -> dict[str, Any]:
    """From the sample: 30 pairs of MECHANISM with their verdicts, 1 of them as a tie, 25 plain pairs (no winner,
    no mechanism; 2 with ``winner: null`` / ``""``), 5 pairs with only OTHER's verdict, and one bad winner."""
    with gzip.open(SAMPLE_PATH, "rt", encoding="utf-8") as src:
        rows = [json.loads(line) for line in src]
    by_item: dict[str, set[str]] = {}
    for r in rows:
        by_item.setdefault(r["item_id"], set()).add(r["mechanism"])
    own = [r for r in rows if r["mechanism"] == MECHANISM and r["winner"] in ("a", "b")][:31]
    others = [r for r in rows if r["mechanism"] == OTHER and MECHANISM not in by_item[r["item_id"]]][:5]
    used = {r["item_id"] for r in own + others}
    plain_src = [r for r in rows if r["item_id"] not in used and r["mechanism"] not in (MECHANISM, OTHER)]
    seen: set[str] = set()
    plain = []
    for r in plain_src:
        if r["item_id"] in seen:
            continue
        seen.add(r["item_id"])
        plain.append({k: r[k] for k in ("prompt", "response_a", "response_b", "domain")})
        if len(plain) == 26:
            break
    tie = dict(own.pop(), winner="tie")
    bad = dict(plain.pop(), winner="left", mechanism=MECHANISM, mechanism_type="judge")
    plain[0]["winner"] = None
    plain[1]["winner"] = ""
    out = [*own[:15], *plain[:12], tie, *others, bad, *plain[12:], *own[15:]]
    write_jsonl(path, out)
    return {
        "compared": len(own),
        "plain": len(plain),
        "others": len(others),
        "bad_line": out.index(bad) + 1,
        "plain_texts": {(p["prompt"], p["response_a"]) for p in plain},
    }


class Mixed:
    def __init__(self, warehouse: Path, proc: Any, expect: dict[str, Any]) -> None:
        self.paths, self.proc, self.expect = Paths(warehouse=warehouse), proc, expect
        line = next(x for x in proc.stdout.splitlines() if x.startswith("score "))
        self.score_id = line.split()[1].rstrip(":")

    def q(self, sql: str, *params: Any) -> list[tuple]:
        con = duckdb.connect(str(self.paths.build_db), read_only=True)
        try:
            return q(con, sql, *params)
        finally:
            con.close()


@pytest.fixture(scope="module")
def mixed(sample_run: SampleRun, tmp_path_factory: pytest.TempPathFactory) -> Mixed:
    root = tmp_path_factory.mktemp("score_unlabelled")
    warehouse = sample_run.copy_to(root / "warehouse")
    path = root / "mixed.jsonl"
    expect = _mixed_file(path)
    proc = preflens(warehouse, "score", str(path), "--mechanism", MECHANISM)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return Mixed(warehouse, proc, expect)


@pytest.mark.slow
def test_every_unlabelled_pair_is_scored_and_explained(mixed: Mixed) -> None:
    e = mixed.expect
    n_all = e["compared"] + 1 + e["plain"] + e["others"]
    rows = mixed.q(
        "select comparison, count(*), count(prob_a), count(predicted_winner), count(agrees), "
        "count(*) filter (where winner is null) from ops.scored_pairs where score_id = ? group by 1 order by 1",
        mixed.score_id,
    )
    assert rows == [
        ("compared", e["compared"], e["compared"], e["compared"], e["compared"], 0),
        ("no_verdict", e["plain"], e["plain"], e["plain"], 0, e["plain"]),
        ("other_mechanism", e["others"], e["others"], e["others"], 0, e["others"]),
        ("tie", 1, 1, 1, 0, 0),
    ]
    # the mart shows them all, with the reason they were not compared
    mart = mixed.q(
        "select count(*), count(*) filter (where comparison = 'no_verdict' and prob_a between 0 and 1) "
        "from marts.fct_scored_pairs where score_id = ?",
        mixed.score_id,
    )
    assert mart == [(n_all, e["plain"])]
    explained = mixed.q(
        "select count(distinct e.item_id) from ops.scored_explanations e join ops.scored_pairs p "
        "using (score_id, item_id) where score_id = ? and p.comparison = 'no_verdict'",
        mixed.score_id,
    )
    assert explained[0][0] > 0.8 * e["plain"]
    # they are the hand-made plain pairs: their texts are in the run's own file, with no label
    ((input_db,),) = mixed.q("select input_db from ops.score_runs where score_id = ?", mixed.score_id)
    con = duckdb.connect(input_db, read_only=True)
    try:
        texts = q(
            con,
            "select prompt, response_a, response_b from raw.items i "
            "where not exists (select 1 from raw.labels l where l.item_id = i.item_id)",
        )
    finally:
        con.close()
    assert {(p, a) if (p, a) in e["plain_texts"] else (p, b) for p, a, b in texts} == e["plain_texts"]


@pytest.mark.slow
def test_agreement_counts_only_the_mechanisms_decisive_verdicts(mixed: Mixed) -> None:
    e = mixed.expect
    ((n, n_agree),) = mixed.q(
        "select n_pairs, n_agree from ops.score_agreement where score_id = ? and domain = '__all__'", mixed.score_id
    )
    agreeing = mixed.q("select count(*) from ops.scored_pairs where score_id = ? and agrees", mixed.score_id)[0][0]
    assert n == e["compared"] and n_agree == agreeing
    run = mixed.q(
        "select n_pairs, n_decisive, n_no_verdict, n_tie, n_other_mechanism from ops.score_runs where score_id = ?",
        mixed.score_id,
    )
    n_all = e["compared"] + 1 + e["plain"] + e["others"]
    assert run == [(n_all, e["compared"], e["plain"], 1, e["others"])]
    out = mixed.proc.stdout
    not_compared = e["plain"] + 1 + e["others"]
    assert f"{n_all} pairs scored" in out
    assert (
        f"compared with its verdicts: {e['compared']}; not compared: {not_compared} "
        f"({e['plain']} without a verdict, 1 tie, {e['others']} with only another mechanism's verdict)"
    ) in out


@pytest.mark.slow
def test_the_bad_winner_is_in_the_score_files_quarantine(mixed: Mixed) -> None:
    ((input_db,),) = mixed.q("select input_db from ops.score_runs where score_id = ?", mixed.score_id)
    con = duckdb.connect(input_db, read_only=True)
    try:
        rows = q(con, "select source_line, reason, raw_text from raw.quarantine")
    finally:
        con.close()
    assert [(line, reason) for line, reason, _ in rows] == [(mixed.expect["bad_line"], "unknown winner value")]
    assert json.loads(rows[0][2])["winner"] == "left"
    assert "quarantined 1: unknown winner value" in mixed.proc.stdout
