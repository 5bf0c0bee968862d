{{
    config(
        materialized='incremental',
        incremental_strategy=fit_history_strategy(),
        unique_key='fit_id',
        on_schema_change='append_new_columns'
    )
}}
-- History: one block of rows per fit_id; earlier fits stay (incremental on fit_id).
-- Held-out (out-of-fold) accuracy and log-loss per mechanism x representation x variant x domain ('__all__' =
-- overall). variant: 'hmdr' (the concept model), 'hmdr_length_control', and the reference baselines
-- 'length_only' and 'style' (py_models/style_baseline.py), all on the same folds.
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
