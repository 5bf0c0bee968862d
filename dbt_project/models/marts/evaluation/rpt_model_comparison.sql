-- Table-1 style comparison: per evaluation, mechanism and representation, every model variant side by side,
-- in-domain (overall test accuracy of each split) and out-of-domain (accuracy on each held-out domain x seed),
-- with the mean over splits and a normal-approximation 95% interval (mean +- 1.96 * sd / sqrt(n)).
with runs as (
    select
        eval_id,
        mechanism,
        mechanism_type,
        representation,
        variant,
        protocol,
        accuracy,
        log_loss,
        n_pairs,
        tie_policy
    from {{ ref('fct_eval_results') }}
    where (protocol = 'in_domain' and domain = '__all__') or protocol = 'ood'
),

agg as (
    select
        eval_id,
        mechanism,
        any_value(mechanism_type) as mechanism_type,
        representation,
        variant,
        protocol,
        count(*) as n_runs,
        avg(accuracy) as mean_accuracy,
        coalesce(stddev_samp(accuracy), 0) as sd_accuracy,
        avg(log_loss) as mean_log_loss,
        sum(n_pairs) as n_test_pairs,
        any_value(tie_policy) as tie_policy
    from runs
    group by eval_id, mechanism, representation, variant, protocol
)

select
    *,
    mean_accuracy - 1.96 * sd_accuracy / sqrt(n_runs) as accuracy_ci_low,
    mean_accuracy + 1.96 * sd_accuracy / sqrt(n_runs) as accuracy_ci_high,
    mean_accuracy - max(mean_accuracy) over (partition by eval_id, mechanism, representation, protocol)
        as gap_to_best
from agg
