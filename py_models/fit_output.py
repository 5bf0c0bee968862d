"""Combine fit-job frames into the fixed-schema tall table the dbt marts split (pure, no I/O)."""

from __future__ import annotations

from typing import Any, cast

import pandas as pd

# column -> pandas dtype; every column exists in the tall output, whatever record types are present
TALL_SCHEMA: dict[str, str] = {
    "fit_id": "string",
    "row_id": "int64",
    "record_type": "string",
    "mechanism": "string",
    "mechanism_type": "string",
    "representation": "string",
    "domain": "string",
    "concept": "string",
    "label_id": "string",
    "item_id": "string",
    "protocol": "string",
    "reason": "string",
    "predicted_winner": "string",
    "actual_winner": "string",
    "shared_weight": "float64",
    "domain_deviation": "float64",
    "total_weight": "float64",
    "shared_lift_pct": "float64",
    "deviation_lift_pct": "float64",
    "global_lift_pct": "float64",
    "n_pairs": "float64",
    "has_domain_weights": "boolean",
    "fold": "float64",
    "prob_a": "float64",
    "is_correct": "boolean",
    "used_domain_weights": "boolean",
    "accuracy": "float64",
    "log_loss": "float64",
    "value": "float64",
    "contribution": "float64",
    "local_lift_pct": "float64",
    "alpha": "float64",
    "lambda_shared": "float64",
    "lambda_domain": "float64",
    "n_train": "float64",
    "total_weight_ci_low": "float64",
    "total_weight_ci_high": "float64",
    "global_lift_ci_low": "float64",
    "global_lift_ci_high": "float64",
    "selection_frequency": "float64",
    "n_bootstrap": "float64",
    "selection": "string",
    "duality_gap": "float64",
    "variant": "string",
    "control": "string",
    "feature_scale": "float64",
    "pooling": "float64",
    "cv_log_loss": "float64",
    "fitted_at": "datetime64[us]",
}


def skipped_representation(labels: pd.DataFrame, representation: str) -> dict[str, pd.DataFrame]:
    """Fit-job frames for a representation with no concept column: one ``skipped`` row per mechanism."""
    rows = labels.groupby(["mechanism", "mechanism_type"], as_index=False).size().rename(columns={"size": "n_pairs"})
    rows["n_decisive"] = rows["n_pairs"]
    rows["representation"] = representation
    rows["reason"] = f"no concept has a {representation}-rep value (e.g. LLM annotations have no raw measurements)"
    return {"skipped": rows}


def to_tall(
    frames_by_representation: dict[str, dict[str, pd.DataFrame]], fit_id: str, fitted_at: pd.Timestamp | None = None
) -> pd.DataFrame:
    """Stack ``{representation: {record_type: frame}}`` into one frame with TALL_SCHEMA columns; ``fitted_at``
    (default: now, UTC) orders fits in time (``dim_latest_fit``), whatever their ids."""
    parts = []
    for representation, frames in frames_by_representation.items():
        for record_type, frame in frames.items():
            if frame is None or len(frame) == 0:
                continue
            part = frame.copy()
            part["record_type"] = record_type
            if "representation" not in part.columns:
                part["representation"] = representation
            parts.append(part)
    tall = pd.concat(parts, ignore_index=True, sort=False) if parts else pd.DataFrame()
    tall["fit_id"] = fit_id
    tall["fitted_at"] = fitted_at if fitted_at is not None else pd.Timestamp.now(tz="UTC").tz_localize(None)
    tall["row_id"] = range(len(tall))
    for col, dtype in TALL_SCHEMA.items():
        if col not in tall.columns:  # no frame has it (e.g. no local explanations): all missing, in its dtype
            tall[col] = pd.Series(index=tall.index, dtype=cast(Any, dtype))  # NaN / <NA> / NaT as the dtype has
        else:
            tall[col] = tall[col].astype(cast(Any, dtype))  # a dtype name from TALL_SCHEMA
    return tall[list(TALL_SCHEMA)]
