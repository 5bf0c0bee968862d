-- Concept drift across builds: each concept's weight and lift in every published build's fit, beside the same
-- concept in the previous published build's fit of the same mechanism x representation x control, the change
-- since then, and whether the two bootstrap intervals of the weight overlap.
-- Only published builds count (fct_builds.published): the fit marts also show the build in progress, and a fit
-- with no build record (dbt run by hand) has no build time to order by. Builds are ordered by the time the build
-- started (fct_builds.started_at), never by the text of their ids; a tie on time falls back to the id.
with effects as (
    select * from {{ ref('fct_concept_effects') }}
),

published as (
    select
        build_id,
        started_at
    from {{ ref('fct_builds') }}
    where published
),

-- one row per published fit of a mechanism x representation x control, with its place in that model's history
fits as (
    select distinct
        effects.fit_id,
        published.started_at as built_at,
        effects.mechanism,
        effects.representation,
        effects.control
    from effects
    inner join published on effects.fit_id = published.build_id
),

sequenced as (
    select
        fit_id,
        built_at,
        mechanism,
        representation,
        control,
        row_number() over (
            partition by mechanism, representation, control order by built_at, fit_id
        ) as build_number,
        lag(fit_id) over (
            partition by mechanism, representation, control order by built_at, fit_id
        ) as previous_fit_id
    from fits
),

current_fit as (
    select
        sequenced.fit_id,
        sequenced.built_at,
        sequenced.build_number,
        sequenced.previous_fit_id,
        effects.mechanism,
        effects.mechanism_type,
        effects.representation,
        effects.control,
        effects.domain,
        effects.concept,
        effects.total_weight,
        effects.total_weight_ci_low,
        effects.total_weight_ci_high,
        effects.global_lift_pct,
        effects.global_lift_ci_low,
        effects.global_lift_ci_high,
        effects.selection_frequency
    from effects
    inner join sequenced
        on
            effects.fit_id = sequenced.fit_id
            and effects.mechanism = sequenced.mechanism
            and effects.representation = sequenced.representation
            and effects.control = sequenced.control
)

select
    current_fit.fit_id,
    current_fit.built_at,
    current_fit.build_number,
    current_fit.mechanism,
    current_fit.mechanism_type,
    current_fit.representation,
    current_fit.control,
    current_fit.domain,
    current_fit.concept,
    current_fit.total_weight,
    current_fit.total_weight_ci_low,
    current_fit.total_weight_ci_high,
    current_fit.global_lift_pct,
    current_fit.global_lift_ci_low,
    current_fit.global_lift_ci_high,
    current_fit.selection_frequency,
    current_fit.previous_fit_id,
    previous_fit.total_weight as previous_total_weight,
    previous_fit.global_lift_pct as previous_global_lift_pct,
    current_fit.total_weight - previous_fit.total_weight as weight_change,
    current_fit.global_lift_pct - previous_fit.global_lift_pct as lift_change,
    -- null when either fit has no interval (hmdr_n_bootstrap = 0) or the concept was not in the previous fit
    case
        when
            current_fit.total_weight_ci_low is null or previous_fit.total_weight_ci_low is null
            then null
        else
            current_fit.total_weight_ci_low <= previous_fit.total_weight_ci_high
            and previous_fit.total_weight_ci_low <= current_fit.total_weight_ci_high
    end as intervals_overlap
from current_fit
left join effects as previous_fit
    on
        current_fit.previous_fit_id = previous_fit.fit_id
        and current_fit.mechanism = previous_fit.mechanism
        and current_fit.representation = previous_fit.representation
        and current_fit.control = previous_fit.control
        and current_fit.domain = previous_fit.domain
        and current_fit.concept = previous_fit.concept
