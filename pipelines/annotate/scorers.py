"""Vectorised raw measures for the offline concepts (Polars expressions over whole columns).

Response text is untrusted data: it is only ever matched with regexes and counted, never
interpreted. Every measure is finite (no NaN/inf) and grows with the amount of the concept.
Polars uses the Rust regex engine: no look-around and no back-references in patterns.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import polars as pl

from pipelines.annotate.catalog import CONCEPTS, Concept

# ---- text views -------------------------------------------------------------------------------
FENCE = "```"
FENCED_BLOCK = r"(?s)```.*?(?:```|$)"
WORD = r"\w+"

# ---- patterns (applied to the lower-cased text unless noted) ----------------------------------
LIST_ITEM = r"(?m)^[ \t]*(?:[-*•+]|\d{1,3}[.)])[ \t]+\S"
HEADER = r"(?m)^[ \t]{0,3}#{1,6}[ \t]+\S|^[ \t]*\*\*[^*\n]{1,80}\*\*:?[ \t]*$"
CODE_LINE = (
    r"(?m)^[ \t]*(?:def |class \w|import \w|from [\w.]+ import|#include|public |private |function\b|const |let |var "
    r"|return\b|if ?\(|for ?\(|while ?\(|print\(|console\.|select .* from|\}|<\/?\w+>[ \t]*$)|[;{][ \t]*$"
)
CODE_HINT = r"```|(?m)^[ \t]*(?:def |class \w+[:(]|import \w|#include|function\b.*\{|public static)|;[ \t]*$"
PROGRAMMING_TOPIC = (
    r"\b(?:code|coding|program(?:ming)?|script|function|python|javascript|typescript|java|c\+\+|c#|rust|golang"
    r"|sql|html|css|bash|shell|regex|api|json|compile[rd]?|debug|bug|algorithm|variable|class|method|library"
    r"|framework|git|linux|docker|excel formula|react|node\.?js|django|flask|pandas|numpy)\b"
)
NUMBER = r"\b\d+(?:[.,:/]\d+)*\b"
NUMBERED_MARKER = r"(?m)^[ \t]*\d{1,3}[.)][ \t]"
ENTITY = r"[a-z0-9,;:][ \t]+[A-Z][a-zA-Z]+|\b[A-Z]{2,5}s?\b"  # original case
REFERENCE = (
    r"https?://\S+|www\.\S+|\[\d{1,3}\]|\(\w[^()\n]{0,40},? (?:19|20)\d{2}\)"
    r"|\b(?:according to|sources?:|references?:|cited|see also|as reported by|stud(?:y|ies) (?:by|from|published)"
    r"|research (?:by|from|shows|suggests))"
)
HEDGE = (
    r"\b(?:might|may|perhaps|possibly|probably|likely|unlikely|generally|typically|usually|seems?|appears? to"
    r"|could|i think|i believe|not (?:sure|certain)|it depends|approximately|roughly|somewhat|arguably"
    r"|in some cases|tend to)\b"
)
REFUSAL = (
    r"\b(?:i'm sorry|i am sorry|sorry,|i apologi[sz]e|my apologies|i can't|i cannot|i can not|i won't|i will not"
    r"|i'm (?:not able|unable)|i am (?:not able|unable)|unable to (?:help|assist|provide|comply|fulfill)"
    r"|as an ai\b|as a language model|(?:is|be) not appropriate|not able to (?:help|assist|provide)"
    r"|against (?:my|the) (?:guidelines|policy|policies|programming)|i must decline|i (?:do not|don't) feel comfortable)"
)
NOT_REFUSAL = r"\b(?:i'm |i am )?(?:so |very |really |truly )?sorry (?:to hear|for your|about your|you)"  # empathy
POLITE = (
    r"\b(?:please|thank(?:s| you)|you're welcome|happy to help|glad to help|hope (?:this|that|it) helps|feel free"
    r"|kindly|i'd be (?:happy|glad)|my pleasure|(?:i|we) appreciate)\b"
)
EMPATHY = (
    r"\b(?:i understand|i can (?:see|imagine|understand)|sorry to hear|sorry you|sorry for your"
    r"|(?:that|this|it) (?:sounds|must be|can be) (?:really |very |so )?"
    r"(?:hard|difficult|tough|frustrating|stressful|painful|scary|overwhelming|upsetting)"
    r"|(?:it's|it is) (?:understandable|normal to feel|okay to feel|ok to feel|natural to feel)"
    r"|you're not alone|you are not alone|i hear you|how you feel|your feelings|take care of yourself|i'm here for you)"
)
QUESTION = r"\?(?:\s|$)"
ENTHUSIASM = (
    r"!|\b(?:great|awesome|amazing|excellent|wonderful|fantastic|love|exciting|excited|delighted"
    r"|incredible|thrilled|brilliant|enjoy)\b"
)
EXAMPLE = (
    r"\b(?:for example|for instance|e\.g\.|such as|an example|example:|examples? (?:include|of|would be)"
    r"|consider the following|here's an example|here is an example|imagine)"
)
STEP = (
    r"(?m)^[ \t]*(?:step[ \t]*)?\d{1,3}[.):][ \t]|\bstep \d+\b"
    r"|\b(?:first(?:ly)?|second(?:ly)?|third(?:ly)?|next|then|finally|lastly|afterwards?)[ \t]*,"
)
SUMMARY = (
    r"(?m)\b(?:in summary|in conclusion|to summari[sz]e|to sum up|in short|overall,|in a nutshell|tl;?dr|to conclude"
    r"|all in all|the bottom line|key takeaways?|ultimately,)|^[ \t]*#{1,6}[ \t]*(?:summary|conclusion)"
)
FORMAL = (
    r"\b(?:therefore|however|furthermore|moreover|consequently|thus|hence|additionally|regarding|whereas"
    r"|nevertheless|accordingly|subsequently|notably|in addition|with respect to"
    r"|it is (?:important|recommended|advisable|essential))\b"
)
INFORMAL = (
    r"\b\w+n't\b|\b(?:i'm|you're|we're|they're|it's|that's|i've|you've|i'll|you'll|i'd|you'd|let's|there's|what's)\b"
    r"|\b(?:gonna|wanna|gotta|yeah|yep|nope|lol|haha|hey|ok|okay|cool|stuff|kinda|sorta|dude|guys|btw)\b|!"
)
BOLD = r"\*\*[^*\n]+\*\*|__[^_\n]+__"
CAPS_WORD = r"\b[A-Z]{4,}\b"  # original case
EMOJI = (
    r"[\x{1F300}-\x{1FAFF}\x{1F000}-\x{1F2FF}\x{2600}-\x{27BF}\x{2B50}\x{2764}]"
    r"|(?:^|\s)[:;]-?[)(DPp](?:\s|$)"
)
FIRST_PERSON = r"\b(?:i|me|my|mine|myself)\b"
IE = r"\bi\.e\."
PREAMBLE = (
    r"\b(?:sure|certainly|of course|absolutely|great question|good question|what a|thank(?:s| you) for|hello|hi|hey"
    r"|well,|as an ai|i'd be (?:happy|glad)|i'm (?:happy|glad)|i understand|that's a (?:great|good|interesting))\b"
)
CAVEAT = (
    r"\b(?:note that|please note|keep in mind|be careful|be aware|warning|caution|disclaimer"
    r"|consult (?:a|an|your|with a) (?:doctor|professional|lawyer|attorney|physician|expert|specialist|healthcare|qualified)"
    r"|seek (?:professional|medical|legal) (?:help|advice)|not a substitute|at your own risk|important:|make sure"
    r"|it's important to|always check)"
)
STOPWORDS = [
    "the", "and", "for", "are", "but", "not", "you", "your", "with", "this", "that", "have", "from", "they",
    "what", "can", "how", "was", "were", "will", "would", "there", "their", "about", "which", "when", "who",
    "does", "did", "has", "had", "its", "it's", "i'm", "also", "some", "any", "all", "one", "out", "into",
    "them", "then", "than", "just", "like", "more", "very", "get", "our", "she", "her", "his", "him",
    "human", "assistant", "please", "could", "should", "know", "want", "yes",
]


def _cnt(col: str, pattern: str) -> pl.Expr:
    return pl.col(col).str.count_matches(pattern).cast(pl.Float64)


def _per100(count: pl.Expr, words: pl.Expr, smoothing: float = 0.0) -> pl.Expr:
    return 100.0 * count / (words + smoothing).clip(lower_bound=1.0)


def _prepare(frame: pl.LazyFrame) -> pl.LazyFrame:
    """Add the shared text views: lower-cased, code-free prose, word lists and counts."""
    norm = pl.col("text").str.replace_all("[\u2018\u2019\u02bc]", "'")
    frame = frame.with_columns(
        lower=norm.str.to_lowercase(),
        prose=norm.str.replace_all(FENCED_BLOCK, " \n"),
        plower=pl.col("prompt").str.replace_all("[\u2018\u2019\u02bc]", "'").str.to_lowercase(),
    ).with_columns(
        prose_lower=pl.col("prose").str.to_lowercase(),
    )
    return frame.with_columns(
        words=pl.col("prose_lower").str.extract_all(WORD),
        n_words=pl.col("lower").str.count_matches(WORD).cast(pl.Float64),
        prompt_tokens=pl.col("plower").str.extract_all(r"[a-z0-9]{3,}").list.unique()
        .list.set_difference(pl.lit(STOPWORDS, dtype=pl.List(pl.String))),
    ).with_columns(n_prose=pl.col("words").list.len().cast(pl.Float64))


def _measures() -> dict[str, pl.Expr]:
    """Raw measure expression per concept key, over the prepared columns."""
    words, n_prose = pl.col("words"), pl.col("n_prose")
    fenced_lines = (
        pl.col("text").str.split(FENCE).list.gather_every(2, offset=1)
        .list.eval(pl.element().str.count_matches("\n")).list.sum().fill_null(0).cast(pl.Float64)
    )
    sentences = pl.col("prose").str.count_matches(r"[.!?]+(?:\s|$)|\n+").cast(pl.Float64).clip(lower_bound=1.0)
    syllables = pl.max_horizontal(_cnt("prose_lower", r"[aeiouy]+"), n_prose)
    flesch = 206.835 - 1.015 * (n_prose / sentences) - 84.6 * (syllables / n_prose.clip(lower_bound=1.0))
    head = words.list.head(100)
    e = pl.element()  # word trigrams as position-seeded xor of word hashes (64-bit; no string building)
    trigrams = words.list.eval(
        (e.hash(seed=11) ^ e.shift(-1).hash(seed=22) ^ e.shift(-2).hash(seed=33)).head(pl.len() - 2)
    )
    n_tri = (words.list.len().cast(pl.Float64) - 2.0).clip(lower_bound=0.0)
    resp_tokens = pl.col("lower").str.extract_all(r"[a-z0-9]{3,}").list.unique()
    n_prompt_tokens = pl.col("prompt_tokens").list.len().cast(pl.Float64)
    no_empathy = pl.col("lower").str.replace_all(NOT_REFUSAL, " ")
    refusal_opening = no_empathy.str.slice(0, 120).str.contains(REFUSAL).cast(pl.Float64)
    return {
        "length": pl.col("text").str.len_chars().cast(pl.Float64),
        "structure": _cnt("text", LIST_ITEM) + 2.0 * _cnt("text", HEADER),
        "code_blocks": fenced_lines + _cnt("prose_lower", CODE_LINE),
        "specificity": _per100(
            (_cnt("text", NUMBER) - _cnt("text", NUMBERED_MARKER)).clip(lower_bound=0.0) + _cnt("prose", ENTITY),
            pl.col("n_words"), 20.0,
        ),
        "references": _cnt("lower", REFERENCE),
        "hedging": _per100(_cnt("prose_lower", HEDGE), n_prose),
        "refusal": no_empathy.str.count_matches(REFUSAL).cast(pl.Float64) + 2.0 * refusal_opening,
        "politeness": _cnt("lower", POLITE),
        "empathy": _cnt("lower", EMPATHY),
        "questions": _cnt("prose", QUESTION),
        "lexical_overlap": pl.when(n_prompt_tokens > 0)
        .then(resp_tokens.list.set_intersection(pl.col("prompt_tokens")).list.len().cast(pl.Float64) / n_prompt_tokens)
        .otherwise(0.0),
        "readability": pl.when(n_prose > 0).then(flesch.clip(0.0, 100.0)).otherwise(0.0),
        "lexical_diversity": pl.when(n_prose > 0)
        .then(head.list.n_unique().cast(pl.Float64) / head.list.len().cast(pl.Float64)).otherwise(0.0),
        "repetition": pl.when(n_tri > 0)
        .then(1.0 - trigrams.list.n_unique().cast(pl.Float64) / n_tri).otherwise(0.0),
        "enthusiasm": _cnt("prose_lower", ENTHUSIASM),
        "examples": _cnt("lower", EXAMPLE),
        "step_by_step": _cnt("prose_lower", STEP),
        "summary": _cnt("lower", SUMMARY),
        "formality": _per100(_cnt("prose_lower", FORMAL) - _cnt("prose_lower", INFORMAL), n_prose, 20.0),
        "emphasis": _cnt("prose", BOLD) + _cnt("prose", CAPS_WORD),
        "emojis": _cnt("text", EMOJI),
        "first_person": _per100((_cnt("prose_lower", FIRST_PERSON) - _cnt("prose_lower", IE)).clip(lower_bound=0.0), n_prose),
        "directness": (3.0 - pl.col("lower").str.slice(0, 200).str.count_matches(PREAMBLE).cast(pl.Float64))
        .clip(lower_bound=0.0),
        "caveats": _cnt("lower", CAVEAT),
    }


def measure_texts(prompts: pl.Series, texts: pl.Series, keys: Sequence[str] | None = None) -> pl.DataFrame:
    """Raw measures for each (prompt, response) row: one Float64 column per concept key (all, or
    ``keys``), plus ``n_words`` and ``has_code`` / ``prompt_code`` flags for the relevance rules."""
    lf = _prepare(pl.LazyFrame({"prompt": prompts.fill_null(""), "text": texts.fill_null("")}))
    exprs = _measures()
    wanted = [c.key for c in CONCEPTS] if keys is None else list(keys)
    missing = set(wanted) - exprs.keys()
    if missing:
        raise RuntimeError(f"no scorer for concepts: {sorted(missing)}")
    out = lf.select(
        *[exprs[k].fill_nan(0.0).fill_null(0.0).alias(k) for k in wanted],
        pl.col("n_words"),
        has_code=pl.col("text").str.contains(CODE_HINT),
        prompt_code=pl.col("prompt").str.contains(CODE_HINT) | pl.col("plower").str.contains(PROGRAMMING_TOPIC),
    )
    return out.collect()


def relevance_mask(concept: Concept, a: pl.DataFrame, b: pl.DataFrame) -> np.ndarray:
    """Boolean relevance per item for ``concept`` from the measured frames of both sides."""
    rule = concept.relevance
    n = a.height
    if rule.kind == "always":
        return np.ones(n, dtype=bool)
    if rule.kind == "code_context":
        return (a["prompt_code"] | a["has_code"] | b["has_code"]).to_numpy()
    wa = a["n_words"].to_numpy() >= rule.min_words
    wb = b["n_words"].to_numpy() >= rule.min_words
    return (wa & wb) if rule.require_both else (wa | wb)


def likert(concept: Concept, measure: np.ndarray) -> np.ndarray:
    """Map raw measures onto 1..7: 1 + number of bin edges the measure reaches."""
    return np.searchsorted(np.asarray(concept.bin_edges), measure, side="right").astype(np.int32) + 1


def compare(concept: Concept, ma: np.ndarray, mb: np.ndarray) -> np.ndarray:
    """Comp-rep: +1 if a exceeds b beyond the tolerance, -1 if b exceeds a, else 0."""
    diff = ma - mb
    tol = np.maximum(concept.abs_tol, concept.rel_tol * np.maximum(np.abs(ma), np.abs(mb)))
    return np.where(np.abs(diff) > tol, np.sign(diff), 0.0).astype(np.int32)
