{{ config(materialized='view') }}
-- Out-of-fold HMDR prediction for every decisive labelled pair (5-fold cross-fitting per mechanism), of the latest
-- fit when its build is published or in progress (macros/fit_lineage.sql: never a failed build's fit).
with fits as (
    {{ shown_fits(hmdr_fits()) }}
)

select
    fit_id,
    label_id,
    item_id,
    mechanism,
    domain,
    representation,
    cast(fold as integer) as fold,
    prob_a,
    predicted_winner,
    actual_winner,
    cast(is_correct as boolean) as is_correct,
    cast(used_domain_weights as boolean) as used_domain_weights
from fits
where record_type = 'predictions'
