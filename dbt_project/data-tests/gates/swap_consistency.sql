-- Gate: the swap-inconsistency rate of the active annotator (macros/active_annotator.sql): the share of its
-- swap-checked cells (is_consistent not null) that were inconsistent is at most var max_swap_inconsistency_rate.
-- The offline annotator checks no swaps: then nothing is checked. A failing row per annotator version over the rate.
{{
    config(
        enabled=gate_enabled('max_swap_inconsistency_rate'),
        meta={
            'threshold': 'max_swap_inconsistency_rate',
            'measure': 'swap_inconsistency_rate',
            'percent': true,
            'out_of': ['n_inconsistent', 'n_swap_checked'],
            'of': ['annotator', 'annotator_version']
        }
    )
}}

with active_annotations as (
    select * from {{ source('raw', 'annotations') }}
    where {{ active_annotator_filter(source('raw', 'annotations')) }}
),

rates as (
    select
        annotator,
        annotator_version,
        count(*) as n_cells,
        count(is_consistent) as n_swap_checked,
        sum(case when not is_consistent then 1 else 0 end) as n_inconsistent,
        cast(sum(case when not is_consistent then 1 else 0 end) as double)
        / count(is_consistent) as swap_inconsistency_rate
    from active_annotations
    group by annotator, annotator_version
    having count(is_consistent) > 0
)

select
    annotator,
    annotator_version,
    n_cells,
    n_swap_checked,
    n_inconsistent,
    swap_inconsistency_rate
from rates
where swap_inconsistency_rate > {{ var('max_swap_inconsistency_rate', 0) }}
