-- Top-k concepts per mechanism x representation x domain of the latest fit, ranked by |global lift|.
with effects as (
    select * from {{ ref('fct_concept_effects') }}
    where fit_id = (select fit_id from {{ ref('dim_latest_fit') }})
        and control = 'none'
        and total_weight <> 0
),

ranked as (
    select
        *,
        row_number() over (
            partition by mechanism, representation, domain
            order by abs(global_lift_pct) desc, concept
        ) as concept_rank
    from effects
)

select
    fit_id,
    mechanism,
    mechanism_type,
    representation,
    domain,
    concept_rank,
    concept,
    case when global_lift_pct > 0 then 'rewards' else 'penalises' end as direction,
    global_lift_pct,
    shared_lift_pct,
    deviation_lift_pct,
    n_pairs,
    has_domain_weights
from ranked
where concept_rank <= {{ var('top_k') }}
