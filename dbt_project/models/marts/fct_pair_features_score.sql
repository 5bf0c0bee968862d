-- Wide concept-by-pair feature table (score-rep): one row per decisive labelled pair, one column per concept.
-- Column names come from concept names through DuckDB PIVOT, which quotes them; they are never spliced into SQL.
with pairs as (
    select * from {{ ref('int_labelled_pairs') }}
),

item_concepts as (
    select item_id, concept, score_diff as value from {{ ref('int_item_concepts') }}
),

wide as (
    pivot item_concepts on concept using first(value) group by item_id
)

select
    pairs.label_id,
    pairs.item_id,
    pairs.mechanism,
    pairs.mechanism_type,
    pairs.domain,
    pairs.winner,
    wide.* exclude (item_id)
from pairs
inner join wide on wide.item_id = pairs.item_id
