-- Group commit, set-wise. A batch of settlements now loads in one call
-- (ms_load_claims) and records in one call (ms_record_settlements) whose
-- statement count does not grow with the batch: accumulators, pharmacy
-- counts, stays, postings, balances, entries and settlement rows are each
-- written by one statement for the whole batch. The single-item functions
-- of 0001 keep their signatures and now delegate here, so there is one
-- implementation of each rule.

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

-- Append entries to the hash chain and the open business day, before their
-- postings are inserted (the postings trigger requires the entry to exist).
-- p_bodies: each entry's postings text (seq:account_id:amount;... in seq
-- order), from which its hash is computed. The entries go, in order, to the
-- first lane no other transaction holds, from this backend's own: writers
-- never queue behind each other for a chain head.
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
-- within each entry. Returns the new entry ids, in p_refs order. Balance
-- rows of limited accounts (members) move in one statement; a debit beyond
-- a member's balance fails the CHECK and the whole transaction.
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
    v_map jsonb;
BEGIN
    IF v_n = 0 THEN
        RETURN '{}';
    END IF;
    IF coalesce(array_length(p_keys, 1), 0) <> coalesce(array_length(p_amounts, 1), 0)
       OR coalesce(array_length(p_keys, 1), 0) <> coalesce(array_length(p_entry_of, 1), 0) THEN
        RAISE EXCEPTION 'postings arrays differ in length' USING ERRCODE = 'check_violation';
    END IF;
    SELECT min(e) INTO v_short
        FROM generate_series(1, v_n) e
        LEFT JOIN (SELECT x, count(*) AS n FROM unnest(p_entry_of) x GROUP BY x) g ON g.x = e
        WHERE coalesce(g.n, 0) < 2;
    IF v_short IS NOT NULL THEN
        RAISE EXCEPTION 'an entry needs at least two postings (entry % of %)', v_short, v_n
            USING ERRCODE = 'check_violation';
    END IF;
    v_entries := ARRAY(SELECT nextval('entries_entry_id_seq') FROM generate_series(1, v_n));
    -- The accounts in one index scan (each distinct key once), then a map
    -- lookup per posting; seq numbers count from 1 within each entry.
    SELECT jsonb_object_agg(a.account_key, a.account_id) INTO v_map
        FROM accounts a WHERE a.account_key = ANY(p_keys);
    SELECT array_agg((v_map->>p.key)::bigint ORDER BY p.ord), array_agg(p.seq ORDER BY p.ord)
        INTO v_ids, v_seqs
        FROM (SELECT key, ord, row_number() OVER (PARTITION BY entry ORDER BY ord)::integer AS seq
              FROM unnest(p_keys, p_entry_of) WITH ORDINALITY AS u(key, entry, ord)) p;
    IF array_position(v_ids, NULL) IS NOT NULL THEN
        RAISE EXCEPTION 'unknown account in %', p_keys USING ERRCODE = 'foreign_key_violation';
    END IF;
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

-- Post one large entry whose postings the caller has put, with COPY, in the
-- temporary table ms_staged_postings (seq, account_id, amount_fen): the
-- opening entry of an import. Checked like ms_post_set (accounts exist, two
-- postings at least, balanced at commit), and the balance rows move with
-- the postings, so a member's balance cannot be set apart from its postings
-- nor go below zero. Returns the entry id.
CREATE FUNCTION ms_post_staged(p_kind text, p_ref text) RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    v_entry bigint := nextval('entries_entry_id_seq');
    v_body text;
    v_n bigint;
BEGIN
    SELECT count(*), string_agg(seq::text || ':' || account_id::text || ':' || amount_fen::text,
                                ';' ORDER BY seq)
        INTO v_n, v_body FROM ms_staged_postings;
    IF v_n < 2 THEN
        RAISE EXCEPTION 'an entry needs at least two postings' USING ERRCODE = 'check_violation';
    END IF;
    IF EXISTS (SELECT 1 FROM ms_staged_postings s
               WHERE NOT EXISTS (SELECT 1 FROM accounts a WHERE a.account_id = s.account_id)) THEN
        RAISE EXCEPTION 'a staged posting names an account that does not exist'
            USING ERRCODE = 'foreign_key_violation';
    END IF;
    PERFORM ms_append_entries(p_kind, ARRAY[p_ref], ARRAY[v_entry], ARRAY[v_body]);
    INSERT INTO postings (entry_id, seq, account_id, amount_fen)
        SELECT v_entry, seq, account_id, amount_fen FROM ms_staged_postings;
    UPDATE account_balances b SET balance_fen = b.balance_fen + b.normal_sign * d.amount
        FROM (SELECT account_id, sum(amount_fen)::bigint AS amount FROM ms_staged_postings
              GROUP BY account_id) d
        WHERE b.account_id = d.account_id;
    RETURN v_entry;
