-- Local explanations: for each labelled pair, the concepts with a non-zero value and weight.
select
    fit_id,
    label_id,
    mechanism,
    representation,
    concept,
    value,
    contribution,
    local_lift_pct
from {{ hmdr_fits() }}
where record_type = 'local_explanations'
