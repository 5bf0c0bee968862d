{#-
  The one concept pivot of the project: long int_item_concepts -> a wide concept-by-row feature table.
  `rows` chooses the row set and its key columns:
  - 'labelled_pairs' (the fit's input): one row per decisive labelled pair of int_labelled_pairs (every pair, also
    one whose item has no value for this representation) with label_id, item_id, mechanism, mechanism_type,
    domain, winner;
  - 'items' (a `preflens score` run's input, built on its own file): one row per item of stg_raw__items with
    item_id and domain.
  Then one column per concept holding `value_column`, and 0 where the item has no value for the concept (the
  paper's value for "not relevant"; the fit needs finite values).
  `measured_only`: only concepts with a non-null value (the measure representation exists only for concepts
  with a raw measurement).

  One SQL for every engine (DuckDB, Spark, ...): conditional aggregation over the concept list, read from
  int_item_concepts when the model executes (dbt build compiles each model just before it runs). The concepts are matched by their rank in name order (a number),
  so a concept name only ever appears in SQL as a quoted identifier (quote_identifier), never as a string
  literal or as code.
-#}
{% macro concept_feature_table(value_column, measured_only=false, rows='labelled_pairs') %}
{%- set row_sets = {
    'labelled_pairs': ['label_id', 'item_id', 'mechanism', 'mechanism_type', 'domain', 'winner'],
    'items': ['item_id', 'domain'],
} -%}
{%- if rows not in row_sets -%}
    {{ exceptions.raise_compiler_error("concept_feature_table: rows must be 'labelled_pairs' or 'items', not '" ~ rows ~ "'") }}
{%- endif -%}
{%- set keys = row_sets[rows] -%}
{%- set keyed = 'items' if rows == 'items' else 'pairs' -%}
{%- set concepts = [] -%}
{%- set value_filter = (' where ' ~ value_column ~ ' is not null') if measured_only else '' -%}
{#- when int_item_concepts is not built yet (`dbt compile`, sqlfluff on an empty file) it compiles to the keys only -#}
{%- if execute and load_relation(ref('int_item_concepts')) is not none -%}
    {%- set result = run_query('select distinct concept from ' ~ ref('int_item_concepts') ~ value_filter ~ ' order by concept') -%}
    {%- set concepts = result.columns[0].values() | list -%}
{%- endif %}
{%- if rows == 'items' %}
with items as (
    select * from {{ ref('stg_raw__items') }}
),
{%- else %}
with pairs as (
    select * from {{ ref('int_labelled_pairs') }}
),
{%- endif %}

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
    {%- for key in keys %}
    {{ keyed }}.{{ key }}{{ ',' if not loop.last }}
    {%- endfor %}
    {%- for concept in concepts %},
    coalesce(wide.{{ quote_identifier(concept) }}, 0) as {{ quote_identifier(concept) }}
    {%- endfor %}
from {{ keyed }}
left join wide on wide.item_id = {{ keyed }}.item_id
{% endmacro %}
