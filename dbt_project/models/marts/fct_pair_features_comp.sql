-- The wide concept-by-pair feature table of the comp representation, as the fit read it (built in int_pair_features_comp).
-- One column per concept: the columns are data, hence the wildcard.
select * from {{ ref('int_pair_features_comp') }}  -- noqa: AM04
