-- Wide concept-by-pair features, measure-rep: transformed raw-measure difference T(m_a) - T(m_b) per concept
-- (transform in dim_concepts.measure_transform; unscaled: the fit standardises per concept on its training part).
-- Only concepts with a raw measurement (every offline concept; none for LLM annotations, then only the pair keys).
-- The fit's input (int_hmdr_fits) and fct_pair_features_measure.
{{ concept_feature_table('measure_diff', measured_only=true) }}
