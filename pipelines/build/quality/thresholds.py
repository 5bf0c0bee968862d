"""The thresholds of the quality gates (:class:`QualityThresholds`), passed to dbt as vars (:meth:`gate_vars`).

The gates are dbt singular tests (``dbt_project/data-tests/gates/``) that read their threshold from a dbt var of
the same name; this module owns the values. A threshold of ``None`` disables its gate (dbt leaves it out, and the
run records it as skipped). ``min_domain_pairs`` is also a fit setting: its default is the dbt var in
``dbt_project/dbt_project.yml`` (the fit's owner), and a build that sets it (``preflens run --var
min_domain_pairs=10``) checks against the same value through :func:`thresholds_from_dbt_vars`.

The bounds of the invariants that ``dbt build`` tests (the lift bound ``max_abs_lift_pct``, the report's ``top_k``)
are dbt vars of the build itself, never set here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from pipelines.core.config import dbt_project_vars

#: dbt vars of a build that are also gate thresholds (same name), with the type the gate uses
SHARED_DBT_VARS: dict[str, type] = {"min_domain_pairs": int}

#: the var that makes the gates exist at all (dbt_project/macros/test_helpers.sql gate_enabled)
GATES_SWITCH = "quality_gates"


def _dbt_default(name: str) -> Any:
    """The default of a shared threshold: its dbt var in ``dbt_project.yml`` (the one owner)."""
    return SHARED_DBT_VARS[name](dbt_project_vars()[name])


@dataclass(frozen=True)
class QualityThresholds:
    """The gates' thresholds and the annotator they check.

    ``annotator``/``annotator_version`` name the active annotator (dbt vars of the same name; the build passes
    its own); when ``None`` they are taken from ``marts.fct_pair_concepts`` when it holds one annotator version,
    else dbt's defaults apply (``macros/active_annotator.sql``).
    """

    annotator: str | None = None
    annotator_version: str | None = None
    #: decisive raw.labels rows (winner a/b) allowed to have no annotation of the active annotator (so no row in
    #: the feature tables)
    max_labels_without_features: int | None = 0
    #: a domain needs this many decisive pairs to receive domain-specific weights (dbt var ``min_domain_pairs``)
    min_domain_pairs: int | None = _dbt_default("min_domain_pairs")
    #: share of the active annotator's swap-checked cells (``is_consistent`` not null) that were inconsistent
    max_swap_inconsistency_rate: float | None = 0.35
    #: per LLM model in use: share of annotation calls in ``raw.llm_cache`` that failed to parse
    max_parse_failure_rate: float | None = 0.05
    #: ``raw.llm_cache.error`` outcomes that count as parse failures (``None``: every ``status = 'failed'`` row)
    parse_failure_outcomes: tuple[str, ...] | None = ("malformed", "truncated", "incomplete", "refusal", "invalid")
    #: ``raw.llm_cache.stage`` values of the annotation calls (``None``: every stage, discovery included)
    llm_annotation_stages: tuple[str, ...] | None = ("relevance", "comp_ab", "comp_ba", "score", "score_a", "score_b")
    #: annotator names whose versions are LLM annotators (version ``llm-<prompt>:<model>``)
    llm_annotators: tuple[str, ...] = ("llm",)
    #: models whose calls count; ``None``: the model of the active LLM annotator version
    llm_models: tuple[str, ...] | None = None

    def gate_vars(self) -> dict[str, Any]:
        """The dbt ``--vars`` of the checks stage: the gates switched on, every threshold (``None`` stays null, which
        disables its gate), and the annotator when one is named."""
        out: dict[str, Any] = {GATES_SWITCH: True}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name in ("annotator", "annotator_version"):
                if value:
                    out[f.name] = value
                continue
            out[f.name] = list(value) if isinstance(value, tuple) else value
        return out


def thresholds_from_dbt_vars(dbt_vars: Mapping[str, object]) -> dict[str, Any]:
    """The thresholds a build's dbt vars set: ``{"min_domain_pairs": 8}`` for ``{"min_domain_pairs": "8", ...}``."""
    return {
        name: cast(dbt_vars[name])
        for name, cast in SHARED_DBT_VARS.items()
        if name in dbt_vars and str(dbt_vars[name]).strip() != ""
    }


def coerce_thresholds(th: QualityThresholds | Mapping[str, Any] | None) -> QualityThresholds:
    """``QualityThresholds`` from itself, a mapping of its fields (unknown keys raise), or ``None``."""
    if th is None:
        return QualityThresholds()
    if isinstance(th, QualityThresholds):
        return th
    unknown = set(th) - {f.name for f in fields(QualityThresholds)}
    if unknown:
        raise ValueError(f"unknown quality threshold(s): {sorted(unknown)}")
    return QualityThresholds(**th)
