{{ config(materialized='view') }}
-- The monitoring loop: per score run and domain ('__all__' = overall), the frozen fit's agreement with the
-- mechanism's verdicts on the new pairs against the fit's own held-out accuracy (fct_model_metrics, variant hmdr),
-- both with 95% Wilson intervals; drift = the agreement's interval lies wholly below the fit's.
with runs as (
    select * from {{ ref('stg_ops__score_runs') }}
),

agreement as (
    select * from {{ ref('stg_ops__score_agreement') }}
)

select
    agreement.score_id,
    runs.fit_id,
    runs.mechanism,
    runs.representation,
    runs.scored_at,
    agreement.domain,
    agreement.n_pairs,
    agreement.n_agree,
    agreement.agreement,
    agreement.agreement_ci_low,
    agreement.agreement_ci_high,
    agreement.fit_n_pairs,
    agreement.fit_accuracy,
    agreement.fit_ci_low,
    agreement.fit_ci_high,
    agreement.drift
from agreement
inner join runs on agreement.score_id = runs.score_id
