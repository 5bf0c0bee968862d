{{
    config(
        materialized='incremental',
        incremental_strategy=fit_history_strategy(),
        unique_key='fit_id',
        on_schema_change='append_new_columns'
    )
}}
-- History: one block of rows per fit_id; earlier fits stay (incremental on fit_id).
-- HMDR weights per mechanism x representation x domain x concept, with the paper's global lift.
-- domain = '__shared__' rows carry the shared vector b alone. CIs and selection frequency: within-domain
-- bootstrap (var hmdr_n_bootstrap; null when 0). control = 'none' for the plain fit, 'length' for the
-- length-controlled refit (var length_control; its weights read "at equal length"). feature_scale: the divisor of
-- the measure-rep columns (RMS of the transformed difference), so a raw-unit weight is total_weight / feature_scale.
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
