-- ms_load_states loads a member's approved special diseases and recent
-- inpatient stays only for the claims that need them (p_history[i] true or
-- NULL: a special-disease visit, an inpatient stay; engine.uses_member_history):
-- a pharmacy purchase or an outpatient visit gets NULL for both and skips
-- their two subqueries (a fifth of a pharmacy claim's load). Without
-- p_history, every claim gets both, as before. Otherwise unchanged.
DROP FUNCTION ms_load_states(text[], bytea[], integer[], date[], integer, text[]);

CREATE FUNCTION ms_load_states(p_institutions text[], p_card_hmacs bytea[], p_years integer[],
                               p_service_dates date[], p_lookback_days integer,
                               p_request_ids text[], p_history boolean[] DEFAULT NULL)
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
           CASE WHEN u.history IS NOT FALSE THEN
               (SELECT jsonb_agg(jsonb_build_object('code', d.disease_code,
                           'valid_from', d.valid_from, 'valid_to', d.valid_to)
                           ORDER BY d.disease_code, d.valid_from)
                FROM member_special_diseases d WHERE d.member_id = m.member_id)
           END,
           y.outpatient_deductible_used_fen, y.outpatient_pooled_fen, y.basic_pooled_fen,
           y.inpatient_above_deductible_fen, y.new_admissions, y.serious_illness_base_fen,
           y.serious_illness_paid_fen,
           CASE WHEN u.history IS NOT FALSE THEN
               (SELECT jsonb_agg(to_jsonb(st) - 'member_id'
                                 ORDER BY st.admission_date, st.settlement_id)
                FROM inpatient_stays st WHERE st.member_id = m.member_id
                AND st.discharge_date >= u.service_date - p_lookback_days)
           END,
           coalesce(p.purchases, 0)
    FROM unnest(p_institutions, p_card_hmacs, p_years, p_service_dates, p_request_ids,
                coalesce(p_history, '{}'))
        WITH ORDINALITY AS u(inst, card, year, service_date, req, history, ord)
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


GRANT EXECUTE ON FUNCTION
    ms_load_states(text[], bytea[], integer[], date[], integer, text[], boolean[])
    TO medswitch_app;