END
$$;

-- Entries and postings are written only by the three functions above
-- (SECURITY DEFINER, owned by the schema owner): the application role may
-- call them but can no longer INSERT into either table itself, so every
-- entry has its postings made in the same call, from accounts that exist,
-- and no posting joins an entry later. That replaces the per-row foreign
-- keys of postings (to entries, checked again at commit for every posting;
-- to accounts, whose FOR KEY SHARE locks piled MultiXacts onto the few
-- fund rows every settlement posts to) and the statement trigger that
-- guarded the application's direct inserts. `ledger verify` reports
-- postings of a missing entry or account, as it reports any other change
-- made behind the functions' back. ms_seal_entry, which sealed an entry
-- after its postings, is gone, and with it ms_entry_hash, which re-read
-- them (ms_entry_hash_of hashes the postings text in hand).
ALTER TABLE postings DROP CONSTRAINT postings_entry_id_fkey;
ALTER TABLE postings DROP CONSTRAINT postings_account_id_fkey;
DROP TRIGGER postings_only_new ON postings;
DROP FUNCTION ms_check_postings_new();
DROP FUNCTION ms_seal_entry(bigint, text, text);
DROP FUNCTION ms_entry_hash(bytea, bigint, smallint, bigint, date, text, text);
REVOKE INSERT ON entries, postings FROM medswitch_app;

CREATE OR REPLACE FUNCTION ms_post(p_kind text, p_ref text, p_keys text[], p_amounts bigint[])
RETURNS bigint LANGUAGE plpgsql AS $$
BEGIN
    RETURN (ms_post_set(p_kind, ARRAY[p_ref],
                        array_fill(1, ARRAY[coalesce(array_length(p_keys, 1), 0)]),
                        p_keys, p_amounts))[1];
END
$$;

