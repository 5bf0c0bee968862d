{{
    config(
        materialized='incremental',
        incremental_strategy=fit_history_strategy(),
        unique_key='fit_id',
        on_schema_change='append_new_columns'
    )
}}
-- History store of fct_concept_effects: one block of rows per fit_id, every fit kept (incremental on fit_id),
-- including fits of builds that were never published. The mart shows the published ones (macros/fit_lineage.sql).
with new_fits as (
    select
        fit_id,
        mechanism,
        mechanism_type,
        representation,
        domain,
        concept,
        shared_weight,
        domain_deviation,
        total_weight,
        shared_lift_pct,
        deviation_lift_pct,
        global_lift_pct,
        cast(n_pairs as bigint) as n_pairs,
        cast(has_domain_weights as boolean) as has_domain_weights,
        total_weight_ci_low,
        total_weight_ci_high,
        global_lift_ci_low,
        global_lift_ci_high,
        selection_frequency,
        cast(n_bootstrap as bigint) as n_bootstrap,
        control,
        feature_scale
    from {{ hmdr_fits() }}
    where record_type = 'coefficients'
),

fits as (
    select * from new_fits
    {{- legacy_fit_history('fct_concept_effects', 'new_fits') }}
)

select
    fit_id,
    mechanism,
    mechanism_type,
    representation,
    domain,
    concept,
    shared_weight,
    domain_deviation,
    total_weight,
    shared_lift_pct,
    deviation_lift_pct,
    global_lift_pct,
    n_pairs,
    has_domain_weights,
    total_weight_ci_low,
    total_weight_ci_high,
    global_lift_ci_low,
    global_lift_ci_high,
    selection_frequency,
    n_bootstrap,
    control,
    feature_scale
from fits
