-- Encounters: inpatient stays as hospitals run them (issue 16).
--
-- A hospital registers the admission, uploads fee details as they occur,
-- voids some, records the discharge and settles at the end. None of that is
-- money until the settlement: an encounter and its lines live in their own
-- tables, which no entry, posting, clearing or reconciliation reads. The
-- settlement of an encounter is an ordinary settlement, recorded by the
-- settle path (ms_record_checked) like any other; what ties it to its
-- encounter is the SETTLE request row written just before
-- (ms_encounter_settle_intent) and the trigger below, which, in the
-- statement that inserts the settlement, marks the encounter settled, and
-- refuses (nothing is recorded) when the encounter was settled or cancelled
-- meanwhile, or changed since the claim was built from it.
--
-- Every write here is one call of a function running with the owner's
-- rights (the application role only reads these tables), one statement,
-- committed on its own. Each is idempotent per (institution, request id):
-- under that key's lock (ms_key_lock, as Settle's) a request already
-- answered returns its stored answer, the same id with another request is
-- refused. Refusals are raised with these SQLSTATEs (ledger/encounters.py
-- maps them), and write nothing:
--   MS002 the encounter changed while its settlement was decided
--   MS009 the request id was used for another request
--   MS010 no such encounter
--   MS011 the encounter belongs to another institution
--   MS012 the encounter is closed: settled, or its admission cancelled
--   MS013 the encounter cannot be settled yet (not discharged, no lines)
--   MS014 the upload would take the encounter past its line limits
--   MS015 a field of the request is refused (DETAIL: JSON [[field, why], ...])

CREATE SEQUENCE encounter_seq;

CREATE TABLE encounters (
    encounter_id text PRIMARY KEY,
    institution_code text NOT NULL,
    member_id text NOT NULL REFERENCES members,
    request_id text NOT NULL,  -- the registration's
    admission_date date NOT NULL,
    department text NOT NULL,
    admission_diagnoses text[] NOT NULL,
    injury_cause text NOT NULL,
    accident_case_id text NOT NULL,
    discharge_date date,
    discharge_diagnoses text[],
    cancelled boolean NOT NULL DEFAULT false,
    cancel_reason text,
    -- The last settlement recorded for it: it stands unless cancelled.
    settlement_id text REFERENCES settlements,
    -- Moves with every change of what its claim would be (lines, discharge).
    version integer NOT NULL DEFAULT 0,
    line_count integer NOT NULL DEFAULT 0 CHECK (line_count >= 0),  -- not voided
    total_fen bigint NOT NULL DEFAULT 0 CHECK (total_fen >= 0),  -- of those lines
    stored_lines integer NOT NULL DEFAULT 0 CHECK (stored_lines >= line_count),  -- voided too
    created_at timestamptz NOT NULL DEFAULT now(),
    CHECK (discharge_date IS NULL OR discharge_date >= admission_date)
);
CREATE INDEX encounters_member ON encounters (member_id, created_at);

-- One uploaded fee detail line, as adjudication.model.ClaimLine.
CREATE TYPE ms_encounter_line AS (
    line_no integer,
    item_code text,
    quantity bigint,
    unit_price_fen bigint,
    amount_fen bigint,
    days_supply integer,
    approved boolean,
    discharge_medication boolean
);

CREATE TABLE encounter_lines (
    encounter_id text NOT NULL REFERENCES encounters,
    line_no integer NOT NULL CHECK (line_no >= 1),
    item_code text NOT NULL,
    quantity bigint NOT NULL,
    unit_price_fen bigint NOT NULL,
    amount_fen bigint NOT NULL,
    days_supply integer NOT NULL,
    approved boolean NOT NULL,
    discharge_medication boolean NOT NULL,
    uploaded_by text NOT NULL,  -- the upload's request id
    voided_by text,  -- the void's request id; NULL while the line counts
    void_reason text,
    PRIMARY KEY (encounter_id, line_no)
);

