{{ config(materialized='view') }}
-- Quality results per build and check (what was checked before each publication): the dbt tests of the build's
-- `dbt build` (invariants), the quality gates (dbt tests tagged gate) and the publication contract (Great Expectations).
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
