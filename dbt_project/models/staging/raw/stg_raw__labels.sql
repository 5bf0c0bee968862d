with source as (
    select * from {{ source('raw', 'labels') }}
),

renamed as (
    select
        -- ids
        label_id,
        item_id,
        source_pair_id,
        -- attributes
        mechanism,
        mechanism_type,
        winner,
        winner in ('a', 'b') as is_decisive,
        protocol,
        -- metadata
        source_file,
        source_line,
        first_ingest_id,
        ingested_at
    from source
)

select * from renamed
