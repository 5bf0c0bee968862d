"""Ingestion: readers, adapters, canonical orientation, quarantine, idempotence, and the real data set."""

from __future__ import annotations

import csv
import gzip
import hashlib
import json
from collections import Counter
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from pipelines.core.warehouse import connect
from pipelines.ingest import FORMATS, IngestError, IngestSummary, detect_format, ingest_paths
from pipelines.ingest.adapters import untyped_reason
from tests.conftest import SHARED_DATA

DATA = SHARED_DATA / "pairs.jsonl.gz"

# --------------------------------------------------------------------------------------------- helpers


def sha(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def canon(prompt: str, a: str, b: str, winner: str) -> tuple[str, str, str, str]:
    """Reference implementation: (item_id, response_a, response_b, winner) in canonical orientation."""
    if sha(a) > sha(b):
        a, b = b, a
        winner = {"a": "b", "b": "a"}.get(winner, winner)
    return sha(f"{prompt}\x1f{a}\x1f{b}")[:16], a, b, winner


def label_id(item_id: str, mechanism: str) -> str:
    return sha(f"{item_id}\x1f{mechanism}")[:16]


def row(prompt: str, a: str, b: str, winner: str = "a", mechanism: str = "judge:gpt-4", **kw: Any) -> dict[str, Any]:
    rec = {
        "prompt": prompt,
        "response_a": a,
        "response_b": b,
        "winner": winner,
        "mechanism": mechanism,
        "mechanism_type": mechanism.split(":")[0],
        "domain": "coding",
        "domain_source": "dataset",
        "source": "unit",
        "item_id": f"up-{prompt}",
        "pair_id": f"pair-{prompt}-{mechanism}",
        "model_a": "m1",
        "model_b": "m2",
        "protocol": "p",
    }
    rec.update(kw)
    return rec


def write_jsonl(path: Path, records: list[dict[str, Any]], gz: bool = False) -> Path:
    text = "".join(json.dumps(r) + "\n" for r in records).encode()
    path.write_bytes(gzip.compress(text) if gz else text)
    return path


@pytest.fixture()
def con(tmp_path: Path):
    c = connect(tmp_path / "wh" / "preflens.duckdb")
    yield c
    c.close()


def q(con, sql: str, *params: Any) -> list[tuple]:
    return con.execute(sql, list(params)).fetchall()


def assert_reconciles(con, summary: IngestSummary) -> None:
    """Per file: read == loaded + duplicates + quarantined + skipped (+ concept annotations), and the DB agrees with
    the summary."""
    for f in summary.files:
        concepts = f.annotations + f.annotation_duplicates
        assert f.rows_read == f.loaded + f.duplicates + f.quarantined + f.skipped + concepts, f
        n_q = q(
            con,
            "select count(*) from raw.quarantine where ingest_id = ? and source_file = ?",
            summary.ingest_id,
            f.path,
        )[0][0]
        assert n_q == f.quarantined
        n_l = q(
            con,
            "select count(*) from raw.labels where first_ingest_id = ? and source_file = ?",
            summary.ingest_id,
            f.path,
        )[0][0]
        assert n_l == f.loaded
    run = q(
        con,
        "select rows_read, rows_loaded, rows_duplicate, rows_quarantined, finished_at is not null, "
        "status in ('completed', 'completed_with_warnings') from raw.ingest_runs where ingest_id = ?",
        summary.ingest_id,
    )
    assert run == [(summary.rows_read, summary.loaded, summary.duplicates, summary.quarantined, True, True)]


def quarantine(con, path: Path) -> list[tuple[int, str]]:
    return q(
        con,
        "select source_line, reason from raw.quarantine where source_file = ? order by source_line, reason",
        str(path.resolve()),
    )


# --------------------------------------------------------------------------------------------- detection


def test_detect_format() -> None:
    assert set(FORMATS) == {"canonical", "hf", "annotated_pairs", "icai_csv", "arena"}
    assert detect_format(["prompt", "response_a", "response_b", "winner", "mechanism"]) == "canonical"
    assert detect_format(["prompt", "response_a", "response_b"]) == "canonical"  # winner missing: quarantined later
    assert detect_format(["prompt", "chosen", "rejected"]) == "hf"
    assert detect_format(["metadata", "annotators", "comparisons"]) == "annotated_pairs"
    assert detect_format(["model_a", "model_b", "winner", "conversation_a", "conversation_b"]) == "arena"
    with pytest.raises(IngestError, match="cannot detect"):
        detect_format(["foo", "bar"])


# --------------------------------------------------------------------------------------------- canonical


def test_canonical_jsonl_orientation_and_ids(con, tmp_path: Path) -> None:
    recs = [row("p1", "alpha", "beta", "a"), row("p2", "gamma", "delta", "b"), row("p3", "x", "y", "tie")]
    path = write_jsonl(tmp_path / "c.jsonl", recs)
    s = ingest_paths(con, [path])
    assert (s.rows_read, s.loaded, s.duplicates, s.quarantined, s.new_items) == (3, 3, 0, 0, 3)
    assert s.files[0].format == "canonical"
    assert_reconciles(con, s)
    for line, r in enumerate(recs, start=1):
        iid, ra, rb, w = canon(r["prompt"], r["response_a"], r["response_b"], r["winner"])
        flipped = ra != r["response_a"]
        item = q(
            con,
            "select response_a, response_b, model_a, model_b, source_item_id, domain, source "
            "from raw.items where item_id = ?",
            iid,
        )
        assert item == [(ra, rb, "m2" if flipped else "m1", "m1" if flipped else "m2", r["item_id"], "coding", "unit")]
        lab = q(
            con,
            "select label_id, winner, mechanism_type, source_line, source_pair_id, protocol "
            "from raw.labels where item_id = ?",
            iid,
        )
        assert lab == [(label_id(iid, "judge:gpt-4"), w, "judge", line, r["pair_id"], "p")]
    # at least one of the fixtures really is reversed, so the flip is exercised
    assert any(sha(r["response_a"]) > sha(r["response_b"]) for r in recs[:2])
    assert q(con, "select domain, domain_source from raw.domains") == [("coding", "dataset")]


def test_canonical_csv_with_multiline_field(con, tmp_path: Path) -> None:
    path = tmp_path / "c.csv"
    cols = ["prompt", "response_a", "response_b", "winner", "mechanism", "model_a"]
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(cols)
        w.writerow(["p1", "line one\nline two", "other", "a", "human:raters", ""])  # physical lines 2-3
        w.writerow(["p2", "r1", "r2", "FOO", "human:raters", "m"])  # line 4: bad winner
        w.writerow(["p3", "r3", "r4", "B", "human:raters", "m"])  # line 5: upper-case winner is fine
    s = ingest_paths(con, [path], domain="math")
    assert (s.loaded, s.quarantined) == (2, 1)
    assert quarantine(con, path) == [(4, "unknown winner value")]
    assert_reconciles(con, s)
    iid, *_ = canon("p1", "line one\nline two", "other", "a")
    assert q(con, "select domain, model_a is null and model_b is null from raw.items where item_id = ?", iid) == [
        ("math", True)
    ]
    assert q(con, "select source_line, mechanism_type from raw.labels where item_id = ?", iid) == [(2, "human")]
    assert q(con, "select domain, domain_source from raw.domains") == [("math", "cli")]


def test_canonical_parquet(con, tmp_path: Path) -> None:
    recs = [row("p1", "alpha", "beta", "b"), row("p2", "same", "same", "a")]
    path = tmp_path / "c.parquet"
    pl.DataFrame(recs).with_columns(pl.lit(7).alias("score")).write_parquet(path)
    s = ingest_paths(con, [path])
    assert (s.loaded, s.quarantined) == (1, 1)
    assert quarantine(con, path) == [(2, "identical responses")]
    iid, _, _, w = canon("p1", "alpha", "beta", "b")
    assert q(con, "select winner, source_line from raw.labels where item_id = ?", iid) == [(w, 1)]
    assert_reconciles(con, s)


def test_gzip_detected_by_magic_bytes(con, tmp_path: Path) -> None:
    a = write_jsonl(tmp_path / "a.jsonl", [row("p1", "alpha", "beta")], gz=True)  # gzip without .gz
    b = write_jsonl(tmp_path / "b.jsonl.gz", [row("p2", "alpha", "beta")], gz=True)
    c = tmp_path / "c.csv.gz"
    c.write_bytes(gzip.compress(b"prompt,response_a,response_b,winner,mechanism\np3,u,v,a,reward:rm\n"))
    s = ingest_paths(con, [a, b, c])
    assert [f.loaded for f in s.files] == [1, 1, 1]
    assert q(con, "select count(*) from raw.items")[0][0] == 3
    assert_reconciles(con, s)


def test_truncated_gzip_keeps_complete_lines(con, tmp_path: Path) -> None:
    recs = [row(f"p{i}", f"resp {i} " * 50, f"other {i} " * 50) for i in range(200)]
    blob = gzip.compress("".join(json.dumps(r) + "\n" for r in recs).encode())
    path = tmp_path / "cut.jsonl.gz"
    path.write_bytes(blob[: len(blob) * 2 // 3])
    s = ingest_paths(con, [path])
    f = s.files[0]
    cut = Counter({"record cut off by the end of a truncated gzip stream": 1})
    assert 0 < f.loaded < 200 and f.quarantine_reasons in (Counter(), cut)
    assert f.warnings and "truncated" in f.warnings[0]
    assert_reconciles(con, s)


def test_json_array_record_index(con, tmp_path: Path) -> None:
    path = tmp_path / "c.json"
    path.write_text(json.dumps([row("p1", "alpha", "beta"), "not a record", row("p3", "  ", "beta")]))
    s = ingest_paths(con, [path])
    assert (s.rows_read, s.loaded) == (3, 1)
    assert quarantine(con, path) == [(2, "not a JSON object"), (3, "empty response_a")]
    assert q(con, "select source_line from raw.labels") == [(1,)]
    assert_reconciles(con, s)


# --------------------------------------------------------------------------------------------- hf


def test_hf_chosen_rejected(con, tmp_path: Path) -> None:
    recs = [
        {"prompt": "p1", "chosen": "alpha", "rejected": "beta"},
        {"prompt": "p2", "chosen": "gamma", "rejected": "delta"},
        {"prompt": "p3", "chosen": "", "rejected": "x"},
    ]
    path = write_jsonl(tmp_path / "hf.jsonl", recs)
    with pytest.raises(IngestError, match="--mechanism"):
        ingest_paths(con, [path])
    with pytest.raises(IngestError, match="type"):
        ingest_paths(con, [path], mechanism="my-raters")  # no prefix and no --mechanism-type
    s = ingest_paths(con, [path], mechanism="my-raters", mechanism_type="human")
    assert (s.files[0].format, s.loaded, s.quarantined) == ("hf", 2, 1)
    assert quarantine(con, path) == [(3, "empty chosen")]
    for r in recs[:2]:
        iid, ra, rb, w = canon(r["prompt"], r["chosen"], r["rejected"], "a")
        assert q(
            con,
            "select l.winner, l.mechanism, l.mechanism_type, i.domain, i.response_a "
            "from raw.labels l join raw.items i using (item_id) where item_id = ?",
            iid,
        ) == [(w, "human:my-raters", "human", "general", ra)]
        # the chosen response is the winner, whichever side it landed on
        assert (ra if w == "a" else rb) == r["chosen"]
    assert_reconciles(con, s)
    # type from the mechanism prefix; --domain applies
    s2 = ingest_paths(con, [path], mechanism="reward:rm-x", domain="coding", fmt="hf")
    assert s2.loaded == 2
    assert q(con, "select distinct mechanism_type from raw.labels where mechanism = 'reward:rm-x'") == [("reward",)]


def test_hf_message_lists(con, tmp_path: Path) -> None:
    msgs = lambda last: json.dumps([{"role": "user", "content": "hi"}, {"role": "assistant", "content": last}])  # noqa: E731
    path = tmp_path / "hf.csv"
    pl.DataFrame({"chosen": [msgs("hello!")], "rejected": [msgs("go away")]}).write_csv(path)
    s = ingest_paths(con, [path], fmt="hf", mechanism="human:x")
    assert s.loaded == 1
    assert q(con, "select prompt from raw.items") == [("hi",)]


# --------------------------------------------------------------------------------------------- annotated pairs


def ap_doc() -> dict[str, Any]:
    return {
        "metadata": {"version": "2.0", "dataset_name": "toy", "default_annotator": "d0"},
        "annotators": {
            "d0": {"name": "preferred_text", "type": "unknown"},
            "h1": {"name": "alice", "type": "human"},
            "p1": {"description": "Select the response that is more concise", "type": "principle"},
            "m1": {"description": "model identity", "type": "model_identity"},
        },
        "comparisons": [
            {
                "id": "c1",
                "prompt": "write",
                "response_a": {"text": "alpha", "model": "ma"},
                "response_b": {"text": "beta", "model": "mb"},
                "annotations": {
                    "d0": {"pref": "a"},
                    "h1": {"pref": "b"},
                    "p1": {"pref": None, "no_pref_reason": "not_applicable"},
                    "m1": {"pref": "a"},
                },
                "metadata": {"domain": "creative_writing"},
            },
            {
                "id": "c2",
                "prompt": None,
                "response_a": {"text": "x"},
                "response_b": {"text": "y"},
                "annotations": {"h1": {"pref": "a"}},
            },
            {
                "id": "c3",
                "prompt": "q",
                "response_a": {"text": "x"},
                "response_b": {"text": "y"},
                "annotations": {"h1": {"pref": "maybe"}, "zz": {"pref": "a"}},
            },
        ],
    }


def test_annotated_pairs(con, tmp_path: Path) -> None:
    path = tmp_path / "ap.json"
    path.write_text(json.dumps(ap_doc(), indent=2))
    s = ingest_paths(con, [path], mechanism_type="human", domain="advice")
    f = s.files[0]
    assert f.format == "annotated_pairs"
    # 4 + 1 + 2 annotation records: 3 verdicts loaded (one without a prompt), 1 principle vote as a concept
    # annotation, 1 model_identity skipped, 2 quarantined
    assert (f.rows_read, f.loaded, f.annotations, f.skipped, f.quarantined) == (7, 3, 1, 1, 2)
    assert f.skip_reasons == Counter({"model_identity annotator (not a preference)": 1})
    assert quarantine(con, path) == [(3, "unknown annotator"), (3, "unknown winner value")]
    assert q(con, "select count(*) from raw.items where prompt is null") == [(1,)]
    iid, ra, _, _ = canon("write", "alpha", "beta", "a")
    flip = ra != "alpha"
    got = dict(q(con, "select mechanism, winner from raw.labels where item_id = ?", iid))
    a, b = ("b", "a") if flip else ("a", "b")
    assert got == {"human:preferred_text": a, "human:alice": b}  # the principle is a concept, not a mechanism
    assert q(con, "select concept, comp_value, is_relevant from raw.annotations where item_id = ?", iid) == [
        ("Is more concise", 0, False)
    ]
    assert q(con, "select domain, source, source_item_id from raw.items order by 3") == [
        ("creative_writing", "toy", "c1"),
        ("advice", "toy", "c2"),  # the comparison without a prompt
    ]
    assert_reconciles(con, s)


def test_annotated_pairs_default_annotator_needs_type(con, tmp_path: Path) -> None:
    path = tmp_path / "ap.json"
    doc = ap_doc()
    doc["comparisons"] = doc["comparisons"][:1]
    path.write_text(json.dumps(doc))
    s = ingest_paths(con, [path], mechanism="human:crowd")  # --mechanism names the default annotator
    assert (s.files[0].loaded, s.files[0].annotations) == (2, 1)
    assert "human:crowd" in {m for (m,) in q(con, "select mechanism from raw.labels")}
    s = ingest_paths(con, [path], fmt="annotated_pairs")  # re-ingest without a type for 'unknown'
    assert s.files[0].quarantine_reasons == Counter({untyped_reason("unknown"): 1})


# --------------------------------------------------------------------------------------------- arena


def battle(qid: str, user: list[str], a: list[str], b: list[str], winner: str, **kw: Any) -> dict[str, Any]:
    def conv(replies: list[str]) -> list[dict[str, str]]:
        out = []
        for u, r in zip(user, replies):
            out += [{"role": "user", "content": u}, {"role": "assistant", "content": r}]
        return out

    return {
        "question_id": qid,
        "model_a": "ma",
        "model_b": "mb",
        "winner": winner,
        "conversation_a": conv(a),
        "conversation_b": conv(b),
        "language": "English",
        **kw,
    }


def test_arena(con, tmp_path: Path) -> None:
    recs = [
        battle("q1", ["hi"], ["hello"], ["hey"], "model_a", category="coding"),
        battle("q2", ["hi"], ["one"], ["two"], "model_b"),
        battle("q3", ["hi"], ["three"], ["four"], "tie (bothbad)"),
        battle("q4", ["u1", "u2"], ["a1", "a2"], ["b1", "b2"], "tie"),
        battle("q5", ["hi"], ["five"], ["six"], "nobody"),
    ]
    recs.append(
        {
            **battle("q6", ["hi"], ["x"], ["y"], "model_a"),
            "conversation_b": [{"role": "user", "content": "other"}, {"role": "assistant", "content": "y"}],
        }
    )
    path = write_jsonl(tmp_path / "arena.jsonl", recs)
    s = ingest_paths(con, [path])
    f = s.files[0]
    assert (f.format, f.loaded, f.quarantined) == ("arena", 4, 2)
    assert quarantine(con, path) == [(5, "unknown winner value"), (6, "conversations differ in user turns")]
    expect = {
        "q1": ("hi", "hello", "hey", "a", "coding"),
        "q2": ("hi", "one", "two", "b", "general"),
        "q3": ("hi", "three", "four", "tie", "general"),
    }
    for qid, (p, ra_in, rb_in, w_in, dom) in expect.items():
        iid, ra, rb, w = canon(p, ra_in, rb_in, w_in)
        assert q(
            con,
            "select l.winner, l.mechanism, i.domain, i.source_item_id, i.response_a from raw.labels l "
            "join raw.items i using (item_id) where item_id = ?",
            iid,
        ) == [(w, "human:chatbot-arena", dom, qid, ra)]
    # multi-turn: transcript of the earlier turns, final assistant turns as responses
    (prompt,) = q(con, "select prompt from raw.items where source_item_id = 'q4'")[0]
    assert prompt.startswith("User: u1\n\nAssistant: ") and prompt.endswith("User: u2")
    assert (
        q(
            con,
            "select count(*) from raw.items where source_item_id = 'q4' and "
            "response_a in ('a2', 'b2') and response_b in ('a2', 'b2')",
        )[0][0]
        == 1
    )
    assert_reconciles(con, s)


# --------------------------------------------------------------------------------------------- bad input


def test_bad_rows_are_quarantined_with_file_line_reason(con, tmp_path: Path) -> None:
    good = [row(f"g{i}", f"ra{i}", f"rb{i}") for i in range(3)]
    no_winner = row("m", "r1", "r2")
    del no_winner["winner"]
    lines = [
        json.dumps(good[0]).encode(),  # 1 ok
        json.dumps(no_winner).encode(),  # 2 missing winner
        json.dumps(row("e", "  \n", "r2")).encode(),  # 3 empty response_a
        json.dumps(row("   ", "r1", "r2")).encode(),  # 4 empty prompt
        json.dumps(row("i", "same", "same")).encode(),  # 5 identical
        json.dumps(row("w", "r1", "r2", winner="left")).encode(),  # 6 unknown winner
        json.dumps(row("u", "caf\u00e9", "r2")).encode().replace(b"caf\\u00e9", b"caf\xe9"),  # 7 latin-1 byte
        b"",  # 8 blank: not a record
        b'{"prompt": "broken", ',  # 9 malformed
        json.dumps(row("t", "r1", "r2", mechanism_type="robot")).encode(),  # 10 unknown mechanism_type
        json.dumps(good[1]).encode(),  # 11 ok
        b"[1, 2]",  # 12 not an object
        json.dumps(good[2]).encode(),  # 13 ok
        json.dumps(row("z", "r1", "r2"))[:40].encode(),  # 14 truncated last line
    ]
    path = tmp_path / "bad.jsonl"
    path.write_bytes(b"\n".join(lines))
    s = ingest_paths(con, [path])
    f = s.files[0]
    assert (f.rows_read, f.loaded, f.quarantined) == (13, 3, 10)
    assert quarantine(con, path) == [
        (2, "missing required column 'winner'"),
        (3, "empty response_a"),
        (4, "empty prompt"),
        (5, "identical responses"),
        (6, "unknown winner value"),
        (7, "non-UTF-8 bytes"),
        (9, "malformed JSON"),
        (10, "unknown mechanism_type"),
        (12, "not a JSON object"),
        (14, "malformed JSON"),
    ]
    assert sorted(x for (x,) in q(con, "select source_line from raw.labels")) == [1, 11, 13]
    raw_text = q(con, "select raw_text from raw.quarantine where source_line = 6")[0][0]
    assert json.loads(raw_text)["winner"] == "left"
    assert_reconciles(con, s)


def test_non_utf8_in_csv_and_json_array(con, tmp_path: Path) -> None:
    c = tmp_path / "x.csv"
    c.write_bytes(b"prompt,response_a,response_b,winner,mechanism\np1,caf\xe9,b,a,human:x\np2,c,d,b,human:x\n")
    j = tmp_path / "x.json"
    j.write_bytes(
        b'[{"prompt":"p","response_a":"caf\xe9","response_b":"b","winner":"a","mechanism":"human:x"},'
        b'{"prompt":"p2","response_a":"a","response_b":"b","winner":"a","mechanism":"human:x"}]'
    )
    s = ingest_paths(con, [c, j])
    assert [f.loaded for f in s.files] == [1, 1]
    assert quarantine(con, c) == [(2, "non-UTF-8 bytes")]
    assert quarantine(con, j) == [(1, "non-UTF-8 bytes")]
    assert_reconciles(con, s)


def test_raw_text_is_truncated(con, tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "long.jsonl", [row("ok", "a", "b"), row("p", "x" * 9000, "x" * 9000)])
    ingest_paths(con, [path])
    assert q(con, "select length(raw_text) from raw.quarantine") == [(4000,)]


def test_file_without_usable_rows_raises_after_quarantining(con, tmp_path: Path) -> None:
    path = tmp_path / "nowinner.csv"
    path.write_text("prompt,response_a,response_b,mechanism\np1,a,b,human:x\np2,c,d,human:x\n")
    ok = write_jsonl(tmp_path / "ok.jsonl", [row("p", "a", "b")])
    with pytest.raises(IngestError) as exc:
        ingest_paths(con, [ok, path])
    msg = str(exc.value)
    assert "nowinner.csv" in msg and "missing required column 'winner'" in msg
    assert quarantine(con, path) == [(2, "missing required column 'winner'"), (3, "missing required column 'winner'")]
    # the other file was loaded, and the run is recorded
    assert q(con, "select count(*) from raw.labels")[0][0] == 1
    assert exc.value.summary is not None and exc.value.summary.loaded == 1
    assert q(con, "select rows_read, rows_quarantined from raw.ingest_runs") == [(3, 2)]


def test_missing_file_and_bad_arguments(con, tmp_path: Path) -> None:
    ok = write_jsonl(tmp_path / "ok.jsonl", [row("p", "a", "b")])
    with pytest.raises(IngestError, match="nope.jsonl"):
        ingest_paths(con, [ok, tmp_path / "nope.jsonl"])
    with pytest.raises(IngestError, match="format"):
        ingest_paths(con, [ok], fmt="xml")
    with pytest.raises(IngestError, match="mechanism type"):
        ingest_paths(con, [ok], mechanism_type="robot")
    with pytest.raises(IngestError, match="does not match"):
        ingest_paths(con, [ok], fmt="annotated_pairs")
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    with pytest.raises(IngestError, match="no usable rows"):
        ingest_paths(con, [empty])
    assert q(con, "select count(*) from raw.labels")[0][0] == 0


# --------------------------------------------------------------------------------------------- idempotence


def test_reingest_same_file_is_idempotent(con, tmp_path: Path) -> None:
    recs = [row(f"p{i}", f"a{i}", f"b{i}", "ab"[i % 2]) for i in range(5)]
    path = write_jsonl(tmp_path / "c.jsonl", recs)
    s1 = ingest_paths(con, [path])
    snap = q(con, "select * exclude (ingested_at) from raw.labels order by all")
    s2 = ingest_paths(con, [path])
    assert (s1.loaded, s1.new_items) == (5, 5)
    assert (s2.loaded, s2.duplicates, s2.quarantined, s2.new_items, s2.new_domains) == (0, 5, 0, 0, 0)
    assert q(con, "select * exclude (ingested_at) from raw.labels order by all") == snap
    assert q(con, "select count(*) from raw.items")[0][0] == 5
    assert q(con, "select count(*) from raw.ingest_runs")[0][0] == 2
    assert_reconciles(con, s2)


def test_swapped_orientation_gives_same_item(con, tmp_path: Path) -> None:
    recs = [row("p1", "alpha", "beta", "a"), row("p2", "gamma", "delta", "b"), row("p3", "x", "y", "tie")]
    swapped = [
        {
            **r,
            "response_a": r["response_b"],
            "response_b": r["response_a"],
            "model_a": r["model_b"],
            "model_b": r["model_a"],
            "winner": {"a": "b", "b": "a"}.get(r["winner"], r["winner"]),
        }
        for r in recs
    ]
    inconsistent = [{**swapped[0], "winner": recs[0]["winner"]}]  # same a/b swap, but winner NOT flipped
    other_mech = [{**swapped[1], "mechanism": "reward:rm", "mechanism_type": "reward"}]
    p1 = write_jsonl(tmp_path / "one.jsonl", recs)
    p2 = write_jsonl(tmp_path / "two.csv.jsonl", swapped)
    p3 = write_jsonl(tmp_path / "three.jsonl", inconsistent + other_mech)
    s1 = ingest_paths(con, [p1])
    s2 = ingest_paths(con, [p2])
    assert (s2.loaded, s2.duplicates, s2.new_items) == (0, 3, 0)
    s3 = ingest_paths(con, [p3])
    assert (s3.loaded, s3.duplicates, s3.quarantined, s3.new_items) == (1, 0, 1, 0)
    assert quarantine(con, p3) == [(1, "conflicting label")]
    # models stay attached to their responses
    iid, ra, _, _ = canon("p1", "alpha", "beta", "a")
    assert q(con, "select model_a from raw.items where item_id = ?", iid) == [("m1" if ra == "alpha" else "m2",)]
    # the second mechanism links to the same item
    iid2, *_ = canon("p2", "gamma", "delta", "b")
    assert q(con, "select count(distinct mechanism) from raw.labels where item_id = ?", iid2) == [(2,)]
    for s in (s1, s2, s3):
        assert_reconciles(con, s)


def test_conflict_and_duplicate_within_one_file(con, tmp_path: Path) -> None:
    recs = [
        row("p", "alpha", "beta", "a"),
        row("p", "alpha", "beta", "b"),
        row("p", "beta", "alpha", "b"),
        row("p", "alpha", "beta", "a", domain="math"),
    ]
    path = write_jsonl(tmp_path / "c.jsonl", recs)
    s = ingest_paths(con, [path])
    assert (s.loaded, s.duplicates, s.quarantined, s.new_items) == (1, 2, 1, 1)
    assert quarantine(con, path) == [(2, "conflicting label")]
    assert q(con, "select domain from raw.items") == [("coding",)]  # first seen wins
    assert_reconciles(con, s)


# --------------------------------------------------------------------------------------------- real data


@pytest.mark.fulldata
@pytest.mark.skipif(not DATA.exists(), reason="shared data set not present")
def test_full_data_set(con) -> None:
    s = ingest_paths(con, [DATA])
    up = pl.read_ndjson(DATA, schema_overrides={"extra": pl.String}, infer_schema_length=None).with_row_index(
        "line", offset=1
    )
    up = up.select("line", "pair_id", "item_id", "mechanism", "winner")
    # (item, mechanism) is the label key: rows beyond the first for a key are duplicates (same winner) or
    # conflicts (different winner, quarantined). In this data that is judge:gpt-4 rated by two protocols.
    firsts = up.sort("line").group_by("item_id", "mechanism", maintain_order=True).agg(pl.col("winner").alias("ws"))
    n_keys = firsts.height
    n_conflict = sum(sum(w != ws[0] for w in ws) for ws in firsts["ws"].to_list())
    assert s.rows_read == 15_928
    assert s.loaded == n_keys == q(con, "select count(*) from raw.labels")[0][0]
    assert s.quarantined == n_conflict and set(s.quarantine_reasons) <= {"conflicting label"}
    assert s.duplicates == 15_928 - n_keys - n_conflict
    assert s.new_items == up["item_id"].n_unique() == q(con, "select count(*) from raw.items")[0][0]
    assert_reconciles(con, s)
    # upstream item_id <-> our item_id is one-to-one, so items shared by several mechanisms stay linked
    ours = con.sql("select source_pair_id as pair_id, item_id as our_item from raw.labels").pl()
    joined = up.join(ours, on="pair_id", how="inner")
    assert joined.height == s.loaded
    assert joined.group_by("item_id").agg(pl.col("our_item").n_unique()).get_column("our_item").max() == 1
    assert joined.group_by("our_item").agg(pl.col("item_id").n_unique()).get_column("item_id").max() == 1
    shared = q(con, "select count(*) from (select item_id from raw.labels group by 1 having count(*) > 1)")[0][0]
    assert shared == up.group_by("item_id").agg(pl.col("mechanism").n_unique()).filter(pl.col("mechanism") > 1).height
    assert shared > 0
    # re-ingest: nothing new
    s2 = ingest_paths(con, [DATA])
    assert (s2.loaded, s2.new_items, s2.duplicates + s2.quarantined) == (0, 0, 15_928)


def test_reingest_does_not_duplicate_quarantine_rows(tmp_path: Path) -> None:
    """Re-running an ingest of a file with bad rows keeps one quarantine record per bad row."""
    from pipelines.core.warehouse import connect
    from pipelines.ingest import ingest_paths

    good = {
        "prompt": "p",
        "response_a": "x",
        "response_b": "y",
        "winner": "a",
        "domain": "d",
        "mechanism": "human:t",
        "mechanism_type": "human",
    }
    bad = dict(good, winner="maybe")
    src = tmp_path / "in.jsonl"
    src.write_text("\n".join(json.dumps(r) for r in (good, bad)) + "\n")
    con = connect(tmp_path / "w.duckdb")
    first = ingest_paths(con, [src])
    second = ingest_paths(con, [src])
    n = con.execute("select count(*) from raw.quarantine").fetchall()[0][0]
    con.close()
    assert first.quarantined == second.quarantined == 1
    assert second.duplicates == 1 and second.loaded == 0
    assert n == 1
