{{ config(materialized='view') }}
-- History: one block of rows per fit_id, every published build's fit (the store int_fit_history_model_metrics
-- keeps them all; a failed or interrupted build's fit is never shown: macros/fit_lineage.sql).
-- Held-out (out-of-fold) accuracy and log-loss per mechanism x representation x variant x domain ('__all__' =
-- overall). variant: 'hmdr' (the concept model), 'hmdr_length_control', and the reference baselines
-- 'length_only' and 'style' (py_models/style_baseline.py), all on the same folds.
with fits as (
    {{ shown_fits(ref('int_fit_history_model_metrics')) }}
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
