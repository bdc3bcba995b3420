-- MedSwitch ledger schema, version 1.
--
-- The database itself holds the invariants, so that no application bug (and
-- no application role) can break them:
--   * entries and postings are append-only (triggers raise on UPDATE/DELETE/
--     TRUNCATE, and the application role is granted only SELECT and INSERT);
--   * the postings of every entry sum to zero, checked at commit by a
--     deferred constraint trigger;
--   * a member's individual account never goes below zero: its balance row
--     carries CHECK (balance_fen >= 0) and is updated in the same transaction
--     as the postings, under the row lock. Hot accounts (funds, institution
--     payables) have no balance row: their balance is the sum of their
--     postings, so concurrent settlements never queue on them;
--   * exactly one business day is open (partial unique index).
-- Sign convention: a posting's amount_fen is positive for a debit and
-- negative for a credit; an account's balance in its normal side is
-- normal_sign * sum(amount_fen) (normal_sign 1 for DEBIT, -1 for CREDIT).

DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'medswitch_app') THEN
        CREATE ROLE medswitch_app NOLOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE;
    END IF;
END
$$;

CREATE TABLE business_days (
    business_date date PRIMARY KEY,
    status text NOT NULL CHECK (status IN ('OPEN', 'CLOSED')),
    opened_at timestamptz NOT NULL DEFAULT now(),
    closed_at timestamptz
);
CREATE UNIQUE INDEX business_days_one_open ON business_days ((true)) WHERE status = 'OPEN';

CREATE TABLE accounts (
    account_id bigserial PRIMARY KEY,
    account_key text NOT NULL UNIQUE,
    kind text NOT NULL CHECK (kind IN (
        'MEMBER_INDIVIDUAL', 'POOLED_FUND', 'SERIOUS_ILLNESS_FUND',
        'INSTITUTION_PAYABLE', 'INSTITUTION_RECEIVABLE', 'FUND_BANK',
        'PAYOUTS_IN_TRANSIT', 'SETTLED_AT_BANK', 'SUSPENSE', 'OPENING_BALANCE')),
    normal_side text NOT NULL CHECK (normal_side IN ('DEBIT', 'CREDIT')),
    created_at timestamptz NOT NULL DEFAULT now()
);

-- Running balances only for accounts that carry a limit (members).
CREATE TABLE account_balances (
    account_id bigint PRIMARY KEY REFERENCES accounts,
    normal_sign smallint NOT NULL CHECK (normal_sign IN (1, -1)),
    balance_fen bigint NOT NULL CHECK (balance_fen >= 0)
);

-- Tamper-evident hash chains. Each writer (database backend) appends to the
-- lane pg_backend_pid() % 64, so concurrent writers rarely share a lane head
-- and one connection never waits on itself.
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
    business_date date NOT NULL REFERENCES business_days,
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
CREATE INDEX entries_business_date ON entries (business_date, kind);

CREATE TABLE postings (
    entry_id bigint NOT NULL REFERENCES entries DEFERRABLE INITIALLY DEFERRED,
    seq integer NOT NULL,
    account_id bigint NOT NULL REFERENCES accounts,
    amount_fen bigint NOT NULL CHECK (amount_fen <> 0),
    PRIMARY KEY (entry_id, seq)
);
CREATE INDEX postings_account ON postings (account_id, entry_id);

CREATE FUNCTION ms_forbid_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% on % is forbidden: the ledger is append-only', TG_OP, TG_TABLE_NAME
        USING ERRCODE = 'insufficient_privilege';
END
$$;
CREATE TRIGGER entries_append_only BEFORE UPDATE OR DELETE ON entries
    FOR EACH ROW EXECUTE FUNCTION ms_forbid_change();
CREATE TRIGGER entries_no_truncate BEFORE TRUNCATE ON entries
    FOR EACH STATEMENT EXECUTE FUNCTION ms_forbid_change();
CREATE TRIGGER postings_append_only BEFORE UPDATE OR DELETE ON postings
    FOR EACH ROW EXECUTE FUNCTION ms_forbid_change();
CREATE TRIGGER postings_no_truncate BEFORE TRUNCATE ON postings
    FOR EACH STATEMENT EXECUTE FUNCTION ms_forbid_change();

-- At commit: every new entry has at least two postings summing to zero.
CREATE FUNCTION ms_check_entry_balanced() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    n bigint;
    total numeric;
