"""Interop both ways (issue 13 §3): the peers' own files load (AnnotatedPairs v2, the ICAI / Feedback Forensics CSV),
a missing prompt is stored as NULL, annotator types map to mechanism types or to ``--mechanism-type-default``,
principle annotators become concept annotations, and ``preflens export --format annotated_pairs`` writes a file that
loads back with the same pairs and has the peers' layout.

The peers' files are in ``tests/fixtures/peers`` (copied unchanged from ``../shared/data/peers``, attribution in its
README).
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from pathlib import Path
from typing import Any

import duckdb
import polars as pl
import pytest

from pipelines.annotate.offline import PROMPT_READING, annotate_items
from pipelines.annotate.offline import annotate_pending as offline_annotate
from pipelines.core.warehouse import connect, ensure_schemas
from pipelines.ingest import IngestError, ingest_paths
from pipelines.ingest.adapters import untyped_reason
from pipelines.ingest.concepts import (
    IMPORTED_ANNOTATOR,
    R_CONCEPT_CONFLICT,
    R_NO_ITEM,
    active_version,
    concept_name,
)
from pipelines.llm.prompting import NO_TEXT, block
from pipelines.serve.export import ExportError, build_document, export_annotated_pairs
from tests.conftest import CHEAP_BUILD_ARGS, cheap_build_args, preflens

PEERS = Path(__file__).parent / "fixtures" / "peers"
FF_AP = PEERS / "feedback-forensics_annotated_pairs.json"
FF_CSV = PEERS / "feedback-forensics_example.csv"
ICAI_AP = PEERS / "icai_example_ap.json"
ICAI_CSV = PEERS / "icai_synthetic_aligned.csv"


def sha(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@pytest.fixture()
def con(tmp_path: Path):
    c = connect(tmp_path / "wh" / "preflens.duckdb")
    yield c
    c.close()


def q(con: duckdb.DuckDBPyConnection, sql: str, *params: Any) -> list[tuple]:
    return con.execute(sql, list(params)).fetchall()


def quarantine(con: duckdb.DuckDBPyConnection, path: Path) -> Counter[str]:
    return Counter(r for (r,) in q(con, "select reason from raw.quarantine where source_file = ?", str(path.resolve())))


def write_csv(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


# --------------------------------------------------------------------------------------------- the peers' files


def test_ff_annotated_pairs_without_a_type_names_the_flag(con) -> None:
    """As a new user runs it: the default annotator's type is ``unknown``, so its verdict is quarantined with a reason
    naming the flag; the 40 principle votes have no pair to attach to and say so. Nothing is loaded silently."""
    with pytest.raises(IngestError, match="no usable rows out of 41") as exc:
        ingest_paths(con, [FF_AP])
    assert exc.value.summary is not None
    f = exc.value.summary.files[0]
    assert (f.rows_read, f.loaded, f.annotations, f.quarantined) == (41, 0, 0, 41)
    assert quarantine(con, FF_AP) == Counter({untyped_reason("unknown"): 1, R_NO_ITEM: 40})
    assert "--mechanism-type-default" in untyped_reason("unknown")


def test_ff_annotated_pairs_loads_with_a_default_type(con) -> None:
    """The real file: 1 comparison, 41 annotators (the default ``preferred_text`` one + 40 principles). With
    ``--mechanism-type-default human``: 1 verdict, its prompt NULL, and 40 concept annotations of their own version."""
    doc = json.loads(FF_AP.read_text())
    s = ingest_paths(con, [FF_AP], mechanism_type_default="human")
    f = s.files[0]
    assert (f.rows_read, f.loaded, f.annotations, f.quarantined, f.skipped) == (41, 1, 40, 0, 0)
    assert q(con, "select mechanism, mechanism_type from raw.labels") == [("human:preferred_text", "human")]
    comp = doc["comparisons"][0]
    ra, rb = comp["response_a"]["text"], comp["response_b"]["text"]
    flip = sha(ra) > sha(rb)
    item_id = sha(f"{rb}\x1f{ra}" if flip else f"{ra}\x1f{rb}")[:16]  # no prompt: the two responses only
    assert q(con, "select item_id, prompt, source_item_id from raw.items") == [(item_id, None, comp["id"])]
    assert q(con, "select winner from raw.labels") == [("b" if flip else "a",)]  # 'a' in the file
    # the principles: concepts of the imported annotator, one version, each vote a comp-rep cell
    (version,) = {v for (v,) in q(con, "select distinct annotator_version from raw.annotations")}
    assert version.startswith("ap-")
    principles = {aid: a["description"] for aid, a in doc["annotators"].items() if a["type"] == "principle"}
    got = dict(q(con, "select description, concept from raw.concepts where annotator = ?", IMPORTED_ANNOTATOR))
    assert set(got) == set(principles.values()) and len(got) == 40
    assert got["Select the response that is more concise"] == "Is more concise"
    cells = {
        c: (v, r)
        for c, v, r in q(con, "select concept, comp_value, is_relevant from raw.annotations where item_id = ?", item_id)
    }
    sign = -1 if flip else 1
    for aid, desc in principles.items():
        vote = comp["annotations"][aid]
        want = (0, False) if vote["pref"] is None else ({"a": sign, "b": -sign}[vote["pref"]], True)
        assert cells[concept_name(desc)] == want, desc
    assert sum(r for _, r in cells.values()) == 10  # 10 of the 40 votes picked a side
    assert q(con, "select count(*) from raw.labels where mechanism like '%principle%'") == [(0,)]  # not mechanisms


def test_icai_example_ap_keeps_prompt_models_and_its_own_version(con) -> None:
    s = ingest_paths(con, [ICAI_AP, FF_AP], mechanism_type_default="human")
    assert [(f.loaded, f.annotations) for f in s.files] == [(1, 3), (1, 40)]
    rows = q(con, "select prompt, model_a, model_b from raw.items where prompt is not null")
    assert rows[0][0] == "Write a short story about a pet." and {rows[0][1], rows[0][2]} == {"Model X", "Model Y"}
    versions = q(con, "select annotator_version, count(*) from raw.concepts group by 1 order by 2")
    assert [n for _, n in versions] == [3, 40]  # two principle sets, two versions
    assert active_version(con) == versions[1][0]  # the one imported last
    assert active_version(con, versions[0][0]) == versions[0][0]
    with pytest.raises(LookupError, match="imported versions"):
        active_version(con, "ap-000000000000")


def test_ff_csv_is_the_same_pair_as_the_ff_annotated_pairs(con) -> None:
    """The FF example CSV (``index,text_a,text_b,preferred_text``) holds the AP file's pair: same item, same
    mechanism, so loading both gives one verdict (a duplicate, not a conflict)."""
    with pytest.raises(IngestError, match="--mechanism-type-default"):
        ingest_paths(con, [FF_CSV])  # who gave the verdicts is not in the file
    s = ingest_paths(con, [FF_CSV, FF_AP], mechanism_type_default="human")
    assert [(f.format, f.loaded, f.duplicates) for f in s.files] == [("icai_csv", 1, 0), ("annotated_pairs", 0, 1)]
    assert q(con, "select count(*), any_value(source_item_id) from raw.items") == [(1, "0")]
    assert q(con, "select count(*) from raw.annotations") == [(40,)]  # the principles attach to the CSV's item


def test_icai_synthetic_csv_with_unnamed_index(con) -> None:
    src = pl.read_csv(ICAI_CSV)
    s = ingest_paths(con, [ICAI_CSV], mechanism_type_default="judge")
    f = s.files[0]
    assert (f.format, f.rows_read, f.loaded, f.quarantined) == ("icai_csv", 30, 30, 0)
    assert q(con, "select count(*) from raw.items where prompt is null") == [(30,)]
    assert q(con, "select distinct mechanism from raw.labels") == [("judge:preferred_text",)]
    # winners as in the file, re-oriented: the preferred text is the winner's text
    got = {
        sid: ra if w == "a" else rb
        for sid, ra, rb, w in q(
            con,
            "select i.source_item_id, i.response_a, i.response_b, l.winner from raw.items i join raw.labels l using (item_id)",
        )
    }
    want = {str(r[""]): r[r["preferred_text"]] for r in src.iter_rows(named=True)}
    assert got == want


# --------------------------------------------------------------------------------------------- hand-made CSVs


def test_hand_made_csv_prompt_ties_and_bad_rows(con, tmp_path: Path) -> None:
    path = write_csv(
        tmp_path / "mine.csv",
        "text_a,text_b,preferred_text,prompt,model_a\n"
        "alpha,beta,text_a,Say hi,m1\n"  # 2 ok, with a prompt
        "gamma,delta,text_b,,m2\n"  # 3 ok, blank prompt cell: no prompt
        "eps,zeta,tie,,\n"  # 4 a tie
        "eta,theta,text_c,,\n"  # 5 unknown winner value
        "same,same,text_a,,\n"  # 6 identical responses
        "iota,,text_a,,\n"  # 7 empty text_b
        "kappa,lambda\n",  # 8 wrong number of fields
    )
    s = ingest_paths(con, [path], mechanism="reward:my-rm")
    f = s.files[0]
    assert (f.format, f.rows_read, f.loaded, f.quarantined) == ("icai_csv", 7, 3, 4)
    assert quarantine(con, path) == Counter(
        {"unknown winner value": 1, "identical responses": 1, "empty text_b": 1, "wrong number of CSV fields": 1}
    )
    assert sorted(q(con, "select prompt from raw.items"), key=str) == [("Say hi",), (None,), (None,)]
    flip = {"a": "b", "b": "a", "tie": "tie"}
    want = {
        ra if sha(ra) <= sha(rb) else rb: w if sha(ra) <= sha(rb) else flip[w]
        for ra, rb, w in [("alpha", "beta", "a"), ("gamma", "delta", "b"), ("eps", "zeta", "tie")]
    }
    assert dict(q(con, "select i.response_a, l.winner from raw.items i join raw.labels l using (item_id)")) == want
    assert q(con, "select distinct mechanism, mechanism_type from raw.labels") == [("reward:my-rm", "reward")]
    # re-ingesting changes nothing
    s2 = ingest_paths(con, [path], mechanism="reward:my-rm")
    assert (s2.files[0].loaded, s2.files[0].duplicates) == (0, 3)


def test_csv_with_icai_input_column_and_index(con, tmp_path: Path) -> None:
    path = write_csv(tmp_path / "in.csv", "index,input,text_a,text_b,preferred_text\n7,Q?,yes,no,text_b\n")
    ingest_paths(con, [path], mechanism_type_default="human")
    assert q(con, "select prompt, source_item_id from raw.items") == [("Q?", "7")]


def test_null_prompt_and_present_prompt_are_different_items(con, tmp_path: Path) -> None:
    a = write_csv(tmp_path / "a.csv", "text_a,text_b,preferred_text\nx1,y1,text_a\n")
    b = write_csv(tmp_path / "b.csv", "prompt,text_a,text_b,preferred_text\np,x1,y1,text_a\n")
    ingest_paths(con, [a, b], mechanism_type_default="human")
    assert sorted(q(con, "select prompt from raw.items"), key=str) == [("p",), (None,)]


# --------------------------------------------------------------------------------------------- annotator types


def ap(annotators: dict[str, dict[str, Any]], comparisons: list[dict[str, Any]], default: str = "d0") -> dict:
    return {
        "metadata": {"version": "2.0", "dataset_name": "toy", "default_annotator": default},
        "annotators": annotators,
        "comparisons": comparisons,
    }


def comparison(cid: str, anns: dict[str, Any], prompt: str | None = None, a: str = "ra", b: str = "rb") -> dict:
    return {"id": cid, "prompt": prompt, "response_a": {"text": a}, "response_b": {"text": b}, "annotations": anns}


def test_annotator_types_map_to_mechanism_types(con, tmp_path: Path) -> None:
    annotators = {
        "d0": {"name": "preferred_text", "type": "unknown"},
        "h": {"name": "alice", "type": "human"},
        "j": {"name": "gpt", "type": "judge"},
        "r": {"name": "rm", "type": "reward"},
        "f": {"name": "longer", "type": "function"},  # a type that names no mechanism type
        "n": {"name": "untyped"},
        "m": {"type": "model_identity", "description": "model X"},
    }
    votes = {k: {"pref": "a"} for k in annotators}
    path = tmp_path / "t.json"
    path.write_text(json.dumps(ap(annotators, [comparison("c1", votes)])))
    s = ingest_paths(con, [path])
    assert s.files[0].skip_reasons == Counter({"model_identity annotator (not a preference)": 1})
    assert quarantine(con, path) == Counter({untyped_reason("unknown"): 2, untyped_reason("function"): 1})
    assert sorted(q(con, "select mechanism from raw.labels")) == [("human:alice",), ("judge:gpt",), ("reward:rm",)]
    s = ingest_paths(con, [path], mechanism_type_default="judge")  # the default for every untyped annotator
    assert s.files[0].loaded == 3
    assert {m for (m,) in q(con, "select mechanism from raw.labels")} >= {
        "judge:preferred_text",
        "judge:longer",
        "judge:untyped",
    }
    s = ingest_paths(con, [path], mechanism="human:crowd")  # --mechanism names (and types) the default annotator
    assert "human:crowd" in {m for (m,) in q(con, "select mechanism from raw.labels")}
    with pytest.raises(IngestError, match="unknown mechanism type default"):
        ingest_paths(con, [path], mechanism_type_default="robot")


def test_principle_votes_conflicts_and_duplicates(con, tmp_path: Path) -> None:
    annotators = {
        "d0": {"name": "preferred_text", "type": "human"},
        "p1": {"description": "Select the response that is more concise", "type": "principle"},
        "p2": {"description": "Select the response that is polite.", "type": "principle"},
    }
    first = [comparison("c1", {"d0": {"pref": "a"}, "p1": {"pref": "a"}, "p2": {"pref": None}})]
    second = [comparison("c1", {"d0": {"pref": "a"}, "p1": {"pref": "b"}, "p2": {"pref": None}})]
    p_first, p_second = tmp_path / "one.json", tmp_path / "two.json"
    p_first.write_text(json.dumps(ap(annotators, first)))
    p_second.write_text(json.dumps(ap(annotators, second)))
    s = ingest_paths(con, [p_first, p_first, p_second])
    assert [(f.annotations, f.annotation_duplicates) for f in s.files] == [(2, 0), (0, 2), (0, 1)]
    assert quarantine(con, p_second) == Counter({R_CONCEPT_CONFLICT: 1})  # never overwritten
    # pref null without not_applicable: relevant and equal; "Is polite" (the final period dropped)
    assert q(con, "select comp_value, is_relevant from raw.annotations where concept = 'Is polite'") == [(0, True)]
    assert q(con, "select count(distinct annotator_version) from raw.annotations") == [(1,)]  # the same principle set


def test_empty_prompt_string_is_not_a_missing_prompt(con, tmp_path: Path) -> None:
    path = tmp_path / "e.json"
    path.write_text(json.dumps(ap({"d0": {"type": "human"}}, [comparison("c1", {"d0": {"pref": "a"}}, prompt="  ")])))
    with pytest.raises(IngestError):
        ingest_paths(con, [path])
    assert quarantine(con, path) == Counter({"empty prompt": 1})


def test_old_warehouse_prompt_becomes_nullable(tmp_path: Path) -> None:
    db = tmp_path / "old.duckdb"
    c = duckdb.connect(str(db))
    c.execute("create schema raw")
    c.execute(
        """create table raw.items (item_id varchar primary key, prompt varchar not null, response_a varchar not null,
           response_b varchar not null, domain varchar not null, source varchar, source_item_id varchar,
           model_a varchar, model_b varchar, first_ingest_id varchar not null, ingested_at timestamp not null)"""
    )
    c.execute("insert into raw.items values ('i', 'p', 'a', 'b', 'd', null, null, null, null, 'g', now())")
    ensure_schemas(c)
    ensure_schemas(c)  # idempotent
    c.execute("insert into raw.items values ('j', null, 'a', 'b', 'd', null, null, null, null, 'g', now())")
    assert c.execute("select count(*) from raw.items").fetchall() == [(2,)]
    c.close()


# --------------------------------------------------------------------------------------------- consumers of prompt NULL


def test_offline_annotator_marks_prompt_concepts_not_relevant_without_a_prompt() -> None:
    items = pl.DataFrame(
        {
            "item_id": ["none", "some"],
            "prompt": [None, "Explain the water cycle in detail please"],
            "response_a": ["The water cycle moves water through evaporation and rain."] * 2,
            "response_b": ["Water goes up and comes down again as rain, mostly."] * 2,
        },
        schema={"item_id": pl.String, "prompt": pl.String, "response_a": pl.String, "response_b": pl.String},
    )
    out = annotate_items(items)
    none = dict(out.filter(pl.col("item_id") == "none").select("concept", "is_relevant").iter_rows())
    some = dict(out.filter(pl.col("item_id") == "some").select("concept", "is_relevant").iter_rows())
    assert none["Lexical Overlap"] is False and none["Restatement"] is False  # not "equal": nothing to compare
    assert some["Lexical Overlap"] is True
    assert none["Length"] is True
    assert not any(v for k, v in none.items() if k in {"Lexical Overlap", "Restatement", "Prompt Copying"})
    assert len(PROMPT_READING) == 9


def test_llm_data_block_says_the_prompt_is_missing() -> None:
    assert block("QUERY", None) == f"<<<BEGIN QUERY>>>\n{NO_TEXT}\n<<<END QUERY>>>"
    assert block("QUERY", "hi") == "<<<BEGIN QUERY>>>\nhi\n<<<END QUERY>>>"


def test_llm_annotation_of_a_pair_without_a_prompt(con, tmp_path: Path) -> None:
    """The LLM annotator on a real local OpenAI-compatible server: the FF pair (prompt NULL) is annotated like any
    other (before, rendering its QUERY block raised on None)."""
    from pipelines.annotate.llm import annotate_llm
    from pipelines.llm.config import LLMConfig
    from tests.llm_server import LLMTestServer

    ingest_paths(con, [FF_AP], mechanism_type_default="human")
    concepts = tmp_path / "concepts.yaml"
    concepts.write_text(
        'concepts:\n  - name: Clarity\n    definition: "A high score indicates the response is clear; '
        'A low score indicates the response is unclear"\n'
    )
    with LLMTestServer(relevance_rate=1.0) as srv:
        cfg = LLMConfig(base_url=srv.base_url, model="test-model", backoff_base_s=0.01, timeout_s=5)
        rep = annotate_llm(con, cfg, concepts_file=concepts)
    assert rep.items_completed == 1
    (item_id,) = q(con, "select item_id from raw.items where prompt is null")[0]
    assert q(con, "select count(*) from raw.annotation_votes where item_id = ?", item_id)[0][0] >= 1


# --------------------------------------------------------------------------------------------- export


def served_from_raw(con: duckdb.DuckDBPyConnection, serve_db: Path, annotator: str = "offline") -> None:
    """A served copy with the columns of the marts the export reads, filled from a warehouse's raw tables with the
    marts' own rules (decisive verdicts in fct_predictions, the offline annotator's concepts). The full path through
    dbt is covered by ``test_export_round_trip_through_real_runs``."""
    con.execute(f"attach '{serve_db}' as served")
    try:
        con.execute("create schema served.marts")
        con.execute(
            """create table served.marts.dim_items as select item_id, domain, source, prompt, response_a, response_b,
               model_a, model_b from raw.items"""
        )
        con.execute(
            """create table served.marts.dim_mechanisms as select mechanism, any_value(mechanism_type) as mechanism_type,
               count(*) as n_labels, count(*) filter (where winner <> 'tie') as n_decisive,
               count(*) filter (where winner = 'tie') as n_ties, count(distinct item_id) as n_items
               from raw.labels group by mechanism"""
        )
        con.execute(
            """create table served.marts.fct_predictions as select 'fit1' as fit_id, label_id, item_id, mechanism,
               winner as actual_winner from raw.labels where winner <> 'tie'"""
        )
        con.execute(
            """create table served.marts.fct_pair_concepts as select item_id, concept, annotator, annotator_version,
               comp_value, is_relevant from raw.annotations where annotator = ?""",
            [annotator],
        )
        con.execute(
            """create table served.marts.dim_concepts as select concept, annotator, annotator_version, description,
               definition, origin from raw.concepts where annotator = ?""",
            [annotator],
        )
    finally:
        con.execute("detach served")


def peer_layout() -> dict[str, Any]:
    """The key sets of the AnnotatedPairs layout as the peers' own files show them."""
    docs = [json.loads(p.read_text()) for p in (FF_AP, ICAI_AP)]
    ann_keys = {a["type"]: set() for d in docs for a in d["annotators"].values()}
    for d in docs:
        for a in d["annotators"].values():
            ann_keys[a["type"]] |= set(a)
    vote_keys = {frozenset(v) for d in docs for c in d["comparisons"] for v in c["annotations"].values()}
    return {
        "top": [list(d) for d in docs][0],
        "metadata": [list(d["metadata"]) for d in docs][0],
        "comparison": [list(c) for d in docs for c in d["comparisons"]][0],
        "response": {k for d in docs for c in d["comparisons"] for k in c["response_a"]},
        "annotator": ann_keys,
        "vote": vote_keys,
        "version": docs[0]["metadata"]["version"],
    }


