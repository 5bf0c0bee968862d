{#-
  Wide concept-by-pair feature table: one row per decisive labelled pair, one column per concept holding
  `value_column` of int_item_concepts. Column names come from concept names through DuckDB PIVOT, which
  quotes them; concept names are never spliced into SQL text.
-#}
{% macro concept_feature_table(value_column) %}
with pairs as (
    select * from {{ ref('int_labelled_pairs') }}
),

item_concepts as (
    select item_id, concept, {{ value_column }} as value from {{ ref('int_item_concepts') }}
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
{% endmacro %}
