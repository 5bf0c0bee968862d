-- Wide concept-by-pair feature table, measure-rep: transformed raw-measure difference T(m_a) - T(m_b) per concept
-- (transform in dim_concepts.measure_transform; unscaled: the fit standardises per concept on its training part).
-- Only concepts with a raw measurement (every offline concept; none for LLM annotations).
{{ concept_feature_table('measure_diff', measured_only=true) }}
