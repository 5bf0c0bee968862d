"""Thin dbt wrapper: the joint mechanism-contrast fits of one build (docs/contrasts.md).

All logic lives in py_models (contrast_build.fit_contrasts, contrast.MechanismContrast). The input is the wide
feature table of the lead representation: the first of ``representations`` that int_hmdr_fits fitted (so this
model runs in the `fit` stage, after the HMDR fits). The ``dbt.config.get`` calls are spelled out because dbt
finds the keys it passes to a Python model by parsing the file.
"""

from py_models.contrast_build import ContrastSettings, fit_contrasts
from py_models.features import design_frame
from py_models.fit_settings import FitSettings
from py_models.representations import representation_settings


def model(dbt, session):
    dbt.config(materialized="table")
    fit = FitSettings.from_vars(
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
    settings = ContrastSettings(
        min_shared_items=int(dbt.config.get("contrast_min_shared_items")),
        min_domain_items=int(dbt.config.get("contrast_min_domain_items")),
        n_bootstrap=fit.n_bootstrap,
        fdr=float(dbt.config.get("contrast_fdr")),
        select=fit.select,
        n_folds=fit.n_folds,
        grid=fit.grid,
        grid_domains=fit.grid_domains,
        max_abs_weight=fit.max_abs_weight,
        alpha=fit.alpha,
        lambda_shared=fit.lambda_shared,
        lambda_domain=fit.lambda_domain,
        solver=fit.solver,
    )
    fitted = dbt.ref("int_hmdr_fits").filter("record_type = 'coefficients'").project("representation").distinct()
    fitted = set(fitted.df()["representation"].astype(str))
    lead = next((r for r in fit.representations if r in fitted), None)
    features = {
        "measure": dbt.ref("int_pair_features_measure"),
        "comp": dbt.ref("int_pair_features_comp"),
        "score": dbt.ref("int_pair_features_score"),
    }
    frame, concept_cols = design_frame(features[lead or fit.representations[0]].df())
    out = fit_contrasts(
        frame,
        concept_cols if lead else [],
        representation=lead or fit.representations[0],
        standardize=representation_settings(lead or fit.representations[0]).standardize,
        settings=settings,
    )
    out.insert(0, "fit_id", fit.fit_id)
    return out
