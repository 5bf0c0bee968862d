-- Out-of-fold HMDR prediction for every decisive labelled pair (5-fold cross-fitting per mechanism).
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
from {{ hmdr_fits() }}
where record_type = 'predictions'
