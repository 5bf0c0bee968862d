{{ config(materialized='view') }}
-- New pairs scored by `preflens score` with a frozen published fit: one row per score run x pair, with the fit,
-- mechanism and representation applied, P(A wins), the predicted winner, the mechanism's own verdict when
-- the scored file carried one, and comparison: whether the pair was compared with it, or why not. A view over ops
-- (written by pipelines/score), so a run shows without a rebuild.
with runs as (
    select * from {{ ref('stg_ops__score_runs') }}
),

pairs as (
    select * from {{ ref('stg_ops__scored_pairs') }}
)

select
    pairs.score_id,
    runs.fit_id,
    runs.mechanism,
    runs.representation,
    runs.annotator_version,
    runs.scored_at,
    pairs.item_id,
    pairs.domain,
    pairs.winner,
    pairs.predicted_winner,
    pairs.prob_a,
    pairs.logit,
    pairs.used_domain_weights,
    pairs.agrees,
    pairs.comparison
from pairs
inner join runs on pairs.score_id = runs.score_id
