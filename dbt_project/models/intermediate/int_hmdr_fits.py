"""Thin dbt wrapper: fit one HMDR per mechanism and representation, with the reference baselines.

All logic lives in py_models (fit_settings.FitSettings, fit_build.fit_build). The inputs are the wide feature
tables dbt pivots (int_pair_features_*) and the item texts. Returns one tall table; the fct_* marts split it by
``record_type``. The ``dbt.config.get`` calls are spelled out because dbt finds the keys it passes to a Python
model by parsing the file; they are FitSettings.VARS (tests/test_fit_runner.py checks it).

The fit's worker processes start first, so that they import the fitting code while this process does the same
(fit_build is imported after them, not at the top) and reads the inputs.
"""

from py_models._jobs import WorkerPool
from py_models.fit_settings import FitSettings

FIT_MODULE = "py_models.fit_job"


def model(dbt, session):
    dbt.config(materialized="table")
    settings = FitSettings.from_vars(
        {
            "build_id": dbt.config.get("build_id"),
            "representations": dbt.config.get("representations"),
            "cv_folds": dbt.config.get("cv_folds"),
            "min_domain_pairs": dbt.config.get("min_domain_pairs"),
            "hmdr_select": dbt.config.get("hmdr_select"),
            "hmdr_grid": dbt.config.get("hmdr_grid"),
            "hmdr_rule": dbt.config.get("hmdr_rule"),
            "hmdr_grid_domains": dbt.config.get("hmdr_grid_domains"),
            "hmdr_alpha": dbt.config.get("hmdr_alpha"),
            "hmdr_lambda_shared": dbt.config.get("hmdr_lambda_shared"),
            "hmdr_lambda_domain": dbt.config.get("hmdr_lambda_domain"),
            "length_control": dbt.config.get("length_control"),
            "fit_jobs": dbt.config.get("fit_jobs"),
            "hmdr_n_bootstrap": dbt.config.get("hmdr_n_bootstrap"),
            "max_abs_lift_pct": dbt.config.get("max_abs_lift_pct"),
            "hmdr_solver": dbt.config.get("hmdr_solver"),
        }
    )
    pool = WorkerPool(settings.n_jobs, preload=(FIT_MODULE,))  # its workers import the fitting code meanwhile
    try:
        from py_models.fit_build import fit_build

        features = {
            "measure": dbt.ref("int_pair_features_measure"),
            "comp": dbt.ref("int_pair_features_comp"),
            "score": dbt.ref("int_pair_features_score"),
        }
        texts = dbt.ref("int_item_texts").df()
        tall = fit_build({r: features[r].df() for r in settings.representations}, texts, settings, pool=pool)
    finally:
        pool.close()
    return tall
