-- Identifiers compare as bytes (COLLATE "C") in the encounters' tables and
-- the end of day's too, as in every other table (0001_baseline.sql). They
-- were made with the database's default collation, and a comparison of a
-- "C" column with a default one is made in "C" (the non-default collation
-- wins), which the default-collation B-trees cannot serve: the settlements'
-- statement trigger (ms_settlements_settle_encounters) probed
-- encounter_requests by (institution_code, request_id) with a sequential
-- scan of the whole table for each settlement of every batch, pharmacy
-- purchases included, a cost that grows with every encounter call the
-- region ever made (1,036 rows read at each probe on the benchmark's
-- database after two runs). The values do not change (byte order is the
-- natural order of these ASCII codes; equality is the same), only which
-- indexes may answer; the indexes on these columns are rebuilt.
-- A test holds every shared identifier column in "C"
-- (tests/integration/test_schema.py).
ALTER TABLE encounters
    ALTER COLUMN encounter_id TYPE text COLLATE "C",
    ALTER COLUMN institution_code TYPE text COLLATE "C",
    ALTER COLUMN member_id TYPE text COLLATE "C",
    ALTER COLUMN request_id TYPE text COLLATE "C",
    ALTER COLUMN settlement_id TYPE text COLLATE "C";
ALTER TABLE encounter_lines
    ALTER COLUMN encounter_id TYPE text COLLATE "C";
ALTER TABLE encounter_requests
    ALTER COLUMN institution_code TYPE text COLLATE "C",
    ALTER COLUMN request_id TYPE text COLLATE "C",
    ALTER COLUMN encounter_id TYPE text COLLATE "C";
ALTER TABLE day_clearing
    ALTER COLUMN institution_code TYPE text COLLATE "C";
ALTER TABLE bank_statement_lines
    ALTER COLUMN institution_code TYPE text COLLATE "C";
