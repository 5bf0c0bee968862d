with source as (
    select * from {{ source('ops', 'scored_pairs') }}
),

renamed as (
    select
        -- ids
        score_id,
        item_id,
        -- attributes
        domain,
        winner,
        predicted_winner,
        used_domain_weights,
        agrees,
        comparison,
        -- measures
        prob_a,
        logit
    from source
)

select * from renamed
