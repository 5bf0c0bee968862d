{#-
  1 when `condition` holds, else 0, as a fraction-friendly number: avg(indicator(...)) is a rate.
  DuckDB keeps its decimal literals (avg of a decimal is a double there). Spark types 1.0 as decimal(2,1) and
  averages it to decimal(6,5), which would round every rate to 5 digits, so it gets double literals.
-#}
{% macro indicator(condition) -%}
    {{ return(adapter.dispatch('indicator')(condition)) }}
{%- endmacro %}

{% macro default__indicator(condition) -%}
    case when {{ condition }} then 1.0 else 0.0 end
{%- endmacro %}

{% macro spark__indicator(condition) -%}
    case when {{ condition }} then 1.0D else 0.0D end
{%- endmacro %}
