{#-
  The tall HMDR fit output the fct_* marts split by record_type.
  DuckDB: the dbt Python model int_hmdr_fits. Spark: dbt Python models need Databricks, so int_hmdr_fits is
  disabled there and `python -m pipelines.build.fit_runner --engine spark` writes the same table between two dbt
  invocations; the marts read it as `stg_hmdr__fits`, the staged source `hmdr.int_hmdr_fits` (see docs/scaling.md).
-#}
{% macro hmdr_fits() -%}
    {{ return(adapter.dispatch('hmdr_fits')()) }}
{%- endmacro %}

{% macro default__hmdr_fits() -%}
    {{ return(ref('int_hmdr_fits')) }}
{%- endmacro %}

{% macro spark__hmdr_fits() -%}
    {{ return(ref('stg_hmdr__fits')) }}
{%- endmacro %}
