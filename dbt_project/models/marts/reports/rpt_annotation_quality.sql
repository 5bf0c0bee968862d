-- Annotation quality per concept and annotator: relevance, swap inconsistency, ties.
-- Parse failures of LLM annotators are added by the LLM layer's call log when it exists.
select
    annotator,
    annotator_version,
    concept,
    cast(count(*) as bigint) as n_items,
    avg({{ indicator('is_relevant') }}) as relevance_rate,
    avg(case when is_consistent is not null then {{ indicator('not is_consistent') }} end) as swap_inconsistency_rate,
    avg({{ indicator('is_relevant and comp_value = 0') }}) as equal_rate
from {{ ref('stg_raw__annotations') }}
group by annotator, annotator_version, concept
