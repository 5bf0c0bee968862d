{{ config(materialized='view') }}
-- Local explanations: for each labelled pair, the concepts with a non-zero value and weight, of the latest fit
-- when its build is published or in progress (macros/fit_lineage.sql: never a failed build's fit).
with fits as (
    {{ shown_fits(hmdr_fits()) }}
)

select
    fit_id,
    label_id,
    mechanism,
    representation,
    concept,
    value,
    contribution,
    local_lift_pct
from fits
where record_type = 'local_explanations'
