-- One row per evaluation x mechanism x representation x model variant x protocol x split x test domain.
select
    eval_id,
    build_id,
    mechanism,
    mechanism_type,
    representation,
    variant,
    protocol,
    split,
    domain,
    held_out_domain,
    n_pairs,
    accuracy,
    log_loss,
    n_train,
    selected_config,
    tie_policy,
    n_ties_dropped,
    created_at
from {{ ref('stg_ops__eval_results') }}
