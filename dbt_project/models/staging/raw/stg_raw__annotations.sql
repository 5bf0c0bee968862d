with source as (
    select * from {{ source('raw', 'annotations') }}
),

renamed as (
    select
        -- ids
        item_id,
        concept,
        annotator,
        annotator_version,
        -- measures
        measure_a,
        measure_b,
        score_a,
        score_b,
        comp_value,
        score_diff,
        is_relevant,
        is_consistent,
        -- metadata
        annotated_at
    from source
)

select * from renamed
