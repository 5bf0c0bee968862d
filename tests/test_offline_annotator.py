"""Tests for the embedded offline annotator (catalog, vectorised scorers, warehouse loading)."""

from __future__ import annotations

import hashlib
import math
import re
from datetime import datetime
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from pipelines.annotate import catalog as cat
from pipelines.annotate import offline
from pipelines.annotate.catalog import CONCEPTS, CONCEPTS_BY_KEY, OFFLINE_ANNOTATOR, OFFLINE_ANNOTATOR_VERSION
from pipelines.annotate.offline import annotate_items, annotate_pending, catalog_frame
from pipelines.annotate.scorers import compare, likert
from pipelines.warehouse import connect

DATA = Path("/work/shared/data/pairs.jsonl.gz")
DEF_RE = re.compile(r"^A high score indicates the response .+; A low score indicates the response .+$")
FILLER = (
    "Rivers carry sediment from mountains toward the coast where deltas slowly form over centuries. "
    "Farmers along the banks depend on seasonal floods that renew soil fertility each spring. "
    "Engineers build levees and dams to control water, although these structures change habitats. "
    "Fish migrate upstream to spawn, and birds follow them, feeding along shallow gravel bars. "
    "Cities grew near rivers because transport, drinking water and trade routes were all available. "
    "Modern planners balance flood protection, navigation, irrigation, recreation and conservation goals."
)

# concept key -> (prompt, response scoring HIGH on the concept, response scoring LOW)
CASES: dict[str, tuple[str, str, str]] = {
    "length": ("Tell me about rivers.", FILLER, "Rivers flow."),
    "structure": (
        "How should I plan a trip?",
        "# Trip plan\n- Book flights\n- Reserve hotel\n- Buy insurance\n\nPack:\n- Passport\n- Charger\n\n"
        "Budget:\n1. Transport\n2. Food\n3. Activities",
        "You should book flights, reserve a hotel, buy insurance, pack your passport and a charger, and plan "
        "a budget for transport, food and activities before you go anywhere.",
    ),
    "code_blocks": (
        "How do I reverse a list in Python?",
        "Use slicing:\n```python\nxs = [1, 2, 3]\nrev = xs[::-1]\nprint(rev)\n```",
        "You can use slicing with a negative step to get the elements in reverse order.",
    ),
    "specificity": (
        "Tell me about the Eiffel Tower.",
        "The Eiffel Tower in Paris was completed in 1889 by Gustave Eiffel, is 330 metres tall and drew "
        "6.2 million visitors in 2019.",
        "It is a very old and quite tall structure that many people like to visit every single year.",
    ),
    "references": (
        "How much exercise do adults need?",
        "According to the WHO (https://www.who.int/news-room), adults need 150 minutes a week [1]. "
        "See also https://health.gov for guidance.",
        "Adults need some exercise each week, ideally spread over several days.",
    ),
    "hedging": (
        "Will this script work?",
        "It might possibly work, but I think it probably depends; perhaps it could fail in some cases, "
        "and it may be unlikely to run.",
        "It works. Run the command and the output file is created in the target folder right away.",
    ),
    "refusal": (
        "How do I pick a lock?",
        "I'm sorry, but I can't help with that.",
        "Insert a tension wrench into the bottom of the keyhole and rake the pins gently.",
    ),
    "politeness": (
        "Any tips for bread?",
        "Thank you for asking! Please feel free to experiment, and I hope this helps.",
        "Mix flour, water, yeast and salt, then bake it.",
    ),
    "empathy": (
        "I lost my job today.",
        "I'm sorry to hear that. That sounds really hard, and it's understandable to feel upset. You're not alone.",
        "Update your resume and apply to new positions by Friday.",
    ),
    "questions": (
        "My server is down.",
        "Which version are you using? Have you tried restarting it? What error do you see?",
        "Restart the service and then check the logs for errors.",
    ),
    "lexical_overlap": (
        "What are the health benefits of green tea consumption?",
        "Green tea consumption has health benefits: antioxidants in green tea support heart health.",
        "Drinking it daily can help you feel calmer and more focused.",
    ),
    "readability": (
        "Describe your day.",
        "The cat sat. The dog ran. We had fun. It was a sunny day. We ate cake. Then we slept.",
        "Notwithstanding considerable methodological heterogeneity, contemporary epidemiological investigations "
        "consistently demonstrate statistically significant associations between socioeconomic deprivation and "
        "cardiovascular morbidity.",
    ),
    "lexical_diversity": (
        "Describe a forest.",
        "Tall pines shade mossy ground while streams murmur beneath ferns, owls, deer, mushrooms and quiet trails.",
        "The trees are trees and the trees are green and the trees are tall and the trees are trees.",
    ),
    "repetition": (
        "Do you like it?",
        "I like it a lot. " * 10,
        FILLER,
    ),
    "enthusiasm": (
        "What do you think of my painting?",
        "Wow, this is amazing! I love it! Fantastic colours!",
        "The painting uses several colours.",
    ),
    "examples": (
        "Which fruits are sweet?",
        "Many fruits are sweet, for example mangoes; for instance, grapes, and others such as figs.",
        "Many fruits are sweet.",
    ),
    "step_by_step": (
        "How do I change privacy settings?",
        "1. Open the app.\n2. Tap Settings.\n3. Choose Privacy.\n4. Toggle sharing off.\nFinally, save.",
        "Open the app and change the privacy settings to what you prefer.",
    ),
    "summary": (
        "Tell me about rivers.",
        FILLER + "\n\nIn summary, rivers shape land, economies and ecosystems.",
        FILLER,
    ),
    "formality": (
        "Is the analysis done?",
        "Therefore, the results are robust; however, further analysis is required. Moreover, the data are "
        "consistent with prior work.",
        "Yeah, it's cool stuff, don't worry! It's gonna be okay, lol, we're fine.",
    ),
    "emphasis": (
        "Should I back up first?",
        "This is **very** important: you MUST NOT skip the **backup** step.",
        "This is very important: you must not skip the backup step.",
    ),
    "emojis": ("Say congrats.", "Great job \U0001F389\U0001F600", "Great job."),
    "first_person": (
        "Which approach is best?",
        "I think my approach is best; I tried it myself and it worked for me every time.",
        "The second approach is best; users tried it and it worked for them in every case.",
    ),
    "directness": (
        "What is the capital of France?",
        "Paris is the capital of France.",
        "Sure! Great question. Hello, of course: Paris is the capital of France.",
    ),
    "caveats": (
        "How much ibuprofen can I take?",
        "Please note that you should consult a doctor; be careful with the dosage and make sure to read the label.",
        "Take two tablets with water.",
    ),
}


