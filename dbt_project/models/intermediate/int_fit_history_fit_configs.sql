{{
    config(
        materialized='incremental',
        incremental_strategy=fit_history_strategy(),
        unique_key='fit_id',
        on_schema_change='append_new_columns'
    )
}}
-- History store of fct_fit_configs: one block of rows per fit_id, every fit kept (incremental on fit_id),
-- including fits of builds that were never published. The mart shows the published ones (macros/fit_lineage.sql).
with new_fits as (
    select
        fit_id,
        mechanism,
        mechanism_type,
        representation,
        selection,
        alpha,
        lambda_shared,
        lambda_domain,
        pooling,
        cv_log_loss,
        cast(n_train as bigint) as n_pairs,
        control,
        duality_gap,
        cast(n_bootstrap as bigint) as n_bootstrap,
        fitted_at
    from {{ hmdr_fits() }}
    where record_type = 'params'
),

fits as (
    select * from new_fits
    {{- legacy_fit_history('fct_fit_configs', 'new_fits') }}
)

select
    fit_id,
    mechanism,
    mechanism_type,
    representation,
    selection,
    alpha,
    lambda_shared,
    lambda_domain,
    pooling,
    cv_log_loss,
    n_pairs,
    control,
    duality_gap,
    n_bootstrap,
    fitted_at
from fits
