-- Gate, recorded and not blocking (severity warn): the concept model of the latest fit predicts each mechanism
-- better than response length alone (rpt_model_baselines.beats_length_only). A failing row per mechanism and
-- representation that does not.
{{ config(enabled=gate_enabled(), severity='warn') }}

select
    mechanism,
    representation,
    accuracy,
    accuracy_length_only,
    beats_length_only
from {{ ref('rpt_model_baselines') }}
where accuracy_length_only is not null
    and not beats_length_only
