-- Wide concept-by-pair features, comp-rep (values in {-1, 0, 1}): the fit's input (int_hmdr_fits) and fct_pair_features_comp.
{{ concept_feature_table('comp_value') }}
