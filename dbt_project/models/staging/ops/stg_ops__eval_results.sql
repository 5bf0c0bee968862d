-- Evaluation protocol results written by `preflens evaluate` (ops.eval_results). Where the table is missing (a Spark
-- landing zone without it), an empty, typed relation stands in, so the main build never fails.
{%- set rel = adapter.get_relation(database=target.database, schema='ops', identifier='eval_results') %}
{%- if rel is not none %}
with source as (
    select * from {{ source('ops', 'eval_results') }}
)
{%- else %}
with source as (
    select
        null::{{ dbt.type_string() }} as eval_id,
        null::{{ dbt.type_string() }} as build_id,
        null::timestamp as created_at,
        null::{{ dbt.type_string() }} as mechanism,
        null::{{ dbt.type_string() }} as mechanism_type,
        null::{{ dbt.type_string() }} as representation,
        null::{{ dbt.type_string() }} as variant,
        null::{{ dbt.type_string() }} as protocol,
        null::integer as split,
        null::{{ dbt.type_string() }} as held_out_domain,
        null::{{ dbt.type_string() }} as domain,
        null::bigint as n_pairs,
        null::double as accuracy,
        null::double as log_loss,
        null::bigint as n_train,
        null::{{ dbt.type_string() }} as selected_config,
        null::{{ dbt.type_string() }} as tie_policy,
        null::bigint as n_ties_dropped,
        null::integer as n_splits,
        null::integer as n_seeds
    where false
)
{%- endif %}

select
    -- ids
    eval_id,
    build_id,
    -- grain
    mechanism,
    representation,
    variant,
    protocol,
    split,
    domain,
    -- attributes
    mechanism_type,
    held_out_domain,
    selected_config,
    tie_policy,
    -- measures
    n_pairs,
    accuracy,
    log_loss,
    n_train,
    n_ties_dropped,
    n_splits,
    n_seeds,
    -- timestamps
    created_at
from source