BEGIN
    SELECT count(*), coalesce(sum(amount_fen), 0) INTO n, total
        FROM postings WHERE entry_id = NEW.entry_id;
    IF n < 2 OR total <> 0 THEN
        RAISE EXCEPTION 'entry % is unbalanced: % postings summing to %', NEW.entry_id, n, total
            USING ERRCODE = 'check_violation';
    END IF;
    RETURN NULL;
END
$$;
CREATE CONSTRAINT TRIGGER entries_balanced AFTER INSERT ON entries
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION ms_check_entry_balanced();

-- Postings may only join an entry made in the same transaction (whose
-- deferred balance check is still to run), never an entry already committed.
CREATE FUNCTION ms_check_postings_new() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (
        SELECT 1 FROM (SELECT DISTINCT entry_id FROM new_rows) n
        JOIN entries e USING (entry_id)
        WHERE e.txid <> txid_current()
    ) THEN
        RAISE EXCEPTION 'postings cannot be added to a committed entry'
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN NULL;
END
$$;
CREATE TRIGGER postings_only_new AFTER INSERT ON postings
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION ms_check_postings_new();

-- The canonical bytes an entry's hash covers; ledger/chain.py computes the
-- same bytes independently to verify.
CREATE FUNCTION ms_entry_hash(p_prev bytea, p_entry_id bigint, p_lane smallint, p_lane_seq bigint,
                              p_business_date date, p_kind text, p_ref text)
RETURNS bytea LANGUAGE plpgsql STABLE AS $$
DECLARE
    v_postings text;
BEGIN
    -- plpgsql, not sql: its plan is cached across calls.
    SELECT string_agg(seq::text || ':' || account_id::text || ':' || amount_fen::text, ';'
                      ORDER BY seq)
        INTO v_postings FROM postings WHERE entry_id = p_entry_id;
    RETURN sha256(p_prev || convert_to(
        p_entry_id::text || '|' || p_lane::text || '|' || p_lane_seq::text || '|'
        || to_char(p_business_date, 'YYYY-MM-DD') || '|' || p_kind || '|' || p_ref || '|'
        || coalesce(v_postings, ''), 'UTF8'));
END
$$;

-- The open business day is guarded by an advisory lock, not a row lock: every
-- writing transaction holds it shared until it ends, `ms_close_day` takes it
-- exclusively, so a settlement is wholly in day D or wholly in D+1. (FOR
-- SHARE on the day row would make every settlement write a MultiXact on one
-- hot tuple.)
CREATE FUNCTION ms_day_share() RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_advisory_xact_lock_shared(7370001);
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

-- Seal an entry whose postings are already inserted: append it to this
-- backend's chain lane and book it into the open business day.
CREATE FUNCTION ms_seal_entry(p_entry_id bigint, p_kind text, p_ref text) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    v_lane smallint := (pg_backend_pid() % 64)::smallint;
    v_seq bigint;
    v_prev bytea;
    v_hash bytea;
    v_day date;
BEGIN
    PERFORM ms_day_share();
    SELECT business_date INTO v_day FROM business_days WHERE status = 'OPEN';
    IF v_day IS NULL THEN
        RAISE EXCEPTION 'no business day is open' USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;
    SELECT last_seq + 1, last_hash INTO v_seq, v_prev FROM chain_lanes WHERE lane = v_lane FOR UPDATE;
    v_hash := ms_entry_hash(v_prev, p_entry_id, v_lane, v_seq, v_day, p_kind, p_ref);
    INSERT INTO entries (entry_id, lane, lane_seq, business_date, kind, ref, prev_hash, hash)
        VALUES (p_entry_id, v_lane, v_seq, v_day, p_kind, p_ref, v_prev, v_hash);
    UPDATE chain_lanes SET last_seq = v_seq, last_hash = v_hash WHERE lane = v_lane;
    RETURN p_entry_id;
END
$$;

-- Post one entry: postings given as account keys and signed amounts. The
-- balance rows of limited accounts (members) move in the same statement; a
-- debit beyond a member's balance fails the CHECK and the whole transaction.
CREATE FUNCTION ms_post(p_kind text, p_ref text, p_keys text[], p_amounts bigint[]) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    v_entry bigint := nextval('entries_entry_id_seq');
    v_ids bigint[];
    v_n int := coalesce(array_length(p_keys, 1), 0);
