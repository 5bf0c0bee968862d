-- The wide concept-by-pair feature table of the score representation, as the fit read it (built in int_pair_features_score).
-- One column per concept: the columns are data, hence the wildcard.
select * from {{ ref('int_pair_features_score') }}  -- noqa: AM04
