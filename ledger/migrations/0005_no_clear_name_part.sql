-- Names are personal data, encrypted at rest: not even their first
-- character and length stay in clear. The masked form that GetMember shows
-- is derived from the encrypted name when it is shown (ledger.store
-- Ledger.member_name_masked); the column is kept, empty, for the functions
-- that return it.
UPDATE members SET name_masked = '' WHERE name_masked <> '';
