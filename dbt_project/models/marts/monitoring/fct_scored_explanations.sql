{{ config(materialized='view') }}
-- Local explanations of the pairs `preflens score` scored: one row per score run x pair x concept with a non-zero
-- value and weight (py_models/lift.py: contribution = weight * value, the paper's local lift).
with runs as (
    select * from {{ ref('stg_ops__score_runs') }}
),

explanations as (
    select * from {{ ref('stg_ops__scored_explanations') }}
)

select
    explanations.score_id,
    runs.fit_id,
    runs.mechanism,
    runs.representation,
    explanations.item_id,
    explanations.concept,
    explanations.value,
    explanations.weight,
    explanations.contribution,
    explanations.local_lift_pct
from explanations
inner join runs on explanations.score_id = runs.score_id
