-- MedSwitch ledger schema: the baseline.
--
-- The whole schema of a new database, in one file: roles, tables (with
-- their constraints and indexes), types, the owner's functions, triggers,
-- and what each role may do. Later changes are further numbered files in
-- this directory (0002_..., applied in order by ledger/db.py).
-- ledger/schema.snapshot describes what this makes, object by object, and
-- tests/integration/test_schema_snapshot.py holds the two together.
--
-- The database itself holds the invariants, so that no application bug (and
-- no application role) can break them:
--   * entries and postings are append-only (triggers raise on UPDATE/DELETE/
--     TRUNCATE), and written only by the owner's posting functions
--     (ms_post_set and its callers), which make an entry and its postings in
--     one call, from accounts that exist, and chain its hash;
--   * the postings of every entry sum to zero, checked at commit by a
--     deferred constraint trigger on the chain lane the entry was appended to;
--   * a member's individual account never goes below zero: its balance row
--     carries CHECK (balance_fen >= 0) and is moved by the posting functions
--     in the same statement as the postings. Hot accounts (funds, institution
--     payables) have no balance row: their balance is the sum of their
--     postings, so concurrent settlements never queue on them;
--   * exactly one business day is open (partial unique index), and days only
--     move forward;
--   * the application role (`medswitch serve`) reads, and writes only through
--     the owner's functions; the operator's role writes reference data, days,
--     clearing, payouts and statements, and posts through ms_post_set.
-- Sign convention: a posting's amount_fen is positive for a debit and
-- negative for a credit; an account's balance in its normal side is
-- normal_sign * sum(amount_fen) (normal_sign 1 for DEBIT, -1 for CREDIT).
--
-- Foreign keys guard what a role could get wrong, not what the owner's
-- functions already guarantee: postings, entries and settlements carry
-- none to entries, accounts or business days (each per-row check took
-- locks every settlement queued on; the functions take ids and days from
-- the rows they hold), and `medswitch ledger verify` reports any row made
-- behind the functions' back. Identifiers compare as bytes (COLLATE "C"):
-- every settlement probes B-trees on them, and byte order is also the
-- natural order of these ASCII codes.

-- ===========================================================================
-- Roles (cluster-wide, so made only if missing). No extensions are needed.

DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'medswitch_app') THEN
        CREATE ROLE medswitch_app NOLOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'medswitch_operator') THEN
        CREATE ROLE medswitch_operator NOLOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE;
    END IF;
END
$$;

-- ===========================================================================
-- Tables, with their constraints and indexes

-- ---------------------------------------------------------------------------
-- The books

CREATE TABLE business_days (
    business_date date PRIMARY KEY,
    status text NOT NULL CHECK (status IN ('OPEN', 'CLOSED')),
    opened_at timestamptz NOT NULL DEFAULT now(),
    closed_at timestamptz
);
CREATE UNIQUE INDEX business_days_one_open ON business_days ((true)) WHERE status = 'OPEN';

CREATE TABLE accounts (
    account_id bigserial PRIMARY KEY,
    account_key text COLLATE "C" NOT NULL UNIQUE,
    kind text NOT NULL CHECK (kind IN (
        'MEMBER_INDIVIDUAL', 'POOLED_FUND', 'SERIOUS_ILLNESS_FUND',
        'INSTITUTION_PAYABLE', 'INSTITUTION_RECEIVABLE', 'FUND_BANK',
        'PAYOUTS_IN_TRANSIT', 'SETTLED_AT_BANK', 'SUSPENSE', 'OPENING_BALANCE')),
    normal_side text NOT NULL CHECK (normal_side IN ('DEBIT', 'CREDIT')),
    created_at timestamptz NOT NULL DEFAULT now(),
    -- A member's account is a credit account (debits lower its balance,
    -- which cannot go below zero).
    CONSTRAINT accounts_normal_side CHECK (normal_side = CASE
        WHEN kind IN ('MEMBER_INDIVIDUAL', 'POOLED_FUND', 'SERIOUS_ILLNESS_FUND',
                      'INSTITUTION_PAYABLE') THEN 'CREDIT'
        ELSE 'DEBIT' END)
);

-- Running balances only for accounts that carry a limit (members): made at
-- zero by the database when a member account is opened
-- (accounts_balance_rows), moved only by the posting functions. Room on each
-- page for the new version of a row keeps its update HOT.
CREATE TABLE account_balances (
    account_id bigint PRIMARY KEY REFERENCES accounts,
    normal_sign smallint NOT NULL CHECK (normal_sign IN (1, -1)),
    balance_fen bigint NOT NULL CHECK (balance_fen >= 0)
) WITH (fillfactor = 90);

-- Tamper-evident hash chains: 64 lanes, so that concurrent writers rarely
-- share a lane head (ms_append_entries).
CREATE TABLE chain_lanes (
    lane smallint PRIMARY KEY,
    last_seq bigint NOT NULL DEFAULT 0,
    last_hash bytea NOT NULL DEFAULT '\x0000000000000000000000000000000000000000000000000000000000000000'
);
INSERT INTO chain_lanes (lane) SELECT g FROM generate_series(0, 63) g;

CREATE SEQUENCE entries_entry_id_seq;
CREATE TABLE entries (
    entry_id bigint PRIMARY KEY,
    lane smallint NOT NULL,
    lane_seq bigint NOT NULL,
    business_date date NOT NULL,
    kind text NOT NULL CHECK (kind IN (
        'OPENING', 'SETTLEMENT', 'CANCELLATION', 'PAYOUT', 'BANK_SETTLED',
        'BANK_RETURN', 'ADJUSTMENT', 'CREDIT')),
    ref text NOT NULL DEFAULT '',
    posted_at timestamptz NOT NULL DEFAULT now(),
    txid bigint NOT NULL DEFAULT txid_current(),
    prev_hash bytea NOT NULL,
    hash bytea NOT NULL,
    UNIQUE (lane, lane_seq)
);
-- Day close reads a day's entries: a BRIN range index finds them (entries
-- are appended day after day) for almost nothing on the settle path, where
-- a B-tree entry per entry was measured and dropped.
CREATE INDEX entries_day ON entries USING brin (business_date);

CREATE TABLE postings (
    entry_id bigint NOT NULL,
    seq integer NOT NULL,
    account_id bigint NOT NULL,
    amount_fen bigint NOT NULL CHECK (amount_fen <> 0),
    PRIMARY KEY (entry_id, seq)
);
CREATE INDEX postings_account ON postings (account_id, entry_id);

-- ---------------------------------------------------------------------------
-- Reference data and member state

