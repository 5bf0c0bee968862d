with source as (
    select * from {{ source('raw', 'domains') }}
),

renamed as (
    select
        domain,
        domain_source,
        first_ingest_id
    from source
)

select * from renamed
