-- A PIN checked outside a settlement (PreSettle, GetMember) is counted and
-- judged here, on the count stored now, only while the card is unlocked
-- (fewer than p_failures_max failures): a wrong one counts one more failure,
-- a right one resets the count. Returns the count now stored, or NULL if
-- the card is locked (or there is no such member): the PIN then counts for
-- nothing, right or wrong. So of wrong PINs tried at once through any number
-- of serve processes, the p_failures_max-th locks the card and every other
-- finds it locked; and a right PIN among them is judged on the count after
-- the ones before it, not on one the switch loaded before they were counted.
-- Each statement reads the latest committed count (READ COMMITTED; the UPDATE
-- re-checks its condition on the row it locks). A right PIN with nothing to
-- reset writes nothing (no new state_seq for the Settles loaded meanwhile).
DROP FUNCTION ms_pin_check(text, boolean);

CREATE FUNCTION ms_pin_check(p_member_id text, p_ok boolean, p_failures_max integer)
RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    v_failures integer;
BEGIN
    IF p_ok THEN
        SELECT pin_failures INTO v_failures FROM members WHERE member_id = p_member_id;
        IF v_failures = 0 THEN
            RETURN 0;
        END IF;
        UPDATE members SET pin_failures = 0
            WHERE member_id = p_member_id AND pin_failures < p_failures_max
            RETURNING pin_failures INTO v_failures;
        RETURN v_failures;
    END IF;
    UPDATE members SET pin_failures = pin_failures + 1
        WHERE member_id = p_member_id AND pin_failures < p_failures_max
        RETURNING pin_failures INTO v_failures;
    RETURN v_failures;
END
$$;

GRANT EXECUTE ON FUNCTION ms_pin_check(text, boolean, integer) TO medswitch_app;
