-- Preference items (prompt and both responses) for drill-down from any fact row; text is untrusted data.
select
    item_id,
    domain,
    source,
    prompt,
    response_a,
    response_b,
    model_a,
    model_b,
    response_a_chars,
    response_b_chars,
    ingested_at
from {{ ref('stg_raw__items') }}
