"""Turn long item x concept annotations into the per-pair design matrix (pure, no I/O)."""

from __future__ import annotations

import pandas as pd

from py_models.representations import (  # noqa: F401  (re-exported for the dbt model)
    DEFAULT_REPRESENTATION,
    REPRESENTATIONS,
    VALUE_COLUMN,
    lead_representation,
    representation_settings,
)

PAIR_KEYS = ["label_id", "item_id", "mechanism", "mechanism_type", "domain", "winner"]


def pivot_features(
    labels: pd.DataFrame, concepts: pd.DataFrame, value_col: str, *, measured_only: bool = False
) -> tuple[pd.DataFrame, list[str]]:
    """Join labelled pairs to their item's concept values, one column per concept.

    ``labels`` holds PAIR_KEYS; ``concepts`` holds item_id, concept and ``value_col``.
    A concept missing for an item (e.g. not annotated) becomes 0, the paper's value for
    "not relevant". Concept columns are sorted by name for a stable design matrix. ``measured_only`` keeps
    only concepts with at least one non-null value (measure-rep: concepts with a raw measurement).
    """
    missing = [c for c in PAIR_KEYS if c not in labels.columns]
    if missing:
        raise ValueError(f"labels frame lacks columns {missing}")
    if measured_only:
        concepts = concepts[concepts[value_col].notna()]
    if concepts.empty:
        return labels[PAIR_KEYS].copy(), []
    wide = concepts.pivot_table(index="item_id", columns="concept", values=value_col, aggfunc="first")
    concept_cols = sorted(str(c) for c in wide.columns)
    wide = wide.reindex(columns=concept_cols).fillna(0).astype(float).reset_index()
    out = labels[PAIR_KEYS].merge(wide, on="item_id", how="left")
    out[concept_cols] = out[concept_cols].fillna(0.0)
    return out, concept_cols
