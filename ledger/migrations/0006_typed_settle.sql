-- Settle with typed rows instead of jsonb. A batch's claims load as rows of
-- typed columns (ms_load_batch) and its settlements record from one array
-- of a composite type (ms_record_batch): neither side builds or parses JSON
-- for the fields it reads, which was the largest single cost of a
-- settlement on both sides of the wire. The stored answer and changes stay
-- jsonb. The jsonb-array functions of 0003 (ms_load_claims, ms_load_claim,
-- ms_record_settlements) go; ms_record_settlement and ms_apply_changes_set
-- keep their signatures and delegate here, so each rule has one
-- implementation.

-- One settlement to record: the settlement row, its member-state changes
-- (the fields of adjudication.model.StateChanges, from which the stored
-- `changes` jsonb is made; NULL change_year when it changes no state) and
-- `entry_no`, the 1-based index of its entry among the batch's entries
-- (NULL when it posts nothing).
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
    stay_new_admission boolean
);

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

-- Taking back (p_sign -1, a cancellation) stays here; adding delegates to
-- ms_add_changes.
CREATE OR REPLACE FUNCTION ms_apply_changes_set(p_changes jsonb, p_sign integer) RETURNS void
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
        outpatient_deductible_used_fen = y.outpatient_deductible_used_fen + p_sign * d.odu,
        outpatient_pooled_fen = y.outpatient_pooled_fen + p_sign * d.op,
        basic_pooled_fen = y.basic_pooled_fen + p_sign * d.bp,
        inpatient_above_deductible_fen = y.inpatient_above_deductible_fen + p_sign * d.iad,
        new_admissions = y.new_admissions + p_sign * d.na,
        serious_illness_base_fen = y.serious_illness_base_fen + p_sign * d.sib,
        serious_illness_paid_fen = y.serious_illness_paid_fen + p_sign * d.sip
    FROM (SELECT r.member_id, r.change_year AS year,
                 sum(r.outpatient_deductible_used_fen)::bigint AS odu,
                 sum(r.outpatient_pooled_fen)::bigint AS op,
                 sum(r.basic_pooled_fen)::bigint AS bp,
                 sum(r.inpatient_above_deductible_fen)::bigint AS iad,
                 sum(r.new_admissions)::integer AS na,
                 sum(r.serious_illness_base_fen)::bigint AS sib,
                 sum(r.serious_illness_paid_fen)::bigint AS sip
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

-- Everything the engine needs about several claims, one row per claim in
-- the order given, in one statement. With p_lock the request keys
-- (advisory), the open day (shared) and the members' rows (FOR UPDATE, in
-- card-hash order: the lock order everywhere) are locked first (Settle);
-- without, it is a plain read (PreSettle, GetMember). A null request id
-- leaves out the idempotency facts and the new settlement id. Institution
-- and member columns are NULL when unknown; the accumulators are NULL when
-- the member has no row for the year; special_diseases and stays are jsonb
-- arrays (NULL when none), the only nested values.
CREATE FUNCTION ms_load_batch(p_institutions text[], p_card_hmacs bytea[], p_years integer[],
                              p_service_dates date[], p_lookback_days integer, p_lock boolean,
                              p_request_ids text[])
RETURNS TABLE (business_date date, settlement_id text, existing_settlement_id text,
               existing_fingerprint bytea, tombstoned boolean,
               institution_code text, institution_name text, institution_kind text,
               institution_level text, institution_region text, institution_status text,
               member_id text, category text, status text, card_status text, birth_date date,
               region text, name_masked text, balance_fen bigint, pin_hash bytea,
               pin_failures integer, special_diseases jsonb,
               outpatient_deductible_used_fen bigint, outpatient_pooled_fen bigint,
               basic_pooled_fen bigint, inpatient_above_deductible_fen bigint,
               new_admissions integer, serious_illness_base_fen bigint,
               serious_illness_paid_fen bigint, stays jsonb, pharmacy_purchases_today integer)
LANGUAGE plpgsql SET enable_hashjoin = off SET enable_mergejoin = off
    SET plan_cache_mode = force_generic_plan AS $$