def _items(rows: list[tuple[str, str, str]], prefix: str = "it") -> pl.DataFrame:
    return pl.DataFrame(
        {
            "item_id": [f"{prefix}{i:04d}" for i in range(len(rows))],
            "prompt": [r[0] for r in rows],
            "response_a": [r[1] for r in rows],
            "response_b": [r[2] for r in rows],
        }
    )


def _row(out: pl.DataFrame, item_id: str, concept: str) -> dict:
    sel = out.filter((pl.col("item_id") == item_id) & (pl.col("concept") == concept))
    assert sel.height == 1
    return sel.row(0, named=True)


# ---------------------------------------------------------------- catalog


def test_catalog_size_and_uniqueness() -> None:
    assert len(CONCEPTS) >= 20
    assert len({c.name for c in CONCEPTS}) == len(CONCEPTS)
    assert len({c.key for c in CONCEPTS}) == len(CONCEPTS)


@pytest.mark.parametrize("concept", CONCEPTS, ids=lambda c: c.key)
def test_catalog_entry_format(concept: cat.Concept) -> None:
    assert DEF_RE.match(concept.definition), concept.definition
    assert re.fullmatch(r"[a-z][a-z0-9_]*", concept.key)
    assert all(w[0].isupper() for w in concept.name.split(" ")), concept.name
    assert concept.description and "\n" not in concept.description
    assert concept.is_shared is True and concept.origin == "offline"
    assert list(concept.bin_edges) == sorted(set(concept.bin_edges)) and len(concept.bin_edges) == 6
    assert concept.definition_hash == hashlib.sha256(concept.definition.encode()).hexdigest()[:16]
    assert re.fullmatch(r"[0-9a-f]{16}", concept.definition_hash)


def test_concept_validation_rejects_bad_definitions_and_edges() -> None:
    with pytest.raises(ValueError):
        cat.Concept("X", "x", "d", "Higher is better", "u", (1, 2, 3, 4, 5, 6))
    with pytest.raises(ValueError):
        cat.Concept("X", "x", "d", CONCEPTS[0].definition, "u", (1, 2, 2, 4, 5, 6))


def test_version_constants() -> None:
    assert OFFLINE_ANNOTATOR == "offline"
    assert OFFLINE_ANNOTATOR_VERSION.startswith("offline-")


