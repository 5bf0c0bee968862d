"""preflens py_models: pure estimators and explanation maths (no I/O).

Public names are imported lazily, so light modules (``py_models.representations``) load without scikit-learn.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "HMDRClassifier": "hmdr",
    "default_hyperparameters": "hmdr",
    "local_lift": "lift",
    "global_lift_pct": "lift",
    "concept_contributions": "lift",
    "fit_mechanisms": "fit_job",
}
__all__ = list(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
