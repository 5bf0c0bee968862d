-- Annotators (offline catalog, an LLM model + prompt version, or imported principles) and what they have annotated.
with annotations as (
    select
        annotator,
        annotator_version,
        count(distinct item_id) as n_items,
        count(*) as n_annotations,
        avg({{ indicator('is_relevant') }}) as relevance_rate,
        min(annotated_at) as first_annotated_at,
        max(annotated_at) as last_annotated_at
    from {{ ref('stg_raw__annotations') }}
    group by annotator, annotator_version
),

concepts as (
    select
        annotator,
        annotator_version,
        count(*) as n_concepts
    from {{ ref('stg_raw__concepts') }}
    group by annotator, annotator_version
)

select
    annotations.annotator,
    annotations.annotator_version,
    case annotations.annotator
        when 'offline' then 'offline'
        when 'annotated_pairs' then 'imported'  -- AnnotatedPairs principle annotators (pipelines/ingest/concepts.py)
        else 'llm'
    end as annotator_kind,
    cast(coalesce(concepts.n_concepts, 0) as bigint) as n_concepts,
    cast(annotations.n_items as bigint) as n_items,
    cast(annotations.n_annotations as bigint) as n_annotations,
    annotations.relevance_rate,
    annotations.first_annotated_at,
    annotations.last_annotated_at
from annotations
left join concepts
    on annotations.annotator = concepts.annotator
        and annotations.annotator_version = concepts.annotator_version
