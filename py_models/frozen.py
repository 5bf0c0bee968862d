"""Frozen-fit scoring: apply a published fit's weights to new pairs, and compare agreement (pure, no I/O).

A published fit is kept in the fit marts as one row per domain x concept (``fct_concept_effects``): the shared
vector b on domain ``__shared__``, b + s_d on each fitted domain, and ``feature_scale`` (the divisor the fit
applied to each concept column). :class:`FrozenFit` rebuilds from those rows an :class:`HMDRClassifier` with the
given coefficients, so new pairs are scored by HMDR's own ``predict_proba`` (unseen or weightless domains with b
alone), and explained per pair by :func:`py_models.lift.concept_contributions`. The new pairs' raw features are
not made here: dbt builds them with the fit's own transform and pivot (pipelines/score/features.py).

Drift: the agreement of the frozen fit with the mechanism's verdicts on the new pairs, with a Wilson interval,
against the fit's own held-out (out-of-fold) accuracy and its Wilson interval. A drift signal is a drop beyond
the interval: the new agreement's interval lies wholly below the fit's (both sides' sampling noise counted).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike, NDArray

from py_models.hmdr import HMDRClassifier
from py_models.lift import concept_contributions
from py_models.mart_keys import ALL_DOMAINS, SHARED_DOMAIN

__all__ = [
    "SHARED_DOMAIN",
    "ALL_DOMAINS",
    "FrozenFit",
    "wilson_interval",
    "agreement_table",
]

_Z95 = 1.959963984540054


@dataclass(frozen=True)
class FrozenFit:
    """One published fit of one mechanism x representation: b, the fitted domains' s_d and the column scales."""

    concepts: list[str]
    feature_scale: NDArray[np.float64]  # (p,) divisor of each raw feature column
    shared: NDArray[np.float64]  # (p,) b
    domains: list[str]  # fitted domains with their own deviations, sorted
    deviations: NDArray[np.float64]  # (len(domains), p) s_d

    @classmethod
    def from_effects(cls, effects: pd.DataFrame) -> FrozenFit:
        """From the ``fct_concept_effects`` rows of one fit x mechanism x representation x control (columns
        domain, concept, shared_weight, domain_deviation, has_domain_weights, feature_scale)."""
        shared = effects[effects["domain"] == SHARED_DOMAIN].sort_values("concept")
        if shared.empty:
            raise ValueError("the fit has no shared weights (no '__shared__' rows)")
        if shared["concept"].duplicated().any():
            raise ValueError("the fit's rows repeat a concept: give the rows of one fit, mechanism and representation")
        concepts = shared["concept"].astype(str).tolist()
        scale = shared["feature_scale"].to_numpy(dtype=np.float64)
        if not np.all(np.isfinite(scale)) or np.any(scale <= 0):
            raise ValueError("feature_scale must be finite and positive for every concept")
        own = effects[(effects["domain"] != SHARED_DOMAIN) & effects["has_domain_weights"].fillna(False).astype(bool)]
        domains = sorted(own["domain"].astype(str).unique().tolist())
        position = {c: j for j, c in enumerate(concepts)}
        dev = np.zeros((len(domains), len(concepts)))
        for k, domain in enumerate(domains):
            rows = own[own["domain"] == domain]
            cols = [position[c] for c in rows["concept"].astype(str)]
            dev[k, cols] = rows["domain_deviation"].to_numpy(dtype=np.float64)
        return cls(concepts, scale, shared["shared_weight"].to_numpy(dtype=np.float64), domains, dev)

    def classifier(self) -> HMDRClassifier:
        """An :class:`HMDRClassifier` holding these coefficients as if fitted (predict, effective_weights)."""
        model = HMDRClassifier()
        p = len(self.concepts)
        model.n_features_in_ = p
        model.classes_ = np.array(["b", "a"], dtype=object)
        model.coef_shared_ = self.shared.copy()
        model.coef_domain_ = self.deviations.reshape(len(self.domains), p).copy()
        model.domains_ = np.asarray(self.domains, dtype=object)
        model.has_domain_weights_ = np.ones(len(self.domains), dtype=bool)
        return model

    def scale(self, X_raw: ArrayLike) -> NDArray[np.float64]:
        """The raw feature matrix (columns in ``concepts`` order) divided by the fit's column scales."""
        X = np.asarray(X_raw, dtype=np.float64)
        if X.ndim != 2 or X.shape[1] != len(self.concepts):
            raise ValueError(f"X must have {len(self.concepts)} columns (the fit's concepts), got shape {X.shape}")
        return X / self.feature_scale[None, :]

    def score(
        self, X_raw: ArrayLike, domains: Sequence[str], row_ids: ArrayLike | None = None
    ) -> tuple[pd.DataFrame, pd.DataFrame]:
        """``(pairs, explanations)`` of new pairs: per pair ``prob_a`` (P(a wins)), ``predicted_winner``,
        ``logit`` and ``used_domain_weights``; per pair x concept with a non-zero value and weight the local
        explanation of :func:`concept_contributions` (value on the fit's scale, weight, contribution, lift)."""
        X = self.scale(X_raw)
        model = self.classifier()
        dom = np.asarray(list(domains), dtype=object)
        ids = np.arange(X.shape[0]) if row_ids is None else np.asarray(row_ids)
        prob_a = model.predict_proba(X, dom)[:, 1]
        pairs = pd.DataFrame(
            {
                "row_id": ids,
                "prob_a": prob_a,
                "predicted_winner": model.predict(X, dom).astype(str),
                "logit": model.decision_function(X, dom),
                "used_domain_weights": model.uses_domain_weights(dom),
            }
        )
        explanations = concept_contributions(X, model.effective_weights(dom), self.concepts, ids)
        return pairs, explanations


