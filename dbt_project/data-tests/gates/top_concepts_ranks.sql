-- Gate: in every group of rpt_top_concepts (fit x mechanism x representation x domain) the ranks run 1..n without
-- gaps and follow descending |global lift|. A failing row per group that does not.
{{ config(enabled=gate_enabled()) }}

with ranked as (
    select
        fit_id,
        mechanism,
        representation,
        domain,
        concept_rank,
        abs(global_lift_pct) as abs_lift,
        lag(abs(global_lift_pct)) over (
            partition by fit_id, mechanism, representation, domain
            order by concept_rank
        ) as previous_abs_lift
    from {{ ref('rpt_top_concepts') }}
),

groups as (
    select
        fit_id,
        mechanism,
        representation,
        domain,
        count(*) as n_rows,
        min(concept_rank) as min_rank,
        max(concept_rank) as max_rank,
        sum(case when abs_lift > previous_abs_lift + 1e-9 then 1 else 0 end) as n_out_of_order
    from ranked
    group by fit_id, mechanism, representation, domain
)

select
    fit_id,
    mechanism,
    representation,
    domain,
    n_rows,
    min_rank,
    max_rank,
    n_out_of_order
from groups
where min_rank <> 1 or max_rank <> n_rows or n_out_of_order > 0
