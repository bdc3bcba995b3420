-- What each role may write, table by table (issue 14, item 1).
--
-- `medswitch serve` works as medswitch_app. It could INSERT settlement rows
-- that no entry backs (and end of day cleared from those rows alone, so
-- such a row was paid out), and UPDATE members (un-decease them, reactivate
-- cards, reset PIN counters), institutions, accumulators, business days,
-- and INSERT policies, statements and clearing rows. Now it writes nothing
-- directly: every write it makes goes through one of the owner's functions
-- below (SECURITY DEFINER), each doing one narrow thing:
--
--   settle          ms_record_checked: the settlement rows, their entries,
--                   accumulators, stays, pharmacy counts and PIN counts, in
--                   one call, if the members' state is still the one loaded;
--   cancel          ms_record_cancellation (the exact reversal of a settled
--                   settlement of the calling institution) and
--                   ms_record_tombstone (a cancellation that arrived before
--                   its Settle, for a request id nothing was settled under);
--   PIN checks      ms_pin_check(member, ok): one more failure, or back to 0;
--   a read that locks ms_load_cancel (member rows FOR UPDATE).
--
-- The operator's commands (import-reference, day close, payouts export,
-- recon bank, day status) work as a role of their own, medswitch_operator,
-- which holds exactly the direct writes they make: reference data at
-- import, business days and clearing rows at close, payout exports and bank
-- statements after it, entries through ms_post_set. It cannot write
-- settlements, cancellations, accumulators, balances or members' state
-- either. Day close now clears from what the ledger posted (ledger/
-- endofday.py) and refuses a day whose records and entries disagree.

DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'medswitch_operator') THEN
        CREATE ROLE medswitch_operator NOLOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE;
    END IF;
END
$$;

-- Day close reads a day's settlement and cancellation entries: a BRIN
-- range index finds them (entries are appended day after day) for almost
-- nothing on the settle path, where a B-tree entry per entry was measured
-- and dropped (0006).
CREATE INDEX entries_day ON entries USING brin (business_date);

-- A settlement pays out of the funds and the member's account, never into
-- them: with its legs checked against these amounts at close, a stated
-- amount below zero would be a credit to a member dressed as a settlement.
ALTER TABLE settlements
    ADD CONSTRAINT settlements_amounts_not_negative CHECK (
        pooled_fund_fen >= 0 AND serious_illness_fen >= 0 AND individual_account_fen >= 0);

-- A PIN checked outside a settlement (PreSettle, GetMember): a wrong one
-- counts one more failure in the UPDATE itself (several serve processes
-- checking at once all count), a right one resets the count. Returns the
-- count now stored (0 for a right PIN, NULL for no such member).
CREATE FUNCTION ms_pin_check(p_member_id text, p_ok boolean) RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    v_failures integer;
BEGIN
    IF p_ok THEN
        UPDATE members SET pin_failures = 0 WHERE member_id = p_member_id AND pin_failures <> 0;
        RETURN 0;
    END IF;
    UPDATE members SET pin_failures = pin_failures + 1 WHERE member_id = p_member_id
        RETURNING pin_failures INTO v_failures;
    RETURN v_failures;
END
$$;

-- A tombstone: the cancellation of an original request id that has not
-- been settled (its Settle, arriving later, is refused). Nothing moves; it
-- is booked into the open day. Returns that day.
CREATE FUNCTION ms_record_tombstone(p_reversal_id text, p_institution text, p_request_id text,
                                    p_fingerprint bytea, p_original_request_id text,
                                    p_reason text)
RETURNS date LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    v_day date;
BEGIN
    IF p_original_request_id IS NULL THEN
        RAISE EXCEPTION 'a tombstone names the original request id'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    PERFORM ms_key_lock(p_institution, p_original_request_id);
    v_day := ms_open_day();
    IF EXISTS (SELECT 1 FROM settlements s WHERE s.institution_code = p_institution
               AND s.request_id = p_original_request_id) THEN
        RAISE EXCEPTION 'request % of % was settled: cancel its settlement, not the request',
            p_original_request_id, p_institution USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;
    INSERT INTO cancellations (reversal_id, institution_code, request_id, fingerprint,
        original_request_id, business_date, reason)
    VALUES (p_reversal_id, p_institution, p_request_id, p_fingerprint, p_original_request_id,
        v_day, p_reason);
    RETURN v_day;
END
$$;

