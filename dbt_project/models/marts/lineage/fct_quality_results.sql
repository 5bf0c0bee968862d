{{ config(materialized='view') }}
-- Quality-gate results per build and expectation (what was checked before each publication).
select
    build_id,
    suite,
    table_name,
    expectation_type,
    column_name,
    success,
    expected,
    observed,
    unexpected_count,
    unexpected_percent,
    error,
    checked_at
from {{ ref('stg_ops__quality_results') }}
