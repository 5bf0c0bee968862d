-- The prompt and both responses of every labelled item: the input of the reference style baseline that each
-- fit scores next to its concept model (py_models/style_baseline.py). A view: the texts stay in raw.items.
{{ config(materialized='view') }}

with items as (
    select * from {{ ref('stg_raw__items') }}
),

labelled as (
    select distinct item_id from {{ ref('int_labelled_pairs') }}
)

select
    items.item_id,
    items.prompt,
    items.response_a,
    items.response_b
from items
inner join labelled on items.item_id = labelled.item_id