-- Reverse a settlement (negated postings, state changes taken back), now
-- with the owner's rights, and only a settled settlement of the institution
-- that asks. The switch checks that first (NOT_SETTLING_INSTITUTION,
-- NOT_CANCELLABLE); this is the database's own guard. A settlement of an
-- earlier day may be reversed: the reversal is booked into the open day,
-- as an adjustment is. The reversal itself is 0001's, under another name.
ALTER FUNCTION ms_record_cancellation(text, text, text, bytea, text, text, text)
    RENAME TO ms_reverse_settlement;
CREATE FUNCTION ms_record_cancellation(p_reversal_id text, p_institution text, p_request_id text,
    p_fingerprint bytea, p_settlement_id text, p_original_request_id text, p_reason text)
RETURNS bigint LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
BEGIN
    PERFORM ms_open_day();
    IF NOT EXISTS (SELECT 1 FROM settlements s WHERE s.settlement_id = p_settlement_id
                   AND s.institution_code = p_institution AND s.status = 'SETTLED') THEN
        RAISE EXCEPTION 'settlement % is not a settled settlement of %, which cannot cancel it',
            p_settlement_id, p_institution USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;
    RETURN ms_reverse_settlement(p_reversal_id, p_institution, p_request_id, p_fingerprint,
                                 p_settlement_id, p_original_request_id, p_reason);
END
$$;

-- ---------------------------------------------------------------------------
-- The application role: reads, and the functions above. Nothing else.

REVOKE INSERT, UPDATE, DELETE, TRUNCATE, REFERENCES, TRIGGER ON ALL TABLES IN SCHEMA public
    FROM medswitch_app;
REVOKE ALL ON ALL SEQUENCES IN SCHEMA public FROM medswitch_app;
-- Every function was executable by every role (PostgreSQL's default) and
-- granted to the application role wholesale (0001, 0003): the posting
-- functions among them, with which it could post any entry at all (a
-- credit to a member's account from a fund). Now a function runs only for
-- the roles it is granted to, new ones included (trigger functions need no
-- grant: the trigger runs them). The default is the owner's in this
-- database, for every schema (a schema's own default cannot take back what
-- the global one gives).
REVOKE EXECUTE ON ALL FUNCTIONS IN SCHEMA public FROM PUBLIC, medswitch_app;
ALTER DEFAULT PRIVILEGES REVOKE EXECUTE ON FUNCTIONS FROM PUBLIC;

-- The switch's entry points, and nothing else: what `serve` calls. Those
-- that write, or lock members' rows (which a role may do only with UPDATE
-- on the table), run as the owner. ms_load_states reads, and takes
-- settlement ids (nextval); ms_record_batch and ms_record_settlement, the
-- unchecked forms, are the owner's (fixtures), as is ms_record_rows.
ALTER FUNCTION ms_record_checked(date, ms_settle_row[], integer[], text[], bigint[])
    SECURITY DEFINER SET search_path = public, pg_temp;
ALTER FUNCTION ms_load_cancel(text, text, text, text)
    SECURITY DEFINER SET search_path = public, pg_temp;
GRANT EXECUTE ON FUNCTION ms_load_states(text[], bytea[], integer[], date[], integer, text[]),
    ms_record_checked(date, ms_settle_row[], integer[], text[], bigint[]),
    ms_load_cancel(text, text, text, text),
    ms_record_cancellation(text, text, text, bytea, text, text, text),
    ms_record_tombstone(text, text, text, bytea, text, text),
    ms_pin_check(text, boolean) TO medswitch_app;
GRANT USAGE ON SEQUENCE settlement_seq TO medswitch_app;

-- ---------------------------------------------------------------------------
-- The operator's commands: what import-reference, day close, payouts export
-- and recon bank write, and nothing the switch's own functions write.

GRANT USAGE ON SCHEMA public TO medswitch_operator;
GRANT SELECT ON ALL TABLES IN SCHEMA public TO medswitch_operator;
GRANT INSERT ON policies, catalog_versions, catalog_items, institutions, members,
    member_special_diseases, accounts TO medswitch_operator;
GRANT USAGE, UPDATE ON SEQUENCE accounts_account_id_seq TO medswitch_operator;
GRANT INSERT, UPDATE ON business_days TO medswitch_operator;
GRANT INSERT ON day_clearing, payout_exports, payout_export_entries, bank_statements,
    bank_statement_lines, bank_posting_keys TO medswitch_operator;
GRANT EXECUTE ON FUNCTION ms_post(text, text, text[], bigint[]),
    ms_post_set(text, text[], integer[], text[], bigint[]) TO medswitch_operator;
