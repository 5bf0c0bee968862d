-- Long concept table: one row per item x concept, every representation and relevance.
select
    item_id,
    concept,
    annotator,
    annotator_version,
    comp_value,
    score_a,
    score_b,
    score_diff,
    is_relevant,
    is_consistent,
    measure_a,
    measure_b,
    measure_diff
from {{ ref('int_item_concepts') }}
