-- Wide concept-by-pair feature table, score-rep (score_a - score_b in [-6, 6]).
{{ concept_feature_table('score_diff') }}
