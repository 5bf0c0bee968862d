-- Annotation quality per concept and annotator: relevance, swap inconsistency, ties.
-- Parse failures of LLM annotators are added by the LLM layer's call log when it exists.
select
    annotator,
    annotator_version,
    concept,
    cast(count(*) as bigint) as n_items,
    avg(case when is_relevant then 1.0 else 0.0 end) as relevance_rate,
    avg(case when is_consistent is null then null when is_consistent then 0.0 else 1.0 end) as swap_inconsistency_rate,
    avg(case when is_relevant and comp_value = 0 then 1.0 else 0.0 end) as equal_rate
from {{ ref('stg_raw__annotations') }}
group by annotator, annotator_version, concept
