-- A bank statement may carry the payouts of several business days (a bank
-- books Friday's and Saturday's payouts on Monday), so it is reconciled
-- once per day: a statement is recorded per (sha256, business_date), and its
-- report lines and posting keys say which day's reconciliation made them.
-- The tables stay append-only; the append-only triggers are lifted only for
-- the back-fill of the new column, inside this migration's transaction.

ALTER TABLE bank_statement_lines DROP CONSTRAINT bank_statement_lines_sha256_fkey;
ALTER TABLE bank_posting_keys DROP CONSTRAINT bank_posting_keys_sha256_fkey;
ALTER TABLE bank_statements DROP CONSTRAINT bank_statements_pkey;
ALTER TABLE bank_statements ADD PRIMARY KEY (sha256, business_date);

ALTER TABLE bank_statement_lines ADD COLUMN business_date date;
ALTER TABLE bank_posting_keys ADD COLUMN business_date date;
ALTER TABLE bank_statement_lines DISABLE TRIGGER bank_statement_lines_append_only;
ALTER TABLE bank_posting_keys DISABLE TRIGGER bank_posting_keys_append_only;
UPDATE bank_statement_lines l SET business_date = s.business_date
    FROM bank_statements s WHERE s.sha256 = l.sha256;
UPDATE bank_posting_keys k SET business_date = s.business_date
    FROM bank_statements s WHERE s.sha256 = k.sha256;
ALTER TABLE bank_statement_lines ENABLE TRIGGER bank_statement_lines_append_only;
ALTER TABLE bank_posting_keys ENABLE TRIGGER bank_posting_keys_append_only;

ALTER TABLE bank_statement_lines ALTER COLUMN business_date SET NOT NULL,
    DROP CONSTRAINT bank_statement_lines_pkey,
    ADD PRIMARY KEY (sha256, business_date, line_no),
    ADD FOREIGN KEY (sha256, business_date) REFERENCES bank_statements (sha256, business_date);
ALTER TABLE bank_posting_keys ALTER COLUMN business_date SET NOT NULL,
    ADD FOREIGN KEY (sha256, business_date) REFERENCES bank_statements (sha256, business_date);