CREATE TABLE policies (
    version text PRIMARY KEY,
    effective_from date NOT NULL,
    toml_text text NOT NULL,
    loaded_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE catalog_versions (
    version integer PRIMARY KEY,
    effective_from date NOT NULL,
    loaded_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE catalog_items (
    version integer NOT NULL REFERENCES catalog_versions,
    code text NOT NULL,
    name text NOT NULL,
    kind text NOT NULL,
    item_class text NOT NULL,
    preselfpay_bp integer NOT NULL,
    price_cap_fen bigint,
    rx text NOT NULL,
    restrictions text NOT NULL,
    PRIMARY KEY (version, code)
);

CREATE TABLE institutions (
    code text COLLATE "C" PRIMARY KEY,
    name text NOT NULL,
    kind text NOT NULL CHECK (kind IN ('HOSPITAL', 'CLINIC', 'PHARMACY')),
    level text NOT NULL CHECK (level IN ('', 'L1', 'L2', 'L3')),
    region text NOT NULL,
    status text NOT NULL CHECK (status IN ('ACTIVE', 'SUSPENDED', 'REVOKED'))
);

-- Names and id numbers are personal data, encrypted at rest (not even a
-- masked form is stored: GetMember derives it from the encrypted name).
-- state_seq is the version of everything the engine reads about the member
-- (PIN failures, status, card, balance, accumulators, stays, purchases): it
-- moves with every change (members_state_seq, cancellations_move_member,
-- the recording functions), and ms_record_checked records a batch only if
-- every member's version is still the one loaded. Every settlement updates
-- its member's row: room on each page keeps the update HOT.
CREATE TABLE members (
    member_id text COLLATE "C" PRIMARY KEY,
    card_hmac bytea NOT NULL UNIQUE,
    name_enc bytea NOT NULL,
    id_number_enc bytea NOT NULL,
    birth_date date NOT NULL,
    category text NOT NULL CHECK (category IN ('EMPLOYEE', 'RETIREE', 'RESIDENT', 'RETIRED_CADRE')),
    status text NOT NULL CHECK (status IN ('ACTIVE', 'SUSPENDED', 'DECEASED')),
    card_status text NOT NULL CHECK (card_status IN ('ACTIVE', 'LOST')),
    region text NOT NULL,
    account_id bigint NOT NULL UNIQUE REFERENCES accounts,
    pin_hash bytea NOT NULL,
    pin_failures integer NOT NULL DEFAULT 0 CHECK (pin_failures >= 0),
    state_seq bigint NOT NULL DEFAULT 0
) WITH (fillfactor = 85);

CREATE TABLE member_special_diseases (
    member_id text COLLATE "C" NOT NULL REFERENCES members,
    disease_code text NOT NULL,
    valid_from date NOT NULL,
    valid_to date NOT NULL CHECK (valid_to >= valid_from),
    PRIMARY KEY (member_id, disease_code, valid_from)
);

-- Column names are those of adjudication.model.YearAccumulators. A
-- member's accumulators and pharmacy counts are written only by
-- ms_add_changes and ms_apply_changes_set, for members whose rows the same
-- statement holds, and members are never deleted: no foreign key (its
-- per-row check ran on every member's first settlement of a year).
CREATE TABLE member_year (
    member_id text COLLATE "C" NOT NULL,
    year integer NOT NULL,
    outpatient_deductible_used_fen bigint NOT NULL DEFAULT 0 CHECK (outpatient_deductible_used_fen >= 0),
    outpatient_pooled_fen bigint NOT NULL DEFAULT 0 CHECK (outpatient_pooled_fen >= 0),
    basic_pooled_fen bigint NOT NULL DEFAULT 0 CHECK (basic_pooled_fen >= 0),
    inpatient_above_deductible_fen bigint NOT NULL DEFAULT 0 CHECK (inpatient_above_deductible_fen >= 0),
    new_admissions integer NOT NULL DEFAULT 0 CHECK (new_admissions >= 0),
    serious_illness_base_fen bigint NOT NULL DEFAULT 0 CHECK (serious_illness_base_fen >= 0),
    serious_illness_paid_fen bigint NOT NULL DEFAULT 0 CHECK (serious_illness_paid_fen >= 0),
    PRIMARY KEY (member_id, year)
) WITH (fillfactor = 90);

-- Column names are those of adjudication.model.InpatientStay.
CREATE TABLE inpatient_stays (
    settlement_id text COLLATE "C" PRIMARY KEY,
    member_id text COLLATE "C" NOT NULL REFERENCES members,
    primary_diagnosis text NOT NULL,
    admission_date date NOT NULL,
    discharge_date date NOT NULL,
    new_admission boolean NOT NULL
);
CREATE INDEX inpatient_stays_member ON inpatient_stays (member_id, discharge_date);

CREATE TABLE pharmacy_daily (
    member_id text COLLATE "C" NOT NULL,
    service_date date NOT NULL,
    purchases integer NOT NULL CHECK (purchases >= 0),
    PRIMARY KEY (member_id, service_date)
);

-- ---------------------------------------------------------------------------
-- Settlements and cancellations

CREATE SEQUENCE settlement_seq;

-- A settlement's entry is written by the same call, before the settlement
-- row; its business day is the open day the call holds.
CREATE TABLE settlements (
    settlement_id text COLLATE "C" PRIMARY KEY,
    institution_code text COLLATE "C" NOT NULL,
    request_id text COLLATE "C" NOT NULL,
    fingerprint bytea NOT NULL,
    status text NOT NULL CHECK (status IN ('SETTLED', 'REJECTED')),
    member_id text COLLATE "C",
    business_date date NOT NULL,
    service_date date,
    benefit_year integer,
    policy_version text NOT NULL DEFAULT '',
    catalog_version integer NOT NULL DEFAULT 0,
    total_fen bigint NOT NULL DEFAULT 0,
    pooled_fund_fen bigint NOT NULL DEFAULT 0,
    serious_illness_fen bigint NOT NULL DEFAULT 0,
    individual_account_fen bigint NOT NULL DEFAULT 0,
    answer jsonb NOT NULL,
    changes jsonb,
    entry_id bigint,
    created_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (institution_code, request_id),
    -- A settlement pays out of the funds and the member's account, never
    -- into them: with its legs checked against these amounts at close, a
    -- stated amount below zero would be a credit dressed as a settlement.
    CONSTRAINT settlements_amounts_not_negative CHECK (
        pooled_fund_fen >= 0 AND serious_illness_fen >= 0 AND individual_account_fen >= 0)
);
CREATE INDEX settlements_day ON settlements (business_date, institution_code);

CREATE TABLE cancellations (
    reversal_id text COLLATE "C" PRIMARY KEY,
    institution_code text COLLATE "C" NOT NULL,
    request_id text COLLATE "C" NOT NULL,
    fingerprint bytea NOT NULL,
    settlement_id text COLLATE "C" UNIQUE REFERENCES settlements,
    original_request_id text COLLATE "C",
    business_date date NOT NULL REFERENCES business_days,
    reason text NOT NULL DEFAULT '',
    balance_after_fen bigint NOT NULL DEFAULT 0,
    entry_id bigint REFERENCES entries DEFERRABLE INITIALLY DEFERRED,
    created_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (institution_code, request_id)
);
-- A request cancelled before it arrived: its original request id, cancelled before its Settle.
CREATE UNIQUE INDEX cancellations_request_cancelled ON cancellations (institution_code, original_request_id)
    WHERE settlement_id IS NULL;
CREATE INDEX cancellations_day ON cancellations (business_date);

-- ---------------------------------------------------------------------------
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

-- Every statement reconciled, and each of its report lines. A bank
-- statement may carry the payouts of several business days (a bank books
-- Friday's and Saturday's payouts on Monday), so it is reconciled once per
-- day: a statement is recorded per (sha256, business_date), and its report
-- lines and posting keys say which day's reconciliation made them.
CREATE TABLE bank_statements (
    sha256 text NOT NULL,
    business_date date NOT NULL REFERENCES business_days,
    account_id text NOT NULL,
    format text NOT NULL,
    statement_id text NOT NULL,
    source_name text NOT NULL,
    recorded_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (sha256, business_date)
);
CREATE TABLE bank_statement_lines (
    sha256 text NOT NULL,
    line_no integer NOT NULL,
    status text NOT NULL CHECK (status IN ('MATCHED', 'AMOUNT_MISMATCH', 'MISSING_IN_BANK',
        'UNEXPECTED_IN_BANK', 'DUPLICATE_IN_BANK', 'RETURNED')),
    end_to_end_id text NOT NULL,
    institution_code text NOT NULL,
    expected_fen bigint,
    bank_fen bigint,
    bank_reference text NOT NULL,
    entry_id bigint REFERENCES entries DEFERRABLE INITIALLY DEFERRED,
    business_date date NOT NULL,
    PRIMARY KEY (sha256, business_date, line_no),
    FOREIGN KEY (sha256, business_date) REFERENCES bank_statements (sha256, business_date)
);
-- What has been posted from bank statements, by key: a payout is settled at
-- the bank once ('settled:' || e2e), and one bank entry moves the ledger once
-- however many statements report it ('ref:' || account || ':' || reference).
CREATE TABLE bank_posting_keys (
    posting_key text PRIMARY KEY,
    sha256 text NOT NULL,
    entry_id bigint NOT NULL REFERENCES entries DEFERRABLE INITIALLY DEFERRED,
    business_date date NOT NULL,
    FOREIGN KEY (sha256, business_date) REFERENCES bank_statements (sha256, business_date)
);

-- ---------------------------------------------------------------------------
-- The fixed accounts of the chart (members' and institutions' accounts are
-- created with them, by import-reference).

INSERT INTO accounts (account_key, kind, normal_side) VALUES
    ('fund:pooled', 'POOLED_FUND', 'CREDIT'),
    ('fund:serious_illness', 'SERIOUS_ILLNESS_FUND', 'CREDIT'),
    ('bank:fund', 'FUND_BANK', 'DEBIT'),
    ('payouts:in_transit', 'PAYOUTS_IN_TRANSIT', 'DEBIT'),
    ('bank:settled', 'SETTLED_AT_BANK', 'DEBIT'),
    ('suspense', 'SUSPENSE', 'DEBIT'),
    ('equity:opening', 'OPENING_BALANCE', 'DEBIT');

-- ===========================================================================
-- Types

-- One settlement to record: the settlement row, its member-state changes
-- (the fields of adjudication.model.StateChanges, from which the stored
-- `changes` jsonb is made; NULL change_year when it changes no state),
-- `entry_no`, the 1-based index of its entry among the batch's entries
-- (NULL when it posts nothing), and `state_seq`, the member's version the
-- state was loaded at (ms_load_states).
CREATE TYPE ms_settle_row AS (
    settlement_id text,
    institution_code text,
    request_id text,
    fingerprint bytea,
    status text,
    member_id text,
    service_date date,
    benefit_year integer,
    policy_version text,
    catalog_version integer,
    total_fen bigint,
    pooled_fund_fen bigint,
    serious_illness_fen bigint,
    individual_account_fen bigint,
    answer text,  -- JSON text (asyncpg sends a composite's fields in binary,
                  -- and its jsonb codec is text)
    pin_failures integer,
    entry_no integer,
    change_year integer,
    outpatient_deductible_used_fen bigint,
    outpatient_pooled_fen bigint,
    basic_pooled_fen bigint,
    inpatient_above_deductible_fen bigint,
    new_admissions integer,
    serious_illness_base_fen bigint,
    serious_illness_paid_fen bigint,
    pharmacy_date date,
    account_debit_fen bigint,
    stay_settlement_id text,
    stay_primary_diagnosis text,
    stay_admission_date date,
    stay_discharge_date date,
    stay_new_admission boolean,
    state_seq bigint
);

-- ===========================================================================
-- The owner's functions
--
-- Those marked SECURITY DEFINER run with the owner's rights, for roles that
-- may call them but not write what they write; each fixes its search_path,
-- so that nothing in the caller's temporary schema stands in for a table.
-- Batches are small against tables of millions of rows: every join in the
-- set-wise functions is an index probe per batch row, never a scan (hash
-- and merge joins off; a jsonb_array_elements row estimate of 100 would
-- otherwise tempt the planner), and their plans are generic, made once per
-- session (a custom plan per call cost more than the call's work).
-- Inside a VOLATILE plpgsql function every statement takes a fresh
-- snapshot, so what is read after a lock wait is what the previous holder
-- committed. Lock order, everywhere: the request-key advisory locks, the
-- open business day (ms_day_share; ms_close_day takes it exclusively), the
-- members' rows (in member or card-hash order), the member's balance row,
-- the chain lane.

-- ---------------------------------------------------------------------------
-- Guards, run by triggers (they need no EXECUTE grant)

CREATE FUNCTION ms_forbid_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% on % is forbidden: the ledger is append-only', TG_OP, TG_TABLE_NAME
        USING ERRCODE = 'insufficient_privilege';
END
$$;

-- Business days only move forward, whoever writes them: a day is opened
-- after every earlier one, goes from open to closed once, and is never
-- reopened, redated or deleted. End of day writes the table as the
-- operator's role (ledger/endofday.py close_day), which therefore holds
-- UPDATE and INSERT on it; these rules keep what it can do with them to
-- the one thing end of day does. (Reopening a paid-out day would let new
-- entries into a day whose payouts have left.)
CREATE FUNCTION ms_business_day_rules() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, public, pg_temp AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        RAISE EXCEPTION 'business day %: days are never deleted', OLD.business_date
            USING ERRCODE = 'insufficient_privilege';
    ELSIF TG_OP = 'UPDATE' THEN
        IF NEW.business_date <> OLD.business_date OR NEW.opened_at <> OLD.opened_at
           OR OLD.status <> 'OPEN' OR NEW.status <> 'CLOSED' THEN
            RAISE EXCEPTION 'business day %: a day only goes from open to closed, once',
                OLD.business_date USING ERRCODE = 'insufficient_privilege';
        END IF;
    ELSIF NEW.status <> 'OPEN'
          OR EXISTS (SELECT 1 FROM public.business_days d
                     WHERE d.business_date >= NEW.business_date) THEN
        RAISE EXCEPTION 'business day %: a day opens after every earlier day', NEW.business_date
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN CASE WHEN TG_OP = 'DELETE' THEN OLD ELSE NEW END;
END
$$;

-- A member account gets its balance row, at zero, as it is opened.
CREATE FUNCTION ms_open_balance_rows() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp AS $$
BEGIN
    INSERT INTO public.account_balances (account_id, normal_sign, balance_fen)
        SELECT n.account_id, -1, 0 FROM new_accounts n WHERE n.kind = 'MEMBER_INDIVIDUAL';
    RETURN NULL;
END
$$;

-- Balanced entries, checked at commit once per chain-lane advance. Every
-- entry is appended by ms_append_entries, which moves exactly one lane head
-- from last_seq to last_seq + n in the same call (no role but the owner can
-- insert entries), so the deferred check of that head update sees every
-- entry appended: those of the lane with lane_seq in (OLD.last_seq,
-- NEW.last_seq]. One set-wise query per batch, not one per entry. An entry
-- inserted behind the functions' back breaks the chain, which `ledger
-- verify` reports. It runs as the committing role, so its search_path is
-- fixed: a temporary table named entries or postings (pg_temp comes first
-- by default) must not stand in for the real ones.
CREATE FUNCTION ms_check_lane_balanced() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, public, pg_temp
    SET enable_hashjoin = off SET enable_mergejoin = off SET enable_seqscan = off
    SET max_parallel_workers_per_gather = 0 SET plan_cache_mode = force_generic_plan AS $$
DECLARE
    v_entry bigint;
    v_n bigint;
    v_total numeric;
BEGIN
    -- Each entry of the range through the (lane, lane_seq) index, its
    -- postings through theirs: the work grows with the batch, never with
    -- the ledger (a plan that scans entries would cost more per commit
    -- the longer the switch runs).
    SELECT e.entry_id, p.n, p.total INTO v_entry, v_n, v_total
        FROM public.entries e
        CROSS JOIN LATERAL (SELECT count(*) AS n, coalesce(sum(q.amount_fen), 0) AS total
                            FROM public.postings q WHERE q.entry_id = e.entry_id) p
        WHERE e.lane = NEW.lane AND e.lane_seq > OLD.last_seq AND e.lane_seq <= NEW.last_seq
          AND (p.n < 2 OR p.total <> 0)
        ORDER BY e.lane, e.lane_seq LIMIT 1;
    IF v_entry IS NOT NULL THEN
        RAISE EXCEPTION 'entry % is unbalanced: % postings summing to %', v_entry, v_n, v_total
            USING ERRCODE = 'check_violation';
    END IF;
    RETURN NULL;
END
$$;

-- Any change to a member's row (a PIN check, the import) moves its
-- version; an UPDATE that sets state_seq itself is left as it is.
CREATE FUNCTION ms_member_state_moved() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.state_seq = OLD.state_seq THEN
        NEW.state_seq := OLD.state_seq + 1;
    END IF;
    RETURN NEW;
END
$$;

-- A cancellation gives back the member's money and accumulators.
CREATE FUNCTION ms_cancellation_moves_member() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE members m SET state_seq = m.state_seq + 1
        FROM settlements s
        WHERE s.settlement_id = NEW.settlement_id AND m.member_id = s.member_id;
    RETURN NULL;
END
$$;

-- ---------------------------------------------------------------------------
-- Business days

-- The open business day is guarded by an advisory lock, not a row lock: every
-- writing transaction holds it shared until it ends, `ms_close_day` takes it
-- exclusively, so a settlement is wholly in day D or wholly in D+1. (FOR
-- SHARE on the day row would make every settlement write a MultiXact on one
-- hot tuple.) ledger/endofday.py takes the same lock (DAY_LOCK_KEY).
CREATE FUNCTION ms_day_share() RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_advisory_xact_lock_shared(7370001);
END
$$;

-- The open business day, held (shared) until the transaction ends, so a
-- close waits for this writer; raises when no day is open.
CREATE FUNCTION ms_open_day() RETURNS date LANGUAGE plpgsql AS $$
DECLARE
    v_day date;
BEGIN
    PERFORM ms_day_share();
    SELECT business_date INTO v_day FROM business_days WHERE status = 'OPEN';
    IF v_day IS NULL THEN
        RAISE EXCEPTION 'no business day is open' USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;
    RETURN v_day;
END
$$;

-- Close the open day and open the next (p_next, default the day after).
-- Waits for in-flight settlements; returns the closed day.
CREATE FUNCTION ms_close_day(p_next date DEFAULT NULL) RETURNS date LANGUAGE plpgsql AS $$
DECLARE
    v_day date;
BEGIN
    PERFORM pg_advisory_xact_lock(7370001);
    SELECT business_date INTO v_day FROM business_days WHERE status = 'OPEN' FOR UPDATE;
    IF v_day IS NULL THEN
        RAISE EXCEPTION 'no business day is open' USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;
    IF p_next IS NOT NULL AND p_next <= v_day THEN
        RAISE EXCEPTION 'the next day % must be after %', p_next, v_day
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    UPDATE business_days SET status = 'CLOSED', closed_at = now() WHERE business_date = v_day;
    INSERT INTO business_days (business_date, status) VALUES (coalesce(p_next, v_day + 1), 'OPEN');
    RETURN v_day;
END
$$;

-- ---------------------------------------------------------------------------
-- Posting: the hash chain, entries, postings and balances

-- The canonical bytes of an entry and its hash, from the postings text
-- (seq:account_id:amount;... in seq order). ledger/chain.py computes the
-- same bytes independently to verify.
CREATE FUNCTION ms_entry_hash_of(p_prev bytea, p_entry_id bigint, p_lane smallint,
                                 p_lane_seq bigint, p_business_date date, p_kind text,
                                 p_ref text, p_postings text)
RETURNS bytea LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
    -- plpgsql, not sql: a sql function called from plpgsql is planned again
    -- in every transaction; this one's expression is cached for the session.
    RETURN sha256(p_prev || convert_to(
        p_entry_id::text || '|' || p_lane::text || '|' || p_lane_seq::text || '|'
        || to_char(p_business_date, 'YYYY-MM-DD') || '|' || p_kind || '|' || p_ref || '|'
        || coalesce(p_postings, ''), 'UTF8'));
END
$$;

-- Append entries to the hash chain and the open business day, before their
-- postings are inserted. p_bodies: each entry's postings text
-- (seq:account_id:amount;... in seq order), from which its hash is
-- computed. The entries go, in order, to the first lane no other
-- transaction holds, from this backend's own: writers never queue behind
-- each other for a chain head.
CREATE FUNCTION ms_append_entries(p_kind text, p_refs text[], p_entries bigint[],
                                  p_bodies text[])
RETURNS void LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp
    SET plan_cache_mode = force_generic_plan AS $$
DECLARE
    v_n integer := coalesce(array_length(p_entries, 1), 0);
    v_lane smallint := (pg_backend_pid() % 64)::smallint;
    v_day date;
    v_lane_seqs bigint[] := '{}';
    v_prevs bytea[] := '{}';
    v_hashes bytea[] := '{}';
    v_seq bigint;
    v_hash bytea;
BEGIN
    v_day := ms_open_day();
    SELECT lane, last_seq, last_hash INTO v_lane, v_seq, v_hash FROM chain_lanes
        ORDER BY (lane - v_lane + 64) % 64 LIMIT 1 FOR UPDATE SKIP LOCKED;
    IF v_lane IS NULL THEN  -- all 64 are busy: wait for our own
        v_lane := (pg_backend_pid() % 64)::smallint;
        SELECT last_seq, last_hash INTO v_seq, v_hash FROM chain_lanes WHERE lane = v_lane
            FOR UPDATE;
    END IF;
    FOR i IN 1 .. v_n LOOP
        v_seq := v_seq + 1;
        v_prevs := array_append(v_prevs, v_hash);
        v_hash := ms_entry_hash_of(v_hash, p_entries[i], v_lane, v_seq, v_day, p_kind, p_refs[i],
                                   p_bodies[i]);
        v_lane_seqs := array_append(v_lane_seqs, v_seq);
        v_hashes := array_append(v_hashes, v_hash);
    END LOOP;
    INSERT INTO entries (entry_id, lane, lane_seq, business_date, kind, ref, prev_hash, hash)
        SELECT u.entry_id, v_lane, u.lane_seq, v_day, p_kind, u.ref, u.prev, u.hash
        FROM unnest(p_entries, v_lane_seqs, p_refs, v_prevs, v_hashes)
            AS u(entry_id, lane_seq, ref, prev, hash);
    UPDATE chain_lanes SET last_seq = v_seq, last_hash = v_hash WHERE lane = v_lane;
END
$$;

-- Post several entries of one kind at once. p_refs: one ref per entry;
-- p_entry_of: for each posting, the 1-based index of its entry in p_refs;
-- p_keys, p_amounts: the postings (account key, signed fen), in seq order
-- within each entry. Returns the new entry ids, in p_refs order. The checks
-- and the account lookup are one pass over the postings. Balance rows of
-- limited accounts (members) move in one statement; a debit beyond a
-- member's balance fails the CHECK and the whole transaction. Every entry
-- is posted through here (the opening entry of an import too).
CREATE FUNCTION ms_post_set(p_kind text, p_refs text[], p_entry_of integer[], p_keys text[],
                            p_amounts bigint[])
RETURNS bigint[] LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp
    SET enable_hashjoin = off SET enable_mergejoin = off
    SET plan_cache_mode = force_generic_plan AS $$
DECLARE
    v_n integer := coalesce(array_length(p_refs, 1), 0);
    v_entries bigint[];
    v_ids bigint[];
    v_seqs integer[];
    v_bodies text[];
    v_short integer;
    v_distinct bigint;
    v_first integer;
    v_last integer;
BEGIN
    IF v_n = 0 THEN
        RETURN '{}';
    END IF;
    IF coalesce(array_length(p_keys, 1), 0) <> coalesce(array_length(p_amounts, 1), 0)
       OR coalesce(array_length(p_keys, 1), 0) <> coalesce(array_length(p_entry_of, 1), 0) THEN
        RAISE EXCEPTION 'postings arrays differ in length' USING ERRCODE = 'check_violation';
    END IF;
    -- In one pass over the postings: each one's account (one index probe),
    -- its seq within its entry (from 1), and the entries with fewer than two
    -- postings or none at all.
    SELECT array_agg(a.account_id ORDER BY u.ord), array_agg(u.seq ORDER BY u.ord),
           min(u.entry) FILTER (WHERE u.n < 2), count(DISTINCT u.entry), min(u.entry), max(u.entry)
        INTO v_ids, v_seqs, v_short, v_distinct, v_first, v_last
        FROM (SELECT key, entry, ord,
                     row_number() OVER (PARTITION BY entry ORDER BY ord)::integer AS seq,
                     count(*) OVER (PARTITION BY entry) AS n
              FROM unnest(p_keys, p_entry_of) WITH ORDINALITY AS t(key, entry, ord)) u
        LEFT JOIN accounts a ON a.account_key = u.key;
    IF v_short IS NOT NULL OR v_distinct <> v_n OR v_first <> 1 OR v_last <> v_n THEN
        RAISE EXCEPTION 'an entry needs at least two postings (entry % of %)',
            coalesce(v_short, (SELECT min(e) FROM generate_series(1, v_n) e
                               WHERE e <> ALL(p_entry_of)), v_last), v_n
            USING ERRCODE = 'check_violation';
    END IF;
    IF array_position(v_ids, NULL) IS NOT NULL THEN
        RAISE EXCEPTION 'unknown account in %', p_keys USING ERRCODE = 'foreign_key_violation';
    END IF;
    v_entries := ARRAY(SELECT nextval('entries_entry_id_seq') FROM generate_series(1, v_n));
    SELECT array_agg(x.body ORDER BY x.entry) INTO v_bodies FROM (
        SELECT u.entry, string_agg(u.seq::text || ':' || u.id::text || ':' || u.amount::text, ';'
                                   ORDER BY u.seq) AS body
        FROM unnest(p_entry_of, v_seqs, v_ids, p_amounts) AS u(entry, seq, id, amount)
        GROUP BY u.entry) x;
    PERFORM ms_append_entries(p_kind, p_refs, v_entries, v_bodies);
    INSERT INTO postings (entry_id, seq, account_id, amount_fen)
        SELECT v_entries[u.entry], u.seq, u.id, u.amount
        FROM unnest(p_entry_of, v_seqs, v_ids, p_amounts) AS u(entry, seq, id, amount);
    UPDATE account_balances b SET balance_fen = b.balance_fen + b.normal_sign * d.amount
        FROM (SELECT id, sum(amount)::bigint AS amount FROM unnest(v_ids, p_amounts) AS u(id, amount)
              GROUP BY id) d
        WHERE b.account_id = d.id;
    RETURN v_entries;
END
$$;

-- Post one entry: postings given as account keys and signed amounts.
CREATE FUNCTION ms_post(p_kind text, p_ref text, p_keys text[], p_amounts bigint[])
RETURNS bigint LANGUAGE plpgsql AS $$
BEGIN
    RETURN (ms_post_set(p_kind, ARRAY[p_ref],
                        array_fill(1, ARRAY[coalesce(array_length(p_keys, 1), 0)]),
                        p_keys, p_amounts))[1];
END
$$;

-- ---------------------------------------------------------------------------
-- Member state: accumulators, pharmacy counts, inpatient stays

-- The state-change fields of a StateChanges.as_dict() jsonb, as a row (the
-- settlement fields left NULL).
CREATE FUNCTION ms_changes_row(p_changes jsonb) RETURNS ms_settle_row
LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
    r ms_settle_row;
BEGIN
    r.member_id := p_changes->>'member_id';
    r.change_year := (p_changes->>'benefit_year')::integer;
    r.outpatient_deductible_used_fen := coalesce((p_changes->>'outpatient_deductible_used_fen')::bigint, 0);
    r.outpatient_pooled_fen := coalesce((p_changes->>'outpatient_pooled_fen')::bigint, 0);
    r.basic_pooled_fen := coalesce((p_changes->>'basic_pooled_fen')::bigint, 0);
    r.inpatient_above_deductible_fen := coalesce((p_changes->>'inpatient_above_deductible_fen')::bigint, 0);
    r.new_admissions := coalesce((p_changes->>'new_admissions')::integer, 0);
    r.serious_illness_base_fen := coalesce((p_changes->>'serious_illness_base_fen')::bigint, 0);
    r.serious_illness_paid_fen := coalesce((p_changes->>'serious_illness_paid_fen')::bigint, 0);
    r.pharmacy_date := (p_changes->>'pharmacy_date')::date;
    r.account_debit_fen := coalesce((p_changes->>'account_debit_fen')::bigint, 0);
    IF jsonb_typeof(p_changes->'stay') = 'object' THEN
        r.stay_settlement_id := p_changes->'stay'->>'settlement_id';
        r.stay_primary_diagnosis := p_changes->'stay'->>'primary_diagnosis';
        r.stay_admission_date := (p_changes->'stay'->>'admission_date')::date;
        r.stay_discharge_date := (p_changes->'stay'->>'discharge_date')::date;
        r.stay_new_admission := (p_changes->'stay'->>'new_admission')::boolean;
    END IF;
    RETURN r;
END
$$;

-- The stored form of a row's changes: StateChanges.as_dict(), key for key
-- (NULL when the row changes no state). A SQL function, inlined where used.
CREATE FUNCTION ms_changes_json(r ms_settle_row) RETURNS jsonb
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN r.change_year IS NOT NULL THEN jsonb_build_object(
        'member_id', r.member_id, 'benefit_year', r.change_year,
        'outpatient_deductible_used_fen', r.outpatient_deductible_used_fen,
        'outpatient_pooled_fen', r.outpatient_pooled_fen,
        'basic_pooled_fen', r.basic_pooled_fen,
        'inpatient_above_deductible_fen', r.inpatient_above_deductible_fen,
        'new_admissions', r.new_admissions,
        'serious_illness_base_fen', r.serious_illness_base_fen,
        'serious_illness_paid_fen', r.serious_illness_paid_fen,
        'pharmacy_date', r.pharmacy_date, 'account_debit_fen', r.account_debit_fen,
        'stay', CASE WHEN r.stay_settlement_id IS NOT NULL THEN jsonb_build_object(
            'settlement_id', r.stay_settlement_id,
            'primary_diagnosis', r.stay_primary_diagnosis,
            'admission_date', r.stay_admission_date,
            'discharge_date', r.stay_discharge_date,
            'new_admission', r.stay_new_admission) END)
    END
$$;

-- Add the state changes of several settlements (rows with a change_year):
-- one statement per kind of state. Each member appears at most once per
-- call when settling (the caller splits a batch into rounds); the GROUP BY
-- keeps a repeat correct anyway.
CREATE FUNCTION ms_add_changes(p_rows ms_settle_row[]) RETURNS void
LANGUAGE plpgsql SET enable_hashjoin = off SET enable_mergejoin = off
    SET plan_cache_mode = force_generic_plan AS $$
BEGIN
    INSERT INTO member_year AS y (member_id, year, outpatient_deductible_used_fen,
        outpatient_pooled_fen, basic_pooled_fen, inpatient_above_deductible_fen,
        new_admissions, serious_illness_base_fen, serious_illness_paid_fen)
    SELECT r.member_id, r.change_year, sum(r.outpatient_deductible_used_fen),
           sum(r.outpatient_pooled_fen), sum(r.basic_pooled_fen),
           sum(r.inpatient_above_deductible_fen), sum(r.new_admissions),
           sum(r.serious_illness_base_fen), sum(r.serious_illness_paid_fen)
    FROM unnest(p_rows) r WHERE r.change_year IS NOT NULL GROUP BY 1, 2
    ON CONFLICT (member_id, year) DO UPDATE SET
        outpatient_deductible_used_fen = y.outpatient_deductible_used_fen
            + EXCLUDED.outpatient_deductible_used_fen,
        outpatient_pooled_fen = y.outpatient_pooled_fen + EXCLUDED.outpatient_pooled_fen,
        basic_pooled_fen = y.basic_pooled_fen + EXCLUDED.basic_pooled_fen,
        inpatient_above_deductible_fen = y.inpatient_above_deductible_fen
            + EXCLUDED.inpatient_above_deductible_fen,
        new_admissions = y.new_admissions + EXCLUDED.new_admissions,
        serious_illness_base_fen = y.serious_illness_base_fen + EXCLUDED.serious_illness_base_fen,
        serious_illness_paid_fen = y.serious_illness_paid_fen + EXCLUDED.serious_illness_paid_fen;
    INSERT INTO pharmacy_daily AS p (member_id, service_date, purchases)
        SELECT r.member_id, r.pharmacy_date, count(*)
        FROM unnest(p_rows) r WHERE r.change_year IS NOT NULL AND r.pharmacy_date IS NOT NULL
        GROUP BY 1, 2
        ON CONFLICT (member_id, service_date) DO UPDATE SET purchases = p.purchases + EXCLUDED.purchases;
    INSERT INTO inpatient_stays (settlement_id, member_id, primary_diagnosis, admission_date,
                                 discharge_date, new_admission)
        SELECT r.stay_settlement_id, r.member_id, r.stay_primary_diagnosis, r.stay_admission_date,
               r.stay_discharge_date, r.stay_new_admission
        FROM unnest(p_rows) r WHERE r.change_year IS NOT NULL AND r.stay_settlement_id IS NOT NULL;
END
$$;

-- Add (p_sign 1) or take back (p_sign -1, a cancellation) the member-state
-- changes of several settlements (a jsonb array of
-- adjudication.model.StateChanges.as_dict()); adding is ms_add_changes.
CREATE FUNCTION ms_apply_changes_set(p_changes jsonb, p_sign integer) RETURNS void
LANGUAGE plpgsql SET enable_hashjoin = off SET enable_mergejoin = off
    SET plan_cache_mode = force_generic_plan AS $$
BEGIN
    IF p_sign > 0 THEN
        PERFORM ms_add_changes(ARRAY(SELECT ms_changes_row(c)
                                     FROM jsonb_array_elements(p_changes) c));
        RETURN;
    END IF;
    -- A plain UPDATE, not an upsert: an upsert checks its proposed row
    -- (negative amounts) against the CHECKs before it finds the conflict.
    UPDATE member_year y SET
        outpatient_deductible_used_fen = y.outpatient_deductible_used_fen + p_sign * d.outpatient_deductible_used_fen,
        outpatient_pooled_fen = y.outpatient_pooled_fen + p_sign * d.outpatient_pooled_fen,
        basic_pooled_fen = y.basic_pooled_fen + p_sign * d.basic_pooled_fen,
        inpatient_above_deductible_fen = y.inpatient_above_deductible_fen + p_sign * d.inpatient_above_deductible_fen,
        new_admissions = y.new_admissions + p_sign * d.new_admissions,
        serious_illness_base_fen = y.serious_illness_base_fen + p_sign * d.serious_illness_base_fen,
        serious_illness_paid_fen = y.serious_illness_paid_fen + p_sign * d.serious_illness_paid_fen
    FROM (SELECT r.member_id, r.change_year AS year,
                 sum(r.outpatient_deductible_used_fen)::bigint AS outpatient_deductible_used_fen,
                 sum(r.outpatient_pooled_fen)::bigint AS outpatient_pooled_fen,
                 sum(r.basic_pooled_fen)::bigint AS basic_pooled_fen,
                 sum(r.inpatient_above_deductible_fen)::bigint AS inpatient_above_deductible_fen,
                 sum(r.new_admissions)::integer AS new_admissions,
                 sum(r.serious_illness_base_fen)::bigint AS serious_illness_base_fen,
                 sum(r.serious_illness_paid_fen)::bigint AS serious_illness_paid_fen
          FROM jsonb_array_elements(p_changes) c, ms_changes_row(c) r GROUP BY 1, 2) d
    WHERE y.member_id = d.member_id AND y.year = d.year;
    UPDATE pharmacy_daily p SET purchases = p.purchases - d.n
        FROM (SELECT r.member_id, r.pharmacy_date AS day, count(*)::integer AS n
              FROM jsonb_array_elements(p_changes) c, ms_changes_row(c) r
              WHERE r.pharmacy_date IS NOT NULL GROUP BY 1, 2) d
        WHERE p.member_id = d.member_id AND p.service_date = d.day;
    DELETE FROM inpatient_stays s USING jsonb_array_elements(p_changes) c
        WHERE jsonb_typeof(c->'stay') = 'object' AND s.settlement_id = c->'stay'->>'settlement_id';
END
$$;

-- The same for one settlement's changes.
CREATE FUNCTION ms_apply_changes(p_changes jsonb, p_sign integer) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM ms_apply_changes_set(jsonb_build_array(p_changes), p_sign);
END
$$;

-- ---------------------------------------------------------------------------
-- Settle

CREATE FUNCTION ms_key_lock(p_institution text, p_request_id text) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(hashtextextended(p_institution || '/' || p_request_id, 7));
END
$$;

-- The request keys of a whole batch, locked in one sorted pass before any
-- member is: a batch settled in several rounds (a member or key repeated)
-- would otherwise take later rounds' key locks while holding members.
CREATE FUNCTION ms_lock_keys(p_institutions text[], p_request_ids text[]) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(hashtextextended(k.inst || '/' || k.req, 7))
        FROM (SELECT DISTINCT inst, req FROM unnest(p_institutions, p_request_ids) AS u(inst, req)
              WHERE req IS NOT NULL ORDER BY 1, 2) k;
END
$$;

-- Everything the engine needs about several claims, one row per claim in the
-- order given, in one statement, without locks. A null request id leaves
-- out the idempotency facts and the new settlement id. Institution and
-- member columns are NULL when unknown; the accumulators are NULL when the
-- member has no row for the year; special_diseases and stays are jsonb
-- arrays (NULL when none), the only nested values.
CREATE FUNCTION ms_load_states(p_institutions text[], p_card_hmacs bytea[], p_years integer[],
                               p_service_dates date[], p_lookback_days integer,
                               p_request_ids text[])
RETURNS TABLE (business_date date, settlement_id text, existing_settlement_id text,
               existing_fingerprint bytea, request_cancelled boolean,
               institution_code text, institution_name text, institution_kind text,
               institution_level text, institution_region text, institution_status text,
               member_id text, state_seq bigint, category text, status text, card_status text,
               birth_date date, region text, balance_fen bigint, pin_hash bytea,
               pin_failures integer, special_diseases jsonb,
               outpatient_deductible_used_fen bigint, outpatient_pooled_fen bigint,
               basic_pooled_fen bigint, inpatient_above_deductible_fen bigint,
               new_admissions integer, serious_illness_base_fen bigint,
               serious_illness_paid_fen bigint, stays jsonb, pharmacy_purchases_today integer)
LANGUAGE plpgsql STABLE SET enable_hashjoin = off SET enable_mergejoin = off
    SET plan_cache_mode = force_generic_plan AS $$
#variable_conflict use_column
DECLARE
    v_day date;
BEGIN
    SELECT d.business_date INTO v_day FROM business_days d WHERE d.status = 'OPEN';
    RETURN QUERY
    SELECT v_day,
           CASE WHEN u.req IS NOT NULL AND v_day IS NOT NULL THEN
               'S' || to_char(v_day, 'YYYYMMDD') || lpad(nextval('settlement_seq')::text, 10, '0')
           END,
           s.settlement_id, s.fingerprint,
           u.req IS NOT NULL AND (SELECT true FROM cancellations c
               WHERE c.institution_code = u.inst AND c.original_request_id = u.req
               AND c.settlement_id IS NULL LIMIT 1) IS NOT NULL,
           i.code, i.name, i.kind, i.level, i.region, i.status,
           m.member_id, m.state_seq, m.category, m.status, m.card_status, m.birth_date, m.region,
           b.balance_fen, m.pin_hash, m.pin_failures,
           (SELECT jsonb_agg(jsonb_build_object('code', d.disease_code,
                       'valid_from', d.valid_from, 'valid_to', d.valid_to)
                       ORDER BY d.disease_code, d.valid_from)
            FROM member_special_diseases d WHERE d.member_id = m.member_id),
           y.outpatient_deductible_used_fen, y.outpatient_pooled_fen, y.basic_pooled_fen,
           y.inpatient_above_deductible_fen, y.new_admissions, y.serious_illness_base_fen,
           y.serious_illness_paid_fen,
           (SELECT jsonb_agg(to_jsonb(st) - 'member_id' ORDER BY st.admission_date, st.settlement_id)
            FROM inpatient_stays st WHERE st.member_id = m.member_id
            AND st.discharge_date >= u.service_date - p_lookback_days),
           coalesce(p.purchases, 0)
    FROM unnest(p_institutions, p_card_hmacs, p_years, p_service_dates, p_request_ids)
        WITH ORDINALITY AS u(inst, card, year, service_date, req, ord)
    LEFT JOIN institutions i ON i.code = u.inst
    LEFT JOIN members m ON m.card_hmac = u.card
    LEFT JOIN account_balances b ON b.account_id = m.account_id
    LEFT JOIN LATERAL (SELECT * FROM member_year y1
                       WHERE y1.member_id = m.member_id AND y1.year = u.year OFFSET 0) y ON true
    LEFT JOIN LATERAL (SELECT p1.purchases FROM pharmacy_daily p1
                       WHERE p1.member_id = m.member_id AND p1.service_date = u.service_date
                       OFFSET 0) p ON true
    LEFT JOIN settlements s ON u.req IS NOT NULL AND s.institution_code = u.inst
        AND s.request_id = u.req
    ORDER BY u.ord;
END
$$;

-- Record what was decided from ms_load_states, if it still holds: one
-- statement, committed on its own. Under the day lock (shared), the request
-- keys' locks and the members' row locks (taken in member order), it checks
-- that the day is still p_day, that no request key has been settled or
-- cancelled meanwhile and that every member's state_seq is the one loaded.
-- If any of that fails, nothing is recorded: the error (SQLSTATE MS001)
-- names, in its DETAIL, the 1-based positions of the stale rows (`day` when
-- the day moved on), for the caller to load and decide again. Otherwise it
-- moves each member's version, stores the PIN failure count and records the
-- batch with ms_record_rows.
CREATE FUNCTION ms_record_checked(p_day date, p_rows ms_settle_row[], p_entry_of integer[],
                                  p_keys text[], p_amounts bigint[], OUT entry_ids bigint[],
                                  OUT created_at timestamptz)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp
    SET enable_hashjoin = off SET enable_mergejoin = off
    SET plan_cache_mode = force_generic_plan AS $$
DECLARE
    v_stale integer[];
    v_moved text[];
    v_day date;
BEGIN
    PERFORM ms_day_share();
    SELECT d.business_date INTO v_day FROM business_days d WHERE d.status = 'OPEN';
    IF v_day IS DISTINCT FROM p_day THEN
        RAISE EXCEPTION 'the business day moved on' USING ERRCODE = 'MS001', DETAIL = 'day';
    END IF;
    PERFORM ms_lock_keys(ARRAY(SELECT r.institution_code FROM unnest(p_rows) r),
                         ARRAY(SELECT r.request_id FROM unnest(p_rows) r));
    -- probes, not EXISTS: EXISTS may become a hashed subplan that reads every
    -- settlement on each call
    v_stale := ARRAY(
        SELECT i FROM generate_subscripts(p_rows, 1) i
        WHERE (SELECT true FROM settlements s
               WHERE s.institution_code = (p_rows[i]).institution_code
               AND s.request_id = (p_rows[i]).request_id LIMIT 1) IS NOT NULL
           OR (SELECT true FROM cancellations c
               WHERE c.institution_code = (p_rows[i]).institution_code
               AND c.original_request_id = (p_rows[i]).request_id
               AND c.settlement_id IS NULL LIMIT 1) IS NOT NULL);
    IF cardinality(v_stale) = 0 THEN
        WITH moved AS (
            UPDATE members m SET state_seq = m.state_seq + 1,
                                 pin_failures = coalesce(r.pin_failures, m.pin_failures)
            FROM (SELECT * FROM unnest(p_rows) r WHERE r.member_id IS NOT NULL
                  ORDER BY r.member_id) r
            WHERE m.member_id = r.member_id AND m.state_seq = r.state_seq
            RETURNING m.member_id)
        SELECT array_agg(member_id) INTO v_moved FROM moved;
        v_stale := ARRAY(
            SELECT i FROM generate_subscripts(p_rows, 1) i
            WHERE (p_rows[i]).member_id IS NOT NULL
              AND NOT (p_rows[i]).member_id = ANY(coalesce(v_moved, '{}')));
    END IF;
    IF cardinality(v_stale) > 0 THEN
        RAISE EXCEPTION '% rows were decided on stale state', cardinality(v_stale)
            USING ERRCODE = 'MS001', DETAIL = array_to_string(v_stale, ',');
    END IF;
    SELECT b.entry_ids, b.created_at INTO entry_ids, created_at
        FROM ms_record_rows(p_day, p_rows, p_entry_of, p_keys, p_amounts) b;
END
$$;

-- The body both recording functions share: changes, entries, settlement
-- rows (members' rows are the caller's). p_rows: one per settlement (each
-- member at most once per call); p_entry_of, p_keys, p_amounts: the
-- postings of all their entries (see ms_post_set), entry k being the row
-- whose entry_no is k. Returns the new entry ids in entry_no order and the
-- settlements' created_at.
CREATE FUNCTION ms_record_rows(p_day date, p_rows ms_settle_row[], p_entry_of integer[],
                               p_keys text[], p_amounts bigint[], OUT entry_ids bigint[],
                               OUT created_at timestamptz)
LANGUAGE plpgsql SET enable_hashjoin = off SET enable_mergejoin = off
    SET plan_cache_mode = force_generic_plan AS $$
DECLARE
    v_refs text[];
    v_entries bigint[];
    v_last integer := coalesce((SELECT max(e) FROM unnest(p_entry_of) e), 0);
BEGIN
    PERFORM ms_add_changes(p_rows);
    v_refs := ARRAY(SELECT r.settlement_id FROM unnest(p_rows) r WHERE r.entry_no IS NOT NULL
                    ORDER BY r.entry_no);
    -- The rows' entry numbers are exactly 1..n, n being the postings' last
    -- entry: each entry belongs to one settlement and each settlement to
    -- at most one entry.
    IF ARRAY(SELECT r.entry_no FROM unnest(p_rows) r WHERE r.entry_no IS NOT NULL
             ORDER BY r.entry_no)
       IS DISTINCT FROM ARRAY(SELECT generate_series(1, v_last)) THEN
        RAISE EXCEPTION 'entry numbers of the rows are not 1..% as the postings say', v_last
            USING ERRCODE = 'check_violation';
    END IF;
    v_entries := ms_post_set('SETTLEMENT', v_refs, p_entry_of, p_keys, p_amounts);
    INSERT INTO settlements (settlement_id, institution_code, request_id, fingerprint, status,
        member_id, business_date, service_date, benefit_year, policy_version, catalog_version,
        total_fen, pooled_fund_fen, serious_illness_fen, individual_account_fen, answer, changes,
        entry_id)
    SELECT r.settlement_id, r.institution_code, r.request_id, r.fingerprint, r.status,
        r.member_id, p_day, r.service_date, r.benefit_year, r.policy_version,
        r.catalog_version, r.total_fen, r.pooled_fund_fen, r.serious_illness_fen,
        r.individual_account_fen, r.answer::jsonb, ms_changes_json(r), v_entries[r.entry_no]
    FROM unnest(p_rows) r;
    entry_ids := v_entries;
    created_at := now();
END
$$;

-- The unchecked form (fixtures, ms_record_settlement): records as it is told,
-- moving each member's version.
CREATE FUNCTION ms_record_batch(p_rows ms_settle_row[], p_entry_of integer[], p_keys text[],
                                p_amounts bigint[], OUT entry_ids bigint[],
                                OUT created_at timestamptz)
LANGUAGE plpgsql SET enable_hashjoin = off SET enable_mergejoin = off
    SET plan_cache_mode = force_generic_plan AS $$
BEGIN
    UPDATE members m SET state_seq = m.state_seq + 1,
                         pin_failures = coalesce(r.pin_failures, m.pin_failures)
        FROM (SELECT * FROM unnest(p_rows) r WHERE r.member_id IS NOT NULL
              ORDER BY r.member_id) r
        WHERE m.member_id = r.member_id;
    SELECT b.entry_ids, b.created_at INTO entry_ids, created_at
        FROM ms_record_rows(ms_open_day(), p_rows, p_entry_of, p_keys, p_amounts) b;
END
$$;

-- One settlement, over ms_record_batch (fixtures).
CREATE FUNCTION ms_record_settlement(
    p_settlement_id text, p_institution text, p_request_id text, p_fingerprint bytea,
    p_status text, p_member_id text, p_service_date date, p_benefit_year integer,
    p_policy_version text, p_catalog_version integer, p_total_fen bigint,
    p_pooled_fund_fen bigint, p_serious_illness_fen bigint, p_individual_account_fen bigint,
    p_answer jsonb, p_changes jsonb, p_keys text[], p_amounts bigint[], p_pin_failures integer,
    OUT entry_id bigint, OUT created_at timestamptz)
LANGUAGE plpgsql AS $$
DECLARE
    r ms_settle_row;
    v_posts boolean := coalesce(array_length(p_keys, 1), 0) > 0;
BEGIN
    IF p_changes IS NOT NULL AND jsonb_typeof(p_changes) = 'object' THEN
        r := ms_changes_row(p_changes);
        IF r.change_year IS NULL OR r.member_id IS DISTINCT FROM p_member_id THEN
            RAISE EXCEPTION 'changes must name the settlement''s member and a benefit year'
                USING ERRCODE = 'check_violation';
        END IF;
    END IF;
    r.settlement_id := p_settlement_id;
    r.institution_code := p_institution;
    r.request_id := p_request_id;
    r.fingerprint := p_fingerprint;
    r.status := p_status;
    r.member_id := p_member_id;
    r.service_date := p_service_date;
    r.benefit_year := p_benefit_year;
    r.policy_version := p_policy_version;
    r.catalog_version := p_catalog_version;
    r.total_fen := p_total_fen;
    r.pooled_fund_fen := p_pooled_fund_fen;
    r.serious_illness_fen := p_serious_illness_fen;
    r.individual_account_fen := p_individual_account_fen;
    r.answer := p_answer::text;
    r.pin_failures := p_pin_failures;
    r.entry_no := CASE WHEN v_posts THEN 1 END;
    SELECT b.entry_ids[1], b.created_at INTO entry_id, created_at
        FROM ms_record_batch(ARRAY[r],
                             array_fill(1, ARRAY[coalesce(array_length(p_keys, 1), 0)]),
                             coalesce(p_keys, '{}'), coalesce(p_amounts, '{}')) b;
END
$$;

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

-- ---------------------------------------------------------------------------
-- Cancel

-- Facts for a cancellation, after taking the locks in the documented order
-- (it locks members' rows, so it runs as the owner).
CREATE FUNCTION ms_load_cancel(p_institution text, p_request_id text, p_settlement_id text,
                               p_original_request_id text)
RETURNS jsonb LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    v_day date;
    v_target text;
    v_member text;
BEGIN
    PERFORM ms_key_lock(p_institution, p_request_id);
    IF p_original_request_id IS NOT NULL THEN
        PERFORM ms_key_lock(p_institution, p_original_request_id);
    END IF;
    PERFORM ms_day_share();
    SELECT business_date INTO v_day FROM business_days WHERE status = 'OPEN';
    IF p_settlement_id IS NOT NULL THEN
        SELECT settlement_id, member_id INTO v_target, v_member FROM settlements
            WHERE settlement_id = p_settlement_id;
    ELSE
        SELECT settlement_id, member_id INTO v_target, v_member FROM settlements
            WHERE institution_code = p_institution AND request_id = p_original_request_id;
    END IF;
    IF v_member IS NOT NULL THEN
        PERFORM 1 FROM members WHERE member_id = v_member FOR UPDATE;
    END IF;
    RETURN jsonb_build_object(
        'business_date', v_day,
        'existing', (SELECT to_jsonb(c) - 'fingerprint' || jsonb_build_object('fingerprint',
                encode(c.fingerprint, 'hex'))
            FROM cancellations c WHERE c.institution_code = p_institution
            AND c.request_id = p_request_id),
        'request_cancelled', (SELECT to_jsonb(c) - 'fingerprint' FROM cancellations c
            WHERE p_original_request_id IS NOT NULL AND c.institution_code = p_institution
            AND c.original_request_id = p_original_request_id AND c.settlement_id IS NULL),
        'settlement', (SELECT jsonb_build_object('settlement_id', s.settlement_id,
                'institution_code', s.institution_code, 'status', s.status,
                'member_id', s.member_id, 'business_date', s.business_date,
                'day_status', d.status, 'changes', s.changes, 'entry_id', s.entry_id)
            FROM settlements s JOIN business_days d USING (business_date)
            WHERE s.settlement_id = v_target),
        'cancellation', (SELECT to_jsonb(c) - 'fingerprint' FROM cancellations c
            WHERE c.settlement_id = v_target),
        'reversal_id', 'R' || to_char(coalesce(v_day, current_date), 'YYYYMMDD')
            || lpad(nextval('settlement_seq')::text, 10, '0')
    );
END
$$;

-- Reverse a settlement, only a settled settlement of the institution that
-- asks. The switch checks that first (NOT_SETTLING_INSTITUTION,
-- NOT_CANCELLABLE); this is the database's own guard. A settlement of an
-- earlier day may be reversed: the reversal is booked into the open day,
-- as an adjustment is.
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

-- The reversal itself: negated postings, state changes taken back.
CREATE FUNCTION ms_reverse_settlement(p_reversal_id text, p_institution text, p_request_id text,
    p_fingerprint bytea, p_settlement_id text, p_original_request_id text, p_reason text)
RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    v_day date;
    v_entry bigint;
    v_old_entry bigint;
    v_changes jsonb;
    v_member text;
    v_keys text[];
    v_amounts bigint[];
    v_balance bigint := 0;
BEGIN
    PERFORM ms_day_share();
    SELECT business_date INTO v_day FROM business_days WHERE status = 'OPEN';
    SELECT entry_id, changes, member_id INTO v_old_entry, v_changes, v_member
        FROM settlements WHERE settlement_id = p_settlement_id;
    IF v_changes IS NOT NULL THEN
        PERFORM ms_apply_changes(v_changes, -1);
    END IF;
    IF v_old_entry IS NOT NULL THEN
        SELECT array_agg(a.account_key ORDER BY p.seq), array_agg(-p.amount_fen ORDER BY p.seq)
            INTO v_keys, v_amounts
            FROM postings p JOIN accounts a USING (account_id) WHERE p.entry_id = v_old_entry;
        v_entry := ms_post('CANCELLATION', p_settlement_id, v_keys, v_amounts);
    END IF;
    IF v_member IS NOT NULL THEN
        SELECT b.balance_fen INTO v_balance FROM members m JOIN account_balances b USING (account_id)
            WHERE m.member_id = v_member;
    END IF;
    INSERT INTO cancellations (reversal_id, institution_code, request_id, fingerprint,
        settlement_id, original_request_id, business_date, reason, balance_after_fen, entry_id)
    VALUES (p_reversal_id, p_institution, p_request_id, p_fingerprint, p_settlement_id,
        p_original_request_id, v_day, p_reason, coalesce(v_balance, 0), v_entry);
    RETURN v_balance;
END
$$;

-- A request cancelled before it arrived: the cancellation of an original request id that has not
-- been settled (its Settle, arriving later, is refused). Nothing moves; it
-- is booked into the open day. Returns that day.
CREATE FUNCTION ms_record_request_cancelled(p_reversal_id text, p_institution text, p_request_id text,
                                    p_fingerprint bytea, p_original_request_id text,
                                    p_reason text)
RETURNS date LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    v_day date;
BEGIN
    IF p_original_request_id IS NULL THEN
        RAISE EXCEPTION 'a request cancelled before it arrived is named by its original request id'
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

-- ===========================================================================
-- Triggers

-- The ledger and end of day's records are append-only.
CREATE TRIGGER entries_append_only BEFORE UPDATE OR DELETE ON entries
    FOR EACH ROW EXECUTE FUNCTION ms_forbid_change();
CREATE TRIGGER entries_no_truncate BEFORE TRUNCATE ON entries
    FOR EACH STATEMENT EXECUTE FUNCTION ms_forbid_change();
CREATE TRIGGER postings_append_only BEFORE UPDATE OR DELETE ON postings
    FOR EACH ROW EXECUTE FUNCTION ms_forbid_change();
CREATE TRIGGER postings_no_truncate BEFORE TRUNCATE ON postings
    FOR EACH STATEMENT EXECUTE FUNCTION ms_forbid_change();
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

CREATE TRIGGER business_days_forward_only BEFORE INSERT OR UPDATE OR DELETE ON business_days
    FOR EACH ROW EXECUTE FUNCTION ms_business_day_rules();
CREATE TRIGGER business_days_no_truncate BEFORE TRUNCATE ON business_days
    FOR EACH STATEMENT EXECUTE FUNCTION ms_forbid_change();

CREATE TRIGGER accounts_balance_rows AFTER INSERT ON accounts
    REFERENCING NEW TABLE AS new_accounts
    FOR EACH STATEMENT EXECUTE FUNCTION ms_open_balance_rows();

CREATE CONSTRAINT TRIGGER chain_lanes_entries_balanced AFTER UPDATE ON chain_lanes
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION ms_check_lane_balanced();

CREATE TRIGGER members_state_seq BEFORE UPDATE ON members
    FOR EACH ROW EXECUTE FUNCTION ms_member_state_moved();
CREATE TRIGGER cancellations_move_member AFTER INSERT ON cancellations
    FOR EACH ROW WHEN (NEW.settlement_id IS NOT NULL)
    EXECUTE FUNCTION ms_cancellation_moves_member();

-- ===========================================================================
-- Rights. The owner (who runs the migrations) holds everything; the two
-- roles hold exactly this.

GRANT USAGE ON SCHEMA public TO medswitch_app, medswitch_operator;
-- Both read every table (schema_version, made by ledger/db.py before the
-- migrations run, included).
GRANT SELECT ON ALL TABLES IN SCHEMA public TO medswitch_app, medswitch_operator;

-- A function runs only for the roles it is granted to, new ones included
-- (PostgreSQL lets every role execute a new function unless told
-- otherwise). The default is the owner's in this database, for every
-- schema (a schema's own default cannot take back what the global one
-- gives).
REVOKE EXECUTE ON ALL FUNCTIONS IN SCHEMA public FROM PUBLIC;
ALTER DEFAULT PRIVILEGES REVOKE EXECUTE ON FUNCTIONS FROM PUBLIC;

-- `medswitch serve` (medswitch_app) writes nothing directly: every write it
-- makes goes through one of the owner's functions, each doing one narrow
-- thing:
--   settle          ms_record_checked: the settlement rows, their entries,
--                   accumulators, stays, pharmacy counts and PIN counts, in
--                   one call, if the members' state is still the one loaded
--                   (ms_load_states reads, and takes settlement ids);
--   cancel          ms_record_cancellation (the exact reversal of a settled
--                   settlement of the calling institution) and
--                   ms_record_request_cancelled (a cancellation that arrived before
--                   its Settle, for a request id nothing was settled under);
--   PIN checks      ms_pin_check(member, ok): one more failure, or back to 0;
--   a read that locks ms_load_cancel (member rows FOR UPDATE).
-- ms_record_batch, ms_record_settlement and ms_record_rows, which record
-- without the state check, are the owner's (fixtures record as the owner).
GRANT EXECUTE ON FUNCTION ms_load_states(text[], bytea[], integer[], date[], integer, text[]),
    ms_record_checked(date, ms_settle_row[], integer[], text[], bigint[]),
    ms_load_cancel(text, text, text, text),
    ms_record_cancellation(text, text, text, bytea, text, text, text),
    ms_record_request_cancelled(text, text, text, bytea, text, text),
    ms_pin_check(text, boolean) TO medswitch_app;
GRANT USAGE ON TYPE ms_settle_row TO medswitch_app;
GRANT USAGE ON SEQUENCE settlement_seq TO medswitch_app;

-- The operator's commands (import-reference, day close, payouts export,
-- recon bank, day status: medswitch_operator) hold exactly the direct
-- writes they make: reference data at import, business days and clearing
-- rows at close, payout exports and bank statements after it, entries
-- through ms_post_set. They cannot write settlements, cancellations,
-- accumulators, balances or members' state.
GRANT INSERT ON policies, catalog_versions, catalog_items, institutions, members,
    member_special_diseases, accounts TO medswitch_operator;
GRANT USAGE, UPDATE ON SEQUENCE accounts_account_id_seq TO medswitch_operator;
GRANT INSERT, UPDATE ON business_days TO medswitch_operator;
GRANT INSERT ON day_clearing, payout_exports, payout_export_entries, bank_statements,
    bank_statement_lines, bank_posting_keys TO medswitch_operator;
GRANT EXECUTE ON FUNCTION ms_post(text, text, text[], bigint[]),
    ms_post_set(text, text[], integer[], text[], bigint[]) TO medswitch_operator;