def test_catalog_frame_matches_raw_concepts(tmp_path: Path) -> None:
    con = connect(tmp_path / "wh.duckdb")
    table_cols = [r[0] for r in con.execute("describe raw.concepts").fetchall()]
    frame = catalog_frame()
    assert frame.columns == table_cols
    assert frame.height == len(CONCEPTS)
    assert set(frame["annotator_version"]) == {OFFLINE_ANNOTATOR_VERSION}
    assert frame["is_shared"].all() and frame["domains"].is_null().all()


# ---------------------------------------------------------------- scorers: known answers


def test_every_concept_has_a_known_answer_case() -> None:
    assert set(CASES) == {c.key for c in CONCEPTS}


@pytest.mark.parametrize("key", sorted(CASES))
def test_known_answer_high_beats_low(key: str) -> None:
    concept = CONCEPTS_BY_KEY[key]
    prompt, high, low = CASES[key]
    out = annotate_items(_items([(prompt, high, low), (prompt, low, high)]))
    fwd, rev = _row(out, "it0000", concept.name), _row(out, "it0001", concept.name)
    assert fwd["is_relevant"], f"{key} should be relevant for its own test case"
    assert fwd["measure_a"] > fwd["measure_b"]
    assert fwd["comp_value"] == 1
    assert fwd["score_a"] > fwd["score_b"] and fwd["score_diff"] == fwd["score_a"] - fwd["score_b"]
    assert rev["comp_value"] == -1 and rev["score_diff"] == -fwd["score_diff"]


def test_structure_lists_and_header_beat_prose() -> None:
    prompt, high, low = CASES["structure"]
    out = annotate_items(_items([(prompt, high, low)]))
    r = _row(out, "it0000", "Structure")
    assert r["measure_a"] >= 8 + 2 and r["measure_b"] == 0  # 8 list items + header (x2)
    assert r["score_a"] >= 5 and r["score_b"] == 1


def test_refusal_vs_helpful_answer() -> None:
    out = annotate_items(_items([("How do I bake bread?", "I'm sorry, but I can't help with that",
                                  "Mix flour, water, yeast and salt, knead, rise, then bake at 220C.")]))
    r = _row(out, "it0000", "Refusal")
    assert r["is_relevant"] and r["comp_value"] == 1 and r["score_b"] == 1 and r["score_a"] >= 4


def test_sorry_to_hear_is_empathy_not_refusal() -> None:
    out = annotate_items(_items([("My cat died.", "I'm sorry to hear that, losing a pet is hard.", "Cats live 15 years.")]))
    assert _row(out, "it0000", "Refusal")["comp_value"] == 0
    assert _row(out, "it0000", "Empathy")["comp_value"] == 1


def test_code_blocks_relevance_from_prompt_topic_and_response() -> None:
    rows = [
        ("Write a haiku about autumn.", "Leaves fall softly down", "Red maple whispers"),  # no code anywhere
        ("Fix my javascript bug please.", "Check the variable scope.", "Use let instead."),  # prompt topic
        ("Say hi.", "```\nprint('hi')\n```", "hi"),  # a response holds code
    ]
    out = annotate_items(_items(rows)).filter(pl.col("concept") == "Code Blocks").sort("item_id")
    assert out["is_relevant"].to_list() == [False, True, True]
    assert out["comp_value"].to_list()[2] == 1


def test_irrelevant_is_distinct_from_equal() -> None:
    out = annotate_items(_items([("Write a poem.", "Roses are red.", "Roses are red."),
                                 ("Tell me about rivers.", FILLER, FILLER)]))
    irr = _row(out, "it0000", "Code Blocks")
    assert (irr["is_relevant"], irr["score_a"], irr["score_b"], irr["comp_value"], irr["score_diff"]) == (False, 0, 0, 0, 0)
    short = _row(out, "it0000", "Readability")  # fewer than 10 words on both sides
    assert short["is_relevant"] is False and short["score_a"] == 0
    eq = _row(out, "it0001", "Readability")
    assert eq["is_relevant"] is True and eq["comp_value"] == 0 and eq["score_diff"] == 0
    assert 1 <= eq["score_a"] == eq["score_b"] <= 7
    assert _row(out, "it0000", "Length")["is_relevant"] is True  # equal, but relevant


def test_length_tie_tolerance() -> None:
    base = "x" * 1000
    out = annotate_items(_items([("p", base, "x" * 1050), ("p", base, "x" * 1200), ("p", "x" * 10, "x" * 25)]))
    comps = out.filter(pl.col("concept") == "Length").sort("item_id")["comp_value"].to_list()
    assert comps == [0, -1, 0]  # 5% < 10% relative tolerance; 20% beyond it; 15 chars < 20 absolute