-- Add (p_sign 1) or take back (p_sign -1) the member-state changes of
-- several settlements (a jsonb array of adjudication.model.StateChanges
-- .as_dict()), one statement per kind of state.
-- Batches are small against tables of millions of rows: every join in the
-- set-wise functions is an index probe per batch row, never a scan (a
-- jsonb_array_elements row estimate of 100 would otherwise tempt the
-- planner into a hash join). Their plans are generic, made once per session
-- (a custom plan per call cost more than the call's work for small batches).
CREATE FUNCTION ms_apply_changes_set(p_changes jsonb, p_sign integer) RETURNS void
LANGUAGE plpgsql SET enable_hashjoin = off SET enable_mergejoin = off
    SET plan_cache_mode = force_generic_plan AS $$
BEGIN
    -- Settling adds non-negative amounts: one upsert. Taking back is a plain
    -- UPDATE, because an upsert checks its proposed row (negative amounts)
    -- against the CHECKs before it finds the conflict.
    IF p_sign > 0 THEN
        INSERT INTO member_year AS y (member_id, year, outpatient_deductible_used_fen,
            outpatient_pooled_fen, basic_pooled_fen, inpatient_above_deductible_fen,
            new_admissions, serious_illness_base_fen, serious_illness_paid_fen)
        SELECT c->>'member_id', (c->>'benefit_year')::integer,
               sum(coalesce((c->>'outpatient_deductible_used_fen')::bigint, 0)),
               sum(coalesce((c->>'outpatient_pooled_fen')::bigint, 0)),
               sum(coalesce((c->>'basic_pooled_fen')::bigint, 0)),
               sum(coalesce((c->>'inpatient_above_deductible_fen')::bigint, 0)),
               sum(coalesce((c->>'new_admissions')::integer, 0)),
               sum(coalesce((c->>'serious_illness_base_fen')::bigint, 0)),
               sum(coalesce((c->>'serious_illness_paid_fen')::bigint, 0))
        FROM jsonb_array_elements(p_changes) c GROUP BY 1, 2
        ON CONFLICT (member_id, year) DO UPDATE SET
            outpatient_deductible_used_fen = y.outpatient_deductible_used_fen
                + EXCLUDED.outpatient_deductible_used_fen,
            outpatient_pooled_fen = y.outpatient_pooled_fen + EXCLUDED.outpatient_pooled_fen,
            basic_pooled_fen = y.basic_pooled_fen + EXCLUDED.basic_pooled_fen,
            inpatient_above_deductible_fen = y.inpatient_above_deductible_fen
                + EXCLUDED.inpatient_above_deductible_fen,
            new_admissions = y.new_admissions + EXCLUDED.new_admissions,
            serious_illness_base_fen = y.serious_illness_base_fen
                + EXCLUDED.serious_illness_base_fen,
            serious_illness_paid_fen = y.serious_illness_paid_fen
                + EXCLUDED.serious_illness_paid_fen;
    ELSE
        UPDATE member_year y SET
            outpatient_deductible_used_fen = y.outpatient_deductible_used_fen + p_sign * d.odu,
            outpatient_pooled_fen = y.outpatient_pooled_fen + p_sign * d.op,
            basic_pooled_fen = y.basic_pooled_fen + p_sign * d.bp,
            inpatient_above_deductible_fen = y.inpatient_above_deductible_fen + p_sign * d.iad,
            new_admissions = y.new_admissions + p_sign * d.na,
            serious_illness_base_fen = y.serious_illness_base_fen + p_sign * d.sib,
            serious_illness_paid_fen = y.serious_illness_paid_fen + p_sign * d.sip
        FROM (SELECT c->>'member_id' AS member_id, (c->>'benefit_year')::integer AS year,
                     sum(coalesce((c->>'outpatient_deductible_used_fen')::bigint, 0))::bigint AS odu,
                     sum(coalesce((c->>'outpatient_pooled_fen')::bigint, 0))::bigint AS op,
                     sum(coalesce((c->>'basic_pooled_fen')::bigint, 0))::bigint AS bp,
                     sum(coalesce((c->>'inpatient_above_deductible_fen')::bigint, 0))::bigint AS iad,
                     sum(coalesce((c->>'new_admissions')::integer, 0))::integer AS na,
                     sum(coalesce((c->>'serious_illness_base_fen')::bigint, 0))::bigint AS sib,
                     sum(coalesce((c->>'serious_illness_paid_fen')::bigint, 0))::bigint AS sip
              FROM jsonb_array_elements(p_changes) c GROUP BY 1, 2) d
        WHERE y.member_id = d.member_id AND y.year = d.year;
    END IF;
    IF p_sign > 0 THEN
        INSERT INTO pharmacy_daily AS p (member_id, service_date, purchases)
            SELECT c->>'member_id', (c->>'pharmacy_date')::date, count(*)
            FROM jsonb_array_elements(p_changes) c WHERE c->>'pharmacy_date' IS NOT NULL
            GROUP BY 1, 2
            ON CONFLICT (member_id, service_date) DO UPDATE SET purchases = p.purchases + EXCLUDED.purchases;
        INSERT INTO inpatient_stays (settlement_id, member_id, primary_diagnosis,
                                     admission_date, discharge_date, new_admission)
            SELECT c->'stay'->>'settlement_id', c->>'member_id', c->'stay'->>'primary_diagnosis',
                   (c->'stay'->>'admission_date')::date, (c->'stay'->>'discharge_date')::date,
                   (c->'stay'->>'new_admission')::boolean
            FROM jsonb_array_elements(p_changes) c WHERE jsonb_typeof(c->'stay') = 'object';
    ELSE
        UPDATE pharmacy_daily p SET purchases = p.purchases - d.n
            FROM (SELECT c->>'member_id' AS member_id, (c->>'pharmacy_date')::date AS day,
                         count(*)::integer AS n
                  FROM jsonb_array_elements(p_changes) c WHERE c->>'pharmacy_date' IS NOT NULL
                  GROUP BY 1, 2) d
            WHERE p.member_id = d.member_id AND p.service_date = d.day;
        DELETE FROM inpatient_stays s USING jsonb_array_elements(p_changes) c
            WHERE jsonb_typeof(c->'stay') = 'object' AND s.settlement_id = c->'stay'->>'settlement_id';
    END IF;
END
$$;

CREATE OR REPLACE FUNCTION ms_apply_changes(p_changes jsonb, p_sign integer) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM ms_apply_changes_set(jsonb_build_array(p_changes), p_sign);
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

-- Everything the engine needs about several claims, one jsonb per claim in
-- the order given, in one statement. With p_lock the request keys (advisory),
-- the open day (shared) and the members' rows (FOR UPDATE, in card-hash
-- order: the lock order everywhere) are locked first (Settle); without, it
-- is a plain read (PreSettle, GetMember). A null request id leaves out the
-- idempotency facts and the new settlement id.
CREATE FUNCTION ms_load_claims(p_institutions text[], p_card_hmacs bytea[], p_years integer[],
                               p_service_dates date[], p_lookback_days integer, p_lock boolean,
                               p_request_ids text[])
