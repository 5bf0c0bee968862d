"""A small Porter stemmer (M. F. Porter, 1980) and the stop-word list used to flag duplicate concept names.

The paper flags two concept names when they share a Snowball-stemmed word; Porter is Snowball's English
ancestor and agrees with it on the short nouns and adjectives concept names are made of
("Relevance"/"Relevancy" -> "relev", "Clarity" -> "clariti"). Stop words are removed first, so
"Depth of Knowledge" and "Avoidance of Speculation" are not flagged for sharing "of".
"""

from __future__ import annotations

import re

STOP_WORDS = frozenset(
    "a an and are as at be by for from has have in into is it its of on or over than that the their to under "
    "up use used using via vs was were with within without".split()
)
_VOWELS = set("aeiou")


def _cons(w: str, i: int) -> bool:
    c = w[i]
    if c in _VOWELS:
        return False
    if c == "y":
        return i == 0 or not _cons(w, i - 1)
    return True


def _m(stem: str) -> int:
    forms = "".join("c" if _cons(stem, i) else "v" for i in range(len(stem)))
    return len(re.findall("vc", re.sub(r"(.)\1+", r"\1", forms)))


def _has_vowel(stem: str) -> bool:
    return any(not _cons(stem, i) for i in range(len(stem)))


def _double_c(w: str) -> bool:
    return len(w) >= 2 and w[-1] == w[-2] and _cons(w, len(w) - 1)


def _cvc(w: str) -> bool:
    return (
        len(w) >= 3
        and _cons(w, len(w) - 3)
        and not _cons(w, len(w) - 2)
        and _cons(w, len(w) - 1)
        and w[-1] not in "wxy"
    )


def _replace(w: str, rules: list[tuple[str, str]], min_m: int) -> str:
    for suf, rep in rules:
        if w.endswith(suf):
            stem = w[: len(w) - len(suf)]
            return stem + rep if _m(stem) > min_m else w
    return w


_S2 = [
    ("ational", "ate"),
    ("tional", "tion"),
    ("enci", "ence"),
    ("anci", "ance"),
    ("izer", "ize"),
    ("abli", "able"),
    ("alli", "al"),
    ("entli", "ent"),
    ("eli", "e"),
    ("ousli", "ous"),
    ("ization", "ize"),
    ("ation", "ate"),
    ("ator", "ate"),
    ("alism", "al"),
    ("iveness", "ive"),
    ("fulness", "ful"),
    ("ousness", "ous"),
    ("aliti", "al"),
    ("iviti", "ive"),
    ("biliti", "ble"),
]
_S3 = [("icate", "ic"), ("ative", ""), ("alize", "al"), ("iciti", "ic"), ("ical", "ic"), ("ful", ""), ("ness", "")]
_S4 = [
    "al",
    "ance",
    "ence",
    "er",
    "ic",
    "able",
    "ible",
    "ant",
    "ement",
    "ment",
    "ent",
    "ion",
    "ou",
    "ism",
    "ate",
    "iti",
    "ous",
    "ive",
    "ize",
]


def stem(word: str) -> str:
    w = word.lower()
    if len(w) <= 2:
        return w
    # step 1a
    if w.endswith("sses"):
        w = w[:-2]
    elif w.endswith("ies"):
        w = w[:-2]
    elif w.endswith("ss"):
        pass
    elif w.endswith("s"):
        w = w[:-1]
    # step 1b
    flag = False
    if w.endswith("eed"):
        if _m(w[:-3]) > 0:
            w = w[:-1]
    elif w.endswith("ed") and _has_vowel(w[:-2]):
        w, flag = w[:-2], True
    elif w.endswith("ing") and _has_vowel(w[:-3]):
        w, flag = w[:-3], True
    if flag:
        if w.endswith(("at", "bl", "iz")):
            w += "e"
        elif _double_c(w) and w[-1] not in "lsz":
            w = w[:-1]
        elif _m(w) == 1 and _cvc(w):
            w += "e"
    # step 1c
    if w.endswith("y") and _has_vowel(w[:-1]):
        w = w[:-1] + "i"
    # steps 2-3
    for suf, rep in _S2:
        if w.endswith(suf):
            w = _replace(w, [(suf, rep)], 0)
            break
    for suf, rep in _S3:
        if w.endswith(suf):
            w = _replace(w, [(suf, rep)], 0)
            break
    # step 4
    for suf in sorted(_S4, key=len, reverse=True):
        if w.endswith(suf):
            st = w[: len(w) - len(suf)]
            if _m(st) > 1 and (suf != "ion" or st.endswith(("s", "t"))):
                w = st
            break
    # step 5
    if w.endswith("e"):
        st = w[:-1]
        if _m(st) > 1 or (_m(st) == 1 and not _cvc(st)):
            w = st
    if _m(w) > 1 and _double_c(w) and w.endswith("l"):
        w = w[:-1]
    return w


def name_stems(name: str) -> set[str]:
    """Stems of the non-stop words of a concept name."""
    return {stem(t) for t in re.findall(r"[a-z0-9]+", name.lower()) if t not in STOP_WORDS}
