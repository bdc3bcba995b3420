-- ms_changes_json is STABLE, as what it calls is: jsonb_build_object is
-- STABLE (a value's text may depend on settings), and PostgreSQL inlines a
-- SQL function only if it is no less volatile than its body. Declared
-- IMMUTABLE, it was called as a function in ms_record_rows' INSERT of the
-- settlements, its body parsed and planned again in every batch and run per
-- row: 6 % of the writer's PostgreSQL CPU. Inlined, the INSERT builds the
-- changes' jsonb in its own expression. Its result is unchanged (its
-- arguments are integers, dates and text, whose jsonb does not depend on
-- settings). A test holds it inlined (tests/integration/test_ledger_settle.py).
ALTER FUNCTION ms_changes_json(ms_settle_row) STABLE;
