-- Mechanisms that could not be fitted, and why (never dropped silently).
select
    fit_id,
    mechanism,
    representation,
    reason
from {{ hmdr_fits() }}
where record_type = 'skipped'
