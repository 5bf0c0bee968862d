{{
    config(
        materialized='incremental',
        incremental_strategy=fit_history_strategy(),
        unique_key='fit_id',
        on_schema_change='append_new_columns'
    )
}}
-- History: one block of rows per fit_id; earlier fits stay (incremental on fit_id).
-- Held-out (out-of-fold) accuracy and log-loss per mechanism x representation x domain ('__all__' = overall).
select
    fit_id,
    mechanism,
    mechanism_type,
    representation,
    domain,
    protocol,
    cast(n_pairs as bigint) as n_pairs,
    accuracy,
    log_loss
from {{ hmdr_fits() }}
where record_type = 'metrics'
