{#-
  Materialization of the incremental feature models (int_item_concepts, int_labelled_pairs).
  DuckDB: incremental delete+insert with a pre_hook delete. Spark without Delta/Iceberg/Hudi has no DELETE
  and no merge, and Parquet append cannot replace re-annotated cells, so those models are rebuilt as tables
  there (Spark does the full rebuild in parallel; with Delta use incremental_strategy='merge').
-#}
{% macro incremental_or_table() -%}
    {{ return(adapter.dispatch('incremental_or_table')()) }}
{%- endmacro %}

{% macro default__incremental_or_table() -%}
    {{ return('incremental') }}
{%- endmacro %}

{% macro spark__incremental_or_table() -%}
    {{ return('table') }}
{%- endmacro %}
