-- Wide concept-by-item features, comp-rep (values in {-1, 0, 1}): the new items of a `preflens score` run, as
-- int_pair_features_comp gives the fit. Built on the score run's own file only (tag scoring).
{{ concept_feature_table('comp_value', rows='items') }}