def assert_peer_layout(doc: dict[str, Any]) -> None:
    lay = peer_layout()
    assert list(doc) == lay["top"]
    assert list(doc["metadata"]) == lay["metadata"] and doc["metadata"]["version"] == lay["version"]
    assert doc["metadata"]["default_annotator"] in doc["annotators"]
    for a in doc["annotators"].values():
        assert a["type"] in {"human", "judge", "reward", "principle"}
        want = lay["annotator"]["principle"] if a["type"] == "principle" else lay["annotator"]["unknown"]
        assert set(a) == want, a
        assert all(isinstance(v, str) for v in a.values())
    for c in doc["comparisons"]:
        assert list(c) == lay["comparison"]
        assert c["prompt"] is None or isinstance(c["prompt"], str)
        for side in ("response_a", "response_b"):
            assert set(c[side]) <= lay["response"] | {"model"} and isinstance(c[side]["text"], str)
        for aid, v in c["annotations"].items():
            assert aid in doc["annotators"]
            assert frozenset(v) in lay["vote"], v
            assert v["pref"] in ("a", "b", None)
            assert v["pref"] is not None or isinstance(v["no_pref_reason"], str)
        assert all(isinstance(k, str) and isinstance(x, str) for k, x in c["metadata"].items())


@pytest.fixture()
def small_served(con, tmp_path: Path) -> tuple[duckdb.DuckDBPyConnection, Path]:
    """Real ingest (peers' files + hand-made pairs with and without prompts, a tie) and offline annotation."""
    path = tmp_path / "mixed.jsonl"
    rows = [
        {"prompt": p, "response_a": f"answer {i} " * (i + 1), "response_b": f"reply {i}", "winner": w, "mechanism": m}
        for i, (p, w, m) in enumerate(
            [
                ("What is 2+2?", "a", "judge:gpt-4"),
                ("Write a haiku", "b", "judge:gpt-4"),
                ("Write a haiku", "tie", "human:raters"),
                ("Name a colour", "b", "human:raters"),
            ]
        )
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    ingest_paths(con, [path, FF_CSV, ICAI_CSV], domain="mixed", mechanism_type_default="human")
    offline_annotate(con)
    serve_db = tmp_path / "serve" / "preflens.duckdb"
    serve_db.parent.mkdir()
    served_from_raw(con, serve_db)
    return con, serve_db


def test_export_layout_and_round_trip(small_served, tmp_path: Path) -> None:
    con, serve_db = small_served
    out = tmp_path / "out" / "pairs.json"
    res = export_annotated_pairs(serve_db, out, concepts=True)
    doc = json.loads(out.read_text())
    assert_peer_layout(doc)
    decisive = q(con, "select item_id, mechanism, winner from raw.labels where winner <> 'tie'")
    assert (res.comparisons, res.verdicts) == (len({i for i, _, _ in decisive}), len(decisive))
    assert res.not_exported == {"human:raters": 1}  # the tie: the served copy holds decisive verdicts only
    assert sum(c["prompt"] is None for c in doc["comparisons"]) == 31  # FF's pair + ICAI's 30: null, not ""
    assert doc["annotators"][doc["metadata"]["default_annotator"]]["type"] == "human"
    n_concepts = q(con, "select count(*) from raw.concepts where annotator = 'offline'")[0][0]
    assert res.principles == n_concepts and res.concept_votes == n_concepts * res.comparisons
    # it loads back: the same items (ids, texts, NULL prompts) and the same verdicts, no flag needed
    back = connect(tmp_path / "back" / "preflens.duckdb")
    s = ingest_paths(back, [out])
    assert s.quarantined == 0 and s.loaded == len(decisive)
    assert set(q(back, "select item_id, mechanism, winner from raw.labels")) == set(decisive)
    items = "select item_id, prompt, response_a, response_b, model_a, model_b from raw.items where item_id = ?"
    for (iid,) in q(back, "select item_id from raw.items"):
        assert q(back, items, iid) == q(con, items, iid)
    # and the concepts come back as imported concept annotations with the same comp-rep values
    offline = dict(
        ((i, c), (v, r))
        for i, c, v, r in q(con, "select item_id, concept, comp_value, is_relevant from raw.annotations")
    )
    desc_to_offline = {
        f"Select the response that {d.split('indicates the response ', 1)[1].split(';')[0]}": c
        for c, d in q(con, "select concept, definition from raw.concepts where annotator = 'offline'")
    }
    imported = q(
        back,
        """select a.item_id, c.description, a.comp_value, a.is_relevant from raw.annotations a
           join raw.concepts c using (concept, annotator, annotator_version)""",
    )
    assert len(imported) == res.concept_votes
    assert all(offline[(i, desc_to_offline[d])] == (v, r) for i, d, v, r in imported)
    back.close()


def test_export_of_imported_principles_keeps_their_text(con, tmp_path: Path) -> None:
    ingest_paths(con, [FF_AP], mechanism_type_default="human")
    serve_db = tmp_path / "s.duckdb"
    served_from_raw(con, serve_db, annotator=IMPORTED_ANNOTATOR)  # a build on the imported annotator serves it
    served = duckdb.connect(str(serve_db), read_only=True)
    doc, res = build_document(served, concepts=True)
    served.close()
    assert res.principles == 40
    ff = json.loads(FF_AP.read_text())
    want = sorted(a["description"] for a in ff["annotators"].values() if a["type"] == "principle")
    assert sorted(a["description"] for a in doc["annotators"].values() if a["type"] == "principle") == want
    mine = doc["comparisons"][0]["annotations"]
    assert sum(v["pref"] is not None for v in mine.values()) == 1 + 10  # the verdict and the 10 decided votes
    assert_peer_layout(doc)


def test_export_errors(tmp_path: Path, small_served) -> None:
    _, serve_db = small_served
    with pytest.raises(ExportError, match="no served copy"):
        export_annotated_pairs(tmp_path / "missing.duckdb", tmp_path / "x.json")
    with pytest.raises(ExportError, match="no mechanism 'judge:nobody'"):
        export_annotated_pairs(serve_db, tmp_path / "x.json", mechanisms=["judge:nobody"])
    res = export_annotated_pairs(serve_db, tmp_path / "x.json", mechanisms=["judge:gpt-4"])
    assert res.mechanisms == ["judge:gpt-4"] and res.verdicts == 2
    assert [p.name for p in tmp_path.glob(".x.json.*")] == []  # the temporary file was renamed, not left


# --------------------------------------------------------------------------------------------- the real pipeline


@pytest.mark.slow
def test_export_round_trip_through_real_runs(tmp_path: Path) -> None:
    """`preflens run` on a warehouse with prompt-less pairs (the peers' files + a sample subset), `explain` of one of
    them, `export --concepts`, then `preflens run --annotator annotated_pairs` on the exported file alone: the same
    pairs and verdicts come back and HMDR explains them with the imported traits, per domain, and publishes."""
    from tests.sample_subset import write_sample_subset

    subset = tmp_path / "subset.jsonl"
    write_sample_subset(subset)
    wh1, wh2 = tmp_path / "wh1", tmp_path / "wh2"
    files = [str(p) for p in (subset, FF_AP, ICAI_AP, FF_CSV, ICAI_CSV)]
    # the cheapest builds (conftest CHEAP_BUILD): the subject is what goes in and comes back, not the fit's settings
    run1 = preflens(wh1, "run", *files, "--mechanism-type-default", "human", *CHEAP_BUILD_ARGS)
    assert run1.returncode == 0, run1.stdout[-3000:] + run1.stderr[-3000:]
    assert "human:preferred_text" in run1.stdout
    s1 = duckdb.connect(str(wh1 / "serve" / "preflens.duckdb"), read_only=True)
    (none_id,) = s1.execute("select item_id from marts.dim_items where prompt is null limit 1").fetchone() or ("",)
    s1.close()
    expl = preflens(wh1, "explain", none_id)
    assert expl.returncode == 0 and "imported without a prompt" in expl.stdout, expl.stdout + expl.stderr
    out = tmp_path / "export.json"
    exp = preflens(wh1, "export", str(out), "--concepts")
    assert exp.returncode == 0, exp.stderr
    doc = json.loads(out.read_text())
    assert_peer_layout(doc)
    assert sum(c["prompt"] is None for c in doc["comparisons"]) == 31
    run2 = preflens(wh2, "run", str(out), "--annotator", "annotated_pairs", *cheap_build_args(representations="comp"))
    assert run2.returncode == 0, run2.stdout[-3000:] + run2.stderr[-3000:]
    a = duckdb.connect(str(wh1 / "preflens.duckdb"), read_only=True)
    b = duckdb.connect(str(wh2 / "preflens.duckdb"), read_only=True)
    labels = "select label_id, item_id, mechanism, winner from raw.labels where winner <> 'tie'"
    assert set(b.execute(labels).fetchall()) == set(a.execute(labels).fetchall())
    items = "select item_id, prompt, response_a, response_b, domain from raw.items"
    assert set(b.execute(items).fetchall()) <= set(a.execute(items).fetchall())
    served = duckdb.connect(str(wh2 / "serve" / "preflens.duckdb"), read_only=True)
    assert served.execute("select distinct annotator from marts.fct_pair_concepts").fetchall() == [
        (IMPORTED_ANNOTATOR,)
    ]
    assert served.execute("select distinct annotator_kind from marts.dim_annotators").fetchall() == [("imported",)]
    effects = served.execute(
        """select count(distinct domain), count(*) filter (where total_weight <> 0) from marts.fct_concept_effects
           where representation = 'comp' and mechanism = 'judge:gpt-4'"""
    ).fetchone()
    assert effects is not None and effects[0] > 1 and effects[1] > 0
    for c in (a, b, served):
        c.close()
