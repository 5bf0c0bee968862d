-- Per domain and concept: mechanism A's lift minus mechanism B's (latest fit), for every ordered pair of
-- mechanisms fitted in that domain. "What do humans value that the judge misses": filter mechanism_a to a human
-- mechanism, mechanism_b to the judge, and sort by lift_diff_pct.
with effects as (
    select * from {{ ref('fct_concept_effects') }}
    where fit_id = (select fit_id from {{ ref('dim_latest_fit') }})
        and control = 'none'
)

select
    a.fit_id,
    a.representation,
    a.domain,
    a.concept,
    a.mechanism as mechanism_a,
    a.mechanism_type as mechanism_type_a,
    b.mechanism as mechanism_b,
    b.mechanism_type as mechanism_type_b,
    a.global_lift_pct as lift_a_pct,
    b.global_lift_pct as lift_b_pct,
    a.global_lift_pct - b.global_lift_pct as lift_diff_pct,
    a.n_pairs as n_pairs_a,
    b.n_pairs as n_pairs_b
from effects as a
inner join effects as b
    on a.representation = b.representation
        and a.domain = b.domain
        and a.concept = b.concept
        and a.mechanism <> b.mechanism
where a.total_weight <> 0 or b.total_weight <> 0
