"""Reference models fitted next to every concept model: a 15-feature style baseline and a length-only baseline.

They answer "does the explanation predict the mechanism better than the obvious surface cues?". Both are an
L2 logistic regression **without intercept**, scikit-learn ``C = 1`` (loss ``C * sum_i log(1 + exp(-y_i z_i))
+ ||w||^2 / 2``, lbfgs), on response-A-minus-response-B feature differences divided by their training RMS.

Text normalisation
------------------
``None``/NaN texts are treated as ``""``. The curly apostrophes U+2018, U+2019 and U+02BC are replaced by ``'``
(code point for code point). ``lower`` is that text lower-cased with Unicode rules (Polars ``to_lowercase``).
Every keyword pattern is matched on ``lower``, every layout pattern on the normalised text (they contain no
letters, so case does not matter). Patterns use the Rust regex engine, Unicode-aware: ``\\w`` is any letter,
mark, decimal digit or connector punctuation (so ``_``), ``\\d`` any Unicode decimal digit, ``\\b`` a word
boundary on that ``\\w``, ``\\s`` any Unicode white space. ``(?m)`` makes ``^`` match at every line start.

* **word**: a match of ``WORD_RE = \\w+(?:'\\w+)*`` on ``lower`` (``can't``, ``snake_case``, ``3.5`` -> ``3``,
  ``5``; ``e.g.`` -> ``e``, ``g``). ``n_words`` = number of words.

Features (per response, in ``STYLE_FEATURES`` order; all finite, 0 for the empty text)
-----------------------------------------------------------------------------------------
1. ``log_words``: ``log(1 + n_words)``.
2. ``list_items``: lines matching ``(?m)^[ \\t]*(?:[-*+•]|\\d{1,3}[.)])[ \\t]+\\S`` (a bullet ``- * + •`` or a
   1-3 digit number with ``.``/``)``, then blank space, then text; ``**bold**`` and ``---`` are not items).
3. ``headers``: ATX header lines, ``(?m)^[ \\t]{0,3}#{1,6}[ \\t]+\\S`` (setext underlines and bold-only lines
   are not headers).
4. ``code_fences``: fence lines, ``(?m)^[ \\t]*(?:`{3,}|~{3,})``; a complete code block counts 2 (open + close).
5. ``bold``: bold spans ``\\*\\*[^*\\n]+\\*\\*`` (one per pair of markers, non-overlapping, within a line);
   ``__text__`` is not counted (it collides with Python dunders such as ``__init__``).
6. ``urls``: ``\\bhttps?://\\S+|\\bwww\\.\\S+`` on ``lower`` (``https://www.x`` counts once).
7. ``digit_pct``: ``100 * (number of \\d characters) / (number of characters)``, characters = Unicode code
   points of the normalised text; 0 for the empty text.
8. ``hedges``: ``\\b(?:might|may|perhaps|possibly|likely|could)\\b`` on ``lower`` (whole words only:
   ``unlikely`` and ``maybe`` do not count; the month "May" does).
9. ``apology_refusal``: ``\\bsorry\\b|\\bapolog\\w*|\\bcannot\\b|\\bcan't\\b|\\bunable\\b|\\bas\\s+an\\s+ai\\b`` on
   ``lower``. ``apolog\\w*`` covers both spellings apologise/apologize and their forms (apologies, apologised,
   apologizing, apology, ...); ``can't`` includes the curly-apostrophe form via the normalisation.
10. ``question_marks``: count of ``?`` and full-width ``？`` characters.
11. ``exclamation_marks``: count of ``!`` and full-width ``！`` characters.
12. ``prompt_overlap``: ``|P ∩ R| / |P|`` with P the set of distinct lower-cased words of the prompt and R the
    set of distinct words of the response; 0 when the prompt has no word.
13. ``type_token_ratio``: distinct words / ``n_words``; 0 when there is no word.
14. ``mean_word_len``: total code points of all words (of ``lower``; internal apostrophes count) /
    ``n_words``; 0 when there is no word.
15. ``examples``: ``\\bfor\\s+example\\b|\\be\\.g\\.|\\bsuch\\s+as\\b|\\bfor\\s+instance\\b`` on ``lower``.

Counts are numbers of non-overlapping leftmost matches (``str.count_matches``).

Pair design and standardisation
-------------------------------
A pair's features are ``f(prompt, response_a) - f(prompt, response_b)`` (``pair_style_differences``). At fit
time each difference column is divided by its root-mean-square over the *training* rows,
``sqrt(mean(x^2))``, **without centering**; a column whose RMS is 0 gets scale 1. Centering (the usual
z-score) would shift the decision function by a constant, i.e. smuggle in an intercept that favours
position A or B; dividing by the RMS keeps ``x -> -x`` an exact symmetry, so with no intercept swapping A
and B negates the logit and ``P(a wins)`` becomes exactly ``1 - P(a wins)`` (the logistic is evaluated so
that ``p(-z) == 1 - p(z)`` bit for bit). ``coef_`` is per standardised column (comparable magnitudes); the
coefficient per raw unit is ``coef_ / scale_``.

The length-only baseline is the same model on the single column ``log_words``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from numbers import Real
from types import MappingProxyType
from typing import Any, ClassVar, cast

import numpy as np
import pandas as pd
import polars as pl
from numpy.typing import ArrayLike, NDArray
from sklearn.base import BaseEstimator
from sklearn.linear_model import LogisticRegression
from sklearn.utils._param_validation import Interval

from py_models._augment import encode_labels
from py_models._base import FINITE_MAX, DomainLinearClassifierMixin, check_sample_weight

__all__ = [
    "STYLE_FEATURES",
    "LENGTH_FEATURE",
    "REFERENCE_MODELS",
    "WORD_RE",
    "response_style_features",
    "pair_style_differences",
    "ReferenceLogit",
    "fit_reference_oof",
]

STYLE_FEATURES: tuple[str, ...] = (
    "log_words",
    "list_items",
    "headers",
    "code_fences",
    "bold",
    "urls",
    "digit_pct",
    "hedges",
    "apology_refusal",
    "question_marks",
    "exclamation_marks",
    "prompt_overlap",
    "type_token_ratio",
    "mean_word_len",
    "examples",
)

LENGTH_FEATURE = "log_words"
"""The style feature the length-only baseline uses: log(1 + word count)."""

REFERENCE_MODELS: MappingProxyType[str, tuple[str, ...]] = MappingProxyType(
    {"length_only": (LENGTH_FEATURE,), "style": STYLE_FEATURES}
)
"""The two reference variants: name -> the feature columns ``ReferenceLogit(columns=...)`` uses."""

WORD_RE = r"\w+(?:'\w+)*"
_APOSTROPHES = "[\u2018\u2019\u02bc]"
# layout patterns (normalised text)
_LIST_ITEM = r"(?m)^[ \t]*(?:[-*+•]|\d{1,3}[.)])[ \t]+\S"
_HEADER = r"(?m)^[ \t]{0,3}#{1,6}[ \t]+\S"
_FENCE = r"(?m)^[ \t]*(?:`{3,}|~{3,})"
_BOLD = r"\*\*[^*\n]+\*\*"
_QUESTION = "[?\uff1f]"
_EXCLAMATION = "[!\uff01]"
_DIGIT = r"\d"
# keyword patterns (lower-cased text)
_URL = r"\bhttps?://\S+|\bwww\.\S+"
_HEDGE = r"\b(?:might|may|perhaps|possibly|likely|could)\b"
_APOLOGY = r"\bsorry\b|\bapolog\w*|\bcannot\b|\bcan't\b|\bunable\b|\bas\s+an\s+ai\b"
_EXAMPLE = r"\bfor\s+example\b|\be\.g\.|\bsuch\s+as\b|\bfor\s+instance\b"


def _as_text_series(values: ArrayLike | Sequence[str | None], name: str) -> pl.Series:
    """Strings as a Polars String series; None / NaN -> ""; anything else non-str is an error."""
    if isinstance(values, str):
        raise TypeError(f"{name} must be a sequence of strings, not one string")
    out: list[str] = []
    for v in values.to_list() if isinstance(values, pl.Series) else list(cast(Iterable[Any], values)):
        if isinstance(v, str):
            out.append(v)
        elif v is None or (isinstance(v, float) and v != v):
            out.append("")
        else:
            raise TypeError(f"{name} must hold strings (None/NaN = empty), got {type(v).__name__}")
    return pl.Series(name, out, dtype=pl.String)


def _count(col: str, pattern: str) -> pl.Expr:
    return pl.col(col).str.count_matches(pattern).cast(pl.Float64)


def _safe_div(num: pl.Expr, den: pl.Expr) -> pl.Expr:
    return pl.when(den > 0).then(num / den).otherwise(0.0)


def response_style_features(
    prompts: ArrayLike | Sequence[str | None], responses: ArrayLike | Sequence[str | None]
) -> NDArray[np.float64]:
    """The 15 style features (module docstring) of each response, shape ``(n, 15)``, ``STYLE_FEATURES`` order.

    Parameters
    ----------
    prompts, responses : sequences of str of equal length
        ``prompts[i]`` is the prompt ``responses[i]`` answers (only used by ``prompt_overlap``).
    """
    p = _as_text_series(prompts, "prompt")
    r = _as_text_series(responses, "text")
    if len(p) != len(r):
        raise ValueError(f"prompts and responses lengths differ: {len(p)} != {len(r)}")
    frame = (
        pl.DataFrame([p, r])
        .lazy()
        .with_columns(
            text=pl.col("text").str.replace_all(_APOSTROPHES, "'"),
            plower=pl.col("prompt").str.replace_all(_APOSTROPHES, "'").str.to_lowercase(),
        )
        .with_columns(lower=pl.col("text").str.to_lowercase())
        .with_columns(
            words=pl.col("lower").str.extract_all(WORD_RE),
            pwords=pl.col("plower").str.extract_all(WORD_RE).list.unique(),
            n_chars=pl.col("text").str.len_chars().cast(pl.Float64),
        )
        .with_columns(
            n_words=pl.col("words").list.len().cast(pl.Float64),
            n_types=pl.col("words").list.n_unique().cast(pl.Float64),
            word_chars=pl.col("words").list.join("").str.len_chars().cast(pl.Float64),
            n_pwords=pl.col("pwords").list.len().cast(pl.Float64),
            n_shared=pl.col("pwords").list.set_intersection(pl.col("words")).list.len().cast(pl.Float64),
        )
        .select(
            log_words=pl.col("n_words").log1p(),
            list_items=_count("text", _LIST_ITEM),
            headers=_count("text", _HEADER),
            code_fences=_count("text", _FENCE),
            bold=_count("text", _BOLD),
            urls=_count("lower", _URL),
            digit_pct=_safe_div(100.0 * _count("text", _DIGIT), pl.col("n_chars")),
            hedges=_count("lower", _HEDGE),
            apology_refusal=_count("lower", _APOLOGY),
            question_marks=_count("text", _QUESTION),
            exclamation_marks=_count("text", _EXCLAMATION),
            prompt_overlap=_safe_div(pl.col("n_shared"), pl.col("n_pwords")),
            type_token_ratio=_safe_div(pl.col("n_types"), pl.col("n_words")),
            mean_word_len=_safe_div(pl.col("word_chars"), pl.col("n_words")),
            examples=_count("lower", _EXAMPLE),
        )
        .collect()
    )
    out = frame.select(STYLE_FEATURES).to_numpy().astype(np.float64, copy=False)
    return out.reshape(len(r), len(STYLE_FEATURES))


def pair_style_differences(
    prompts: ArrayLike | Sequence[str | None],
    responses_a: ArrayLike | Sequence[str | None],
    responses_b: ArrayLike | Sequence[str | None],
) -> pd.DataFrame:
    """Per pair, style features of response A minus those of response B: DataFrame ``(n, 15)``.

    Columns are ``STYLE_FEATURES``; the index is ``0..n-1``. Swapping A and B negates every entry exactly.
    """
    p = _as_text_series(prompts, "prompt")
    a = _as_text_series(responses_a, "text")
    b = _as_text_series(responses_b, "text")
    n = len(p)
    if not (len(a) == len(b) == n):
        raise ValueError(f"prompts, responses_a and responses_b lengths differ: {n}, {len(a)}, {len(b)}")
    F = response_style_features(pl.concat([p, p]), pl.concat([a, b]))
    return pd.DataFrame(F[:n] - F[n:], columns=list(STYLE_FEATURES))


def _sym_sigmoid(z: NDArray[np.float64]) -> NDArray[np.float64]:
    """Logistic function with ``_sym_sigmoid(-z) == 1 - _sym_sigmoid(z)`` exactly."""
    q = 1.0 / (1.0 + np.exp(-np.abs(z)))  # in [0.5, 1]
    return np.where(z >= 0, q, 1.0 - q)


class ReferenceLogit(DomainLinearClassifierMixin, BaseEstimator):
    """No-intercept L2 logistic regression on RMS-scaled A - B differences (the reference baselines).

    A member of the estimator family that ignores domains (``uses_domains`` False): ``predict``,
    ``predict_proba`` and ``score`` take no domains (a ``domains`` argument is accepted and ignored).

    Parameters
    ----------
    C : float
        Inverse L2 strength, scikit-learn convention (sum of log-losses times C plus ``||w||^2 / 2``).
    columns : sequence of str or None
        Feature columns to use, e.g. ``("log_words",)`` (length-only) or ``STYLE_FEATURES`` (style); see
        ``REFERENCE_MODELS``. With a DataFrame ``X`` they are selected by name; with an array ``X`` it must
        have the ``STYLE_FEATURES`` layout (15 columns). None: every column of ``X``.

    Attributes
    ----------
    classes_ : ndarray of shape (2,)
        ``[negative, positive]`` as in ``encode_labels``: the positive class is ``'a'`` ("response a wins"),
        so ``predict_proba(X)[:, 1]`` is P(a wins).
    scale_ : ndarray of shape (p,)
        Training RMS of each used column (1 where it is 0).
    coef_ : ndarray of shape (p,)
        Coefficients per standardised column, oriented towards the positive class.
    n_features_in_ : int
        Number of columns used (after ``columns`` selected them).
    feature_names_in_ : ndarray of shape (n_features_in_,)
        Their names, when ``X`` was a DataFrame.
    n_iter_ : ndarray of shape (1,)
        lbfgs iterations.
    """

    uses_domains = False
    accepts_sparse = False
    _parameter_constraints: ClassVar[dict[str, list[Any]]] = {
        "C": [Interval(Real, 0, FINITE_MAX, closed="neither")],
        "columns": ["array-like", None],
    }

    def __init__(self, C: float = 1.0, columns: Sequence[str] | None = None) -> None:
        self.C = C
        self.columns = columns

    def _select(self, X: Any) -> Any:
        if self.columns is None:
            return X
        cols = list(self.columns)
        if isinstance(X, pd.DataFrame):
            missing = [c for c in cols if c not in X.columns]
            if missing:
                raise KeyError(f"columns not in X: {missing}")
            return X[cols]
        arr = np.asarray(X)
        if arr.ndim != 2 or arr.shape[1] != len(STYLE_FEATURES):
            raise ValueError(
                f"with columns={cols!r}, an array X must have the {len(STYLE_FEATURES)} STYLE_FEATURES columns, "
                f"got shape {arr.shape}; pass a DataFrame to select by name"
            )
        unknown = [c for c in cols if c not in STYLE_FEATURES]
        if unknown:
            raise KeyError(f"not style features: {unknown}")
        return arr[:, [STYLE_FEATURES.index(c) for c in cols]]

    def fit(self, X: ArrayLike | pd.DataFrame, y: ArrayLike, sample_weight: ArrayLike | None = None) -> ReferenceLogit:
        """Fit on A - B differences ``X`` and labels ``y`` (two classes, e.g. 'a'/'b').

        ``sample_weight`` weights both the log-loss and the RMS used for ``scale_``.
        """
        self._validate_params()
        data, y_pm, _ = self._validate_training_data(self._select(X), y, None)
        w = check_sample_weight(sample_weight, data.shape[0])
        rms = np.sqrt(np.average(data**2, axis=0, weights=w))  # weighted: a weight equals repeating the row
        self.scale_ = np.where(rms > 0, rms, 1.0)
        lr = LogisticRegression(C=self.C, fit_intercept=False, solver="lbfgs", tol=1e-8, max_iter=1000)
        lr.fit(data / self.scale_, y_pm, sample_weight=w)
        coef = lr.coef_.ravel().astype(np.float64)
        self.coef_ = coef if lr.classes_[1] == 1.0 else -coef
        self.n_iter_ = lr.n_iter_
        return self

    def _probability(self, z: NDArray[np.float64]) -> NDArray[np.float64]:
        return _sym_sigmoid(z)  # exactly 1 - P when A and B swap

    def decision_function(self, X: ArrayLike | pd.DataFrame, domains: ArrayLike | None = None) -> NDArray[np.float64]:
        """Logit of P(positive class): ``(X / scale_) @ coef_`` (``domains`` is ignored)."""
        X = self._validate_X(self._select(X))
        return (X / self.scale_) @ self.coef_


def fit_reference_oof(
    diffs: pd.DataFrame,
    y: ArrayLike,
    folds: ArrayLike,
    columns: Sequence[str] = STYLE_FEATURES,
    C: float = 1.0,
) -> NDArray[np.float64]:
    """Out-of-fold P(a wins) of ``ReferenceLogit(C, columns)`` on the caller's folds.

    Parameters
    ----------
    diffs : DataFrame
        A - B differences (``pair_style_differences``), one row per pair.
    y : array-like of shape (n,)
        Binary labels ('a'/'b', or as ``encode_labels`` reads them).
    folds : array-like of shape (n,)
        Fold id per row; each distinct id is held out once and predicted by a model fitted on all other rows
        (standardisation included). A fold whose training part has fewer than two classes predicts 0.5.

    Returns
    -------
    ndarray of shape (n,)
    """
    y_arr = np.asarray(y).ravel()
    f = np.asarray(folds).ravel()
    n = len(diffs)
    if len(y_arr) != n or len(f) != n:
        raise ValueError(f"diffs, y and folds lengths differ: {n}, {len(y_arr)}, {len(f)}")
    out = np.full(n, 0.5)
    if len(pd.unique(y_arr)) < 2:
        return out
    y_pm, _ = encode_labels(y_arr)  # +1 = a wins, fixed once for every fold
    X = diffs.loc[:, list(columns)].to_numpy(dtype=np.float64)
    for k in pd.unique(f):
        te = f == k
        tr = ~te
        if tr.sum() < 2 or len(np.unique(y_pm[tr])) < 2:
            continue
        est = ReferenceLogit(C=C).fit(X[tr], y_pm[tr])
        out[te] = est.predict_proba(X[te])[:, 1]
    return out
