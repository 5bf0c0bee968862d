{#- The annotator version whose rows feed features: the `annotator_version` var, or the latest one present. -#}
{% macro active_annotator_filter(relation) -%}
    {%- set version = var("annotator_version", env_var("PREFLENS_ANNOTATOR_VERSION", "")) -%}
    annotator = '{{ var("annotator") }}'
    {%- if version %}
    and annotator_version = '{{ version }}'
    {%- else %}
    and annotator_version = (
        select max(annotator_version) from {{ relation }} where annotator = '{{ var("annotator") }}'
    )
    {%- endif %}
{%- endmacro %}
