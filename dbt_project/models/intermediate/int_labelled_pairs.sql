{{
    config(
        materialized=incremental_or_table(),
        unique_key='label_id',
        incremental_strategy='delete+insert',
        on_schema_change='fail',
        pre_hook="{% if is_incremental() %}delete from {{ this }} where item_id not in (select item_id from {{ ref('int_item_concepts') }}){% endif %}"
    )
}}
-- Decisive labelled pairs (winner a or b) whose item has been annotated, with the item's domain.
-- Ties are kept in stg_raw__labels but excluded here: explaining a judge or RM drops ties (method.md §14.6).
-- Incremental: verdicts are immutable once loaded, so a run only adds labels not yet present.
with labels as (
    select * from {{ ref('stg_raw__labels') }}
),

items as (
    select * from {{ ref('stg_raw__items') }}
),

annotated_items as (
    select distinct item_id from {{ ref('int_item_concepts') }}
)

select
    labels.label_id,
    labels.item_id,
    labels.mechanism,
    labels.mechanism_type,
    items.domain,
    labels.winner
from labels
inner join items on labels.item_id = items.item_id
inner join annotated_items on labels.item_id = annotated_items.item_id
where labels.is_decisive
{% if is_incremental() %}
  and labels.label_id not in (select label_id from {{ this }})
{% endif %}
