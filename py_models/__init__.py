"""preflens py_models: pure estimators and explanation maths (no I/O)."""

from .explain import concept_contributions, global_lift_pct, local_lift
from .fit_job import fit_mechanisms
from .hmdr import HMDRClassifier, default_hyperparameters

__all__ = [
    "HMDRClassifier",
    "default_hyperparameters",
    "local_lift",
    "global_lift_pct",
    "concept_contributions",
    "fit_mechanisms",
]
