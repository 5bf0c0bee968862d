-- Each wide feature table has one row per decisive raw.labels row (winner a or b) whose item has annotations of
-- the active annotator (macros/active_annotator.sql). One failing row per table whose row count differs.
with active_annotations as (
    select item_id from {{ source('raw', 'annotations') }}
    where {{ active_annotator_filter(source('raw', 'annotations')) }}
),

expected as (
    select count(*) as n_expected
    from {{ source('raw', 'labels') }} as labels
    where
        labels.winner in ('a', 'b')
        and labels.item_id in (select active_annotations.item_id from active_annotations)
),

feature_tables as (
    select
        'fct_pair_features_comp' as table_name,
        count(*) as n_rows
    from {{ ref('fct_pair_features_comp') }}
    union all
    select
        'fct_pair_features_score' as table_name,
        count(*) as n_rows
    from {{ ref('fct_pair_features_score') }}
    union all
    select
        'fct_pair_features_measure' as table_name,
        count(*) as n_rows
    from {{ ref('fct_pair_features_measure') }}
)

select
    feature_tables.table_name,
    feature_tables.n_rows,
    expected.n_expected
from feature_tables
cross join expected
where feature_tables.n_rows <> expected.n_expected