BEGIN
    IF v_n < 2 OR v_n <> coalesce(array_length(p_amounts, 1), 0) THEN
        RAISE EXCEPTION 'an entry needs at least two postings' USING ERRCODE = 'check_violation';
    END IF;
    -- One index probe per key (a join could pick a scan of every account).
    v_ids := ARRAY(SELECT (SELECT a.account_id FROM accounts a WHERE a.account_key = p.key)
                   FROM unnest(p_keys) WITH ORDINALITY AS p(key, ord) ORDER BY p.ord);
    IF array_position(v_ids, NULL) IS NOT NULL THEN
        RAISE EXCEPTION 'unknown account in %', p_keys USING ERRCODE = 'foreign_key_violation';
    END IF;
    INSERT INTO postings (entry_id, seq, account_id, amount_fen)
        SELECT v_entry, p.ord, p.id, p.amount
        FROM unnest(v_ids, p_amounts) WITH ORDINALITY AS p(id, amount, ord);
    FOR i IN 1 .. v_n LOOP
        UPDATE account_balances SET balance_fen = balance_fen + normal_sign * p_amounts[i]
            WHERE account_id = v_ids[i];
    END LOOP;
    RETURN ms_seal_entry(v_entry, p_kind, p_ref);
END
$$;

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
    code text PRIMARY KEY,
    name text NOT NULL,
    kind text NOT NULL CHECK (kind IN ('HOSPITAL', 'CLINIC', 'PHARMACY')),
    level text NOT NULL CHECK (level IN ('', 'L1', 'L2', 'L3')),
    region text NOT NULL,
    status text NOT NULL CHECK (status IN ('ACTIVE', 'SUSPENDED', 'REVOKED'))
);

CREATE TABLE members (
    member_id text PRIMARY KEY,
    card_hmac bytea NOT NULL UNIQUE,
    name_enc bytea NOT NULL,
    name_masked text NOT NULL,
    id_number_enc bytea NOT NULL,
    birth_date date NOT NULL,
    category text NOT NULL CHECK (category IN ('EMPLOYEE', 'RETIREE', 'RESIDENT', 'RETIRED_CADRE')),
    status text NOT NULL CHECK (status IN ('ACTIVE', 'SUSPENDED', 'DECEASED')),
    card_status text NOT NULL CHECK (card_status IN ('ACTIVE', 'LOST')),
    region text NOT NULL,
    account_id bigint NOT NULL UNIQUE REFERENCES accounts,
    pin_hash bytea NOT NULL,
    pin_failures integer NOT NULL DEFAULT 0 CHECK (pin_failures >= 0)
);

CREATE TABLE member_special_diseases (
    member_id text NOT NULL REFERENCES members,
    disease_code text NOT NULL,
    valid_from date NOT NULL,
    valid_to date NOT NULL CHECK (valid_to >= valid_from),
    PRIMARY KEY (member_id, disease_code, valid_from)
);

-- Column names are those of adjudication.model.YearAccumulators.
CREATE TABLE member_year (
    member_id text NOT NULL REFERENCES members,
    year integer NOT NULL,
    outpatient_deductible_used_fen bigint NOT NULL DEFAULT 0 CHECK (outpatient_deductible_used_fen >= 0),
    outpatient_pooled_fen bigint NOT NULL DEFAULT 0 CHECK (outpatient_pooled_fen >= 0),
    basic_pooled_fen bigint NOT NULL DEFAULT 0 CHECK (basic_pooled_fen >= 0),
    inpatient_above_deductible_fen bigint NOT NULL DEFAULT 0 CHECK (inpatient_above_deductible_fen >= 0),
    new_admissions integer NOT NULL DEFAULT 0 CHECK (new_admissions >= 0),
    serious_illness_base_fen bigint NOT NULL DEFAULT 0 CHECK (serious_illness_base_fen >= 0),
    serious_illness_paid_fen bigint NOT NULL DEFAULT 0 CHECK (serious_illness_paid_fen >= 0),
    PRIMARY KEY (member_id, year)
);

-- Column names are those of adjudication.model.InpatientStay.
CREATE TABLE inpatient_stays (
    settlement_id text PRIMARY KEY,
    member_id text NOT NULL REFERENCES members,
    primary_diagnosis text NOT NULL,
    admission_date date NOT NULL,
    discharge_date date NOT NULL,
    new_admission boolean NOT NULL
);
CREATE INDEX inpatient_stays_member ON inpatient_stays (member_id, discharge_date);

CREATE TABLE pharmacy_daily (
    member_id text NOT NULL REFERENCES members,
    service_date date NOT NULL,
    purchases integer NOT NULL CHECK (purchases >= 0),
    PRIMARY KEY (member_id, service_date)
);

