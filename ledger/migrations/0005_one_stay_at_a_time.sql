-- 2401: one stay at a time (在院). A member admitted somewhere, with no
-- discharge recorded and the admission not cancelled, is not admitted again,
-- here or at another institution (SQLSTATE MS016): the open stay must be
-- discharged or its admission cancelled first. A retry of the admission that
-- opened it still gets its answer (the replay comes first). Stays already
-- discharged are not compared by date here: a readmission soon after one is
-- W_SPLIT_ADMISSION's, at settlement. Otherwise unchanged.
CREATE OR REPLACE FUNCTION ms_encounter_admit(p_institution text, p_request_id text, p_fingerprint bytea,
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
    -- Admissions of one member wait for each other (a lock of their own, not
    -- the member's row, which settlements update), so two at once cannot both
    -- find no open stay.
    PERFORM pg_advisory_xact_lock(hashtextextended('admit/' || v_member, 16));
    IF EXISTS (SELECT 1 FROM encounters x WHERE x.member_id = v_member
               AND x.discharge_date IS NULL AND NOT x.cancelled) THEN
        RAISE EXCEPTION 'the member is in hospital already: an admission with no discharge recorded'
            USING ERRCODE = 'MS016';
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
