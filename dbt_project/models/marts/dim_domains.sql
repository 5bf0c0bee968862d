-- Domains with item and verdict counts.
with domains as (
    select * from {{ ref('stg_raw__domains') }}
),

items as (
    select
        domain,
        count(*) as n_items
    from {{ ref('stg_raw__items') }}
    group by domain
),

labels as (
    select
        items.domain,
        count(*) as n_labels,
        count(distinct labels.mechanism) as n_mechanisms
    from {{ ref('stg_raw__labels') }} as labels
    inner join {{ ref('stg_raw__items') }} as items on labels.item_id = items.item_id
    group by items.domain
)

select
    domains.domain,
    domains.domain_source,
    cast(coalesce(items.n_items, 0) as bigint) as n_items,
    cast(coalesce(labels.n_labels, 0) as bigint) as n_labels,
    cast(coalesce(labels.n_mechanisms, 0) as bigint) as n_mechanisms
from domains
left join items on domains.domain = items.domain
left join labels on domains.domain = labels.domain
