-- Does the explanation predict better than the obvious surface cues? Per mechanism x representation of the latest
-- fit: held-out accuracy of the concept model (hmdr), its length-controlled refit, and the two reference baselines
-- (length only; the 15-feature style regression) on the same folds, with the gain over each baseline.
with metrics as (
    select * from {{ ref('fct_model_metrics') }}
    where fit_id = (select fit_id from {{ ref('dim_latest_fit') }})
        and domain = '__all__'
),

wide as (
    select
        fit_id,
        mechanism,
        mechanism_type,
        representation,
        max(case when variant = 'hmdr' then n_pairs end) as n_pairs,
        max(case when variant = 'hmdr' then accuracy end) as accuracy,
        max(case when variant = 'hmdr_length_control' then accuracy end) as accuracy_length_control,
        max(case when variant = 'length_only' then accuracy end) as accuracy_length_only,
        max(case when variant = 'style' then accuracy end) as accuracy_style,
        max(case when variant = 'hmdr' then log_loss end) as log_loss,
        max(case when variant = 'style' then log_loss end) as log_loss_style
    from metrics
    group by fit_id, mechanism, mechanism_type, representation
)

select
    fit_id,
    mechanism,
    mechanism_type,
    representation,
    n_pairs,
    accuracy,
    accuracy_length_control,
    accuracy_length_only,
    accuracy_style,
    accuracy - accuracy_length_only as gain_over_length_only,
    accuracy - accuracy_style as gain_over_style,
    log_loss,
    log_loss_style,
    coalesce(accuracy > accuracy_length_only, false) as beats_length_only
from wide
where accuracy is not null
