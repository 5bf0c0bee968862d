{{ config(materialized='view') }}
-- Mechanisms that were not fitted, and why (never dropped silently): the fit's own skips (too few decisive pairs,
-- one winning side, a representation without values), and every mechanism with verdicts that never reached the
-- fit, one row per representation: only ties (ties are not fitted: int_labelled_pairs), or no decisive verdict
-- on an annotated item. Of the latest fit when its build is published or in progress (macros/fit_lineage.sql).
{%- set representations = var('representations') | string | replace(' ', '') %}
with fit_skips as (
    select
        fit_id,
        mechanism,
        representation,
        reason
    from {{ hmdr_fits() }}
    where record_type = 'skipped'
),

mechanisms as (
    select * from {{ ref('dim_mechanisms') }}
),

fitted as (
    select distinct mechanism from {{ ref('int_labelled_pairs') }}
),

representations as (
    {%- for representation in representations.split(',') if representation %}
    {{ 'union all ' if not loop.first }}select '{{ representation | replace("'", "''") }}' as representation
    {%- endfor %}
),

never_fitted as (
    select
        {{ current_fit_id() }} as fit_id,
        mechanisms.mechanism,
        representations.representation,
        case
            when mechanisms.n_decisive = 0
                then
                    'no decisive verdicts: all ' || cast(mechanisms.n_ties as {{ dbt.type_string() }})
                    || ' verdicts are ties, and ties are not fitted'
            else
                'no decisive verdict on an annotated item ('
                || cast(mechanisms.n_decisive as {{ dbt.type_string() }})
                || ' decisive verdicts, none with annotations of the active annotator)'
        end as reason
    from mechanisms
    cross join representations
    where mechanisms.mechanism not in (select fitted.mechanism from fitted)
),

skips as (
    select * from fit_skips
    union all
    select * from never_fitted
)

{{ shown_fits('skips') }}
