{{ config(materialized='view') }}
-- The latest fit: the one owner of "latest" for every rpt_ model and every reader of the served copy. Of the fits
-- fct_fit_configs shows (published, or the build in progress), so a failed build never becomes "latest"; a view,
-- so that holds as soon as the build is recorded failed.
-- Ordered by the time the fit ran (fitted_at), never by the text of its id (a fit id such as 'manual' sorts
-- above every timestamped one).
with configs as (
    select * from {{ ref('fct_fit_configs') }}
),

fits as (
    select
        fit_id,
        max(fitted_at) as fitted_at,
        count(*) as n_models
    from configs
    group by fit_id
)

select
    fit_id,
    fitted_at,
    n_models
from fits
order by fitted_at desc nulls last, fit_id desc
limit 1
