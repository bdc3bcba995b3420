-- Stands in, on the db-rights branch only, for the lead's 0011 (the settle
-- path's unit of work), so that 0012 follows 1..11 without a gap. Delete
-- this file when 0011 lands: the real one takes its number.
SELECT 1;
