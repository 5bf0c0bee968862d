-- Gate: no small domain gets domain-specific weights. Every row of fct_concept_effects that carries (or claims)
-- domain weights (domain_deviation <> 0 or has_domain_weights, outside '__shared__') needs has_domain_weights and
-- n_pairs >= var min_domain_pairs. The failing rows say which rule they break.
{{ config(enabled=gate_enabled('min_domain_pairs'), meta={'threshold': 'min_domain_pairs'}) }}

with domain_weights as (
    select * from {{ ref('fct_concept_effects') }}
    where domain <> '__shared__'
        and (domain_deviation <> 0 or has_domain_weights)
)

select
    fit_id,
    mechanism,
    representation,
    control,
    domain,
    concept,
    domain_deviation,
    has_domain_weights,
    n_pairs,
    case
        when not coalesce(has_domain_weights, false) then 'a domain deviation without has_domain_weights'
        when n_pairs is null then 'domain weights on an unknown number of pairs'
        else 'domain weights on fewer than {{ var("min_domain_pairs", 0) }} pairs'
    end as violation
from domain_weights
where not coalesce(has_domain_weights, false)
    or n_pairs is null
    or n_pairs < {{ var('min_domain_pairs', 0) }}