#variable_conflict use_column
DECLARE
    v_day date;
BEGIN
    IF p_lock THEN
        PERFORM ms_lock_keys(p_institutions, p_request_ids);
        PERFORM ms_day_share();
        PERFORM 1 FROM members WHERE card_hmac = ANY(p_card_hmacs) ORDER BY card_hmac FOR UPDATE;
    END IF;
    SELECT d.business_date INTO v_day FROM business_days d WHERE d.status = 'OPEN';
    RETURN QUERY
    SELECT v_day,
           CASE WHEN u.req IS NOT NULL AND v_day IS NOT NULL THEN
               'S' || to_char(v_day, 'YYYYMMDD') || lpad(nextval('settlement_seq')::text, 10, '0')
           END,
           s.settlement_id, s.fingerprint,
           -- a probe, not EXISTS: stale statistics could turn EXISTS into a
           -- hashed subplan that reads every tombstone on each call
           u.req IS NOT NULL AND (SELECT true FROM cancellations c
               WHERE c.institution_code = u.inst AND c.original_request_id = u.req
               AND c.settlement_id IS NULL LIMIT 1) IS NOT NULL,
           i.code, i.name, i.kind, i.level, i.region, i.status,
           m.member_id, m.category, m.status, m.card_status, m.birth_date, m.region,
           m.name_masked, b.balance_fen, m.pin_hash, m.pin_failures,
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
    -- LATERAL ... OFFSET 0: each probe keys on both columns of its primary
    -- key, whatever the statistics say (a plain join let the planner probe by
    -- member alone and filter the member's whole purchase history by day).
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

-- Record several settlements. p_rows: one per settlement (each member at
-- most once per call: the caller splits a batch into rounds); p_entry_of,
-- p_keys, p_amounts: the postings of all their entries (see ms_post_set),
-- entry k being the row whose entry_no is k. Returns the new entry ids in
-- entry_no order and the settlements' created_at.
CREATE FUNCTION ms_record_batch(p_rows ms_settle_row[], p_entry_of integer[], p_keys text[],
                                p_amounts bigint[], OUT entry_ids bigint[],
                                OUT created_at timestamptz)
LANGUAGE plpgsql SET enable_hashjoin = off SET enable_mergejoin = off
    SET plan_cache_mode = force_generic_plan AS $$
DECLARE
    v_day date;
    v_refs text[];
    v_entries bigint[];
BEGIN
    v_day := ms_open_day();
    PERFORM ms_add_changes(p_rows);
    v_refs := ARRAY(SELECT r.settlement_id FROM unnest(p_rows) r WHERE r.entry_no IS NOT NULL
                    ORDER BY r.entry_no);
    -- The rows' entry numbers are exactly 1..n, n being the postings' last
    -- entry: each entry belongs to one settlement and each settlement to
    -- at most one entry.
    IF ARRAY(SELECT r.entry_no FROM unnest(p_rows) r WHERE r.entry_no IS NOT NULL
             ORDER BY r.entry_no)
       IS DISTINCT FROM ARRAY(SELECT generate_series(1, coalesce(
                                  (SELECT max(e) FROM unnest(p_entry_of) e), 0))) THEN
        RAISE EXCEPTION 'entry numbers of the rows are not 1..% as the postings say',
            coalesce((SELECT max(e) FROM unnest(p_entry_of) e), 0)
            USING ERRCODE = 'check_violation';
    END IF;
    v_entries := ms_post_set('SETTLEMENT', v_refs, p_entry_of, p_keys, p_amounts);
    INSERT INTO settlements (settlement_id, institution_code, request_id, fingerprint, status,
        member_id, business_date, service_date, benefit_year, policy_version, catalog_version,
        total_fen, pooled_fund_fen, serious_illness_fen, individual_account_fen, answer, changes,
        entry_id)
    SELECT r.settlement_id, r.institution_code, r.request_id, r.fingerprint, r.status,
        r.member_id, v_day, r.service_date, r.benefit_year, r.policy_version,
        r.catalog_version, r.total_fen, r.pooled_fund_fen, r.serious_illness_fen,
        r.individual_account_fen, r.answer::jsonb, ms_changes_json(r), v_entries[r.entry_no]
    FROM unnest(p_rows) r;
    UPDATE members m SET pin_failures = r.pin_failures
        FROM unnest(p_rows) r
        WHERE r.pin_failures IS NOT NULL AND m.member_id = r.member_id
          AND m.pin_failures <> r.pin_failures;
    entry_ids := v_entries;
    created_at := now();
END
$$;

-- The single-settlement form of 0001, over ms_record_batch.
CREATE OR REPLACE FUNCTION ms_record_settlement(
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

DROP FUNCTION ms_record_settlements(jsonb);
DROP FUNCTION ms_load_claim(text, bytea, integer, date, integer, boolean, text);
DROP FUNCTION ms_load_claims(text[], bytea[], integer[], date[], integer, boolean, text[]);

GRANT EXECUTE ON FUNCTION ms_changes_row(jsonb), ms_changes_json(ms_settle_row),
    ms_add_changes(ms_settle_row[]),
    ms_load_batch(text[], bytea[], integer[], date[], integer, boolean, text[]),
    ms_record_batch(ms_settle_row[], integer[], text[], bigint[]) TO medswitch_app;
GRANT USAGE ON TYPE ms_settle_row TO medswitch_app;

-- A settlement's entry is written by the same ms_record_batch call, before
-- the settlement row. The deferred foreign key re-read each new entry at
-- commit with a FOR KEY SHARE lock (a WAL record per settlement, about a
-- twentieth of a settlement's cost); `ledger verify` now reports a
-- settlement whose entry does not exist instead.
ALTER TABLE settlements DROP CONSTRAINT settlements_entry_id_fkey;

-- Balanced entries, still checked at commit, once per chain-lane advance
-- instead of once per entry. Every entry is appended by ms_append_entries,
-- which moves exactly one lane head from last_seq to last_seq + n in the
-- same call (the application role cannot insert entries itself), so the
-- deferred check of that head update sees every entry appended: those of
-- the lane with lane_seq in (OLD.last_seq, NEW.last_seq]. It runs one
-- set-wise query per batch where entries_balanced ran one per entry (about
-- a twentieth of a settlement's cost). An entry inserted behind the
-- functions' back breaks the chain, which `ledger verify` reports.
-- It runs as the committing role, so its search_path is fixed: a temporary
-- table named entries or postings (pg_temp comes first by default) must
-- not stand in for the real ones.
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
CREATE CONSTRAINT TRIGGER chain_lanes_entries_balanced AFTER UPDATE ON chain_lanes
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION ms_check_lane_balanced();
DROP TRIGGER entries_balanced ON entries;
DROP FUNCTION ms_check_entry_balanced();

-- A member's accumulators and pharmacy count are written only by
-- ms_add_changes, for the member whose row the same transaction holds FOR
-- UPDATE, and members are never deleted (the application role has no
-- DELETE on them): the per-row foreign-key checks, run for every member's
-- first settlement of a year and first purchase of a day, guarded nothing
-- those facts do not.
ALTER TABLE member_year DROP CONSTRAINT member_year_member_id_fkey;
ALTER TABLE pharmacy_daily DROP CONSTRAINT pharmacy_daily_member_id_fkey;

-- ms_post_set as in 0003, its checks and account lookup in one pass over
-- the postings (a join on the account key instead of a jsonb map of the
-- accounts, then a second pass for the seq numbers and a third for the
-- entries short of postings).
CREATE OR REPLACE FUNCTION ms_post_set(p_kind text, p_refs text[], p_entry_of integer[], p_keys text[],
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

-- Written by every entry and read by no query (end of day reads settlements
-- and cancellations by day; `ledger verify` reads every entry).
DROP INDEX entries_business_date;

-- Room on each page for the new version of a row updated by settling, so
-- that the update stays on its page (a HOT update, no new index entry):
-- balances and accumulators are updated by nearly every settlement.
ALTER TABLE account_balances SET (fillfactor = 90);
ALTER TABLE member_year SET (fillfactor = 90);
