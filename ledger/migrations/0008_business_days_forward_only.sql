-- Business days only move forward, whoever writes them: a day is opened
-- after every earlier one, goes from open to closed once, and is never
-- reopened, redated or deleted. End of day writes the table as the
-- application role (ledger/endofday.py close_day), which therefore holds
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
CREATE TRIGGER business_days_forward_only BEFORE INSERT OR UPDATE OR DELETE ON business_days
    FOR EACH ROW EXECUTE FUNCTION ms_business_day_rules();
CREATE TRIGGER business_days_no_truncate BEFORE TRUNCATE ON business_days
    FOR EACH STATEMENT EXECUTE FUNCTION ms_forbid_change();
