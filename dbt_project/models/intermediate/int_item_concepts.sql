{{
    config(
        materialized=incremental_or_table(),
        unique_key=['item_id', 'concept'],
        incremental_strategy='delete+insert',
        on_schema_change='fail',
        pre_hook="{% if is_incremental() %}delete from {{ this }} where not ({{ active_annotator_filter(ref('stg_raw__annotations')) }}){% endif %}"
    )
}}
-- One row per item x concept of the active annotator: the long concept representation.
-- Incremental: a run only reads annotations written since the last one (re-annotated cells replace old ones);
-- switching annotator or version first deletes the other version's rows, so a full refresh gives the same table.
with annotations as (
    select * from {{ ref('stg_raw__annotations') }}
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
    annotated_at
from active