-- ---------------------------------------------------------------------------
-- Settlements and cancellations

CREATE SEQUENCE settlement_seq;

CREATE TABLE settlements (
    settlement_id text PRIMARY KEY,
    institution_code text NOT NULL,
    request_id text NOT NULL,
    fingerprint bytea NOT NULL,
    status text NOT NULL CHECK (status IN ('SETTLED', 'REJECTED')),
    member_id text,
    business_date date NOT NULL REFERENCES business_days,
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
    entry_id bigint REFERENCES entries DEFERRABLE INITIALLY DEFERRED,
    created_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (institution_code, request_id)
);
CREATE INDEX settlements_day ON settlements (business_date, institution_code);
CREATE INDEX settlements_member ON settlements (member_id, created_at);

CREATE TABLE cancellations (
    reversal_id text PRIMARY KEY,
    institution_code text NOT NULL,
    request_id text NOT NULL,
    fingerprint bytea NOT NULL,
    settlement_id text UNIQUE REFERENCES settlements,
    original_request_id text,
    business_date date NOT NULL REFERENCES business_days,
    reason text NOT NULL DEFAULT '',
    balance_after_fen bigint NOT NULL DEFAULT 0,
    entry_id bigint REFERENCES entries DEFERRABLE INITIALLY DEFERRED,
    created_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (institution_code, request_id)
);
-- A tombstone: an original request id cancelled before its Settle arrived.
CREATE UNIQUE INDEX cancellations_tombstone ON cancellations (institution_code, original_request_id)
    WHERE settlement_id IS NULL;
CREATE INDEX cancellations_day ON cancellations (business_date);

-- ---------------------------------------------------------------------------
-- The fixed accounts of the chart (members' and institutions' accounts are
-- created with them).

INSERT INTO accounts (account_key, kind, normal_side) VALUES
    ('fund:pooled', 'POOLED_FUND', 'CREDIT'),
    ('fund:serious_illness', 'SERIOUS_ILLNESS_FUND', 'CREDIT'),
    ('bank:fund', 'FUND_BANK', 'DEBIT'),
    ('payouts:in_transit', 'PAYOUTS_IN_TRANSIT', 'DEBIT'),
    ('bank:settled', 'SETTLED_AT_BANK', 'DEBIT'),
    ('suspense', 'SUSPENSE', 'DEBIT'),
    ('equity:opening', 'OPENING_BALANCE', 'DEBIT');

-- ---------------------------------------------------------------------------
-- Settle and cancel, server side. Each function is one round trip; inside a
-- VOLATILE plpgsql function every statement takes a fresh snapshot, so what
-- is read after a lock wait is what the previous holder committed.
-- Lock order, everywhere: the request-key advisory lock, the open business
-- day (ms_day_share; ms_close_day takes it exclusively), the member row, the
-- member's balance row, the chain lane.

CREATE FUNCTION ms_key_lock(p_institution text, p_request_id text) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(hashtextextended(p_institution || '/' || p_request_id, 7));
END
$$;

-- Everything the engine needs about a claim, in one jsonb. With p_lock the
-- member row is locked FOR UPDATE (Settle); without, it is a plain read
-- (PreSettle, GetMember). p_request_id non-null adds the idempotency facts.
CREATE FUNCTION ms_load_claim(p_institution text, p_card_hmac bytea, p_year integer,
                              p_service_date date, p_lookback_days integer, p_lock boolean,
                              p_request_id text)
RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    v_day date;
    v_member text;
    v_out jsonb;
