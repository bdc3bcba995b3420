-- End of day: clearing of closed days, payout exports, bank reconciliation.
--
-- All append-only, like the ledger itself: what a close computed, when a
-- day's payouts were exported, and which statement lines were reconciled
-- and posted are facts that are recorded once and never rewritten. Running
-- an export or a reconciliation again reads these rows instead of posting.

-- What closing a day computed per institution (one row per institution with
-- settlements or cancellations in the day). payout_fen > 0 rows are the day's
-- payout instructions, end-to-end id 'MS' || YYYYMMDD || institution_code.
CREATE TABLE day_clearing (
    business_date date NOT NULL REFERENCES business_days,
    institution_code text NOT NULL,
    institution_name text NOT NULL,
    pooled_fund_fen bigint NOT NULL,
    serious_illness_fen bigint NOT NULL,
    individual_account_fen bigint NOT NULL,
    settlement_count integer NOT NULL,
    receivable_before_fen bigint NOT NULL CHECK (receivable_before_fen >= 0),
    receivable_after_fen bigint NOT NULL CHECK (receivable_after_fen >= 0),
    payout_fen bigint NOT NULL CHECK (payout_fen >= 0),
    carry_entry_id bigint REFERENCES entries DEFERRABLE INITIALLY DEFERRED,
    PRIMARY KEY (business_date, institution_code),
    -- Conservation, row by row: paid - owed after = day net - owed before.
    CHECK (payout_fen - receivable_after_fen
           = pooled_fund_fen + serious_illness_fen + individual_account_fen - receivable_before_fen)
);

-- A day's payouts were exported (and moved into payouts in transit) once;
-- created_at is the file's CreDtTm, reused when the files are written again.
CREATE TABLE payout_exports (
    business_date date PRIMARY KEY REFERENCES business_days,
    created_at timestamptz NOT NULL,
    debtor_account text NOT NULL,
    payout_count integer NOT NULL,
    total_fen bigint NOT NULL
);
CREATE TABLE payout_export_entries (
    end_to_end_id text PRIMARY KEY,
    business_date date NOT NULL REFERENCES payout_exports,
    entry_id bigint NOT NULL REFERENCES entries DEFERRABLE INITIALLY DEFERRED
);

-- Every statement reconciled, and each of its report lines.
CREATE TABLE bank_statements (
    sha256 text PRIMARY KEY,
    business_date date NOT NULL REFERENCES business_days,
    account_id text NOT NULL,
    format text NOT NULL,
    statement_id text NOT NULL,
    source_name text NOT NULL,
    recorded_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE bank_statement_lines (
    sha256 text NOT NULL REFERENCES bank_statements,
    line_no integer NOT NULL,
    status text NOT NULL CHECK (status IN ('MATCHED', 'AMOUNT_MISMATCH', 'MISSING_IN_BANK',
        'UNEXPECTED_IN_BANK', 'DUPLICATE_IN_BANK', 'RETURNED')),
    end_to_end_id text NOT NULL,
    institution_code text NOT NULL,
    expected_fen bigint,
    bank_fen bigint,
    bank_reference text NOT NULL,
    entry_id bigint REFERENCES entries DEFERRABLE INITIALLY DEFERRED,
    PRIMARY KEY (sha256, line_no)
);
-- What has been posted from bank statements, by key: a payout is settled at
-- the bank once ('settled:' || e2e), and one bank entry moves the ledger once
-- however many statements report it ('ref:' || account || ':' || reference).
CREATE TABLE bank_posting_keys (
    posting_key text PRIMARY KEY,
    sha256 text NOT NULL REFERENCES bank_statements,
    entry_id bigint NOT NULL REFERENCES entries DEFERRABLE INITIALLY DEFERRED
);

CREATE TRIGGER day_clearing_append_only BEFORE UPDATE OR DELETE ON day_clearing
    FOR EACH ROW EXECUTE FUNCTION ms_forbid_change();
CREATE TRIGGER payout_exports_append_only BEFORE UPDATE OR DELETE ON payout_exports
    FOR EACH ROW EXECUTE FUNCTION ms_forbid_change();
CREATE TRIGGER payout_export_entries_append_only BEFORE UPDATE OR DELETE ON payout_export_entries
    FOR EACH ROW EXECUTE FUNCTION ms_forbid_change();
CREATE TRIGGER bank_statements_append_only BEFORE UPDATE OR DELETE ON bank_statements
    FOR EACH ROW EXECUTE FUNCTION ms_forbid_change();
CREATE TRIGGER bank_statement_lines_append_only BEFORE UPDATE OR DELETE ON bank_statement_lines
    FOR EACH ROW EXECUTE FUNCTION ms_forbid_change();
CREATE TRIGGER bank_posting_keys_append_only BEFORE UPDATE OR DELETE ON bank_posting_keys
    FOR EACH ROW EXECUTE FUNCTION ms_forbid_change();

GRANT SELECT, INSERT ON day_clearing, payout_exports, payout_export_entries, bank_statements,
    bank_statement_lines, bank_posting_keys TO medswitch_app;
