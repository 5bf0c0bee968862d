{#-
  Helpers of the data tests (data-tests/, macros/test_*.sql).

  gate_enabled(threshold): a quality gate (data-tests/gates/) exists only when the checks stage asks for the gates
  (var quality_gates, passed by pipelines/build/quality/dbt_tests.py with every threshold), and its threshold var
  is not null: a threshold of null disables its gate (recorded as skipped). No `dbt build` includes a gate. (The
  linter sets quality_gates alone, in .sqlfluff: the gates' var defaults only serve it.)
-#}
{% macro gate_enabled(threshold=none) -%}
    {{ return(var('quality_gates', false) and (threshold is none or var(threshold, 'not set') is not none)) }}
{%- endmacro %}

{#- A value as an SQL string literal, safely (the quote character doubled; Spark: backslash escapes). -#}
{% macro sql_string(value) -%}
    {{ return(adapter.dispatch('sql_string')(value)) }}
{%- endmacro %}

{% macro default__sql_string(value) -%}
    '{{ value | string | replace("'", "''") }}'
{%- endmacro %}

{% macro spark__sql_string(value) -%}
    '{{ value | string | replace("\\", "\\\\") | replace("'", "\\'") }}'
{%- endmacro %}

{#- A list var (or a list) as a comma-separated list of SQL string literals, for `in (...)`. -#}
{% macro sql_string_list(values) -%}
    {%- set out = [] -%}
    {%- for value in values -%}{%- do out.append(sql_string(value)) -%}{%- endfor -%}
    {{ return(out | join(', ')) }}
{%- endmacro %}
