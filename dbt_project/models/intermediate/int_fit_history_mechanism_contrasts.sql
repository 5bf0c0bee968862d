{{
    config(
        materialized='incremental',
        incremental_strategy=fit_history_strategy(),
        unique_key='fit_id',
        on_schema_change='append_new_columns'
    )
}}
-- History store of fct_mechanism_contrasts: one block of rows per fit_id, every fit kept (incremental on fit_id),
-- including fits of builds that were never published. The mart shows the published ones (macros/fit_lineage.sql).
select
    cast(fit_id as varchar) as fit_id,
    cast(mechanism_a as varchar) as mechanism_a,
    cast(mechanism_type_a as varchar) as mechanism_type_a,
    cast(mechanism_b as varchar) as mechanism_b,
    cast(mechanism_type_b as varchar) as mechanism_type_b,
    cast(representation as varchar) as representation,
    cast(domain as varchar) as domain,
    cast(concept as varchar) as concept,
    cast(weight_a as double) as weight_a,
    cast(weight_b as double) as weight_b,
    cast(estimate as double) as estimate,
    cast(ci_low as double) as ci_low,
    cast(ci_high as double) as ci_high,
    cast(standard_error as double) as standard_error,
    cast(selection_frequency as double) as selection_frequency,
    cast(p_value as double) as p_value,
    cast(p_adjusted as double) as p_adjusted,
    cast(distinguishable as boolean) as distinguishable,
    cast(n_shared_items as bigint) as n_shared_items,
    cast(n_pairs_a as bigint) as n_pairs_a,
    cast(n_pairs_b as bigint) as n_pairs_b,
    cast(n_bootstrap as bigint) as n_bootstrap,
    cast(ci_level as double) as ci_level,
    cast(fdr as double) as fdr,
    cast(feature_scale as double) as feature_scale,
    cast(alpha as double) as alpha,
    cast(lambda_shared as double) as lambda_shared,
    cast(lambda_domain as double) as lambda_domain,
    cast(pooling as double) as pooling
from {{ ref('int_mechanism_contrast_fits') }}
