{#-
  Incremental strategy of the fit-history marts (fct_concept_effects, fct_model_metrics), keyed by fit_id:
  every build adds its fit and earlier fits stay queryable. DuckDB: delete+insert, so re-running a build id
  replaces it. Spark without Delta/Iceberg: append (re-running the same build id there duplicates it).
-#}
{% macro fit_history_strategy() -%}
    {{ return(adapter.dispatch('fit_history_strategy')()) }}
{%- endmacro %}

{% macro default__fit_history_strategy() -%}
    {{ return('delete+insert') }}
{%- endmacro %}

{% macro spark__fit_history_strategy() -%}
    {{ return('append') }}
{%- endmacro %}
