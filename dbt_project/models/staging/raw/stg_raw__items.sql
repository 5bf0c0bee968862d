with source as (
    select * from {{ source('raw', 'items') }}
),

renamed as (
    select
        -- ids
        item_id,
        source_item_id,
        -- attributes
        domain,
        source,
        prompt,
        response_a,
        response_b,
        model_a,
        model_b,
        length(response_a) as response_a_chars,
        length(response_b) as response_b_chars,
        -- metadata
        first_ingest_id,
        ingested_at
    from source
)

select * from renamed
