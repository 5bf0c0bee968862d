-- Where a domain departs from the shared weights (latest fit): concepts with a non-zero domain deviation s_d,
-- with the domain's total departure for context.
with effects as (
    select * from {{ ref('fct_concept_effects') }}
    where fit_id = (select fit_id from {{ ref('dim_latest_fit') }})
        and control = 'none'
        and domain <> '__shared__'
)

select
    fit_id,
    mechanism,
    mechanism_type,
    representation,
    domain,
    concept,
    shared_lift_pct,
    deviation_lift_pct,
    global_lift_pct,
    case
        when shared_lift_pct = 0 then 'domain only'
        when sign(deviation_lift_pct) = sign(shared_lift_pct) then 'stronger here'
        when abs(deviation_lift_pct) > abs(shared_lift_pct) then 'reversed here'
        else 'weaker here'
    end as departure,
    sum(abs(deviation_lift_pct)) over (partition by mechanism, representation, domain) as domain_departure_pct,
    n_pairs
from effects
where deviation_lift_pct <> 0
