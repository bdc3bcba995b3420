-- What a review found the application role could still do to the books
-- through the owner's functions and its own grants, each closed here.

-- 1. ms_post_staged read the postings of an import from `ms_staged_postings`,
-- a table the caller made in its own temporary schema, with the owner's
-- rights: a caller's temporary view of that name over a function of its own
-- ran that function as the owner (a superuser on the embedded server). The
-- postings now come as two arrays, data and nothing else; no owner's
-- function reads a relation that only the caller's schema provides.
DROP FUNCTION ms_post_staged(text, text);

-- Post one entry, perhaps a large one (the opening entry of an import),
-- from account ids and signed amounts in seq order. Checked like
-- ms_post_set (accounts exist, two postings at least, balanced at commit),
-- and the balance rows move with the postings, so a member's balance
-- cannot be set apart from its postings nor go below zero. Returns the
-- entry id.
CREATE FUNCTION ms_post_ids(p_kind text, p_ref text, p_account_ids bigint[], p_amounts bigint[])
RETURNS bigint LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    v_n integer := coalesce(cardinality(p_account_ids), 0);
    v_entry bigint;
    v_body text;
BEGIN
    IF v_n <> coalesce(cardinality(p_amounts), 0) THEN
        RAISE EXCEPTION 'postings arrays differ in length' USING ERRCODE = 'check_violation';
    END IF;
    IF v_n < 2 THEN
        RAISE EXCEPTION 'an entry needs at least two postings' USING ERRCODE = 'check_violation';
    END IF;
    IF EXISTS (SELECT 1 FROM unnest(p_account_ids) AS u(id)
               WHERE u.id IS NULL
                  OR NOT EXISTS (SELECT 1 FROM accounts a WHERE a.account_id = u.id)) THEN
        RAISE EXCEPTION 'a posting names an account that does not exist'
            USING ERRCODE = 'foreign_key_violation';
    END IF;
    v_entry := nextval('entries_entry_id_seq');
    SELECT string_agg(u.seq::text || ':' || u.id::text || ':' || u.amount::text, ';' ORDER BY u.seq)
        INTO v_body
        FROM unnest(p_account_ids, p_amounts) WITH ORDINALITY AS u(id, amount, seq);
    PERFORM ms_append_entries(p_kind, ARRAY[p_ref], ARRAY[v_entry], ARRAY[v_body]);
    INSERT INTO postings (entry_id, seq, account_id, amount_fen)
        SELECT v_entry, u.seq, u.id, u.amount
        FROM unnest(p_account_ids, p_amounts) WITH ORDINALITY AS u(id, amount, seq);
    UPDATE account_balances b SET balance_fen = b.balance_fen + b.normal_sign * d.amount
        FROM (SELECT id, sum(amount)::bigint AS amount
              FROM unnest(p_account_ids, p_amounts) AS u(id, amount) GROUP BY id) d
        WHERE b.account_id = d.id;
    RETURN v_entry;
END
$$;
REVOKE ALL ON FUNCTION ms_post_ids(text, text, bigint[], bigint[]) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION ms_post_ids(text, text, bigint[], bigint[]) TO medswitch_app;

-- 2. The application role could UPDATE a member's balance row (raise it,
-- then post a debit the postings do not cover), INSERT one with any
-- balance, or open a member account with no balance row (no limit at all)
-- or with a debit normal side (debits raise its balance). Balance rows are
-- now written only by the owner: made at zero by the database itself when a
-- member account is opened, moved only by the posting functions. Chain
-- lane heads likewise move only through ms_append_entries.
ALTER TABLE accounts ADD CONSTRAINT accounts_normal_side CHECK (normal_side = CASE
    WHEN kind IN ('MEMBER_INDIVIDUAL', 'POOLED_FUND', 'SERIOUS_ILLNESS_FUND',
                  'INSTITUTION_PAYABLE') THEN 'CREDIT'
    ELSE 'DEBIT' END);

CREATE FUNCTION ms_open_balance_rows() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp AS $$
BEGIN
    INSERT INTO public.account_balances (account_id, normal_sign, balance_fen)
        SELECT n.account_id, -1, 0 FROM new_accounts n WHERE n.kind = 'MEMBER_INDIVIDUAL';
    RETURN NULL;
END
$$;
CREATE TRIGGER accounts_balance_rows AFTER INSERT ON accounts
    REFERENCING NEW TABLE AS new_accounts
    FOR EACH STATEMENT EXECUTE FUNCTION ms_open_balance_rows();
REVOKE ALL ON FUNCTION ms_open_balance_rows() FROM PUBLIC;

-- A member account opened without its balance row before now gets one,
-- at what its postings say (a negative one fails the CHECK, and with it
-- this migration: `medswitch ledger verify` tells more).
INSERT INTO account_balances (account_id, normal_sign, balance_fen)
    SELECT a.account_id, -1,
           -coalesce((SELECT sum(p.amount_fen) FROM postings p
                      WHERE p.account_id = a.account_id), 0)
    FROM accounts a
    WHERE a.kind = 'MEMBER_INDIVIDUAL'
      AND NOT EXISTS (SELECT 1 FROM account_balances b WHERE b.account_id = a.account_id);

REVOKE INSERT, UPDATE, DELETE ON account_balances, chain_lanes FROM medswitch_app;
