{#-
  Quote a data value (e.g. a concept name) as a column identifier, safely: the quote character inside the
  name is doubled, so no name can end the identifier early. DuckDB / ANSI: "name"; Spark: `name`.
  dbt's adapter.quote() does not escape, hence this macro.
-#}
{% macro quote_identifier(name) -%}
    {{ return(adapter.dispatch('quote_identifier')(name)) }}
{%- endmacro %}

{% macro default__quote_identifier(name) -%}
    "{{ name | string | replace('"', '""') }}"
{%- endmacro %}

{% macro spark__quote_identifier(name) -%}
    `{{ name | string | replace('`', '``') }}`
{%- endmacro %}