def test_compare_and_likert_units() -> None:
    c = cat.Concept("T", "t", "d", CONCEPTS[0].definition, "u", (1, 2, 3, 4, 5, 6), abs_tol=0.5, rel_tol=0.1)
    a, b = np.array([0.0, 3.0, 10.0, 10.0, 2.0, 1.5]), np.array([0.4, 1.0, 9.5, 8.0, 2.0, 1.0])
    assert compare(c, a, b).tolist() == [0, 1, 0, 1, 0, 0]  # a difference equal to the tolerance is a tie
    assert compare(c, b, a).tolist() == [0, -1, 0, -1, 0, 0]
    assert likert(c, np.array([-5.0, 0.99, 1.0, 2.5, 5.9, 6.0, 1e9])).tolist() == [1, 1, 2, 3, 6, 7, 7]


def test_swap_flips_signs_everywhere() -> None:
    rows = [CASES[k] for k in sorted(CASES)]
    fwd = annotate_items(_items(rows)).sort("item_id", "concept")
    rev = annotate_items(_items([(p, b, a) for p, a, b in rows])).sort("item_id", "concept")
    assert (fwd["comp_value"] == -rev["comp_value"]).all()
    assert (fwd["score_diff"] == -rev["score_diff"]).all()
    assert (fwd["score_a"] == rev["score_b"]).all() and (fwd["is_relevant"] == rev["is_relevant"]).all()


def test_output_contract_and_ranges() -> None:
    rows = [CASES[k] for k in sorted(CASES)] + [("", "", ""), ("p", "'; drop table raw.items; --", "\x00\u202e")]
    items = _items(rows)
    out = annotate_items(items, annotated_at=datetime(2025, 1, 1))
    assert out.columns == list(offline.ANNOTATION_COLUMNS)
    assert out.height == items.height * len(CONCEPTS)
    rel = out.filter(pl.col("is_relevant"))
    assert rel["score_a"].is_between(1, 7).all() and rel["score_b"].is_between(1, 7).all()
    irr = out.filter(~pl.col("is_relevant"))
    assert (irr["score_a"] == 0).all() and (irr["comp_value"] == 0).all() and (irr["score_diff"] == 0).all()
    assert set(out["comp_value"].unique()) <= {-1, 0, 1}
    assert (out["score_diff"] == out["score_a"] - out["score_b"]).all()
    assert ((out["score_diff"].sign() * out["comp_value"]) >= 0).all()  # bins never contradict comp-rep
    assert out["is_consistent"].is_null().all()
    assert set(out["annotator"]) == {"offline"} and set(out["annotator_version"]) == {OFFLINE_ANNOTATOR_VERSION}
    assert all(math.isfinite(x) for x in out["measure_a"].to_list() + out["measure_b"].to_list())


def test_rows_are_independent_of_batch_composition() -> None:
    rows = [CASES[k] for k in sorted(CASES)]
    together = annotate_items(_items(rows)).drop("annotated_at").sort("item_id", "concept")
    alone = pl.concat(
        [annotate_items(_items([r], prefix=f"it{i:04d}")).drop("annotated_at") for i, r in enumerate(rows)]
    ).with_columns(pl.col("item_id").str.slice(0, 6)).sort("item_id", "concept")
    assert together.equals(alone)


def test_empty_input() -> None:
    out = annotate_items(_items([]))
    assert out.height == 0 and out.columns == list(offline.ANNOTATION_COLUMNS)


# ---------------------------------------------------------------- warehouse


def _load_items(con, rows: list[tuple[str, str, str]], prefix: str = "it") -> None:
    items = _items(rows, prefix).with_columns(
        domain=pl.lit("general_chat"), first_ingest_id=pl.lit("test"), ingested_at=pl.lit(datetime(2025, 1, 1))
    )
    con.register("_t_items", items.to_arrow())
    con.execute(
        "insert into raw.items (item_id, prompt, response_a, response_b, domain, first_ingest_id, ingested_at) "
        "select item_id, prompt, response_a, response_b, domain, first_ingest_id, ingested_at from _t_items"
    )
    con.unregister("_t_items")


def _count(con, sql: str) -> int:
    return con.execute(sql).fetchall()[0][0]


