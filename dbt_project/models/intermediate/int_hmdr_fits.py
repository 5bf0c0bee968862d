"""Thin dbt wrapper: fit one HMDR per mechanism and representation, with the reference baselines.

All logic lives in py_models (features.pivot_features, style_baseline.pair_style_differences,
fit_job.fit_mechanisms, fit_output.to_tall). Returns one tall table; the fct_* marts split it by ``record_type``.
"""

from py_models.features import VALUE_COLUMN, pivot_features, representation_settings
from py_models.fit_job import LENGTH_CONTROL, NO_CONTROL, fit_mechanisms
from py_models.fit_output import to_tall, skipped_representation
from py_models.style_baseline import pair_style_differences


def model(dbt, session):
    dbt.config(materialized="table")
    labels = dbt.ref("int_labelled_pairs").df()
    concepts = dbt.ref("int_item_concepts").df()
    texts = dbt.ref("int_item_texts").df()
    reference = pair_style_differences(texts["prompt"], texts["response_a"], texts["response_b"])
    reference.index = texts["item_id"].to_numpy()
    params = {
        "min_domain_samples": int(dbt.config.get("min_domain_pairs")),
        "lambda_shared": float(dbt.config.get("hmdr_lambda_shared")),
        "lambda_domain": float(dbt.config.get("hmdr_lambda_domain")),
    }
    # bare dbt.config.get() calls: dbt only passes keys its AST parser finds, and it does not look inside `x or y`
    alpha = dbt.config.get("hmdr_alpha")
    alpha = str(alpha or "").strip()
    if alpha:
        params["alpha"] = float(alpha)
    select = str(dbt.config.get("hmdr_select")).strip().lower() in ("true", "1", "yes")
    grid = str(dbt.config.get("hmdr_grid")).strip()
    rule = str(dbt.config.get("hmdr_rule")).strip()
    grid_domains = dbt.config.get("hmdr_grid_domains")
    grid_domains = str(grid_domains or "").strip()
    grid_domains = int(grid_domains) if grid_domains else None
    n_bootstrap = int(dbt.config.get("hmdr_n_bootstrap"))
    length_control = str(dbt.config.get("length_control")).strip().lower() in ("true", "1", "yes")
    n_jobs = int(dbt.config.get("fit_jobs"))
    # the selection never picks weights the publication gate would reject: lift = 50 * weight
    max_abs_weight = float(dbt.config.get("max_abs_lift_pct")) / 50.0
    results = {}
    lead = None  # the first representation actually fitted: its bootstrap intervals and length-controlled refit
    for representation in str(dbt.config.get("representations")).split(","):
        representation = representation.strip()
        features, concept_cols = pivot_features(labels, concepts, VALUE_COLUMN[representation],
                                                measured_only=representation_settings(representation).measured_only)
        if not concept_cols:  # e.g. measure-rep on LLM annotations, which have no raw measurements
            results[representation] = skipped_representation(labels, representation)
            continue
        lead = lead or representation
        results[representation] = fit_mechanisms(
            features,
            concept_cols,
            representation=representation,
            n_folds=int(dbt.config.get("cv_folds")),
            select=select,
            grid=grid,
            rule=rule,
            grid_domains=grid_domains,
            # bootstrap intervals for the lead representation (what the summary and report show); 0 for the others
            n_bootstrap=n_bootstrap if representation == lead else 0,
            standardize=representation_settings(representation).standardize,
            reference=reference,
            # the length-controlled refit only for the lead representation (the first one fitted)
            control=LENGTH_CONTROL if length_control and representation == lead else NO_CONTROL,
            n_jobs=n_jobs,
            max_abs_weight=max_abs_weight,
            **params,
        )
    return to_tall(results, fit_id=str(dbt.config.get("build_id")))