RETURNS jsonb[] LANGUAGE plpgsql SET enable_hashjoin = off SET enable_mergejoin = off
    SET plan_cache_mode = force_generic_plan AS $$
DECLARE
    v_day date;
    v_out jsonb[];
BEGIN
    IF p_lock THEN
        PERFORM ms_lock_keys(p_institutions, p_request_ids);
        PERFORM ms_day_share();
        PERFORM 1 FROM members WHERE card_hmac = ANY(p_card_hmacs) ORDER BY card_hmac FOR UPDATE;
    END IF;
    SELECT business_date INTO v_day FROM business_days WHERE status = 'OPEN';
    SELECT array_agg(jsonb_build_object(
        'business_date', v_day,
        'institution', (SELECT to_jsonb(i) FROM institutions i WHERE i.code = u.inst),
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
            FROM account_balances b WHERE b.account_id = m.account_id),
        'year', (SELECT to_jsonb(y) - 'member_id' FROM member_year y
                 WHERE y.member_id = m.member_id AND y.year = u.year),
        'stays', coalesce((SELECT jsonb_agg(to_jsonb(s) - 'member_id'
                                            ORDER BY s.admission_date, s.settlement_id)
                  FROM inpatient_stays s WHERE s.member_id = m.member_id
                  AND s.discharge_date >= u.service_date - p_lookback_days), '[]'::jsonb),
        'pharmacy_purchases_today', coalesce((SELECT p.purchases FROM pharmacy_daily p
                  WHERE p.member_id = m.member_id AND p.service_date = u.service_date), 0),
        'existing', (SELECT jsonb_build_object('settlement_id', s.settlement_id,
                  'fingerprint', encode(s.fingerprint, 'hex'))
                  FROM settlements s WHERE u.req IS NOT NULL
                  AND s.institution_code = u.inst AND s.request_id = u.req),
        'tombstoned', u.req IS NOT NULL AND EXISTS (SELECT 1 FROM cancellations c
                  WHERE c.institution_code = u.inst AND c.original_request_id = u.req
                  AND c.settlement_id IS NULL),
        'settlement_id', CASE WHEN u.req IS NOT NULL AND v_day IS NOT NULL THEN
                  'S' || to_char(v_day, 'YYYYMMDD') || lpad(nextval('settlement_seq')::text, 10, '0')
                  END
        ) ORDER BY u.ord)
        INTO v_out
        FROM unnest(p_institutions, p_card_hmacs, p_years, p_service_dates, p_request_ids)
            WITH ORDINALITY AS u(inst, card, year, service_date, req, ord)
        LEFT JOIN members m ON m.card_hmac = u.card;
    RETURN coalesce(v_out, '{}');
END
$$;

CREATE OR REPLACE FUNCTION ms_load_claim(p_institution text, p_card_hmac bytea, p_year integer,
                                         p_service_date date, p_lookback_days integer,
                                         p_lock boolean, p_request_id text)
RETURNS jsonb LANGUAGE plpgsql AS $$
BEGIN
    RETURN (ms_load_claims(ARRAY[p_institution], ARRAY[p_card_hmac], ARRAY[p_year],
                           ARRAY[p_service_date], p_lookback_days, p_lock,
                           ARRAY[p_request_id]))[1];
