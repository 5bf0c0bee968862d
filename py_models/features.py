"""The fit's design matrix from dbt's wide feature table (pure, no I/O).

dbt owns the pivot: ``int_pair_features_<representation>`` (macro ``concept_feature_table``) holds one row per
decisive labelled pair, the ``PAIR_KEYS`` columns and one column per concept, 0 where a concept is "not
relevant" or was not annotated for the item. Here the table only becomes the fit's input frame.
"""

from __future__ import annotations

import pandas as pd

from py_models.representations import (  # noqa: F401  (re-exported for the dbt model)
    DEFAULT_REPRESENTATION,
    REPRESENTATIONS,
    VALUE_COLUMN,
    lead_representation,
    representation_settings,
)

__all__ = ["PAIR_KEYS", "design_frame"]

PAIR_KEYS = ["label_id", "item_id", "mechanism", "mechanism_type", "domain", "winner"]


def design_frame(wide: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """``(frame, concept_cols)`` of a wide feature table: the pair keys, then the concept columns (every
    non-key column) sorted by name as float64, so the design matrix does not depend on the engine's column
    order. A table without concept columns (e.g. measure-rep on LLM annotations) gives ``[]``."""
    missing = [c for c in PAIR_KEYS if c not in wide.columns]
    if missing:
        raise ValueError(f"wide feature table lacks columns {missing}")
    concept_cols = sorted(str(c) for c in wide.columns if c not in PAIR_KEYS)
    frame = wide[PAIR_KEYS].copy()
    if concept_cols:
        frame = pd.concat([frame, wide[concept_cols].astype("float64")], axis=1)
    return frame, concept_cols