-- Every encounter call that changes something, for its retries; SETTLE
-- rows tie a settle request to its encounter and to the version its claim
-- was built from (the answer is the settlement's own).
CREATE TABLE encounter_requests (
    institution_code text NOT NULL,
    request_id text NOT NULL,
    fingerprint bytea NOT NULL,
    kind text NOT NULL CHECK (kind IN ('ADMIT', 'CANCEL_ADMISSION', 'UPLOAD', 'VOID',
                                       'DISCHARGE', 'SETTLE')),
    encounter_id text NOT NULL REFERENCES encounters,
    version integer,  -- SETTLE
    answer jsonb,  -- NULL for SETTLE
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (institution_code, request_id)
);

-- ---------------------------------------------------------------------------
-- Reading an encounter

-- Whether a settlement of the encounter stands (recorded, not cancelled).
CREATE FUNCTION ms_encounter_standing(e encounters) RETURNS boolean
LANGUAGE sql STABLE SET search_path = pg_catalog, public, pg_temp AS $$
    SELECT e.settlement_id IS NOT NULL AND NOT EXISTS (
        SELECT 1 FROM cancellations c WHERE c.settlement_id = e.settlement_id)
$$;

-- The encounter as the API answers it (message Encounter, request_id aside).
CREATE FUNCTION ms_encounter_json(e encounters) RETURNS jsonb
LANGUAGE sql STABLE SET search_path = pg_catalog, public, pg_temp AS $$
    SELECT jsonb_build_object(
        'encounter_id', e.encounter_id, 'institution_code', e.institution_code,
        'member_id', e.member_id,
        'status', CASE WHEN e.cancelled THEN 'CANCELLED'
                       WHEN ms_encounter_standing(e) THEN 'SETTLED'
                       WHEN e.discharge_date IS NOT NULL THEN 'DISCHARGED'
                       ELSE 'ADMITTED' END,
        'admission_date', e.admission_date, 'department', e.department,
        'admission_diagnoses', to_jsonb(e.admission_diagnoses),
        'injury_cause', e.injury_cause, 'accident_case_id', e.accident_case_id,
        'discharge_date', e.discharge_date,
        'discharge_diagnoses', to_jsonb(coalesce(e.discharge_diagnoses, '{}'::text[])),
        'line_count', e.line_count, 'total_fen', e.total_fen,
        'settlement_id', CASE WHEN ms_encounter_standing(e) THEN e.settlement_id END)
$$;

-- The encounter of an institution (MS010, MS011 otherwise), as it is now.
CREATE FUNCTION ms_encounter_get(p_institution text, p_encounter_id text) RETURNS encounters
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, public, pg_temp AS $$
DECLARE
    e encounters;
BEGIN
    SELECT * INTO e FROM encounters x WHERE x.encounter_id = p_encounter_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'no encounter %', p_encounter_id USING ERRCODE = 'MS010';
    END IF;
    IF e.institution_code <> p_institution THEN
        RAISE EXCEPTION 'encounter % was registered by another institution', p_encounter_id
            USING ERRCODE = 'MS011';
    END IF;
    RETURN e;
END
$$;

-- Refuses (MS012) an encounter that is settled (its settlement stands) or
-- cancelled: neither may change, nor be settled again.
CREATE FUNCTION ms_encounter_refuse_closed(e encounters) RETURNS void
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, public, pg_temp AS $$
BEGIN
    IF e.cancelled THEN
        RAISE EXCEPTION 'the admission of encounter % was cancelled', e.encounter_id
            USING ERRCODE = 'MS012';
    END IF;
    IF ms_encounter_standing(e) THEN
        RAISE EXCEPTION 'encounter % is settled (%): cancel that settlement to correct it',
            e.encounter_id, e.settlement_id USING ERRCODE = 'MS012';
    END IF;
END
$$;

-- An encounter whose claim may be settled now by the member holding
-- p_card_hmac: open, discharged, with lines (MS012, MS013, MS015 on card_no
-- otherwise). p_state false checks only whose it is (a retry of a
-- settlement already recorded is answered whatever the encounter is now).
CREATE FUNCTION ms_encounter_claimable(p_institution text, p_encounter_id text,
                                       p_card_hmac bytea, p_state boolean) RETURNS encounters
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, public, pg_temp AS $$
DECLARE
    e encounters := ms_encounter_get(p_institution, p_encounter_id);
BEGIN
    IF (SELECT m.member_id FROM members m WHERE m.card_hmac = p_card_hmac)
       IS DISTINCT FROM e.member_id THEN
        RAISE EXCEPTION 'not the card of the member admitted' USING ERRCODE = 'MS015',
            DETAIL = '[["card_no", "not the card of the member this encounter admitted"]]';
    END IF;
    IF NOT p_state THEN
        RETURN e;
    END IF;
    PERFORM ms_encounter_refuse_closed(e);
    IF e.discharge_date IS NULL THEN
        RAISE EXCEPTION 'encounter %: record the discharge before settling', p_encounter_id
            USING ERRCODE = 'MS013';
    END IF;
    IF e.line_count = 0 THEN
        RAISE EXCEPTION 'encounter % has no fee details to settle (none uploaded, or all voided)',
            p_encounter_id USING ERRCODE = 'MS013';
    END IF;
    RETURN e;
END
$$;

-- ---------------------------------------------------------------------------
-- Changing an encounter: the shared steps

-- The stored answer of a request already made under this key (NULL: none),
-- MS009 if it was another request. Call under ms_key_lock.
CREATE FUNCTION ms_encounter_replay(p_institution text, p_request_id text, p_fingerprint bytea,
                                    p_kind text) RETURNS jsonb
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, public, pg_temp AS $$
DECLARE
    r encounter_requests;
BEGIN
    SELECT * INTO r FROM encounter_requests x
        WHERE x.institution_code = p_institution AND x.request_id = p_request_id;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    IF r.kind <> p_kind OR r.fingerprint <> p_fingerprint THEN
        RAISE EXCEPTION 'this request id was used for another request' USING ERRCODE = 'MS009';
    END IF;
    RETURN r.answer;
END
$$;

-- The encounter locked for a change: the institution's, neither settled
-- nor cancelled (MS010, MS011, MS012 otherwise).
CREATE FUNCTION ms_encounter_for_change(p_institution text, p_encounter_id text)
RETURNS encounters
LANGUAGE plpgsql SET search_path = pg_catalog, public, pg_temp AS $$
DECLARE
    e encounters := ms_encounter_get(p_institution, p_encounter_id);
BEGIN
    SELECT * INTO e FROM encounters x WHERE x.encounter_id = p_encounter_id FOR UPDATE;
    PERFORM ms_encounter_refuse_closed(e);
    RETURN e;
END
$$;

CREATE FUNCTION ms_encounter_answered(p_institution text, p_request_id text,
                                      p_fingerprint bytea, p_kind text, p_encounter_id text,
                                      p_answer jsonb) RETURNS jsonb
LANGUAGE sql SET search_path = pg_catalog, public, pg_temp AS $$
    INSERT INTO encounter_requests (institution_code, request_id, fingerprint, kind,
                                    encounter_id, answer)
    VALUES (p_institution, p_request_id, p_fingerprint, p_kind, p_encounter_id, p_answer)
    RETURNING answer
$$;

-- ---------------------------------------------------------------------------
-- The calls (each one statement for the switch)

-- 2401: the member holding p_card_hmac (its PIN checked by the switch) is
-- admitted; returns the encounter.
CREATE FUNCTION ms_encounter_admit(p_institution text, p_request_id text, p_fingerprint bytea,
                                   p_card_hmac bytea, p_admission_date date,
                                   p_department text, p_diagnoses text[],
                                   p_injury_cause text, p_accident_case_id text)
RETURNS jsonb
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    v_answer jsonb;
    v_member text;
    e encounters;
BEGIN
    PERFORM ms_key_lock(p_institution, p_request_id);
    v_answer := ms_encounter_replay(p_institution, p_request_id, p_fingerprint, 'ADMIT');
    IF v_answer IS NOT NULL THEN
        RETURN v_answer;
    END IF;
    SELECT m.member_id INTO v_member FROM members m WHERE m.card_hmac = p_card_hmac;
    IF v_member IS NULL THEN
        RAISE EXCEPTION 'no member holds this card' USING ERRCODE = 'MS015',
            DETAIL = '[["card_no", "no member holds this card"]]';
    END IF;
    INSERT INTO encounters (encounter_id, institution_code, member_id, request_id,
        admission_date, department, admission_diagnoses, injury_cause, accident_case_id)
    VALUES ('E' || to_char(p_admission_date, 'YYYYMMDD')
                || lpad(nextval('encounter_seq')::text, 10, '0'),
            p_institution, v_member, p_request_id, p_admission_date, p_department,
            p_diagnoses, p_injury_cause, p_accident_case_id)
    RETURNING * INTO e;
    RETURN ms_encounter_answered(p_institution, p_request_id, p_fingerprint, 'ADMIT',
        e.encounter_id, ms_encounter_json(e) || jsonb_build_object('request_id', p_request_id));
END
$$;

-- 2404: an encounter without a standing settlement is cancelled (cancelling
-- it again answers it as it is).
CREATE FUNCTION ms_encounter_cancel_admission(p_institution text, p_request_id text,
                                              p_fingerprint bytea, p_encounter_id text,
                                              p_reason text) RETURNS jsonb
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    v_answer jsonb;
    e encounters := ms_encounter_get(p_institution, p_encounter_id);
BEGIN
    PERFORM ms_key_lock(p_institution, p_request_id);
    v_answer := ms_encounter_replay(p_institution, p_request_id, p_fingerprint,
                                    'CANCEL_ADMISSION');
    IF v_answer IS NOT NULL THEN
        RETURN v_answer;
    END IF;
    SELECT * INTO e FROM encounters x WHERE x.encounter_id = p_encounter_id FOR UPDATE;
    IF NOT e.cancelled THEN
        PERFORM ms_encounter_refuse_closed(e);
    END IF;
    IF NOT e.cancelled THEN
        UPDATE encounters x SET cancelled = true, cancel_reason = p_reason,
                                version = x.version + 1
            WHERE x.encounter_id = p_encounter_id RETURNING * INTO e;
    END IF;
    RETURN ms_encounter_answered(p_institution, p_request_id, p_fingerprint, 'CANCEL_ADMISSION',
        e.encounter_id, ms_encounter_json(e) || jsonb_build_object('request_id', p_request_id));
END
$$;

-- 2301: lines added to an open encounter, each answered with its result as
-- the switch classified it (p_results, a JSON array in the lines' order).
CREATE FUNCTION ms_encounter_upload(p_institution text, p_request_id text, p_fingerprint bytea,
                                    p_encounter_id text, p_lines ms_encounter_line[],
                                    p_results jsonb, p_lines_max integer,
                                    p_stored_lines_max integer) RETURNS jsonb
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    v_answer jsonb;
    v_refused jsonb;
    v_n integer := cardinality(p_lines);
    e encounters;
BEGIN
    PERFORM ms_key_lock(p_institution, p_request_id);
    v_answer := ms_encounter_replay(p_institution, p_request_id, p_fingerprint, 'UPLOAD');
    IF v_answer IS NOT NULL THEN
        RETURN v_answer;
    END IF;
    e := ms_encounter_for_change(p_institution, p_encounter_id);
    SELECT jsonb_agg(jsonb_build_array(format('lines[%s].line_no', l.ordinality - 1),
                     format('line %s was already uploaded to this encounter', l.line_no))
                     ORDER BY l.ordinality)
        INTO v_refused
        FROM unnest(p_lines) WITH ORDINALITY AS l
        WHERE EXISTS (SELECT 1 FROM encounter_lines x
                      WHERE x.encounter_id = p_encounter_id AND x.line_no = l.line_no);
    IF v_refused IS NOT NULL THEN
        RAISE EXCEPTION 'line numbers already uploaded' USING ERRCODE = 'MS015',
            DETAIL = v_refused::text;
    END IF;
    IF e.line_count + v_n > p_lines_max OR e.stored_lines + v_n > p_stored_lines_max THEN
        RAISE EXCEPTION 'encounter % would hold % lines (% with the voided ones): % at most (% with the voided)',
            p_encounter_id, e.line_count + v_n, e.stored_lines + v_n, p_lines_max,
            p_stored_lines_max USING ERRCODE = 'MS014';
    END IF;
    INSERT INTO encounter_lines (encounter_id, line_no, item_code, quantity, unit_price_fen,
        amount_fen, days_supply, approved, discharge_medication, uploaded_by)
    SELECT p_encounter_id, l.line_no, l.item_code, l.quantity, l.unit_price_fen, l.amount_fen,
           l.days_supply, l.approved, l.discharge_medication, p_request_id
    FROM unnest(p_lines) l;
    UPDATE encounters x SET line_count = x.line_count + v_n,
                            stored_lines = x.stored_lines + v_n,
                            total_fen = x.total_fen
                                + (SELECT coalesce(sum(l.amount_fen), 0) FROM unnest(p_lines) l),
                            version = x.version + 1
        WHERE x.encounter_id = p_encounter_id RETURNING * INTO e;
    RETURN ms_encounter_answered(p_institution, p_request_id, p_fingerprint, 'UPLOAD',
        e.encounter_id, jsonb_build_object('encounter_id', e.encounter_id,
            'request_id', p_request_id, 'lines', p_results, 'line_count', e.line_count,
            'total_fen', e.total_fen));
END
$$;

-- 2302: uploaded lines voided (each must be uploaded and not yet voided).
CREATE FUNCTION ms_encounter_void(p_institution text, p_request_id text, p_fingerprint bytea,
                                  p_encounter_id text, p_line_nos integer[], p_reason text)
RETURNS jsonb
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    v_answer jsonb;
    v_refused jsonb;
    e encounters;
BEGIN
    PERFORM ms_key_lock(p_institution, p_request_id);
    v_answer := ms_encounter_replay(p_institution, p_request_id, p_fingerprint, 'VOID');
    IF v_answer IS NOT NULL THEN
        RETURN v_answer;
    END IF;
    e := ms_encounter_for_change(p_institution, p_encounter_id);
    SELECT jsonb_agg(jsonb_build_array(format('line_nos[%s]', n.ord - 1),
                     CASE WHEN x.line_no IS NULL
                          THEN format('line %s was never uploaded to this encounter', n.no)
                          ELSE format('line %s is already voided', n.no) END)
                     ORDER BY n.ord)
        INTO v_refused
        FROM unnest(p_line_nos) WITH ORDINALITY AS n(no, ord)
        LEFT JOIN encounter_lines x ON x.encounter_id = p_encounter_id AND x.line_no = n.no
        WHERE x.line_no IS NULL OR x.voided_by IS NOT NULL;
    IF v_refused IS NOT NULL THEN
        RAISE EXCEPTION 'lines that cannot be voided' USING ERRCODE = 'MS015',
            DETAIL = v_refused::text;
    END IF;
    WITH voided AS (
        UPDATE encounter_lines x SET voided_by = p_request_id, void_reason = p_reason
            WHERE x.encounter_id = p_encounter_id AND x.line_no = ANY(p_line_nos)
            RETURNING x.amount_fen)
    UPDATE encounters x SET line_count = x.line_count - (SELECT count(*) FROM voided),
                            total_fen = x.total_fen
                                - (SELECT coalesce(sum(v.amount_fen), 0) FROM voided v),
                            version = x.version + 1
        WHERE x.encounter_id = p_encounter_id RETURNING * INTO e;
    RETURN ms_encounter_answered(p_institution, p_request_id, p_fingerprint, 'VOID',
        e.encounter_id, jsonb_build_object('encounter_id', e.encounter_id,
            'request_id', p_request_id, 'voided_line_nos', to_jsonb(p_line_nos),
            'line_count', e.line_count, 'total_fen', e.total_fen));
END
$$;

-- 2402: the discharge recorded (again, to correct it) on an open encounter.
CREATE FUNCTION ms_encounter_discharge(p_institution text, p_request_id text,
                                       p_fingerprint bytea, p_encounter_id text,
                                       p_discharge_date date, p_diagnoses text[]) RETURNS jsonb
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    v_answer jsonb;
    e encounters;
BEGIN
    PERFORM ms_key_lock(p_institution, p_request_id);
    v_answer := ms_encounter_replay(p_institution, p_request_id, p_fingerprint, 'DISCHARGE');
    IF v_answer IS NOT NULL THEN
        RETURN v_answer;
    END IF;
    e := ms_encounter_for_change(p_institution, p_encounter_id);
    IF p_discharge_date < e.admission_date THEN
        RAISE EXCEPTION 'discharge before admission' USING ERRCODE = 'MS015',
            DETAIL = jsonb_build_array(jsonb_build_array('discharge_date',
                format('before the admission date %s', e.admission_date)))::text;
    END IF;
    UPDATE encounters x SET discharge_date = p_discharge_date, discharge_diagnoses = p_diagnoses,
                            version = x.version + 1
        WHERE x.encounter_id = p_encounter_id RETURNING * INTO e;
    RETURN ms_encounter_answered(p_institution, p_request_id, p_fingerprint, 'DISCHARGE',
        e.encounter_id, ms_encounter_json(e) || jsonb_build_object('request_id', p_request_id));
END
$$;

-- 2304, before the settle path: ties the settle request to the encounter
-- and to the version its claim is built from (the trigger below checks it
-- when the settlement is recorded), and returns the encounter with its
-- version. A request already settled (a retry) is tied already: its
-- encounter is returned as it is, for the settle path to answer the retry.
CREATE FUNCTION ms_encounter_settle_intent(p_institution text, p_request_id text,
                                           p_fingerprint bytea, p_encounter_id text,
                                           p_card_hmac bytea) RETURNS encounters
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    r encounter_requests;
    v_settled boolean;
    e encounters;
BEGIN
    PERFORM ms_key_lock(p_institution, p_request_id);
    SELECT * INTO r FROM encounter_requests x
        WHERE x.institution_code = p_institution AND x.request_id = p_request_id;
    IF FOUND AND (r.kind <> 'SETTLE' OR r.fingerprint <> p_fingerprint
                  OR r.encounter_id <> p_encounter_id) THEN
        RAISE EXCEPTION 'this request id was used for another request' USING ERRCODE = 'MS009';
    END IF;
    v_settled := EXISTS (SELECT 1 FROM settlements s WHERE s.institution_code = p_institution
                         AND s.request_id = p_request_id);
    e := ms_encounter_claimable(p_institution, p_encounter_id, p_card_hmac, NOT v_settled);
    IF NOT v_settled THEN
        INSERT INTO encounter_requests AS x (institution_code, request_id, fingerprint, kind,
                                             encounter_id, version)
        VALUES (p_institution, p_request_id, p_fingerprint, 'SETTLE', p_encounter_id, e.version)
        ON CONFLICT (institution_code, request_id) DO UPDATE SET version = EXCLUDED.version;
    END IF;
    RETURN e;
END
$$;

-- In the statement that records settlements: each settled one that a SETTLE
-- request ties to an encounter (same key, same fingerprint) marks the
-- encounter settled, if it is still open and at the version its claim was
-- built from; otherwise nothing of the statement is recorded (MS012, MS002).
-- It runs as the owner, whoever records (search_path fixed: a temporary
-- table must not stand in for a real one).
CREATE FUNCTION ms_settlements_settle_encounters() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp
    SET enable_hashjoin = off SET enable_mergejoin = off AS $$
DECLARE
    r record;
    e encounters;
BEGIN
    -- One probe of encounter_requests' key per settlement of the statement.
    FOR r IN SELECT n.settlement_id, x.encounter_id, x.version
             FROM new_settlements n
             JOIN encounter_requests x ON x.institution_code = n.institution_code
                  AND x.request_id = n.request_id AND x.kind = 'SETTLE'
                  AND x.fingerprint = n.fingerprint
             WHERE n.status = 'SETTLED'
             ORDER BY x.encounter_id
    LOOP
        SELECT * INTO e FROM encounters x WHERE x.encounter_id = r.encounter_id FOR UPDATE;
        PERFORM ms_encounter_refuse_closed(e);
        IF e.version <> r.version THEN
            RAISE EXCEPTION 'encounter % changed while its settlement was decided',
                r.encounter_id USING ERRCODE = 'MS002';
        END IF;
        UPDATE encounters x SET settlement_id = r.settlement_id
            WHERE x.encounter_id = r.encounter_id;
    END LOOP;
    RETURN NULL;
END
$$;
CREATE TRIGGER settlements_settle_encounters AFTER INSERT ON settlements
    REFERENCING NEW TABLE AS new_settlements
    FOR EACH STATEMENT EXECUTE FUNCTION ms_settlements_settle_encounters();

-- ---------------------------------------------------------------------------
-- The application role reads the encounters and calls the functions above
-- (those that write run as the owner); it writes nothing directly. Every
-- other function here runs for no role (the baseline's default): the trigger runs
-- its own.

GRANT SELECT ON encounters, encounter_lines, encounter_requests TO medswitch_app,
    medswitch_operator;
GRANT USAGE ON TYPE ms_encounter_line TO medswitch_app;
GRANT EXECUTE ON FUNCTION ms_encounter_standing(encounters), ms_encounter_json(encounters),
    ms_encounter_get(text, text), ms_encounter_claimable(text, text, bytea, boolean),
    ms_encounter_refuse_closed(encounters),
    ms_encounter_admit(text, text, bytea, bytea, date, text, text[], text, text),
    ms_encounter_cancel_admission(text, text, bytea, text, text),
    ms_encounter_upload(text, text, bytea, text, ms_encounter_line[], jsonb, integer, integer),
    ms_encounter_void(text, text, bytea, text, integer[], text),
    ms_encounter_discharge(text, text, bytea, text, date, text[]),
    ms_encounter_settle_intent(text, text, bytea, text, bytea) TO medswitch_app;
