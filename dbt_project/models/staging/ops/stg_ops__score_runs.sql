with source as (
    select * from {{ source('ops', 'score_runs') }}
),

renamed as (
    select
        -- ids
        score_id,
        fit_id,
        -- attributes
        mechanism,
        representation,
        annotator,
        annotator_version,
        files,
        input_db,
        drift,
        -- measures
        n_pairs,
        n_decisive,
        agreement,
        fit_accuracy,
        -- timestamps
        scored_at
    from source
)

select * from renamed
