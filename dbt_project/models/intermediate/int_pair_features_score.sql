-- Wide concept-by-pair features, score-rep (score_a - score_b in [-6, 6]): the fit's input (int_hmdr_fits) and fct_pair_features_score.
{{ concept_feature_table('score_diff') }}
