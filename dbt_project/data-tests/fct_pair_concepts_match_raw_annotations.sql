-- fct_pair_concepts holds exactly the raw.annotations rows of the active annotator (var annotator, and
-- annotator_version or its latest version: macros/active_annotator.sql). Fails with one row when the counts differ.
with active_annotations as (
    select item_id from {{ source('raw', 'annotations') }}
    where {{ active_annotator_filter(source('raw', 'annotations')) }}
),

counts as (
    select
        (select count(*) from {{ ref('fct_pair_concepts') }}) as n_rows,
        (select count(*) from active_annotations) as n_expected
)

select
    n_rows,
    n_expected
from counts
where n_rows <> n_expected