def test_annotate_pending_idempotent(tmp_path: Path) -> None:
    con = connect(tmp_path / "wh.duckdb")
    rows = [CASES[k] for k in sorted(CASES)]
    _load_items(con, rows)
    calls: list[tuple[int, int]] = []
    assert annotate_pending(con, batch_size=7, progress=lambda d, t: calls.append((d, t))) == len(rows)
    n = _count(con, "select count(*) from raw.annotations")
    assert n == len(rows) * len(CONCEPTS)
    assert calls[0] == (0, len(rows)) and calls[-1] == (len(rows), len(rows)) and len(calls) == 1 + 4
    assert _count(con, "select count(*) from raw.concepts") == len(CONCEPTS)
    assert annotate_pending(con) == 0
    assert _count(con, "select count(*) from raw.annotations") == n
    assert _count(con, "select count(*) from raw.concepts") == len(CONCEPTS)
    # new items only are annotated
    _load_items(con, [("q", "a new answer", "another answer")], prefix="new")
    assert annotate_pending(con) == 1
    assert _count(con, "select count(*) from raw.annotations") == n + len(CONCEPTS)
    # stored rows equal the in-memory annotation
    stored = con.sql("select * exclude (annotated_at) from raw.annotations where item_id = 'it0000'").pl()
    fresh = annotate_items(_items(rows)).filter(pl.col("item_id") == "it0000").drop("annotated_at")
    key = ["concept"]
    assert stored.sort(key).select(fresh.columns).cast(fresh.schema).equals(fresh.sort(key))


def test_annotate_pending_resumes_after_interruption(tmp_path: Path) -> None:
    db = tmp_path / "wh.duckdb"
    con = connect(db)
    rows = [CASES[k] for k in sorted(CASES)]
    _load_items(con, rows)

    def boom(done: int, total: int) -> None:
        if done >= 10:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        annotate_pending(con, batch_size=10, progress=boom)
    con.close()
    con = connect(db)
    assert _count(con, "select count(distinct item_id) from raw.annotations") == 10
    assert annotate_pending(con, batch_size=10) == len(rows) - 10
    assert _count(con, "select count(*) from raw.annotations") == len(rows) * len(CONCEPTS)


def test_version_bump_reannotates(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    con = connect(tmp_path / "wh.duckdb")
    _load_items(con, [CASES["length"], CASES["refusal"]])
    assert annotate_pending(con) == 2
    monkeypatch.setattr(offline, "OFFLINE_ANNOTATOR_VERSION", "offline-test-bump")
    assert annotate_pending(con) == 2
    versions = con.execute("select annotator_version, count(*) from raw.annotations group by 1 order by 1").fetchall()
    assert versions == [(OFFLINE_ANNOTATOR_VERSION, 2 * len(CONCEPTS)), ("offline-test-bump", 2 * len(CONCEPTS))]
    assert _count(con, "select count(*) from raw.concepts") == 2 * len(CONCEPTS)


# ---------------------------------------------------------------- real data


@pytest.mark.skipif(not DATA.exists(), reason="real data not available")
def test_real_items_sanity() -> None:
    df = (
        pl.read_ndjson(DATA, infer_schema_length=None)
        .select("item_id", "prompt", "response_a", "response_b", "domain")
        .unique("item_id", keep="first")
        .sort("item_id")
        .head(300)
    )
    out = annotate_items(df)
    assert out.height == 300 * len(CONCEPTS)
    assert set(out["comp_value"].unique()) <= {-1, 0, 1}
    rel = out.filter(pl.col("is_relevant"))
    assert set(rel["score_a"].unique()) | set(rel["score_b"].unique()) <= set(range(1, 8))
    assert set(out.filter(~pl.col("is_relevant"))["score_a"].unique()) <= {0}
    assert out["score_diff"].is_between(-6, 6).all()
    assert out["measure_a"].is_finite().all() and out["measure_b"].is_finite().all()

    length = out.filter(pl.col("concept") == "Length").join(
        df.select("item_id", d=pl.col("response_a").str.len_chars().cast(pl.Int64)
                  - pl.col("response_b").str.len_chars().cast(pl.Int64)), on="item_id"
    )
    assert length["is_relevant"].all()
    decided = length.filter(pl.col("comp_value") != 0)
    assert decided.height > 150  # most real pairs differ in length by more than 10%
    assert (decided["comp_value"] == decided["d"].sign()).all()
    assert ((length["score_diff"].sign() * length["d"].sign()) >= 0).all()
    # the annotator discriminates on real data: most concepts are non-constant
    varied = rel.group_by("concept").agg(pl.col("comp_value").n_unique().alias("k")).filter(pl.col("k") > 1)
    assert varied.height >= len(CONCEPTS) - 4
    # code relevance concentrates in coding items
    code = out.filter(pl.col("concept") == "Code Blocks").join(df.select("item_id", "domain"), on="item_id")
    by = code.group_by(pl.col("domain") == "coding").agg(pl.col("is_relevant").mean()).to_dict(as_series=False)
    rates = dict(zip(by["domain"], by["is_relevant"]))
    if True in rates and False in rates:
        assert rates[True] > rates[False]
