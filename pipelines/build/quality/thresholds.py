"""The tunable bounds and switches of the quality gates (:class:`QualityThresholds`).

Bounds that dbt also uses (``max_abs_lift_pct``, ``min_domain_pairs``, ``top_k``) are dbt vars with one owner,
``dbt_project/dbt_project.yml``: the defaults here are read from it, and a build that overrides one of them
(``preflens run --var top_k=5``) passes the same value to the gates through :func:`thresholds_from_dbt_vars`.
Every other threshold exists only here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from pipelines.core.config import dbt_project_vars

#: dbt vars that are also quality thresholds (same name), with the type the gate uses
SHARED_DBT_VARS: dict[str, type] = {"max_abs_lift_pct": float, "min_domain_pairs": int, "top_k": int}


def _dbt_default(name: str) -> Any:
    """The default of a shared threshold: its dbt var in ``dbt_project.yml`` (the one owner)."""
    return SHARED_DBT_VARS[name](dbt_project_vars()[name])


@dataclass(frozen=True)
class QualityThresholds:
    """Tunable bounds and switches of the suites.

    ``max_abs_lift_pct`` bounds ``|shared/deviation/global_lift_pct|`` of ``fct_concept_effects``. Global
    lift is ``50 * weight`` (py_models/lift.py), so the default (dbt var ``max_abs_lift_pct``, 500) means
    ``|weight| <= 10``. Real
    strong concepts reach weights of 2-4 on the sample (lift 100-200%); 10 on a ternary feature means
    near-perfect separation or a numerical blow-up, which must not be published. ``max_local_lift_pct``
    is the upper bound of ``local_lift_pct`` (``None``: none; it is a relative change in P(a), so it is
    >= -100 always but unbounded above).
    ``annotator``/``annotator_version`` name the active annotator; when ``None`` it is taken from the
    ``(annotator, annotator_version)`` pairs present in ``marts.fct_pair_concepts``.
    """

    max_abs_lift_pct: float | None = _dbt_default("max_abs_lift_pct")
    max_local_lift_pct: float | None = None
    annotator: str | None = None
    annotator_version: str | None = None
    single_annotator: bool = True
    feature_nulls_allowed: bool = False
    feature_columns_match_concepts: bool = True
    #: py_models/fit_job.py predicts 'tie' when prob_a == 0.5 exactly (scored as 0.5 accuracy credit)
    predicted_winner_values: tuple[str, ...] = ("a", "b", "tie")
    #: decisive raw.labels rows (winner a/b) allowed to have no annotation of the active annotator
    #: (so no row in the feature tables); ``None`` disables the gate
    max_labels_without_features: int | None = 0
    #: a domain needs this many decisive pairs to receive domain-specific weights (dbt var ``min_domain_pairs``)
    min_domain_pairs: int | None = _dbt_default("min_domain_pairs")
    #: per annotator version in use: share of swap-checked cells (``is_consistent`` not null) that were inconsistent
    max_swap_inconsistency_rate: float | None = 0.35
    #: per LLM model in use: share of annotation calls in ``raw.llm_cache`` that failed to parse
    max_parse_failure_rate: float | None = 0.05
    #: ``raw.llm_cache.error`` outcomes that count as parse failures (``None``: every ``status = 'failed'`` row)
    parse_failure_outcomes: tuple[str, ...] | None = ("malformed", "truncated", "incomplete", "refusal", "invalid")
    #: ``raw.llm_cache.stage`` values of the annotation calls (``None``: every stage, discovery included)
    llm_annotation_stages: tuple[str, ...] | None = ("relevance", "comp_ab", "comp_ba", "score", "score_a", "score_b")
    #: annotator names whose versions are LLM annotators (version ``llm-<prompt>:<model>``)
    llm_annotators: tuple[str, ...] = ("llm",)
    #: models whose calls count; ``None``: inferred from the LLM annotator versions in use
    llm_models: tuple[str, ...] | None = None
    #: ``rpt_top_concepts`` keeps at most this many ranks per group (dbt var ``top_k``); ``None``: no upper bound
    top_k: int | None = _dbt_default("top_k")
    #: ``dim_concepts.definition`` must match this (Python ``re.match`` semantics); ``None`` disables
    definition_regex: str | None = r"^A high score indicates \S.*; A low score indicates \S.*$"


def thresholds_from_dbt_vars(dbt_vars: Mapping[str, object]) -> dict[str, Any]:
    """The thresholds a build's dbt vars set: ``{"top_k": 5}`` for ``{"top_k": "5", "cv_folds": "3"}``."""
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
