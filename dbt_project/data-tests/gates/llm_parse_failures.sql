-- Gate: per LLM model in use, the share of its annotation calls in raw.llm_cache that failed to parse is at most
-- var max_parse_failure_rate. The models in use are var llm_models, or those of the active annotator's version when
-- it is an LLM annotator (var llm_annotators; version 'llm-<prompt>:<model>', the model with unsafe characters
-- replaced: pipelines/annotate/llm.py). Annotation calls: stages in var llm_annotation_stages (null: every stage).
-- Parse failures: status 'failed' with an error outcome in var parse_failure_outcomes (null: every failed call).
-- No LLM annotator in use: nothing is checked. A failing row per model over the rate.
{{
    config(
        enabled=gate_enabled('max_parse_failure_rate'),
        meta={
            'threshold': 'max_parse_failure_rate',
            'measure': 'parse_failure_rate',
            'percent': true,
            'out_of': ['n_parse_failures', 'n_calls'],
            'of': ['model']
        }
    )
}}

{%- set llm_models = var('llm_models', none) %}
{%- set stages = var('llm_annotation_stages', none) %}
{%- set outcomes = var('parse_failure_outcomes', none) %}

with active_versions as (
    select distinct annotator_version from {{ source('raw', 'annotations') }}
    where {{ active_annotator_filter(source('raw', 'annotations')) }}
        and annotator in ({{ sql_string_list(var('llm_annotators', ['llm'])) }})
),

models_in_use as (
    select distinct substr(annotator_version, strpos(annotator_version, ':') + 1) as model_name
    from active_versions
    where strpos(annotator_version, ':') > 0
),

calls as (
    select
        model,
        status = 'failed'
        {%- if outcomes is not none %}
        and split_part(coalesce(error, ''), ':', 1) in ({{ sql_string_list(outcomes) }})
        {%- endif %} as is_parse_failure
    from {{ source('raw', 'llm_cache') }}
    {%- if llm_models is not none %}
    where model in ({{ sql_string_list(llm_models) }})
    {%- else %}
    where regexp_replace(model, '[^A-Za-z0-9_.:/+-]', '_', 'g') in (select models_in_use.model_name from models_in_use)
    {%- endif %}
    {%- if stages is not none %}
        and stage in ({{ sql_string_list(stages) }})
    {%- endif %}
),

rates as (
    select
        model,
        count(*) as n_calls,
        sum(case when is_parse_failure then 1 else 0 end) as n_parse_failures,
        cast(sum(case when is_parse_failure then 1 else 0 end) as double) / count(*) as parse_failure_rate
    from calls
    group by model
)

select
    model,
    n_calls,
    n_parse_failures,
    parse_failure_rate
from rates
where parse_failure_rate > {{ var('max_parse_failure_rate', 0) }}