BEGIN
    IF p_request_id IS NOT NULL THEN
        PERFORM ms_key_lock(p_institution, p_request_id);
    END IF;
    IF p_lock THEN
        PERFORM ms_day_share();
    SELECT business_date INTO v_day FROM business_days WHERE status = 'OPEN';
        SELECT member_id INTO v_member FROM members WHERE card_hmac = p_card_hmac FOR UPDATE;
    ELSE
        SELECT business_date INTO v_day FROM business_days WHERE status = 'OPEN';
        SELECT member_id INTO v_member FROM members WHERE card_hmac = p_card_hmac;
    END IF;
    SELECT jsonb_build_object(
        'business_date', v_day,
        'institution', (SELECT to_jsonb(i) FROM institutions i WHERE i.code = p_institution),
        'member', (SELECT jsonb_build_object(
                'member_id', m.member_id, 'category', m.category, 'status', m.status,
                'card_status', m.card_status, 'birth_date', m.birth_date, 'region', m.region,
                'name_masked', m.name_masked, 'balance_fen', b.balance_fen,
                'pin_hash', encode(m.pin_hash, 'hex'), 'pin_failures', m.pin_failures,
                'special_diseases', coalesce((
                    SELECT jsonb_agg(jsonb_build_object('code', d.disease_code,
                        'valid_from', d.valid_from, 'valid_to', d.valid_to)
                        ORDER BY d.disease_code, d.valid_from)
                    FROM member_special_diseases d WHERE d.member_id = m.member_id), '[]'::jsonb))
            FROM members m JOIN account_balances b USING (account_id)
            WHERE m.member_id = v_member),
        'year', (SELECT to_jsonb(y) - 'member_id' FROM member_year y
                 WHERE y.member_id = v_member AND y.year = p_year),
        'stays', coalesce((SELECT jsonb_agg(to_jsonb(s) - 'member_id' ORDER BY s.admission_date, s.settlement_id)
                  FROM inpatient_stays s WHERE s.member_id = v_member
                  AND s.discharge_date >= p_service_date - p_lookback_days), '[]'::jsonb),
        'pharmacy_purchases_today', coalesce((SELECT purchases FROM pharmacy_daily p
                  WHERE p.member_id = v_member AND p.service_date = p_service_date), 0),
        'existing', (SELECT jsonb_build_object('settlement_id', s.settlement_id,
                  'fingerprint', encode(s.fingerprint, 'hex'))
                  FROM settlements s WHERE p_request_id IS NOT NULL
                  AND s.institution_code = p_institution AND s.request_id = p_request_id),
        'tombstoned', p_request_id IS NOT NULL AND EXISTS (SELECT 1 FROM cancellations c
                  WHERE c.institution_code = p_institution AND c.original_request_id = p_request_id
                  AND c.settlement_id IS NULL),
        'settlement_id', CASE WHEN p_request_id IS NOT NULL AND v_day IS NOT NULL THEN
                  'S' || to_char(v_day, 'YYYYMMDD') || lpad(nextval('settlement_seq')::text, 10, '0')
                  END
    ) INTO v_out;
    RETURN v_out;
END
$$;

-- Add (p_sign 1) or take back (p_sign -1) a settlement's member-state changes
-- (the jsonb of adjudication.model.StateChanges.as_dict()).
CREATE FUNCTION ms_apply_changes(p_changes jsonb, p_sign integer) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    v_member text := p_changes->>'member_id';
    v_year integer := (p_changes->>'benefit_year')::integer;
BEGIN
    -- An upsert checks its proposed row before the conflict, so taking back
    -- (negative deltas) is a plain UPDATE of the row the settlement made.
    IF p_sign > 0 THEN
        INSERT INTO member_year (member_id, year) VALUES (v_member, v_year)
            ON CONFLICT (member_id, year) DO NOTHING;
    END IF;
    UPDATE member_year y SET
        outpatient_deductible_used_fen = y.outpatient_deductible_used_fen
            + p_sign * coalesce((p_changes->>'outpatient_deductible_used_fen')::bigint, 0),
        outpatient_pooled_fen = y.outpatient_pooled_fen
            + p_sign * coalesce((p_changes->>'outpatient_pooled_fen')::bigint, 0),
        basic_pooled_fen = y.basic_pooled_fen
            + p_sign * coalesce((p_changes->>'basic_pooled_fen')::bigint, 0),
        inpatient_above_deductible_fen = y.inpatient_above_deductible_fen
            + p_sign * coalesce((p_changes->>'inpatient_above_deductible_fen')::bigint, 0),
        new_admissions = y.new_admissions
            + p_sign * coalesce((p_changes->>'new_admissions')::integer, 0),
        serious_illness_base_fen = y.serious_illness_base_fen
            + p_sign * coalesce((p_changes->>'serious_illness_base_fen')::bigint, 0),
        serious_illness_paid_fen = y.serious_illness_paid_fen
            + p_sign * coalesce((p_changes->>'serious_illness_paid_fen')::bigint, 0)
    WHERE y.member_id = v_member AND y.year = v_year;
    IF p_changes->>'pharmacy_date' IS NOT NULL THEN
        IF p_sign > 0 THEN
            INSERT INTO pharmacy_daily AS p (member_id, service_date, purchases)
            VALUES (v_member, (p_changes->>'pharmacy_date')::date, 1)
            ON CONFLICT (member_id, service_date) DO UPDATE SET purchases = p.purchases + 1;
        ELSE
            UPDATE pharmacy_daily SET purchases = purchases - 1
            WHERE member_id = v_member AND service_date = (p_changes->>'pharmacy_date')::date;
        END IF;
    END IF;
    IF jsonb_typeof(p_changes->'stay') = 'object' THEN
        IF p_sign > 0 THEN
            INSERT INTO inpatient_stays (settlement_id, member_id, primary_diagnosis,
                admission_date, discharge_date, new_admission)
            VALUES (p_changes->'stay'->>'settlement_id', v_member,
                p_changes->'stay'->>'primary_diagnosis',
                (p_changes->'stay'->>'admission_date')::date,
                (p_changes->'stay'->>'discharge_date')::date,
                (p_changes->'stay'->>'new_admission')::boolean);
        ELSE
            DELETE FROM inpatient_stays WHERE settlement_id = p_changes->'stay'->>'settlement_id';
        END IF;
    END IF;
