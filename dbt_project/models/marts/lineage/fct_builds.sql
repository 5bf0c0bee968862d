{{ config(materialized='view') }}
-- Every build: when, on how much data, with which annotator and tool versions, and how it ended.
-- A view, so the served copy (materialised at publication) includes the build being published.
select
    build_id,
    status,
    failed_stage,
    message,
    quality_success,
    published,
    n_items,
    n_labels,
    n_annotations,
    annotator,
    annotator_version,
    package_version,
    dbt_version,
    started_at,
    finished_at,
    {{ seconds_between('started_at', 'finished_at') }} as duration_seconds
from {{ ref('stg_ops__builds') }}
