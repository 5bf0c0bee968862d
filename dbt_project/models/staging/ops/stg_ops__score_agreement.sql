with source as (
    select * from {{ source('ops', 'score_agreement') }}
),

renamed as (
    select
        -- ids
        score_id,
        domain,
        -- attributes
        drift,
        -- measures
        n_pairs,
        n_agree,
        agreement,
        agreement_ci_low,
        agreement_ci_high,
        fit_n_pairs,
        fit_accuracy,
        fit_ci_low,
        fit_ci_high
    from source
)

select * from renamed
