"""One build's fit: every representation's HMDR fits with their reference baselines, as one tall table (pure).

Shared by the dbt Python model ``int_hmdr_fits`` (DuckDB) and ``pipelines/build/fit_runner.py`` (Spark): both read
the same tables (``int_pair_features_<representation>``, ``int_item_texts``) and call :func:`fit_build` with the
same :class:`~py_models.fit_settings.FitSettings`.
"""

from __future__ import annotations

from collections.abc import Mapping

import pandas as pd

from py_models._jobs import WorkerPool
from py_models.features import design_frame
from py_models.fit_job import LENGTH_CONTROL, NO_CONTROL, plan_fit, run_plans
from py_models.fit_output import skipped_representation, to_tall
from py_models.fit_settings import FitSettings
from py_models.representations import representation_settings
from py_models.style_baseline import pair_style_differences

__all__ = ["fit_build"]


def fit_build(
    features: Mapping[str, pd.DataFrame],
    texts: pd.DataFrame,
    settings: FitSettings,
    *,
    pool: WorkerPool | None = None,
) -> pd.DataFrame:
    """The tall fit table (``fit_output.TALL_SCHEMA``) of ``settings.representations``.

    ``features[representation]`` is that representation's wide feature table; ``texts`` holds item_id, prompt,
    response_a and response_b of every labelled item (the reference style baselines). The lead representation
    (the first one with a concept column) gets the bootstrap intervals and the length-controlled refit; a
    representation without concept columns (measure-rep on LLM annotations) gets one ``skipped`` row per
    mechanism. Every representation is fitted in one run of ``settings.n_jobs`` processes (or on ``pool``, whose
    workers the caller may have started early), one call per mechanism, so the reference style models, which do
    not depend on the representation, are fitted once per mechanism.
    """
    reference = pair_style_differences(texts["prompt"], texts["response_a"], texts["response_b"])
    reference.index = texts["item_id"].to_numpy()
    results: dict[str, dict[str, pd.DataFrame]] = {}
    plans = []
    lead = None
    for representation in settings.representations:
        frame, concept_cols = design_frame(features[representation])
        if not concept_cols:
            results[representation] = skipped_representation(frame, representation)
            continue
        lead = lead or representation
        is_lead = representation == lead
        plans.append(
            plan_fit(
                frame,
                concept_cols,
                representation=representation,
                n_folds=settings.n_folds,
                select=settings.select,
                grid=settings.grid,
                rule=settings.rule,
                grid_domains=settings.grid_domains,
                n_bootstrap=settings.n_bootstrap if is_lead else 0,
                standardize=representation_settings(representation).standardize,
                reference=reference,
                control=LENGTH_CONTROL if settings.length_control and is_lead else NO_CONTROL,
                max_abs_weight=settings.max_abs_weight,
                min_domain_samples=settings.min_domain_pairs,
                alpha=settings.alpha,  # None: 1/|D|
                lambda_shared=settings.lambda_shared,
                lambda_domain=settings.lambda_domain,
                solver=settings.solver,
            )
        )
    for plan, frames in zip(plans, run_plans(plans, settings.n_jobs, pool)):
        results[plan.representation] = frames
    return to_tall({r: results[r] for r in settings.representations}, fit_id=settings.fit_id)