END
$$;

-- Record several settlements (a jsonb array; each item has the parameters of
-- ms_record_settlement by name without the p_ prefix, the fingerprint in
-- hex, and `keys`/`amounts` for its postings). Each member appears at most
-- once per call (the caller splits a batch into rounds). Returns the entry
-- id of each item (null for those without postings) in item order, and the
-- settlements' created_at.
CREATE FUNCTION ms_record_settlements(p_items jsonb, OUT entry_ids bigint[],
                                      OUT created_at timestamptz)
LANGUAGE plpgsql SET enable_hashjoin = off SET enable_mergejoin = off
    SET plan_cache_mode = force_generic_plan AS $$
DECLARE
    v_day date;
    v_refs text[];
    v_entry_of integer[];
    v_keys text[];
    v_amounts bigint[];
    v_entries bigint[];
    v_item_entry bigint[];
BEGIN
    v_day := ms_open_day();
    PERFORM ms_apply_changes_set(coalesce(jsonb_agg(it->'changes'), '[]'), 1)
        FROM jsonb_array_elements(p_items) it WHERE jsonb_typeof(it->'changes') = 'object';
    -- The items with postings, numbered 1..n in item order, and their postings.
    SELECT array_agg(e.ref ORDER BY e.n) INTO v_refs FROM (
        SELECT it->>'settlement_id' AS ref, row_number() OVER (ORDER BY ord) AS n
        FROM jsonb_array_elements(p_items) WITH ORDINALITY AS t(it, ord)
        WHERE jsonb_array_length(it->'keys') > 0) e;
    SELECT array_agg(e.n ORDER BY e.n, k.ord), array_agg(k.key ORDER BY e.n, k.ord),
           array_agg((e.it->'amounts'->>(k.ord::integer - 1))::bigint ORDER BY e.n, k.ord)
        INTO v_entry_of, v_keys, v_amounts
        FROM (SELECT it, row_number() OVER (ORDER BY ord)::integer AS n
              FROM jsonb_array_elements(p_items) WITH ORDINALITY AS t(it, ord)
              WHERE jsonb_array_length(it->'keys') > 0) e
        CROSS JOIN LATERAL jsonb_array_elements_text(e.it->'keys') WITH ORDINALITY AS k(key, ord);
    v_entries := ms_post_set('SETTLEMENT', v_refs, v_entry_of, v_keys, v_amounts);
    v_item_entry := ARRAY(
        SELECT v_entries[array_position(v_refs, it->>'settlement_id')]
        FROM jsonb_array_elements(p_items) WITH ORDINALITY AS t(it, ord) ORDER BY ord);
    INSERT INTO settlements (settlement_id, institution_code, request_id, fingerprint, status,
        member_id, business_date, service_date, benefit_year, policy_version, catalog_version,
        total_fen, pooled_fund_fen, serious_illness_fen, individual_account_fen, answer, changes,
        entry_id)
    SELECT it->>'settlement_id', it->>'institution_code', it->>'request_id',
        decode(it->>'fingerprint', 'hex'), it->>'status', it->>'member_id', v_day,
        (it->>'service_date')::date, (it->>'benefit_year')::integer, it->>'policy_version',
        (it->>'catalog_version')::integer, (it->>'total_fen')::bigint,
        (it->>'pooled_fund_fen')::bigint, (it->>'serious_illness_fen')::bigint,
        (it->>'individual_account_fen')::bigint, it->'answer',
        nullif(it->'changes', 'null'::jsonb), v_item_entry[ord::integer]
    FROM jsonb_array_elements(p_items) WITH ORDINALITY AS t(it, ord);
    UPDATE members m SET pin_failures = (it->>'pin_failures')::integer
        FROM jsonb_array_elements(p_items) it
        WHERE it->>'pin_failures' IS NOT NULL AND m.member_id = it->>'member_id'
          AND m.pin_failures <> (it->>'pin_failures')::integer;
    entry_ids := v_item_entry;
    created_at := now();
END
$$;