END
$$;

CREATE FUNCTION ms_record_settlement(
    p_settlement_id text, p_institution text, p_request_id text, p_fingerprint bytea,
    p_status text, p_member_id text, p_service_date date, p_benefit_year integer,
    p_policy_version text, p_catalog_version integer, p_total_fen bigint,
    p_pooled_fund_fen bigint, p_serious_illness_fen bigint, p_individual_account_fen bigint,
    p_answer jsonb, p_changes jsonb, p_keys text[], p_amounts bigint[], p_pin_failures integer,
    OUT entry_id bigint, OUT created_at timestamptz)
LANGUAGE plpgsql AS $$
DECLARE
    v_entry bigint;
    v_day date;
BEGIN
    PERFORM ms_day_share();
    SELECT business_date INTO v_day FROM business_days WHERE status = 'OPEN';
    IF p_changes IS NOT NULL THEN
        PERFORM ms_apply_changes(p_changes, 1);
    END IF;
    IF coalesce(array_length(p_keys, 1), 0) > 0 THEN
        v_entry := ms_post('SETTLEMENT', p_settlement_id, p_keys, p_amounts);
    END IF;
    INSERT INTO settlements (settlement_id, institution_code, request_id, fingerprint, status,
        member_id, business_date, service_date, benefit_year, policy_version, catalog_version,
        total_fen, pooled_fund_fen, serious_illness_fen, individual_account_fen, answer, changes,
        entry_id)
    VALUES (p_settlement_id, p_institution, p_request_id, p_fingerprint, p_status, p_member_id,
        v_day, p_service_date, p_benefit_year, p_policy_version, p_catalog_version, p_total_fen,
        p_pooled_fund_fen, p_serious_illness_fen, p_individual_account_fen, p_answer, p_changes,
        v_entry);
    IF p_pin_failures IS NOT NULL AND p_member_id IS NOT NULL THEN
        UPDATE members SET pin_failures = p_pin_failures
            WHERE member_id = p_member_id AND pin_failures <> p_pin_failures;
    END IF;
    entry_id := v_entry;
    created_at := now();
END
$$;

-- Facts for a cancellation, after taking the locks in the documented order.
CREATE FUNCTION ms_load_cancel(p_institution text, p_request_id text, p_settlement_id text,
                               p_original_request_id text)
RETURNS jsonb LANGUAGE plpgsql AS $$
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
        'tombstone', (SELECT to_jsonb(c) - 'fingerprint' FROM cancellations c
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

-- Reverse a settlement: negated postings, state changes taken back.
CREATE FUNCTION ms_record_cancellation(p_reversal_id text, p_institution text, p_request_id text,
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

-- ---------------------------------------------------------------------------
-- The application role: read and append, never rewrite history.

GRANT USAGE ON SCHEMA public TO medswitch_app;
GRANT SELECT, INSERT ON entries, postings, accounts, settlements, cancellations, policies,
    catalog_versions, catalog_items TO medswitch_app;
GRANT SELECT, INSERT, UPDATE ON business_days, account_balances, chain_lanes, institutions,
    members TO medswitch_app;
GRANT SELECT, INSERT, UPDATE, DELETE ON member_special_diseases, member_year, inpatient_stays,
    pharmacy_daily TO medswitch_app;
GRANT SELECT ON schema_version TO medswitch_app;
GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA public TO medswitch_app;
GRANT USAGE, SELECT, UPDATE ON ALL SEQUENCES IN SCHEMA public TO medswitch_app;
