{{
    config(
        materialized='incremental',
        incremental_strategy=fit_history_strategy(),
        unique_key='fit_id',
        on_schema_change='append_new_columns'
    )
}}
-- History: one block of rows per fit_id. The hyperparameters each fit chose (or was given) per mechanism x
-- representation: alpha, lambda_shared (b), lambda_domain (s_d), pooling = lambda_domain / lambda_shared (inf when
-- the selection chose no domain deviations), how they were chosen and the CV log-loss of the choice.
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
