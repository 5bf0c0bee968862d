{#- The annotator version whose rows feed features: the `annotator_version` var, or the latest one present. -#}
{% macro active_annotator_filter(relation) -%}
    annotator = '{{ var("annotator") }}'
    {%- if var("annotator_version") %}
    and annotator_version = '{{ var("annotator_version") }}'
    {%- else %}
    and annotator_version = (
        select max(annotator_version) from {{ relation }} where annotator = '{{ var("annotator") }}'
    )
    {%- endif %}
{%- endmacro %}
