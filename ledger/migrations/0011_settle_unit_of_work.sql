-- Settle as one visible unit of work: load the batch's state in one
-- statement (no transaction, no lock), decide in the switch, record the batch
-- in one statement that commits on its own. No connection is held idle in a
-- transaction while the switch adjudicates.
--
-- What makes that safe is a version on each member's state: `state_seq`
-- moves whenever anything the engine reads about the member changes (PIN
-- failures, status, card, balance, accumulators, stays, purchases). The
-- record statement re-checks, under the members' row locks, that every
-- member's version is still the one loaded; if not (another serve process,
-- a cancellation or a PIN check got there first), it records nothing and
-- names the stale items, which the switch loads and decides again.

ALTER TABLE members ADD COLUMN state_seq bigint NOT NULL DEFAULT 0;
-- Every settlement updates its member's row: room on each page for the new
-- version keeps the update HOT (no index entries written).
ALTER TABLE members SET (fillfactor = 85);

-- Any other change to a member's row (a PIN check, the import) moves the
-- version too; an UPDATE that sets state_seq itself is left as it is.
CREATE FUNCTION ms_member_state_moved() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.state_seq = OLD.state_seq THEN
        NEW.state_seq := OLD.state_seq + 1;
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER members_state_seq BEFORE UPDATE ON members
    FOR EACH ROW EXECUTE FUNCTION ms_member_state_moved();

-- A cancellation gives back the member's money and accumulators.
CREATE FUNCTION ms_cancellation_moves_member() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE members m SET state_seq = m.state_seq + 1
        FROM settlements s
        WHERE s.settlement_id = NEW.settlement_id AND m.member_id = s.member_id;
    RETURN NULL;
END
$$;
CREATE TRIGGER cancellations_move_member AFTER INSERT ON cancellations
    FOR EACH ROW WHEN (NEW.settlement_id IS NOT NULL)
    EXECUTE FUNCTION ms_cancellation_moves_member();

-- The version the state was loaded at travels with each row to record.
ALTER TYPE ms_settle_row ADD ATTRIBUTE state_seq bigint;

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
               existing_fingerprint bytea, tombstoned boolean,
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
-- batch as ms_record_batch does.
CREATE FUNCTION ms_record_checked(p_day date, p_rows ms_settle_row[], p_entry_of integer[],
                                  p_keys text[], p_amounts bigint[], OUT entry_ids bigint[],
                                  OUT created_at timestamptz)
LANGUAGE plpgsql SET enable_hashjoin = off SET enable_mergejoin = off
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
-- rows (members' rows are the caller's).
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
CREATE OR REPLACE FUNCTION ms_record_batch(p_rows ms_settle_row[], p_entry_of integer[],
                                           p_keys text[], p_amounts bigint[],
                                           OUT entry_ids bigint[], OUT created_at timestamptz)
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

DROP FUNCTION ms_load_batch(text[], bytea[], integer[], date[], integer, boolean, text[]);

REVOKE ALL ON FUNCTION ms_member_state_moved(), ms_cancellation_moves_member() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION ms_load_states(text[], bytea[], integer[], date[], integer, text[]),
    ms_record_checked(date, ms_settle_row[], integer[], text[], bigint[]),
    ms_record_rows(date, ms_settle_row[], integer[], text[], bigint[]) TO medswitch_app;
