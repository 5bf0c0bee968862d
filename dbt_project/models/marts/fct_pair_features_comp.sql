-- Wide concept-by-pair feature table, comp-rep (values in {-1, 0, 1}).
{{ concept_feature_table('comp_value') }}
