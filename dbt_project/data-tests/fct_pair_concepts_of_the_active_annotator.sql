-- Every row of fct_pair_concepts is of the active annotator (var annotator, and annotator_version or its latest
-- version: macros/active_annotator.sql): one annotator, one version. The failing rows are the others.
select
    item_id,
    concept,
    annotator,
    annotator_version
from {{ ref('fct_pair_concepts') }}
where not ({{ active_annotator_filter(source('raw', 'annotations')) }})
