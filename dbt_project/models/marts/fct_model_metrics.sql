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
