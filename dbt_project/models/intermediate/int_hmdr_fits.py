"""Thin dbt wrapper: fit one HMDR per mechanism and representation.

All logic lives in py_models (features.pivot_features, fit_job.fit_mechanisms, fit_output.to_tall).
Returns one tall table; the fct_* marts split it by ``record_type``.
"""

from py_models.features import pivot_features
from py_models.fit_job import fit_mechanisms
from py_models.fit_output import to_tall

VALUE_COLUMN = {"comp": "comp_value", "score": "score_diff"}


def model(dbt, session):
    dbt.config(materialized="table")
    labels_rel = dbt.ref("int_labelled_pairs")
    concepts_rel = dbt.ref("int_item_concepts")
    labels = labels_rel.df()
    concepts = concepts_rel.df()
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
    # model selection over the paper's 9-config grid (then the fixed lambdas above are ignored)
    select = str(dbt.config.get("hmdr_select")).strip().lower() in ("true", "1", "yes")
    grid_domains = dbt.config.get("hmdr_grid_domains")
    grid_domains = str(grid_domains or "").strip()
    grid_domains = int(grid_domains) if grid_domains else None
    n_bootstrap = int(dbt.config.get("hmdr_n_bootstrap"))
    results = {}
    for representation in str(dbt.config.get("representations")).split(","):
        representation = representation.strip()
        features, concept_cols = pivot_features(labels, concepts, VALUE_COLUMN[representation])
        results[representation] = fit_mechanisms(
            features,
            concept_cols,
            representation=representation,
            n_folds=int(dbt.config.get("cv_folds")),
            select=select,
            grid_domains=grid_domains,
            n_bootstrap=n_bootstrap,
            **params,
        )
    return to_tall(results, fit_id=str(dbt.config.get("build_id")))
