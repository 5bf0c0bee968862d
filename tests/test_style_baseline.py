"""Reference baselines: the 15 style features on hand-made texts, antisymmetry, planted recovery, OOF folds."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

from py_models.style_baseline import (
    LENGTH_FEATURE,
    REFERENCE_MODELS,
    STYLE_FEATURES,
    ReferenceLogit,
    fit_reference_oof,
    pair_style_differences,
    response_style_features,
)


def feats(prompt: str, response: str) -> dict[str, float]:
    row = response_style_features([prompt], [response])
    assert row.shape == (1, 15)
    return dict(zip(STYLE_FEATURES, row[0].tolist()))


def test_feature_names() -> None:
    assert len(STYLE_FEATURES) == 15 == len(set(STYLE_FEATURES))
    assert STYLE_FEATURES[0] == "log_words"
    assert all(n.isidentifier() and n == n.lower() for n in STYLE_FEATURES)
    assert LENGTH_FEATURE == "log_words" and REFERENCE_MODELS["length_only"] == ("log_words",)
    assert REFERENCE_MODELS["style"] == STYLE_FEATURES


# --- hand-made texts with known values for every feature -----------------------------------------------------

RICH = (
    "# Plan\n"
    "Some options, e.g. these 3:\n"
    "- alpha\n"
    "* beta\n"
    "12) gamma\n"
    "```\n"
    "x\n"
    "```\n"
    "See **bold** and https://www.ex.org/a now!"
)
# words: plan some options e g these 3 alpha beta 12 gamma x see bold and https www ex org a now -> 21
RICH_WORDS = "plan some options e g these 3 alpha beta 12 gamma x see bold and https www ex org a now".split()


def test_rich_markdown_response_counts() -> None:
    f = feats("Which options are there? Plan it.", RICH)
    assert len(RICH_WORDS) == 21
    assert f["log_words"] == pytest.approx(math.log(1 + 21))
    assert f["list_items"] == 3
    assert f["headers"] == 1
    assert f["code_fences"] == 2
    assert f["bold"] == 1
    assert f["urls"] == 1  # https://www.… is one URL, not two
    assert f["digit_pct"] == pytest.approx(100 * 3 / len(RICH))  # "3", "1", "2"
    assert f["examples"] == 1
    assert f["exclamation_marks"] == 1
    assert f["question_marks"] == 0
    assert f["hedges"] == 0 and f["apology_refusal"] == 0
    # prompt words {which, options, are, there, plan, it}: options and plan reused -> 2/6
    assert f["prompt_overlap"] == pytest.approx(2 / 6)
    # every word distinct
    assert f["type_token_ratio"] == pytest.approx(1.0)
    assert f["mean_word_len"] == pytest.approx(sum(map(len, RICH_WORDS)) / 21)


def test_layout_patterns_precise() -> None:
    text = (
        "**Bold line** is not a list item\n"
        "---\n"
        "  + plus item\n"
        "• bullet item\n"
        "1234. too many digits\n"
        "-no space\n"
        "####### seven hashes\n"
        "    # four-space indent is code\n"
        "#hashtag\n"
        "   ### Three spaces ok\n"
        "Setext\n======\n"
        "~~~\ncode\n~~~~\n"
        "inline ``` fence does not count\n"
        "def __init__(self): **a** **b** __c__\n"
        "mid-line *not bold* and ** spaced **"
    )
    f = feats("", text)
    assert f["list_items"] == 2  # "+ plus item", "• bullet item"
    assert f["headers"] == 1  # "   ### Three spaces ok"
    assert f["code_fences"] == 2  # ~~~ and ~~~~
    # **Bold line**, **a**, **b** and "** spaced **" (the pattern has no flanking rule); __c__ / __init__ not counted
    assert f["bold"] == 4
    assert f["urls"] == 0


def test_keyword_patterns_case_and_spelling() -> None:
    text = (
        "It MIGHT rain, it may snow; Perhaps, POSSIBLY, likely, it could. Unlikely maybe mighty.\n"
        "Sorry! I apologise. I apologize. My apologies. I CANNOT, I can\u2019t, I can't, I am unable. "
        "As an AI model... as an aide no. Sorrow no.\n"
        "For example, e.g. such as, For  instance; for examples; eg no.\n"
        "Why? Really?? \uff1f Wow\uff01"
    )
    f = feats("", text)
    assert f["hedges"] == 6  # might may perhaps possibly likely could (not unlikely/maybe/mighty)
    assert f["apology_refusal"] == 9  # sorry apologise apologize apologies cannot can't can't unable "as an ai"
    assert f["examples"] == 4  # "for examples" has no word boundary after "example"
    assert f["question_marks"] == 4  # ?, ??, full-width ？
    assert f["exclamation_marks"] == 2  # ! and full-width ！


def test_urls_and_digits() -> None:
    text = "Go to http://a.b/c, www.d.org or [x](https://e.f/g?h=1). awww.no 2024"
    f = feats("", text)
    assert f["urls"] == 3
    assert f["question_marks"] == 1  # the '?' inside the URL is a question mark too
    n_digits = sum(ch.isdigit() for ch in text)
    assert n_digits == 5
    assert f["digit_pct"] == pytest.approx(100 * 5 / len(text))


def test_words_ttr_overlap_and_word_length() -> None:
    f = feats("The cat, the CAT and a dog.", "The cat sat. The cat can't sit; the_cat.")
    # words: the cat sat the cat can't sit the_cat -> 8, distinct 6 (the, cat, sat, can't, sit, the_cat)
    assert f["log_words"] == pytest.approx(math.log(9))
    assert f["type_token_ratio"] == pytest.approx(6 / 8)
    assert f["mean_word_len"] == pytest.approx((3 + 3 + 3 + 3 + 3 + 5 + 3 + 7) / 8)
    # prompt words {the, cat, and, a, dog}: the, cat reused -> 2/5 (case-insensitive)
    assert f["prompt_overlap"] == pytest.approx(2 / 5)


# --- edge cases -----------------------------------------------------------------------------------------------


def test_empty_texts_and_wordless_prompt_are_finite_zeros() -> None:
    F = response_style_features(["", "?!", None, "Hello"], ["", "Hello there", "", None])
    assert F.shape == (4, 15) and F.dtype == np.float64
    assert np.isfinite(F).all()
    assert np.array_equal(F[0], np.zeros(15))
    assert np.array_equal(F[2], np.zeros(15))
    assert np.array_equal(F[3], np.zeros(15))
    row = dict(zip(STYLE_FEATURES, F[1]))
    assert row["prompt_overlap"] == 0.0  # the prompt "?!" has no word
    assert row["log_words"] == pytest.approx(math.log(3))
    d = pair_style_differences(["", ""], ["", "x"], ["", ""])
    assert np.isfinite(d.to_numpy()).all() and (d.iloc[0] == 0).all()


def test_non_ascii_text() -> None:
    text = "Привет, мир! Это пример, например. 你好世界 naïve café ١٢٣"
    f = feats("привет МИР", text)
    # words: привет мир это пример например 你好世界 naïve café ١٢٣ -> 9
    words = ["привет", "мир", "это", "пример", "например", "你好世界", "naïve", "café", "١٢٣"]
    assert f["log_words"] == pytest.approx(math.log(10))
    assert f["prompt_overlap"] == 1.0  # Unicode lower-casing: МИР -> мир
    assert f["type_token_ratio"] == 1.0
    assert f["mean_word_len"] == pytest.approx(sum(len(w) for w in words) / 9)  # code points, not bytes
    assert f["digit_pct"] == pytest.approx(100 * 3 / len(text))  # Arabic-Indic digits are digits
    assert f["exclamation_marks"] == 1
    assert np.isfinite(list(f.values())).all()


def test_input_validation() -> None:
    with pytest.raises(ValueError, match="lengths differ"):
        response_style_features(["a"], ["a", "b"])
    with pytest.raises(ValueError, match="lengths differ"):
        pair_style_differences(["a"], ["a"], ["a", "b"])
    with pytest.raises(TypeError):
        response_style_features("prompt", "response")
    with pytest.raises(TypeError):
        response_style_features(["a"], [3])
    # pandas input with NaN is accepted (NaN = empty)
    F = response_style_features(pd.Series(["p"]), pd.Series([np.nan], dtype=object))
    assert np.array_equal(F, np.zeros((1, 15)))


# --- synthetic pairs ------------------------------------------------------------------------------------------


def random_response(rng: np.random.Generator, n_list: int, n_hedge: int) -> str:
    """Prose of random length with n_list list items, n_hedge hedges and random noise in other features."""
    vocab = ["data", "model", "answer", "value", "result", "point", "case", "step", "idea", "form", "rule"]
    parts = [" ".join(rng.choice(vocab, size=int(rng.integers(5, 60))))]
    parts += [f"- {rng.choice(vocab)} item" for _ in range(n_list)]
    parts += ["It might work." for _ in range(n_hedge)]
    parts += ["Why?" for _ in range(int(rng.integers(0, 3)))]
    parts += ["**Note** here" for _ in range(int(rng.integers(0, 3)))]
    parts += ["Great!" for _ in range(int(rng.integers(0, 3)))]
    parts += [f"Value {int(rng.integers(0, 999))}." for _ in range(int(rng.integers(0, 3)))]
    parts += ["For example, this." for _ in range(int(rng.integers(0, 2)))]
    order = rng.permutation(len(parts) - 1) + 1
    return "\n".join([parts[0]] + [parts[i] for i in order])


@pytest.fixture(scope="module")
def planted():
    """Labels from a known logistic model on standardised list_items (+) and hedges (-) differences."""
    rng = np.random.default_rng(11)
    n = 3000
    prompts, ra, rb = [], [], []
    for _ in range(n):
        prompts.append("Give me a data model answer")
        ra.append(random_response(rng, int(rng.integers(0, 6)), int(rng.integers(0, 4))))
        rb.append(random_response(rng, int(rng.integers(0, 6)), int(rng.integers(0, 4))))
    D = pair_style_differences(prompts, ra, rb)
    rms = np.sqrt((D**2).mean())
    z = 2.5 * D["list_items"] / rms["list_items"] - 2.0 * D["hedges"] / rms["hedges"]
    y = np.where(rng.random(n) < 1 / (1 + np.exp(-z.to_numpy())), "a", "b")
    return {"prompts": prompts, "ra": ra, "rb": rb, "D": D, "y": y, "z": z.to_numpy()}


def test_antisymmetry_exact(planted) -> None:
    p, ra, rb = planted["prompts"][:400], planted["ra"][:400], planted["rb"][:400]
    d_ab = pair_style_differences(p, ra, rb)
    d_ba = pair_style_differences(p, rb, ra)
    assert np.array_equal(d_ba.to_numpy(), -d_ab.to_numpy())
    assert list(d_ab.columns) == list(STYLE_FEATURES)
    for columns in REFERENCE_MODELS.values():
        est = ReferenceLogit(columns=columns).fit(d_ab, planted["y"][:400])
        p_ab = est.predict_proba(d_ab)[:, 1]
        p_ba = est.predict_proba(d_ba)[:, 1]
        assert np.array_equal(p_ba, 1.0 - p_ab)
        assert np.array_equal(est.decision_function(d_ba), -est.decision_function(d_ab))
    # identical responses: no difference -> exactly 0.5
    same = pair_style_differences(p[:5], ra[:5], ra[:5])
    assert np.array_equal(est.predict_proba(same)[:, 1], np.full(5, 0.5))


def test_planted_recovery(planted) -> None:
    D, y = planted["D"], planted["y"]
    tr, te = np.arange(2000), np.arange(2000, 3000)
    est = ReferenceLogit(columns=REFERENCE_MODELS["style"]).fit(D.iloc[tr], y[tr])
    assert list(est.classes_) == ["b", "a"]
    acc = np.mean(est.predict(D.iloc[te]) == y[te])
    bayes = np.mean(np.where(planted["z"][te] > 0, "a", "b") == y[te])
    assert acc > 0.72 and acc > bayes - 0.03
    coef = pd.Series(est.coef_, index=STYLE_FEATURES)
    top2 = set(coef.abs().sort_values(ascending=False).index[:2])
    assert top2 == {"list_items", "hedges"}
    assert coef["list_items"] == pytest.approx(2.5, abs=0.6) and coef["hedges"] == pytest.approx(-2.0, abs=0.6)
    assert coef.drop(["list_items", "hedges"]).abs().max() < 0.4
    # P(a wins) rises with the planted positive feature
    p = est.predict_proba(D.iloc[te])[:, 1]
    assert np.corrcoef(p, planted["z"][te])[0, 1] > 0.9


def test_model_is_the_documented_lr(planted) -> None:
    """RMS scaling on training rows (no centering) + sklearn no-intercept L2 LR with C=1, reproducible by hand."""
    D, y = planted["D"].iloc[:1000].copy(), planted["y"][:1000]
    D["code_fences"] = 0.0  # a zero-RMS column gets scale 1 and weight 0
    est = ReferenceLogit().fit(D, y)
    X = D.to_numpy()
    rms = np.sqrt(np.mean(X**2, axis=0))
    assert np.allclose(est.scale_, np.where(rms > 0, rms, 1.0))
    assert est.scale_[STYLE_FEATURES.index("code_fences")] == 1.0
    assert est.coef_[STYLE_FEATURES.index("code_fences")] == 0.0
    ref = LogisticRegression(C=1.0, fit_intercept=False, tol=1e-10, max_iter=5000).fit(X / est.scale_, y == "a")
    assert np.allclose(est.coef_, ref.coef_.ravel(), atol=1e-5)
    assert np.allclose(est.predict_proba(D)[:, 1], ref.predict_proba(X / est.scale_)[:, 1], atol=1e-6)
    # smaller C shrinks
    assert np.linalg.norm(ReferenceLogit(C=0.01).fit(D, y).coef_) < np.linalg.norm(est.coef_)
    # 0/1 labels: positive class is 1
    est01 = ReferenceLogit().fit(D, (y == "a").astype(int))
    assert list(est01.classes_) == [0, 1] and np.allclose(est01.coef_, est.coef_)


def test_length_only_uses_only_length(planted) -> None:
    D, y = planted["D"].iloc[:1000], planted["y"][:1000]
    est = ReferenceLogit(columns=REFERENCE_MODELS["length_only"]).fit(D, y)
    assert est.coef_.shape == (1,) and est.scale_.shape == (1,)
    assert list(est.feature_names_in_) == ["log_words"]
    p = est.predict_proba(D)[:, 1]
    noisy = D.copy()
    others = [c for c in STYLE_FEATURES if c != "log_words"]
    noisy[others] = np.random.default_rng(0).normal(size=(len(D), 14)) * 100
    assert np.array_equal(est.predict_proba(noisy)[:, 1], p)
    # same as a plain model on the single column, and as the 15-column array input
    solo = ReferenceLogit().fit(D[["log_words"]], y)
    assert np.allclose(solo.predict_proba(D[["log_words"]])[:, 1], p)
    arr = ReferenceLogit(columns=("log_words",)).fit(D.to_numpy(), y)
    assert np.allclose(arr.predict_proba(D.to_numpy())[:, 1], p)
    with pytest.raises(ValueError, match="STYLE_FEATURES"):
        ReferenceLogit(columns=("log_words",)).fit(D.to_numpy()[:, :3], y)
    with pytest.raises(KeyError):
        ReferenceLogit(columns=("nope",)).fit(D, y)
    # monotone in the length difference, and the OOF variant also ignores the other columns
    order = np.argsort(D["log_words"].to_numpy())
    assert np.all(np.diff(p[order]) * np.sign(est.coef_[0]) >= 0)
    folds = np.arange(len(D)) % 5
    oof = fit_reference_oof(D, y, folds, REFERENCE_MODELS["length_only"])
    assert np.array_equal(fit_reference_oof(noisy, y, folds, ("log_words",)), oof)


def test_oof_uses_given_folds(planted) -> None:
    D, y = planted["D"].iloc[:600].reset_index(drop=True), planted["y"][:600].copy()
    folds = np.random.default_rng(5).integers(0, 4, size=600) * 10 + 3  # arbitrary fold ids
    oof = fit_reference_oof(D, y, folds, STYLE_FEATURES)
    assert oof.shape == (600,) and np.all((oof > 0) & (oof < 1))
    # equals a manual loop over the given folds
    for k in np.unique(folds):
        te = folds == k
        est = ReferenceLogit().fit(D[~te], y[~te])
        assert np.allclose(oof[te], est.predict_proba(D[te])[:, 1], atol=1e-12)
    # a row's prediction never depends on its own label: flip the labels of a few rows of fold 13
    rows = np.flatnonzero(folds == 13)[:40]
    y2 = y.copy()
    y2[rows] = np.where(y2[rows] == "a", "b", "a")
    oof2 = fit_reference_oof(D, y2, folds, STYLE_FEATURES)
    assert np.array_equal(oof2[folds == 13], oof[folds == 13])
    assert not np.allclose(oof2[folds != 13], oof[folds != 13])


def test_oof_single_class_training_folds_predict_half() -> None:
    rng = np.random.default_rng(2)
    D = pd.DataFrame(rng.normal(size=(60, 15)), columns=list(STYLE_FEATURES))
    y = np.array(["a"] * 10 + ["b"] * 50)
    folds = np.array([0] * 20 + [1] * 20 + [2] * 20)  # fold 0 holds every 'a': its training part is all 'b'
    oof = fit_reference_oof(D, y, folds, STYLE_FEATURES)
    assert np.array_equal(oof[:20], np.full(20, 0.5))
    assert not np.allclose(oof[20:], 0.5)
    assert np.array_equal(fit_reference_oof(D, np.full(60, "b"), folds, STYLE_FEATURES), np.full(60, 0.5))
    with pytest.raises(ValueError, match="lengths differ"):
        fit_reference_oof(D, y[:10], folds, STYLE_FEATURES)


def test_a_member_of_the_estimator_family_that_ignores_domains() -> None:
    """ReferenceLogit shares the family's API (scikit-learn's check_estimator runs on it in tests/test_hmdr.py):
    score() needs no domains, and domains given anywhere change nothing."""
    rng = np.random.default_rng(4)
    D = pd.DataFrame(rng.normal(size=(200, 15)), columns=list(STYLE_FEATURES))
    y = np.where(D["log_words"] + rng.normal(0, 0.5, 200) > 0, "a", "b")
    est = ReferenceLogit(columns=("log_words",)).fit(D, y)
    dom = np.full(200, "anything", dtype=object)
    np.testing.assert_array_equal(est.predict_proba(D), est.predict_proba(D, dom))
    assert est.score(D, y) == est.score(D, y, domains=dom) == np.mean(est.predict(D) == y) > 0.7
    with pytest.raises(ValueError):
        ReferenceLogit(C=0.0).fit(D, y)


# --- in a build: fitted once per mechanism, whatever the number of representations ------------------------------


def _three_representations(n: int = 120, seed: int = 3) -> tuple[dict[str, pd.DataFrame], pd.DataFrame]:
    """Wide feature tables of two mechanisms for measure, comp and score (same pairs), and their item texts."""
    rng = np.random.default_rng(seed)
    words = ["alpha", "beta", "gamma", "delta", "may", "sorry", "for example", "- item", "**bold**", "?"]

    def text() -> str:
        return " ".join(rng.choice(words, size=int(rng.integers(1, 30))))

    items = [f"it{i}" for i in range(n)]
    texts = pd.DataFrame(
        {"item_id": items, "prompt": [text() for _ in items], "response_a": [text() for _ in items]}
    ).assign(response_b=[text() for _ in items])
    keys = pd.DataFrame(
        {
            "label_id": [f"l{i}" for i in range(2 * n)],
            "item_id": items + items,
            "mechanism": ["human:x"] * n + ["judge:y"] * n,
            "mechanism_type": ["human"] * n + ["judge"] * n,
            "domain": rng.choice(["d1", "d2"], size=2 * n),
            "winner": rng.choice(["a", "b"], size=2 * n),
        }
    )
    values = {
        "measure": rng.normal(size=(2 * n, 3)),
        "comp": rng.integers(-1, 2, size=(2 * n, 3)).astype(float),
        "score": rng.integers(-4, 5, size=(2 * n, 3)) / 4.0,
    }
    return {r: keys.join(pd.DataFrame(v, columns=["c1", "c2", "c3"])) for r, v in values.items()}, texts


def test_a_build_fits_the_reference_models_once_per_mechanism(monkeypatch: pytest.MonkeyPatch) -> None:
    """They depend on the pairs, labels and folds only: three representations of the same pairs share them, and
    their metric rows are the same for every representation."""
    import py_models.fit_job as fit_job
    from pipelines.core.config import dbt_project_vars
    from py_models.fit_build import fit_build
    from py_models.fit_settings import FitSettings

    calls: list[tuple[str, ...]] = []
    real = fit_job.fit_reference_oof

    def counted(diffs, y, folds, columns=STYLE_FEATURES, C=1.0):  # the real fit, counted
        calls.append(tuple(columns))
        return real(diffs, y, folds, columns, C)

    monkeypatch.setattr(fit_job, "fit_reference_oof", counted)
    features, texts = _three_representations()
    settings = FitSettings.from_vars(
        {**dbt_project_vars(), "build_id": "b", "fit_jobs": 1, "hmdr_n_bootstrap": 0, "hmdr_select": False}
    )
    assert settings.representations == ("measure", "comp", "score")
    tall = fit_build(features, texts, settings)
    assert sorted(calls) == sorted([REFERENCE_MODELS["length_only"], REFERENCE_MODELS["style"]] * 2)  # 2 mechanisms
    ref = tall[(tall["record_type"] == "metrics") & tall["variant"].isin(list(REFERENCE_MODELS))]
    by_rep = {
        r: g.drop(columns=["row_id", "representation"])
        .sort_values(["mechanism", "variant", "domain"])
        .reset_index(drop=True)
        for r, g in ref.groupby("representation")
    }
    assert set(by_rep) == {"measure", "comp", "score"} and len(by_rep["comp"]) > 0
    pd.testing.assert_frame_equal(by_rep["measure"], by_rep["comp"])
    pd.testing.assert_frame_equal(by_rep["score"], by_rep["comp"])
