{{
    config(
        materialized=incremental_or_table(),
        unique_key=['item_id', 'concept'],
        incremental_strategy='delete+insert',
        on_schema_change='sync_all_columns',
        pre_hook="{% if is_incremental() %}delete from {{ this }} where not ({{ active_annotator_filter(ref('stg_raw__annotations')) }}){% endif %}"
    )
}}
-- One row per item x concept of the active annotator: the long concept representation.
-- Incremental: a run only reads annotations written since the last one (re-annotated cells replace old ones);
-- switching annotator or version first deletes the other version's rows, so a full refresh gives the same table.
with annotations as (
    select * from {{ ref('stg_raw__annotations') }}
),

concepts as (
    select * from {{ ref('stg_raw__concepts') }}
),

active as (
    select *
    from annotations
    where {{ active_annotator_filter(ref('stg_raw__annotations')) }}
    {% if is_incremental() %}
      and annotated_at >= (
          select coalesce(max(annotated_at), timestamp '1970-01-01')
          from {{ this }}
          where {{ active_annotator_filter(ref('stg_raw__annotations')) }}
      )
    {% endif %}
),

-- measure-rep: the difference of the variance-stabilised raw measures (transform from the concept catalog:
-- log1p = sign(m) * ln(1 + |m|), identity); 0 when not relevant, null when the annotator has no raw measure
measured as (
    select
        active.*,
        case
            when concepts.measure_transform is null or active.measure_a is null or active.measure_b is null
                then null
            when not active.is_relevant then 0.0
            when concepts.measure_transform = 'log1p'
                then sign(active.measure_a) * ln(1 + abs(active.measure_a))
                    - sign(active.measure_b) * ln(1 + abs(active.measure_b))
            when concepts.measure_transform = 'identity' then active.measure_a - active.measure_b
        end as measure_diff
    from active
    left join concepts
        on active.concept = concepts.concept
            and active.annotator = concepts.annotator
            and active.annotator_version = concepts.annotator_version
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
    measure_b,
    measure_diff,
    annotated_at
from measured
