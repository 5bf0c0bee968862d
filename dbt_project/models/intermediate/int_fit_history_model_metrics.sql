{{
    config(
        materialized='incremental',
        incremental_strategy=fit_history_strategy(),
        unique_key='fit_id',
        on_schema_change='append_new_columns'
    )
}}
-- History store of fct_model_metrics: one block of rows per fit_id, every fit kept (incremental on fit_id),
-- including fits of builds that were never published. The mart shows the published ones (macros/fit_lineage.sql).
with new_fits as (
    select
        fit_id,
        mechanism,
        mechanism_type,
        representation,
        variant,
        domain,
        protocol,
        cast(n_pairs as bigint) as n_pairs,
        accuracy,
        log_loss
    from {{ hmdr_fits() }}
    where record_type = 'metrics'
),

fits as (
    select * from new_fits
    {{- legacy_fit_history('fct_model_metrics', 'new_fits') }}
)

select
    fit_id,
    mechanism,
    mechanism_type,
    representation,
    variant,
    domain,
    protocol,
    n_pairs,
    accuracy,
    log_loss
from fits
