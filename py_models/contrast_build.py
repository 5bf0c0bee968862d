"""One build's mechanism contrasts on dbt's wide feature table (pure, no I/O): which pairs, which items, one
:class:`~py_models.contrast.MechanismContrast` per mechanism pair and scope, Benjamini-Hochberg per family.

Rule (docs/contrasts.md): every pair of mechanisms that judged at least ``min_shared_items`` of the same items
decisively is fitted on those shared items only (each item once per mechanism), over all domains (scope
``__all__``, resamples stratified by domain), and again within each domain where they share at least
``min_domain_items`` items. The family of the FDR correction is one fit: one mechanism pair x scope, over its
concepts.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations

import numpy as np
import pandas as pd

from py_models.contrast import CONTRAST_STATISTICS, MechanismContrast, benjamini_hochberg
from py_models.fit_job import rms_scale
from py_models.mart_keys import ALL_DOMAINS

__all__ = ["ContrastSettings", "ALL_DOMAINS", "CONTRAST_OUTPUT_COLUMNS", "fit_contrasts", "contrast_pairs"]

CONTRAST_OUTPUT_COLUMNS = [
    "mechanism_a",
    "mechanism_type_a",
    "mechanism_b",
    "mechanism_type_b",
    "representation",
    "domain",
    *CONTRAST_STATISTICS,
    "p_adjusted",
    "distinguishable",
    "n_shared_items",
    "n_pairs_a",
    "n_pairs_b",
    "n_bootstrap",
    "ci_level",
    "fdr",
    "feature_scale",
    "alpha",
    "lambda_shared",
    "lambda_domain",
    "pooling",
]


@dataclass(frozen=True)
class ContrastSettings:
    """What :func:`fit_contrasts` needs besides the data (the dbt vars are in docs/contrasts.md)."""

    min_shared_items: int = 50
    min_domain_items: int = 50
    n_bootstrap: int = 200
    level: float = 0.95
    fdr: float = 0.05
    select: bool = True
    n_folds: int = 5
    grid: str = "pooling"
    rule: str = "min_log_loss"
    grid_domains: int | None = 8
    max_abs_weight: float = 10.0
    alpha: float | None = None
    lambda_shared: float | None = None
    lambda_domain: float | None = None
    solver: str = "cd"
    relax: float | None = 0.01
    seed: int = 0


def contrast_pairs(frame: pd.DataFrame, min_shared_items: int) -> list[tuple[str, str, int]]:
    """``(a, b, n_shared_items)`` for every mechanism pair (a < b by name) with at least ``min_shared_items``
    items both judged decisively, in name order."""
    items = {str(m): set(g["item_id"]) for m, g in frame.groupby("mechanism", sort=True)}
    out = []
    for a, b in combinations(sorted(items), 2):
        n = len(items[a] & items[b])
        if n >= max(int(min_shared_items), 1):
            out.append((str(a), str(b), n))
    return out


def fit_contrasts(
    frame: pd.DataFrame, concept_cols: list[str], *, representation: str, standardize: bool, settings: ContrastSettings
) -> pd.DataFrame:
    """CONTRAST_OUTPUT_COLUMNS for every pair of :func:`contrast_pairs` and scope (``__all__``, then each domain
    with enough shared items). ``frame``: the design frame (``py_models.features.design_frame``) of one
    representation; ``standardize``: divide each concept by its RMS over the fit's rows (measure-rep)."""
    if not concept_cols:
        return pd.DataFrame(columns=CONTRAST_OUTPUT_COLUMNS)
    frame = frame.sort_values("label_id", kind="stable").reset_index(drop=True)
    types = {str(k): str(v) for k, v in frame.groupby("mechanism")["mechanism_type"].first().items()}
    results = []
    for a, b, _ in contrast_pairs(frame, settings.min_shared_items):
        both = frame[frame["mechanism"].isin([a, b])]
        shared = set(both.loc[both["mechanism"] == a, "item_id"]) & set(both.loc[both["mechanism"] == b, "item_id"])
        rows = both[both["item_id"].isin(shared)]
        # an item's domain is its own (int_labelled_pairs takes it from the item): one stratum per item
        scopes: list[tuple[str, pd.DataFrame]] = [(ALL_DOMAINS, rows)]
        per_domain = rows.drop_duplicates("item_id")["domain"].value_counts()
        for domain in sorted(per_domain.index[per_domain >= settings.min_domain_items].tolist()):
            scopes.append((str(domain), rows[rows["domain"] == domain]))
        for scope, part in scopes:
            results.append(_fit_one(part, concept_cols, a, b, scope, types, representation, standardize, settings))
    if not results:
        return pd.DataFrame(columns=CONTRAST_OUTPUT_COLUMNS)
    return pd.concat(results, ignore_index=True)[CONTRAST_OUTPUT_COLUMNS]


def _fit_one(
    part: pd.DataFrame,
    concept_cols: list[str],
    a: str,
    b: str,
    scope: str,
    types: dict[str, str],
    representation: str,
    standardize: bool,
    settings: ContrastSettings,
) -> pd.DataFrame:
    """One joint fit (mechanisms a and b on their shared items of ``scope``) -> its contrast rows."""
    X_raw = part[concept_cols].to_numpy(dtype=np.float64)
    scale = rms_scale(X_raw) if standardize else np.ones(len(concept_cols))
    model = MechanismContrast(
        select=settings.select,
        grid=settings.grid,
        rule=settings.rule,
        n_folds=settings.n_folds,
        seed=settings.seed,
        grid_domains=settings.grid_domains,
        max_abs_weight=settings.max_abs_weight,
        alpha=settings.alpha,
        lambda_shared=settings.lambda_shared,
        lambda_domain=settings.lambda_domain,
        n_bootstrap=settings.n_bootstrap,
        level=settings.level,
        solver=settings.solver,
        relax=settings.relax,
    ).fit(
        X_raw / scale,
        part["winner"].to_numpy(dtype=object),
        mechanisms=part["mechanism"].to_numpy(dtype=object),
        items=part["item_id"].to_numpy(dtype=object),
        strata=part["domain"].astype(str).to_numpy(dtype=object) if scope == ALL_DOMAINS else None,
    )
    table = model.contrast_table(concept_cols)
    table["p_adjusted"] = benjamini_hochberg(table["p_value"])
    excludes_zero = (table["ci_low"] > 0) | (table["ci_high"] < 0)
    table["distinguishable"] = (table["p_adjusted"] <= settings.fdr) & excludes_zero
    est = model.estimator_
    config = getattr(est, "selected_config_", None) or {}
    table = table.assign(
        mechanism_type_a=types.get(a),
        mechanism_type_b=types.get(b),
        representation=representation,
        domain=scope,
        n_shared_items=int(model.n_items_),
        n_pairs_a=int(model.n_pairs_.get(a, 0)),
        n_pairs_b=int(model.n_pairs_.get(b, 0)),
        ci_level=float(settings.level),
        fdr=float(settings.fdr),
        feature_scale=np.tile(scale, len(table) // len(concept_cols)),
        alpha=float(est.alpha_),
        lambda_shared=float(est.lambda_shared_),
        lambda_domain=float(est.lambda_domain_),
        pooling=float(config.get("pooling", est.lambda_domain_ / est.lambda_shared_)),
    )
    return table
