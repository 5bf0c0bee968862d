-- Wide concept-by-item features, score-rep (score_a - score_b in [-6, 6]): the new items of a `preflens score` run,
-- as int_pair_features_score gives the fit. Built on the score run's own file only (tag scoring).
{{ concept_feature_table('score_diff', rows='items') }}
