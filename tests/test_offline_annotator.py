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
from pipelines.annotate import offline, scorers
from pipelines.annotate.catalog import CONCEPTS, CONCEPTS_BY_KEY, OFFLINE_ANNOTATOR, OFFLINE_ANNOTATOR_VERSION
from pipelines.annotate.offline import annotate_items, annotate_pending, catalog_frame
from pipelines.annotate.scorers import compare, likert
from pipelines.core.warehouse import connect
from tests.conftest import SHARED_DATA

DATA = SHARED_DATA / "pairs.jsonl.gz"
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
    "emojis": ("Say congrats.", "Great job \U0001f389\U0001f600", "Great job."),
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
    # ---- 2.0: prompt-aware
    "instruction_following": (
        "Answer in exactly 3 bullet points: what should I pack for a beach trip?",
        "- Sunscreen\n- Towel\n- Swimsuit",
        "- Sunscreen\n- Towel\n- Swimsuit\n- Hat\n- Water",
    ),
    "question_coverage": (
        "What is the capital of France? Which currency does Japan use?",
        "The capital of France is Paris. Japan uses the yen as its currency.",
        "The capital of France is Paris, a city of museums.",
    ),
    "key_term_coverage": (
        "Compare the Raspberry Pi and the Arduino for a robotics project.",
        "The Raspberry Pi runs Linux, while the Arduino is a microcontroller that is great for robotics motors.",
        "Both boards are popular, so pick the one that fits your needs and budget.",
    ),
    "language_match": (
        "¿Cuál es la capital de Francia? Responde, por favor, con una frase completa.",
        "La capital de Francia es París, una ciudad muy bonita y llena de historia.",
        "The capital of France is Paris, a very beautiful city full of history.",
    ),
    "numeric_answer": (
        "How many legs does a spider have?",
        "A spider has 8 legs.",
        "Spiders have several legs that help them move quickly.",
    ),
    "explicit_answer": (
        "What is 12 times 11?",
        "12 times 11 equals 132, so the answer is 132.",
        "Multiply the tens and the units separately, then add them up.",
    ),
    "restatement": (
        "Why is the sky blue?",
        "Why is the sky blue? Because air scatters short wavelengths of sunlight more strongly.",
        "Air molecules scatter short wavelengths of sunlight more strongly than long ones.",
    ),
    "prompt_copying": (
        "Rewrite this sentence more formally: the cat sat on the mat all day long without moving.",
        "The cat sat on the mat all day long without moving, in a most dignified manner.",
        "The feline remained upon the rug throughout the entire day, entirely motionless.",
    ),
    "code_validity": (
        "Write a Python function that adds two numbers.",
        "```python\ndef add(a, b):\n    return a + b\n```",
        "```python\ndef add(a, b)\n    return a + b\n```",
    ),
    # ---- 2.0: form, content and tone
    "truncation": (
        "Explain photosynthesis.",
        "Photosynthesis is the process by which plants convert light energy into chemical energy and",
        "Photosynthesis is the process by which plants convert light energy into chemical energy.",
    ),
    "lead_in": (
        "What is the capital of France?",
        "Sure! Great question. Here is the answer you are looking for. Paris is the capital of France.",
        "Paris is the capital of France.",
    ),
    "tables": (
        "Compare cats and dogs.",
        "| Trait | Cats | Dogs |\n|---|---|---|\n| Size | Small | Varies |\n| Care | Low | High |",
        "Cats are small and need little care; dogs vary in size and need more care.",
    ),
    "paragraphs": ("Tell me about rivers.", FILLER.replace(". ", ".\n\n"), FILLER),
    "sentence_length": (
        "Describe your day.",
        "I woke up early and walked through the quiet park before breakfast while the city slowly came to life "
        "around me.",
        "I woke up. I walked. The park was quiet. I ate. The city woke. It was nice.",
    ),
    "complex_words": (
        "Describe the research.",
        "Notwithstanding considerable methodological heterogeneity, contemporary epidemiological investigations "
        "consistently demonstrate statistically significant associations.",
        "The cat sat. The dog ran. We had fun. It was a sunny day. We ate cake. Then we slept.",
    ),
    "math_notation": (
        "Solve 2x + 3 = 7.",
        "We have $2x + 3 = 7$, so 2x = 4 and x = 2.",
        "Subtract three from both sides and then divide by two.",
    ),
    "justification": (
        "Should I water my plants daily?",
        "No, because overwatering causes root rot, which means the roots cannot breathe.",
        "No. Water them twice a week.",
    ),
    "perspectives": (
        "Is remote work better?",
        "It depends on the person. On the other hand, offices help collaboration, so there are several factors "
        "and trade-offs to weigh.",
        "Remote work is better.",
    ),
    "follow_up_offer": (
        "How do I boil an egg?",
        "Boil it for 9 minutes. Let me know if you want peeling tips, or would you like me to explain soft eggs?",
        "Boil it for 9 minutes, then cool it in cold water.",
    ),
    "second_person": (
        "How do I stay focused?",
        "You should put your phone away and give yourself short breaks so you can focus.",
        "Putting phones away and taking short breaks helps people focus on work tasks.",
    ),
    "sensitive_vocabulary": (
        "What happened in the news?",
        "The suspect used a gun and a bomb in the robbery, and police seized cocaine.",
        "The weather was sunny and the local team won the match.",
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
    assert len(CONCEPTS) >= 40
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
    assert concept.transform in cat.MEASURE_TRANSFORMS
    if "0..1" in concept.unit or "0/1" in concept.unit:  # bounded shares and flags are not log-scaled
        assert concept.transform == "identity", concept.key
    assert concept.relevance.describe().startswith(("always relevant", "relevant if"))


def test_concept_validation_rejects_bad_definitions_and_edges() -> None:
    with pytest.raises(ValueError):
        cat.Concept("X", "x", "d", "Higher is better", "u", (1, 2, 3, 4, 5, 6))
    with pytest.raises(ValueError):
        cat.Concept("X", "x", "d", CONCEPTS[0].definition, "u", (1, 2, 2, 4, 5, 6))


def test_version_constants() -> None:
    assert OFFLINE_ANNOTATOR == "offline"
    assert OFFLINE_ANNOTATOR_VERSION == "offline-2.0"


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
    out = annotate_items(
        _items(
            [
                (
                    "How do I bake bread?",
                    "I'm sorry, but I can't help with that",
                    "Mix flour, water, yeast and salt, knead, rise, then bake at 220C.",
                )
            ]
        )
    )
    r = _row(out, "it0000", "Refusal")
    assert r["is_relevant"] and r["comp_value"] == 1 and r["score_b"] == 1 and r["score_a"] >= 4


def test_sorry_to_hear_is_empathy_not_refusal() -> None:
    out = annotate_items(
        _items([("My cat died.", "I'm sorry to hear that, losing a pet is hard.", "Cats live 15 years.")])
    )
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
    out = annotate_items(
        _items([("Write a poem.", "Roses are red.", "Roses are red."), ("Tell me about rivers.", FILLER, FILLER)])
    )
    irr = _row(out, "it0000", "Code Blocks")
    assert (irr["is_relevant"], irr["score_a"], irr["score_b"], irr["comp_value"], irr["score_diff"]) == (
        False,
        0,
        0,
        0,
        0,
    )
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
    alone = (
        pl.concat([annotate_items(_items([r], prefix=f"it{i:04d}")).drop("annotated_at") for i, r in enumerate(rows)])
        .with_columns(pl.col("item_id").str.slice(0, 6))
        .sort("item_id", "concept")
    )
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
    assert (
        calls[0] == (0, len(rows))
        and calls[-1] == (len(rows), len(rows))
        and len(calls) == 1 + math.ceil(len(rows) / 7)
    )
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
        df.select(
            "item_id",
            d=pl.col("response_a").str.len_chars().cast(pl.Int64) - pl.col("response_b").str.len_chars().cast(pl.Int64),
        ),
        on="item_id",
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


# ---------------------------------------------------------------- 2.0: prompt-aware concepts


def _pair(prompt: str, a: str, b: str, concept: str) -> dict:
    return _row(annotate_items(_items([(prompt, a, b)])), "it0000", concept)


def test_relevance_rules_describe_every_kind() -> None:
    kinds = {c.relevance.kind for c in CONCEPTS}
    assert {
        "prompt_constraints",
        "prompt_parts",
        "prompt_question",
        "prompt_terms",
        "quantity_question",
        "prompt_language",
        "checkable_code",
    } <= kinds
    assert "2 distinct sub-questions" in cat.RelevanceRule("prompt_parts", min_count=2).describe()
    bad = cat.Concept(
        "X", "x", "d", CONCEPTS[0].definition, "u", (1, 2, 3, 4, 5, 6), relevance=cat.RelevanceRule("nonsense")
    )  # type: ignore[arg-type]
    frame = scorers.measure_texts(pl.Series(["p"]), pl.Series(["t"]), ["length"])
    with pytest.raises(ValueError, match="unknown relevance kind"):
        scorers.relevance_mask(bad, frame, frame)


def test_instruction_following_bullets_and_not_relevant_without_constraints() -> None:
    prompt = "Answer in exactly 3 bullet points: what should I pack for a beach trip?"
    three, five = "- Sunscreen\n- Towel\n- Swimsuit", "- Sunscreen\n- Towel\n- Swimsuit\n- Hat\n- Water"
    r = _pair(prompt, three, five, "Instruction Following")
    assert r["is_relevant"] and (r["measure_a"], r["measure_b"]) == (1.0, 0.0)
    assert (r["score_a"], r["score_b"], r["comp_value"]) == (7, 1, 1)
    free = _pair("What should I pack for a beach trip?", three, five, "Instruction Following")
    assert free["is_relevant"] is False and free["comp_value"] == 0 and free["score_a"] == 0


def test_last_user_turn_of_transcripts() -> None:
    t = "Human: hi\n\nAssistant: hello, in 5 words\n\nHuman: Write exactly two sentences about cats.\n\nAssistant:"
    assert scorers.last_user_turn(t) == "Write exactly two sentences about cats."
    assert (
        scorers.last_user_turn("Write a dialogue:\nUser: hi\nBot: hello") == "Write a dialogue:\nUser: hi\nBot: hello"
    )
    assert scorers.parse_constraints(scorers.last_user_turn(t).lower()) == (("count", "sentences", 2.0, 2.0),)


@pytest.mark.parametrize(
    "prompt, expected",
    [
        ("Answer in exactly 3 bullet points.", ("count", "bullets", 3.0, 3.0)),
        ("Need 300 words on the history of printing.", ("count", "words", 240.0, 360.0)),
        ("Describe it in under 100 words.", ("count", "words", 1.0, 100.0)),
        ("Describe it in 50 words or less.", ("count", "words", 1.0, 50.0)),
        ("Write at least 200 words.", ("count", "words", 200.0, math.inf)),
        ("Write between 100 and 150 words about cats.", ("count", "words", 100.0, 150.0)),
        ("Summarize the text in 2-3 sentences.", ("count", "sentences", 2.0, 3.0)),
        ("Write a two-paragraph story.", ("count", "paragraphs", 2.0, 2.0)),
        ("Summarize this in one sentence.", ("count", "sentences", 1.0, 1.0)),
        ("Write a tweet (max 280 characters) about AI.", ("count", "characters", 1.0, 280.0)),
        ("Write a poem in 4 lines.", ("count", "lines", 4.0, 4.0)),
        ("Give me 5 ideas for a birthday party.", ("items", 5.0, 5.0)),
        ("Return the result as JSON.", ("json",)),
        ("Describe Paris without using any commas.", ("no_commas",)),
        ('End your response with "Is there anything else?"', ("end_with", "is there anything else?")),
        ("Start your answer with 'Dear friend'.", ("start_with", "dear friend")),
        ("Please respond in French.", ("language", "fr")),
        ("Translate the following English text to Spanish: good morning", ("language", "es")),
        ("Write a blog post and include a catchy title.", ("title",)),
        ("Wrap the title in double angular brackets, i.e. <<title>>.", ("title_brackets",)),
        ("Your entire response should be in lowercase letters.", ("lowercase",)),
        ("Write a poem in all caps.", ("uppercase",)),
        ("Include the keywords 'river', 'delta' and 'flood'.", ("keywords", ("river", "delta", "flood"))),
        ('Do not use the words "very" or "really".', ("forbidden", ("very", "really"))),
        ("At the end of your response, please add a postscript starting with P.S.", ("postscript",)),
        ("Answer with yes or no: is the sky blue?", ("yes_no",)),
        ("Wrap your entire response with double quotation marks.", ("quotes",)),
        ("Show the results in a table.", ("table",)),
        ("Explain it in bullet points.", ("list", False)),
    ],
)
def test_parse_constraints_detects(prompt: str, expected: tuple) -> None:
    assert expected in scorers.parse_constraints(prompt.lower())


@pytest.mark.parametrize(
    "prompt",
    [
        "Summarize a meeting from the given list of bullet points.",  # describes the input, not the output
        "Explain what the first 10 lines of this code do.",
        "Here are 3 paragraphs about dogs. Summarize them.",
        "How do I parse JSON in Python?",
        "What is a key in JSON?",
        "How do I create a table in MySQL?",
        "Plan a 5 day trip to Rome.",
        "What is the capital of France?",
        "Blog title: Healthy Apple Muffins. Write an introduction.",
        "How do you say hello in French?",
    ],
)
def test_parse_constraints_ignores_non_constraints(prompt: str) -> None:
    assert scorers.parse_constraints(prompt.lower()) == ()


@pytest.mark.parametrize(
    "prompt, good, bad",
    [
        ("Describe the sea in under 20 words.", "The sea is vast, blue and restless.", FILLER),
        (
            "Describe rivers in exactly 2 sentences.",
            "Rivers flow. They carry sediment.",
            "Rivers flow. They carry. They end.",
        ),
        (
            "Write two paragraphs about rivers.",
            "Rivers flow to the sea.\n\nThey carry sediment.",
            "Rivers flow to the sea.",
        ),
        ("Give me 3 fruits.", "1. Apple\n2. Pear\n3. Plum", "1. Apple\n2. Pear"),
        ("Name three countries.", "France, Spain and Italy.", "France and Spain."),
        ("Return the answer as JSON.", '```json\n{"answer": 4}\n```', "The answer is 4."),
        ("Describe Paris without using any commas.", "Paris is the capital of France.", "Paris is big, old and busy."),
        ('End your response with "Any questions?"', "Rivers flow. Any questions?", "Any questions? Rivers flow."),
        ("Start your answer with 'Dear friend'.", "Dear friend, welcome.", "Hello, dear friend."),
        (
            "Please respond in French: what is your name?",
            "Je m'appelle Claude et je suis ravi de vous aider.",
            "My name is Claude and I am glad to help you.",
        ),
        (
            "Write a short poem and give it a title.",
            "# Autumn\nLeaves fall softly down.",
            "Leaves fall softly down, and red.",
        ),
        ("Your entire response should be in lowercase letters.", "all quiet here.", "All quiet here."),
        ("Write a poem in all caps.", "THE SEA IS LOUD.", "The sea is loud."),
        (
            "Include the keywords 'river', 'delta' and 'flood'.",
            "A river builds a delta after each flood.",
            "Water flows to the sea.",
        ),
        ('Do not use the words "very" or "really".', "It is big.", "It is very, really big."),
        ("Add a postscript starting with P.S. at the end.", "See you soon.\n\nP.S. Bring snacks.", "See you soon."),
        ("Answer with yes or no: is water wet?", "Yes.", "Water is a liquid that makes things wet."),
        ("Wrap your entire response with double quotation marks.", '"Hello there."', "Hello there."),
        ("Compare cats and dogs in a table.", "| | Cats | Dogs |\n|---|---|---|\n| Size | S | L |", "Cats are small."),
        ("Explain it in bullet points.", "- First point\n- Second point", "Just one paragraph of prose."),
        ("Write a tweet (max 50 characters) about AI.", "AI is neat.", "x" * 60),
    ],
)
def test_each_constraint_kind_is_checked(prompt: str, good: str, bad: str) -> None:
    r = _pair(prompt, good, bad, "Instruction Following")
    assert r["is_relevant"], scorers.parse_constraints(prompt.lower())
    assert (r["measure_a"], r["measure_b"]) == (1.0, 0.0), scorers.parse_constraints(prompt.lower())


def test_instruction_following_is_the_share_of_constraints() -> None:
    prompt = "Describe Paris in under 20 words, without using any commas."
    r = _pair(prompt, "Paris is the lovely capital of France.", "Paris is big, old and busy.", "Instruction Following")
    assert r["measure_a"] == 1.0 and r["measure_b"] == 0.5  # the second keeps the length limit only
    kw = _pair(
        "Include the keywords 'river', 'delta' and 'flood'.",
        "A river builds a delta.",
        "Water flows.",
        "Instruction Following",
    )
    assert kw["measure_a"] == pytest.approx(2 / 3) and kw["measure_b"] == 0.0  # keywords give partial credit


def test_question_coverage_parts_and_relevance() -> None:
    prompt, full, half = CASES["question_coverage"]
    r = _pair(prompt, full, half, "Question Coverage")
    assert (r["measure_a"], r["measure_b"]) == (1.0, 0.5) and r["comp_value"] == 1
    enumerated = "Please:\n1. Explain how vaccines train immunity\n2. Describe the history of smallpox eradication"
    r = _pair(
        enumerated,
        "Vaccines train immunity with antigens. Smallpox eradication history: 1980.",
        "Vaccines train immunity with antigens.",
        "Question Coverage",
    )
    assert r["is_relevant"] and r["measure_a"] > r["measure_b"]
    single = _pair("What is the capital of France?", "Paris.", "Lyon.", "Question Coverage")
    assert single["is_relevant"] is False


def test_key_terms_and_relevance() -> None:
    info, _ = scorers.analyse_prompt('Compare the Raspberry Pi and "edge computing" using MQTT and paho_mqtt.')
    terms = {t for t, _ in info.terms}
    assert {"raspberry", "pi", "edge computing", "mqtt", "paho_mqtt"} <= terms
    assert "compare" not in terms and "using" not in terms
    r = _pair("be mean to me", "No.", "You are mean.", "Key Term Coverage")
    assert r["is_relevant"] is False  # no quoted, capitalised, identifier or rare term
    inflected = _pair(
        "Explain photosynthesis in algae.",
        "Algae photosynthesise with chlorophyll.",
        "Plants grow.",
        "Key Term Coverage",
    )
    assert inflected["measure_a"] == 1.0 and inflected["measure_b"] == 0.0


def test_language_match_requested_and_unknown() -> None:
    r = _pair(
        "Please answer in German: how are you?",
        "Mir geht es gut, danke der Nachfrage, und dir?",
        "I am fine, thank you for asking, and you?",
        "Language Match",
    )
    assert r["is_relevant"] and r["measure_a"] > 0.5 > r["measure_b"] and r["comp_value"] == 1
    unknown = _pair("2 + 2 = ?", "4", "four", "Language Match")
    assert unknown["is_relevant"] is False
    code_only = _pair(
        "Write a Python function that doubles a number.",
        "```python\ndef f(x):\n    return 2 * x\n```",
        "Here is the function you asked for.",
        "Language Match",
    )
    assert code_only["is_relevant"] is False  # no prose to identify on one side
    same = _pair(
        "What is the capital of France?", "Paris is the capital of France.", "The capital is Paris.", "Language Match"
    )
    assert same["is_relevant"] and same["comp_value"] == 0


def test_numeric_and_explicit_answer_relevance() -> None:
    early = _pair(
        "How many planets are in the solar system?",
        "There are 8 planets.",
        "The solar system is large and old. Pluto was reclassified after a long debate among astronomers "
        "about the definition of planets in the solar system and beyond, which leaves eight planets.",
        "Numeric Answer",
    )
    assert (early["measure_a"], early["measure_b"]) == (1.0, 0.5) and early["comp_value"] == 1
    assert _pair("Write a poem about spring.", "Spring 2 days", "Spring", "Numeric Answer")["is_relevant"] is False
    assert (
        _pair("Write a poem about spring.", "The answer is spring.", "Spring", "Explicit Answer")["is_relevant"]
        is False
    )
    assert _pair("Is 7 prime", "The answer is yes.", "Yes", "Explicit Answer")["is_relevant"] is True


def test_code_validity_parses_but_never_runs(tmp_path: Path) -> None:
    sentinel = tmp_path / "pwned"
    evil = f"```python\nimport pathlib\npathlib.Path({str(sentinel)!r}).write_text('x')\n```"
    r = _pair("Write Python to save a file.", evil, "```python\nimport pathlib\npathlib.Path(\n```", "Code Validity")
    assert r["is_relevant"] and (r["measure_a"], r["measure_b"]) == (1.0, 0.0)
    assert not sentinel.exists()
    no_code = _pair("Write a haiku about autumn.", "Leaves fall softly down", "Red maple whispers", "Code Validity")
    assert no_code["is_relevant"] is False
    json_pair = _pair(
        "Give me the config.", '```json\n{"a": [1, 2]}\n```', '```json\n{"a": [1, 2],}\n```', "Code Validity"
    )
    assert json_pair["is_relevant"] and (json_pair["measure_a"], json_pair["measure_b"]) == (1.0, 0.0)
    js_only = _pair(
        "Write a JS function.", "```javascript\nfunction f() { return 1 }\n```", "Use a function.", "Code Validity"
    )
    assert js_only["is_relevant"] is False  # only Python and JSON are checkable


def test_code_checks_are_capped_and_never_crash() -> None:
    huge = "```python\n" + "x = 1\n" * 10_000 + "```"
    assert scorers.code_checks(huge) == (0, 0)  # too big to check: neither parses nor fails
    deep = "```python\n" + "(" * 5_000 + "```"
    nul = "```python\nprint('a\x00b')\n```"
    doctest = "```python\n>>> x = 1\n>>> x + 1\n2\n```"
    magic = "```python\n%matplotlib inline\nimport numpy as np\n```"
    bad_json = "```json\n" + "[" * 100_000 + "\n```"
    assert scorers.code_checks(deep) == (1, 0)
    assert scorers.code_checks(nul)[0] == 1
    assert scorers.code_checks(doctest) == (1, 1) and scorers.code_checks(magic) == (1, 1)
    assert scorers.code_checks(bad_json) == (1, 0)
    assert scorers.code_checks('{"bare": "json"}') == (1, 1)


def test_truncation_flags() -> None:
    unclosed = _pair("Show code.", "Here:\n```python\nx = 1\n", "Here:\n```python\nx = 1\n```", "Truncation")
    assert (unclosed["measure_a"], unclosed["measure_b"]) == (1.0, 0.0)
    listed = _pair(
        "List tips.",
        "- Use a password manager to store strong unique passwords for every site",
        "Use a password manager.",
        "Truncation",
    )
    assert listed["measure_a"] == 0.0  # an unpunctuated list item is not a cut-off sentence


def test_measure_texts_key_subset_and_relevance_columns() -> None:
    out = scorers.measure_texts(
        pl.Series(["Answer in 3 bullet points. What? Why?"]),
        pl.Series(["- a\n- b\n- c"]),
        ["instruction_following", "length"],
    )
    assert out.columns[:2] == ["instruction_following", "length"]
    row = out.row(0, named=True)
    assert row["instruction_following"] == 1.0 and row["n_constraints"] == 1 and row["n_questions"] >= 2
    assert {"n_parts", "n_terms", "asks_quantity", "lang_known", "checkable_code"} <= set(out.columns)


def test_lead_in_counts_interjections_and_announcements_only() -> None:
    texts = [
        "OK, so the test is a urine test.",
        "Sure! Great question. Here is what you need. Paris is the capital.",
        "Paris is the capital.",
        "Sure!",
    ]
    out = scorers.measure_texts(pl.Series(["q"] * len(texts)), pl.Series(texts), ["lead_in"])
    assert out["lead_in"].to_list() == [1.0, 1.0 + 2.0 + 5.0, 0.0, 1.0]


def test_unfenced_python_counts_only_when_the_whole_response_parses() -> None:
    assert scorers.code_checks("def f(x):\n    return x\n") == (1, 1)
    assert scorers.code_checks("Use this:\ndef f(x):\n    return x\n") == (0, 0)  # prose around it: not delimitable
