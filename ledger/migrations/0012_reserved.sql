-- Stands in, on the encounters branch only, for 0012 (another branch's
-- migration), so that 0013 follows 1..12 without a gap. Delete this file
-- when that 0012 lands: the real one takes its number.
SELECT 1;
