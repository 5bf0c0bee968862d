"""The offline concept catalog: measurable concepts scored without any LLM.

Each concept pairs a paper-style definition ("A high score indicates the response ...; A low score
indicates the response ...") with a deterministic raw measure (see ``scorers.py``), a comp-rep tie
tolerance and the six bin edges that map the measure onto the 1..7 Likert scale of score-rep.

**Versioning rule:** changing any scorer, pattern, tolerance, bin edge, relevance rule or definition
changes the annotations, so it MUST bump ``OFFLINE_ANNOTATOR_VERSION``. Annotations are keyed by
(annotator, annotator_version), so a bump makes ``annotate_pending`` re-annotate every item while
the old rows stay queryable.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from typing import Literal

OFFLINE_ANNOTATOR = "offline"
OFFLINE_ANNOTATOR_VERSION = "offline-1.0"
ORIGIN = "offline"

DEFINITION_RE = re.compile(
    r"^A high score indicates the response [^;]+; A low score indicates the response [^;]+$"
)

RelevanceKind = Literal["always", "code_context", "min_words"]


@dataclass(frozen=True)
class RelevanceRule:
    """When a concept applies to an item (evaluated on the prompt and both responses).

    ``always``: every item. ``code_context``: the prompt or either response contains code, or the
    prompt is about programming. ``min_words``: both responses (``require_both``) or at least one
    of them have ``min_words`` words or more.
    """

    kind: RelevanceKind = "always"
    min_words: int = 0
    require_both: bool = True

    def describe(self) -> str:
        if self.kind == "always":
            return "always relevant"
        if self.kind == "code_context":
            return "relevant if the prompt or either response contains code, or the prompt is about programming"
        who = "both responses have" if self.require_both else "either response has"
        return f"relevant if {who} at least {self.min_words} words"


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

    def __post_init__(self) -> None:
        if len(self.bin_edges) != 6 or any(b <= a for a, b in zip(self.bin_edges, self.bin_edges[1:])):
            raise ValueError(f"{self.key}: bin_edges must be 6 strictly increasing values")
        if not DEFINITION_RE.match(self.definition):
            raise ValueError(f"{self.key}: definition is not in the 'A high score ...; A low score ...' format")
        if self.abs_tol < 0 or self.rel_tol < 0:
            raise ValueError(f"{self.key}: tolerances must be >= 0")

    @property
    def definition_hash(self) -> str:
        """sha256 of the definition, hex, first 16 chars."""
        return hashlib.sha256(self.definition.encode("utf-8")).hexdigest()[:16]


def _d(high: str, low: str) -> str:
    return f"A high score indicates the response {high}; A low score indicates the response {low}"


_BOTH10 = RelevanceRule("min_words", 10, True)

CONCEPTS: tuple[Concept, ...] = (
    Concept("Length", "length", "How long the response is, in characters.",
            _d("is long and extensive", "is very short"),
            "characters", (150, 400, 800, 1400, 2200, 3500), abs_tol=20, rel_tol=0.10),
    Concept("Structure", "structure", "Use of list items and section headers to organise the response.",
            _d("is organised with lists and headers", "is unstructured running prose"),
            "list items + 2 x headers", (1, 2, 4, 6, 9, 14), abs_tol=0.5, rel_tol=0.10),
    Concept("Code Blocks", "code_blocks", "Amount of source code, fenced or unfenced, in the response.",
            _d("contains substantial code blocks", "contains no code"),
            "code lines", (1, 3, 6, 12, 25, 50), abs_tol=0.5, rel_tol=0.10,
            relevance=RelevanceRule("code_context")),
    Concept("Specificity", "specificity", "Density of concrete details: numbers, names and acronyms.",
            _d("gives concrete details such as numbers and named entities", "stays vague and generic"),
            "specifics per 100 words (+20 smoothing)", (1, 2.5, 4, 6, 9, 13), abs_tol=0.5, rel_tol=0.15),
    Concept("References", "references", "Links, citations and attributions to sources.",
            _d("cites sources, links or references", "gives no sources or references"),
            "references", (1, 2, 3, 4, 6, 9), abs_tol=0.5),
    Concept("Hedging", "hedging", "Density of uncertainty and hedging language.",
            _d("hedges heavily with uncertain or qualified language", "makes direct, unqualified statements"),
            "hedges per 100 words", (0.5, 1, 2, 3, 4.5, 6.5), abs_tol=0.25, rel_tol=0.15,
            relevance=_BOTH10),
    Concept("Refusal", "refusal", "Refusing, declining or apologising instead of complying.",
            _d("refuses, declines or apologises instead of complying", "complies without refusing or apologising"),
            "refusal markers (+2 if opening)", (1, 2, 3, 4, 5, 6), abs_tol=0.5),
    Concept("Politeness", "politeness", "Courtesy phrases such as please, thank you, happy to help.",
            _d("uses courteous phrases like please, thank you or happy to help", "uses no courtesy phrases"),
            "courtesy phrases", (1, 2, 3, 4, 5, 7), abs_tol=0.5),
    Concept("Empathy", "empathy", "Expressions acknowledging the user's feelings or situation.",
            _d("acknowledges the user's feelings or situation with empathy", "shows no emotional acknowledgement"),
            "empathy markers", (1, 2, 3, 4, 5, 7), abs_tol=0.5),
    Concept("Questions", "questions", "Questions asked back to the user.",
            _d("asks the user questions", "asks no questions"),
            "questions", (1, 2, 3, 4, 6, 8), abs_tol=0.5),
    Concept("Lexical Overlap", "lexical_overlap", "Share of the prompt's content words that the response reuses.",
            _d("reuses many of the prompt's content words", "shares few words with the prompt"),
            "prompt content-word coverage (0..1)", (0.1, 0.25, 0.4, 0.55, 0.7, 0.85), abs_tol=0.03),
    Concept("Readability", "readability", "Ease of reading (Flesch reading ease of the prose).",
            _d("is easy to read with short sentences and simple words", "is hard to read with long sentences and complex words"),
            "Flesch reading ease (0..100)", (20, 35, 50, 60, 72, 85), abs_tol=5, relevance=_BOTH10),
    Concept("Lexical Diversity", "lexical_diversity", "Variety of vocabulary (type-token ratio over the first 100 words).",
            _d("uses a varied vocabulary", "reuses the same few words"),
            "type-token ratio of the first 100 words", (0.5, 0.6, 0.67, 0.74, 0.82, 0.92), abs_tol=0.03,
            relevance=_BOTH10),
    Concept("Repetition", "repetition", "Repeated word trigrams (redundant, looping text).",
            _d("repeats the same phrases or content", "does not repeat itself"),
            "share of repeated word trigrams", (0.01, 0.03, 0.06, 0.1, 0.2, 0.35), abs_tol=0.01, rel_tol=0.15,
            relevance=RelevanceRule("min_words", 20, False)),
    Concept("Enthusiasm", "enthusiasm", "Exclamations and enthusiastic words.",
            _d("is enthusiastic with exclamations and excited wording", "has a flat, neutral tone"),
            "exclamations + enthusiastic words", (1, 2, 3, 4, 6, 9), abs_tol=0.5),
    Concept("Examples", "examples", "Illustrative examples (for example, e.g., such as).",
            _d("illustrates its points with examples", "gives no examples"),
            "example markers", (1, 2, 3, 4, 6, 8), abs_tol=0.5),
    Concept("Step-by-Step", "step_by_step", "Numbered steps and sequencing words.",
            _d("walks through numbered or sequenced steps", "gives no step-by-step sequence"),
            "numbered items + sequencing words", (1, 2, 3, 5, 7, 10), abs_tol=0.5, rel_tol=0.10),
    Concept("Summary", "summary", "An explicit summary or concluding statement.",
            _d("ends with an explicit summary or conclusion", "has no summary or conclusion"),
            "summary markers", (1, 2, 3, 4, 5, 6), abs_tol=0.5,
            relevance=RelevanceRule("min_words", 80, False)),
    Concept("Formality", "formality", "Formal connectives versus contractions, slang and exclamations.",
            _d("uses a formal register", "uses an informal, casual register"),
            "(formal - informal markers) per 100 words", (-3, -1.5, -0.5, 0.5, 1.5, 3), abs_tol=0.5,
            relevance=_BOTH10),
    Concept("Emphasis", "emphasis", "Bold text and all-caps words used for emphasis.",
            _d("emphasises words with bold or capitals", "uses no visual emphasis"),
            "bold spans + all-caps words", (1, 2, 4, 6, 9, 14), abs_tol=0.5, rel_tol=0.10),
    Concept("Emojis", "emojis", "Emojis and emoticons.",
            _d("uses emojis or emoticons", "uses no emojis or emoticons"),
            "emojis + emoticons", (1, 2, 3, 4, 6, 9), abs_tol=0.5),
    Concept("First Person", "first_person", "Density of first-person singular pronouns (I, me, my).",
            _d("speaks in the first person about itself", "avoids first-person references"),
            "first-person pronouns per 100 words", (0.5, 1, 2, 3, 5, 8), abs_tol=0.25, rel_tol=0.15,
            relevance=_BOTH10),
    Concept("Directness", "directness", "Getting to the point without preamble (Sure!, Great question, As an AI...).",
            _d("opens directly with the substance", "opens with filler preamble before the substance"),
            "3 - preamble markers in the first 200 characters", (0.5, 1, 1.5, 2, 2.5, 3), abs_tol=0.5),
    Concept("Caveats", "caveats", "Warnings, disclaimers and advice to consult a professional.",
            _d("includes warnings, caveats or disclaimers", "includes no warnings or caveats"),
            "caveat markers", (1, 2, 3, 4, 5, 7), abs_tol=0.5),
)

CONCEPTS_BY_KEY: dict[str, Concept] = {c.key: c for c in CONCEPTS}