def wilson_interval(k: ArrayLike, n: ArrayLike, z: float = _Z95) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Wilson score interval of a proportion k/n (NaN where n is 0)."""
    k_arr = np.asarray(k, dtype=np.float64)
    n_arr = np.asarray(n, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        p = k_arr / n_arr
        centre = (p + z * z / (2 * n_arr)) / (1 + z * z / n_arr)
        half = z * np.sqrt(p * (1 - p) / n_arr + z * z / (4 * n_arr * n_arr)) / (1 + z * z / n_arr)
    low = np.where(n_arr > 0, np.clip(centre - half, 0.0, 1.0), np.nan)
    high = np.where(n_arr > 0, np.clip(centre + half, 0.0, 1.0), np.nan)
    return low, high


def agreement_table(verdicts: pd.DataFrame, held_out: pd.DataFrame) -> pd.DataFrame:
    """Agreement of the frozen fit with the mechanism's verdicts, overall (``__all__``) and by domain.

    ``verdicts``: one row per decisive scored pair (domain, winner, predicted_winner). ``held_out``: the fit's
    out-of-fold figures (domain, n_pairs, accuracy), ``__all__`` for the whole fit. Returns per domain: n_pairs,
    n_agree, agreement with its Wilson 95% interval, the fit's accuracy, its n and Wilson interval, and
    ``drift`` = the agreement's interval lies wholly below the fit's (null where the fit has no figure there).
    """
    frame = verdicts.assign(agree=(verdicts["winner"] == verdicts["predicted_winner"]).astype(int))
    by = frame.groupby("domain", sort=True)["agree"].agg(["size", "sum"]).reset_index()
    total = pd.DataFrame({"domain": [ALL_DOMAINS], "size": [len(frame)], "sum": [int(frame["agree"].sum())]})
    out = pd.concat([total, by], ignore_index=True).rename(columns={"size": "n_pairs", "sum": "n_agree"})
    out["agreement"] = np.where(out["n_pairs"] > 0, out["n_agree"] / out["n_pairs"].where(out["n_pairs"] > 0), np.nan)
    out["agreement_ci_low"], out["agreement_ci_high"] = wilson_interval(out["n_agree"], out["n_pairs"])
    fit = held_out[["domain", "n_pairs", "accuracy"]].rename(
        columns={"n_pairs": "fit_n_pairs", "accuracy": "fit_accuracy"}
    )
    out = out.merge(fit, on="domain", how="left")
    fit_k = np.round(out["fit_accuracy"] * out["fit_n_pairs"])
    out["fit_ci_low"], out["fit_ci_high"] = wilson_interval(fit_k, out["fit_n_pairs"].fillna(0))
    known = out["fit_ci_low"].notna() & out["agreement_ci_high"].notna()
    out["drift"] = pd.array(np.where(known, out["agreement_ci_high"] < out["fit_ci_low"], False), dtype="boolean")
    out.loc[~known, "drift"] = pd.NA
    return out[
        [
            "domain",
            "n_pairs",
            "n_agree",
            "agreement",
            "agreement_ci_low",
            "agreement_ci_high",
            "fit_n_pairs",
            "fit_accuracy",
            "fit_ci_low",
            "fit_ci_high",
            "drift",
        ]
    ]
