"""The concept representations (one owner for their names and settings; pure, no heavy imports).

* ``measure``: T(measure_a) - T(measure_b) of the raw measurements (concepts that have one; T from the catalog),
  standardised per concept by the fit (RMS on the training part). The lead representation for offline concepts.
* ``comp``: the paper's comparative {-1, 0, +1} (method.md §3.2).
* ``score``: the paper's difference of 1..7 scores (method.md §3.3).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class Representation:
    name: str
    value_column: str  # column of int_item_concepts / the long annotations
    standardize: bool  # divide each concept column by its training RMS in the fit
    measured_only: bool  # only concepts with a non-null value (raw measurements)

    @property
    def feature_table(self) -> str:
        """The dbt model holding its wide concept-by-pair features (the fit's input): ``int_pair_features_<name>``."""
        return f"int_pair_features_{self.name}"


REPRESENTATIONS: dict[str, Representation] = {
    "measure": Representation("measure", "measure_diff", standardize=True, measured_only=True),
    "comp": Representation("comp", "comp_value", standardize=False, measured_only=False),
    "score": Representation("score", "score_diff", standardize=False, measured_only=False),
}
VALUE_COLUMN: dict[str, str] = {k: r.value_column for k, r in REPRESENTATIONS.items()}
DEFAULT_REPRESENTATION = "measure"  # what the summary and report lead with when it was fitted, else "comp"


def lead_representation(available: Iterable[str]) -> str:
    """The representation readers lead with: ``measure`` when it was fitted, else ``comp``, else any."""
    avail = sorted(set(available))
    for name in (DEFAULT_REPRESENTATION, "comp"):
        if name in avail:
            return name
    return avail[0] if avail else "comp"


def representation_settings(name: str) -> Representation:
    """The settings of representation ``name`` (ValueError for an unknown one)."""
    if name not in REPRESENTATIONS:
        raise ValueError(f"unknown representation {name!r}; choose from {sorted(REPRESENTATIONS)}")
    return REPRESENTATIONS[name]


REPRESENTATION_NAMES: tuple[str, ...] = tuple(REPRESENTATIONS)
