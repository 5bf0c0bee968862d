with source as (
    select * from {{ source('ops', 'builds') }}
),

renamed as (
    select
        -- ids
        build_id,
        -- attributes
        status,
        failed_stage,
        message,
        quality_success,
        published,
        -- measures
        n_items,
        n_labels,
        n_annotations,
        -- versions
        annotator,
        annotator_version,
        package_version,
        dbt_version,
        -- timestamps
        started_at,
        finished_at
    from source
)

select * from renamed
