-- Per mechanism pair, domain and concept of the latest fit: the fitted contrast "A rewards the concept more than
-- B does" (fct_mechanism_contrasts: delta_A - delta_B of one joint HMDR on the items both judged, item-bootstrap
-- interval, Benjamini-Hochberg over the concepts of each pair x domain). Both orientations of every pair, so
-- "what does the judge reward that humans don't": mechanism_a = the judge, mechanism_b = the human raters,
-- distinguishable first, then by contrast_lift_pct.
with contrasts as (
    select * from {{ ref('fct_mechanism_contrasts') }}
    where fit_id = (select fit_id from {{ ref('dim_latest_fit') }})
),

oriented as (
    select
        fit_id,
        representation,
        domain,
        concept,
        mechanism_a,
        mechanism_type_a,
        mechanism_b,
        mechanism_type_b,
        weight_a,
        weight_b,
        estimate,
        ci_low,
        ci_high,
        selection_frequency,
        p_value,
        p_adjusted,
        distinguishable,
        n_shared_items,
        n_pairs_a,
        n_pairs_b
    from contrasts
    union all
    select
        fit_id,
        representation,
        domain,
        concept,
        mechanism_b as mechanism_a,
        mechanism_type_b as mechanism_type_a,
        mechanism_a as mechanism_b,
        mechanism_type_a as mechanism_type_b,
        weight_b as weight_a,
        weight_a as weight_b,
        0.0 - estimate as estimate,
        0.0 - ci_high as ci_low,
        0.0 - ci_low as ci_high,
        selection_frequency,
        p_value,
        p_adjusted,
        distinguishable,
        n_shared_items,
        n_pairs_b as n_pairs_a,
        n_pairs_a as n_pairs_b
    from contrasts
)

select
    fit_id,
    representation,
    domain,
    concept,
    mechanism_a,
    mechanism_type_a,
    mechanism_b,
    mechanism_type_b,
    50.0 * weight_a as lift_a_pct,
    50.0 * weight_b as lift_b_pct,
    50.0 * estimate as lift_diff_pct,
    50.0 * ci_low as lift_diff_ci_low,
    50.0 * ci_high as lift_diff_ci_high,
    selection_frequency,
    p_value,
    p_adjusted,
    distinguishable,
    case
        when not distinguishable then 'not distinguishable'
        when estimate > 0 then 'a rewards more'
        else 'b rewards more'
    end as verdict,
    n_shared_items,
    n_pairs_a,
    n_pairs_b
from oriented
