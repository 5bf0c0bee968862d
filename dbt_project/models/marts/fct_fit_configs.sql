{{ config(materialized='view') }}
-- History: one block of rows per fit_id, every published build's fit (the store int_fit_history_fit_configs keeps
-- them all; a failed or interrupted build's fit is never shown: macros/fit_lineage.sql). The hyperparameters each
-- fit chose (or was given) per mechanism x representation: alpha, lambda_shared (b), lambda_domain (s_d),
-- pooling = lambda_domain / lambda_shared (inf when the selection chose no domain deviations), how they were
-- chosen and the CV log-loss of the choice.
with fits as (
    {{ shown_fits(ref('int_fit_history_fit_configs')) }}
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