CREATE OR REPLACE FUNCTION ms_record_settlement(
    p_settlement_id text, p_institution text, p_request_id text, p_fingerprint bytea,
    p_status text, p_member_id text, p_service_date date, p_benefit_year integer,
    p_policy_version text, p_catalog_version integer, p_total_fen bigint,
    p_pooled_fund_fen bigint, p_serious_illness_fen bigint, p_individual_account_fen bigint,
    p_answer jsonb, p_changes jsonb, p_keys text[], p_amounts bigint[], p_pin_failures integer,
    OUT entry_id bigint, OUT created_at timestamptz)
LANGUAGE plpgsql AS $$
BEGIN
    SELECT r.entry_ids[1], r.created_at INTO entry_id, created_at FROM ms_record_settlements(jsonb_build_array(jsonb_build_object(
        'settlement_id', p_settlement_id, 'institution_code', p_institution,
        'request_id', p_request_id, 'fingerprint', encode(p_fingerprint, 'hex'),
        'status', p_status, 'member_id', p_member_id, 'service_date', p_service_date,
        'benefit_year', p_benefit_year, 'policy_version', p_policy_version,
        'catalog_version', p_catalog_version, 'total_fen', p_total_fen,
        'pooled_fund_fen', p_pooled_fund_fen, 'serious_illness_fen', p_serious_illness_fen,
        'individual_account_fen', p_individual_account_fen, 'answer', p_answer,
        'changes', p_changes, 'keys', to_jsonb(coalesce(p_keys, '{}')),
        'amounts', to_jsonb(coalesce(p_amounts, '{}')), 'pin_failures', p_pin_failures))) r;
END
$$;

GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA public TO medswitch_app;
-- Every role may execute a new function unless told otherwise: the writers
-- that run with the owner's rights are for the application role alone.
REVOKE ALL ON FUNCTION ms_append_entries(text, text[], bigint[], text[]),
    ms_post_set(text, text[], integer[], text[], bigint[]),
    ms_post_staged(text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION ms_append_entries(text, text[], bigint[], text[]),
    ms_post_set(text, text[], integer[], text[], bigint[]),
    ms_post_staged(text, text) TO medswitch_app;


-- Every entry and settlement is booked into the one open business day, a
-- single row that each foreign-key check would lock FOR KEY SHARE
-- from every writing transaction. The writing functions take the day from
-- business_days under the day lock (ms_day_share), days are never deleted
-- (the application role cannot), and `ledger verify` reports an entry
-- booked into a day that does not exist.
ALTER TABLE entries DROP CONSTRAINT entries_business_date_fkey;
ALTER TABLE settlements DROP CONSTRAINT settlements_business_date_fkey;

-- Identifiers compare as bytes: every settlement probes B-trees on account
-- keys, member ids, institution codes and request ids, and a libc
-- collation (even C.UTF-8) compares through strcoll. Byte order is also the
-- natural order of these ASCII codes.
ALTER TABLE accounts ALTER COLUMN account_key TYPE text COLLATE "C";
ALTER TABLE institutions ALTER COLUMN code TYPE text COLLATE "C";
ALTER TABLE members ALTER COLUMN member_id TYPE text COLLATE "C";
ALTER TABLE member_special_diseases ALTER COLUMN member_id TYPE text COLLATE "C";
ALTER TABLE member_year ALTER COLUMN member_id TYPE text COLLATE "C";
ALTER TABLE inpatient_stays ALTER COLUMN member_id TYPE text COLLATE "C",
    ALTER COLUMN settlement_id TYPE text COLLATE "C";
ALTER TABLE pharmacy_daily ALTER COLUMN member_id TYPE text COLLATE "C";
ALTER TABLE settlements ALTER COLUMN settlement_id TYPE text COLLATE "C",
    ALTER COLUMN institution_code TYPE text COLLATE "C",
    ALTER COLUMN request_id TYPE text COLLATE "C",
    ALTER COLUMN member_id TYPE text COLLATE "C";
ALTER TABLE cancellations ALTER COLUMN reversal_id TYPE text COLLATE "C",
    ALTER COLUMN settlement_id TYPE text COLLATE "C",
    ALTER COLUMN institution_code TYPE text COLLATE "C",
    ALTER COLUMN request_id TYPE text COLLATE "C",
    ALTER COLUMN original_request_id TYPE text COLLATE "C";

-- Written by every settlement and read by nothing (a member's history is
-- read through the postings of their account).
DROP INDEX settlements_member;
