{{ config(materialized='view') }}
-- History: one block of rows per fit_id, every published build's fit (the store int_fit_history_concept_effects
-- keeps them all; a failed or interrupted build's fit is never shown: macros/fit_lineage.sql).
-- HMDR weights per mechanism x representation x domain x concept, with the paper's global lift.
-- domain = '__shared__' rows carry the shared vector b alone. CIs and selection frequency: within-domain
-- bootstrap (var hmdr_n_bootstrap; null when 0). control = 'none' for the plain fit, 'length' for the
-- length-controlled refit (var length_control; its weights read "at equal length"). feature_scale: the divisor of
-- the measure-rep columns (RMS of the transformed difference), so a raw-unit weight is total_weight / feature_scale.
with fits as (
    {{ shown_fits(ref('int_fit_history_concept_effects')) }}
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
