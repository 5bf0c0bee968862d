with source as (
    select * from {{ source('raw', 'quarantine') }}
),

renamed as (
    select
        ingest_id,
        source_file,
        source_line,
        reason,
        raw_text,
        quarantined_at
    from source
)

select * from renamed
