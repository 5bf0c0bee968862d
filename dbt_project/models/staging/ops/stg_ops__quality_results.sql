with source as (
    select * from {{ source('ops', 'quality_results') }}
),

renamed as (
    select
        -- ids
        build_id,
        suite,
        {{ adapter.quote('table') }} as table_name,
        expectation_type,
        {{ adapter.quote('column') }} as column_name,
        -- attributes
        success,
        expected,
        observed,
        error,
        -- measures
        unexpected_count,
        unexpected_percent,
        -- timestamps
        checked_at
    from source
)

select * from renamed
