{#-
  Wide concept-by-pair feature table: one row per decisive labelled pair, one column per concept holding
  `value_column` of int_item_concepts. `measured_only`: keep only cells with a non-null value (the measure
  representation exists only for concepts with a raw measurement). Concept names are data: they become column names only through quoting
  (DuckDB PIVOT, or quote_identifier), never spliced into SQL text as code.
-#}
{% macro concept_feature_table(value_column, measured_only=false) %}
    {{- return(adapter.dispatch('concept_feature_table')(value_column, measured_only)) -}}
{% endmacro %}

{#- DuckDB: PIVOT quotes the column names itself. -#}
{% macro duckdb__concept_feature_table(value_column, measured_only=false) %}
with pairs as (
    select * from {{ ref('int_labelled_pairs') }}
),

item_concepts as (
    select item_id, concept, {{ value_column }} as value from {{ ref('int_item_concepts') }}
    {%- if measured_only %}
    where {{ value_column }} is not null
    {%- endif %}
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

{#-
  Other engines (Spark, Trino, ...): conditional aggregation over the concept list, read from
  int_item_concepts when the model executes. The concepts are matched by their rank in name order (a number),
  so a concept name only ever appears in SQL as a quoted identifier, never as a string literal.
-#}
{% macro default__concept_feature_table(value_column, measured_only=false) %}
{%- set concepts = [] -%}
{%- set value_filter = (' where ' ~ value_column ~ ' is not null') if measured_only else '' -%}
{%- if execute -%}
    {%- set result = run_query('select distinct concept from ' ~ ref('int_item_concepts') ~ value_filter ~ ' order by concept') -%}
    {%- set concepts = result.columns[0].values() | list -%}
{%- endif %}
with pairs as (
    select * from {{ ref('int_labelled_pairs') }}
),

concept_index as (
    select concept, row_number() over (order by concept) as concept_index
    from (select distinct concept from {{ ref('int_item_concepts') }}{{ value_filter }}) as distinct_concepts
),

item_concepts as (
    select item_concepts.item_id, concept_index.concept_index, item_concepts.{{ value_column }} as value
    from {{ ref('int_item_concepts') }} as item_concepts
    inner join concept_index on concept_index.concept = item_concepts.concept
    {%- if measured_only %}
    where item_concepts.{{ value_column }} is not null
    {%- endif %}
),

wide as (
    select
        item_id
        {%- for concept in concepts %},
        max(case when concept_index = {{ loop.index }} then value end) as {{ quote_identifier(concept) }}
        {%- endfor %}
    from item_concepts
    group by item_id
)

select
    pairs.label_id,
    pairs.item_id,
    pairs.mechanism,
    pairs.mechanism_type,
    pairs.domain,
    pairs.winner
    {%- for concept in concepts %},
    wide.{{ quote_identifier(concept) }}
    {%- endfor %}
from pairs
inner join wide on wide.item_id = pairs.item_id
{% endmacro %}
