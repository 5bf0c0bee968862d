{#- Rows whose `column_name` does not match `regex` fail (null values are left to not_null). -#}
{% test matches_regex(model, column_name, regex) %}
select * from {{ model }}
where {{ column_name }} is not null and not {{ regex_matches(column_name, regex) }}
{% endtest %}

{% macro regex_matches(expression, regex) -%}
    {{ return(adapter.dispatch('regex_matches')(expression, regex)) }}
{%- endmacro %}

{% macro default__regex_matches(expression, regex) -%}
    regexp_matches({{ expression }}, {{ sql_string(regex) }})
{%- endmacro %}

{% macro spark__regex_matches(expression, regex) -%}
    ({{ expression }} rlike {{ sql_string(regex) }})
{%- endmacro %}
