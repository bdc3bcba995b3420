-- The opening entry of an import goes through ms_post_set like every other
-- entry (by account key; a million members import as fast): one fewer
-- function running with the owner's rights, and one implementation of
-- posting's checks, chain and balance moves.
DROP FUNCTION ms_post_ids(text, text, bigint[], bigint[]);
