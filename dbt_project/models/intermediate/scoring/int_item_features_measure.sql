-- Wide concept-by-item features, measure-rep: the new items of a `preflens score` run (every item of
-- stg_raw__items with its domain), T(m_a) - T(m_b) per concept with a raw measurement, as int_pair_features_measure
-- gives the fit (the same macro on the same int_item_concepts). Built on the score run's own file only (tag scoring).
{{ concept_feature_table('measure_diff', measured_only=true, rows='items') }}
