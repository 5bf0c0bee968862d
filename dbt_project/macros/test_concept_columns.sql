{#-
  Tests on the concept columns of a wide feature table (fct_pair_features_*): every column that is not one of
  `keys` is a concept, found when the test runs. Concept names are data: in SQL they only appear as quoted
  identifiers (quote_identifier) or as string literals (sql_string), never as code.
-#}
{% macro concept_columns(model, keys) -%}
    {%- set concepts = [] -%}
    {%- if execute -%}
        {%- for column in adapter.get_columns_in_relation(model) if column.name not in keys -%}
            {%- do concepts.append(column.name) -%}
        {%- endfor -%}
    {%- endif -%}
    {{ return(concepts) }}
{%- endmacro %}

{#- Each concept cell is not null and in `values` (or within [min_value, max_value]): one failing row per bad cell,
    with the pair (`row_id`), the concept and its value. -#}
{% test concept_values(model, keys, row_id='label_id', values=none, min_value=none, max_value=none) %}
{%- set concepts = concept_columns(model, keys) -%}
{%- if concepts | length == 0 %}
select
    cast(null as {{ dbt.type_string() }}) as {{ row_id }},
    cast(null as {{ dbt.type_string() }}) as concept,
    cast(null as double) as value
where 1 = 0
{%- endif %}
{%- for concept in concepts %}
{%- set cell = quote_identifier(concept) %}
{% if not loop.first %}union all{% endif %}
select
    {{ row_id }},
    {{ sql_string(concept) }} as concept,
    cast({{ cell }} as double) as value
from {{ model }}
where {{ cell }} is null
    {%- if values is not none %} or {{ cell }} not in ({{ values | join(', ') }}){% endif %}
    {%- if min_value is not none %} or {{ cell }} < {{ min_value }}{% endif %}
    {%- if max_value is not none %} or {{ cell }} > {{ max_value }}{% endif %}
{%- endfor %}
{% endtest %}

{#- The concept columns are exactly the concepts of `concepts_from` (a relation with a `concept` column), and there
    are at least `min_concepts`: one failing row per concept without a column, per column that is no concept, and
    one when there are too few. -#}
{% test concept_columns_match(model, keys, concepts_from, min_concepts=1) %}
{%- set concepts = concept_columns(model, keys) %}
with feature_columns as (
    {%- if concepts | length == 0 %}
    select cast(null as {{ dbt.type_string() }}) as column_name where 1 = 0
    {%- endif %}
    {%- for concept in concepts %}
    {% if not loop.first %}union all {% endif %}select {{ sql_string(concept) }} as column_name
    {%- endfor %}
),

catalog as (
    select distinct concept from {{ concepts_from }}
)

select catalog.concept as column_name, 'a concept without a column' as problem
from catalog
where not exists (select 1 from feature_columns where feature_columns.column_name = catalog.concept)
union all
select feature_columns.column_name, 'a column that is no concept' as problem
from feature_columns
where not exists (select 1 from catalog where catalog.concept = feature_columns.column_name)
union all
select cast(null as {{ dbt.type_string() }}) as column_name, 'fewer than {{ min_concepts }} concept columns' as problem
from (select count(*) as n_columns from feature_columns) as counted
where counted.n_columns < {{ min_concepts }}
{% endtest %}
