with source as (
    select * from {{ source('ops', 'scored_explanations') }}
),

renamed as (
    select
        -- ids
        score_id,
        item_id,
        concept,
        -- measures
        value,
        weight,
        contribution,
        local_lift_pct
    from source
)

select * from renamed
