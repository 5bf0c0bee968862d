with source as (
    select * from {{ source('raw', 'concepts') }}
),

renamed as (
    select
        -- ids
        concept,
        annotator,
        annotator_version,
        definition_hash,
        -- attributes
        description,
        definition,
        origin,
        is_shared,
        domains,
        measure_transform
    from source
)

select * from renamed
