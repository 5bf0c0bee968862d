-- Gate: every decisive labelled pair has features, i.e. its item has annotations of the active annotator
-- (macros/active_annotator.sql). The failing rows are the decisive raw.labels rows without them; more than
-- var max_labels_without_features of them fails the gate.
{{
    config(
        enabled=gate_enabled('max_labels_without_features'),
        meta={
            'threshold': 'max_labels_without_features',
            'counted': ['decisive label without features', 'decisive labels without features']
        },
        warn_if='>' ~ var('max_labels_without_features', 0),
        error_if='>' ~ var('max_labels_without_features', 0)
    )
}}

with annotated_items as (
    select distinct item_id from {{ source('raw', 'annotations') }}
    where {{ active_annotator_filter(source('raw', 'annotations')) }}
)

select
    labels.label_id,
    labels.item_id,
    labels.mechanism,
    labels.winner
from {{ source('raw', 'labels') }} as labels
left join annotated_items on labels.item_id = annotated_items.item_id
where
    labels.winner in ('a', 'b')
    and annotated_items.item_id is null
