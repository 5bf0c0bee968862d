-- Preference mechanisms (human raters, LLM judges, reward models) with verdict counts.
with labels as (
    select * from {{ ref('stg_raw__labels') }}
)

select
    mechanism,
    any_value(mechanism_type) as mechanism_type,
    cast(count(*) as bigint) as n_labels,
    cast(count(*) filter (where is_decisive) as bigint) as n_decisive,
    cast(count(*) filter (where winner = 'tie') as bigint) as n_ties,
    cast(count(distinct item_id) as bigint) as n_items
from labels
group by mechanism
