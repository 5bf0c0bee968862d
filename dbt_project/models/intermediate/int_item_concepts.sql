-- One row per item x concept of the active annotator: the long concept representation.
with annotations as (
    select * from {{ ref('stg_raw__annotations') }}
),

active as (
    select *
    from annotations
    where {{ active_annotator_filter(ref('stg_raw__annotations')) }}
)

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
    measure_b
from active
