-- For items judged by several mechanisms: how often each pair of mechanisms picks the same winner.
with labels as (
    select
        item_id,
        mechanism,
        mechanism_type,
        winner
    from {{ ref('stg_raw__labels') }}
)

select
    a.mechanism as mechanism_a,
    a.mechanism_type as mechanism_type_a,
    b.mechanism as mechanism_b,
    b.mechanism_type as mechanism_type_b,
    cast(count(*) as bigint) as n_shared_items,
    cast(count(*) filter (where a.winner <> 'tie' and b.winner <> 'tie') as bigint) as n_both_decisive,
    avg({{ indicator('a.winner = b.winner') }}) filter (where a.winner <> 'tie' and b.winner <> 'tie') as agreement_rate
from labels as a
inner join labels as b on a.item_id = b.item_id and a.mechanism <> b.mechanism
group by all
