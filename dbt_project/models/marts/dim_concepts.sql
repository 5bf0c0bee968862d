-- The concept catalog of the active annotator: what each concept means and where it applies.
with concepts as (
    select * from {{ ref('stg_raw__concepts') }}
),

used as (
    select
        concept,
        count(*) as n_items,
        avg({{ indicator('is_relevant') }}) as relevance_rate
    from {{ ref('int_item_concepts') }}
    group by concept
)

select
    concepts.concept,
    concepts.annotator,
    concepts.annotator_version,
    concepts.description,
    concepts.definition,
    concepts.origin,
    case when concepts.is_shared then 'shared' else 'specific' end as scope,
    concepts.domains,
    concepts.definition_hash,
    concepts.measure_transform,
    cast(used.n_items as bigint) as n_items,
    used.relevance_rate
from concepts
inner join used on concepts.concept = used.concept
where {{ active_annotator_filter(ref('stg_raw__concepts')) }}
