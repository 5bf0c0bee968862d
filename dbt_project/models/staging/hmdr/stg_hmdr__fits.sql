-- Spark target only: the tall HMDR fit output that `python -m pipelines.build.fit_runner --engine spark` writes
-- between two dbt invocations, staged so that no mart reads a source directly. Same columns as the Python model
-- int_hmdr_fits on DuckDB (where this model is disabled); the fct_* marts read either through hmdr_fits().
{{ config(enabled=target.type == 'spark') }}

with source as (
    select * from {{ source('hmdr', 'int_hmdr_fits') }}
)

select * from source
