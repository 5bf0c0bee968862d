{{ config(materialized='view') }}
-- History: one block of rows per fit_id, every published build's contrast fits (the store
-- int_fit_history_mechanism_contrasts keeps them all; a failed or interrupted build's fit is never shown:
-- macros/fit_lineage.sql). Grain: fit x mechanism pair (mechanism_a < mechanism_b) x representation x domain x
-- concept. estimate = delta_a - delta_b of the joint HMDR over the pair (docs/contrasts.md); lifts are 50 x weights.
with fits as (
    {{ shown_fits(ref('int_fit_history_mechanism_contrasts')) }}
)

select
    fit_id,
    mechanism_a,
    mechanism_type_a,
    mechanism_b,
    mechanism_type_b,
    representation,
    domain,
    concept,
    weight_a,
    weight_b,
    estimate,
    ci_low,
    ci_high,
    50.0 * estimate as contrast_lift_pct,
    50.0 * ci_low as contrast_lift_ci_low,
    50.0 * ci_high as contrast_lift_ci_high,
    standard_error,
    selection_frequency,
    p_value,
    p_adjusted,
    distinguishable,
    n_shared_items,
    n_pairs_a,
    n_pairs_b,
    n_bootstrap,
    ci_level,
    fdr,
    feature_scale,
    alpha,
    lambda_shared,
    lambda_domain,
    pooling
from fits
