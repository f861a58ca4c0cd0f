-- The ledger's rules hold whatever the session does (issue 11, "hostile SQL"; docs/security.md).
--
-- Before this migration three things could be steered by the session itself:
--   * the balance rule was one deferred check per transaction, fired once: `SET CONSTRAINTS ALL
--     IMMEDIATE` spent it, and a later entry (a 1,000,000 credit) committed unchecked;
--   * the stored-balance guard trusted `pg_trigger_depth() > 0`: a trigger of the session's own (on
--     a temp table) could then write `account_balances` directly;
--   * no function pinned its `search_path`: a temp table named `account_balances` or
--     `ledger_entries` (pg_temp is searched first for relations) redirected the triggers' reads and
--     writes to a table of the session's choosing.
--
-- Now:
--   1. A transaction's entries are written by ONE statement (`ledger_post` always did): the entries
--      trigger refuses an INSERT that adds entries to a transaction which already has some (LG003,
--      sealed at the end of the statement that wrote them), and checks in that same statement that
--      each transaction it wrote balances per currency (LG001). Neither check is deferred, so no
--      `SET CONSTRAINTS`, savepoint or statement order can skip or spend it. The deferred check at
--      COMMIT stays, for what only COMMIT can see (a transaction row without entries, forged stamps),
--      and every fact it checks can no longer change after it passed (monotone: nothing to spend).
--   2. Only the role `pay_ledger_writer` writes `account_balances`: the two trigger functions that
--      must write it are SECURITY DEFINER functions owned by that NOLOGIN role, and the guard refuses
--      any write whose current_user is someone else (LG004), at any trigger depth. A session cannot
--      become that role (no LOGIN, no member but superusers); the functions also check that they
--      fire on the table they were written for, so they cannot be attached to a table of the
--      session's own, and EXECUTE on them is revoked from PUBLIC.
--   3. Every function of the schema runs with `search_path = pg_catalog, public, pg_temp`: pg_temp
--      last, so a temp table can no longer shadow a ledger table inside a trigger.
-- A superuser can still do anything (ALTER TABLE ... DISABLE TRIGGER, session_replication_role);
-- ledger_verify() detects what that leaves behind, and the application does not run as one
-- (docs/security.md).

-- The role that owns the balance writers ------------------------------------------------------------

-- Roles are cluster-wide: created once, by whichever database migrates first (test runs migrate
-- concurrently, hence the unique_violation too). A migrating role without CREATEROLE finds it
-- created beforehand by scripts/stack.sh or docker-compose.yml (docs/security.md).
DO $$
BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'pay_ledger_writer') THEN
    CREATE ROLE pay_ledger_writer NOLOGIN NOINHERIT;
  END IF;
EXCEPTION WHEN duplicate_object OR unique_violation THEN
  NULL;
END
$$;

GRANT USAGE ON SCHEMA public TO pay_ledger_writer;
GRANT SELECT ON accounts, transactions, ledger_entries TO pay_ledger_writer;
GRANT SELECT, INSERT, UPDATE ON account_balances TO pay_ledger_writer;

-- Entries: one statement per transaction, balanced at the end of it -----------------------------------

CREATE OR REPLACE FUNCTION ledger_apply_entries() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp AS $$
DECLARE
  v_bad record;
  v_rejected_account_id bigint;
BEGIN
  IF TG_RELID <> 'public.ledger_entries'::regclass OR TG_LEVEL <> 'STATEMENT' OR TG_OP <> 'INSERT' THEN
    RAISE EXCEPTION 'ledger_apply_entries() fires only for INSERT statements on public.ledger_entries, not on %', TG_RELID::regclass
      USING ERRCODE = 'LG004';
  END IF;

  -- Sealed: an entry may only join a transaction created by this same database transaction, and
  -- carries that transaction's posted_at. Adding entries to a committed transaction would change
  -- a recorded fact.
  -- References: the entry's transaction exists, and its account exists in the entry's currency.
  SELECT e.transaction_id, e.entry_number, e.account_id, e.currency,
         t.id IS NULL AS unknown_transaction,
         t.id IS NOT NULL AND (t.created_xact_id <> pg_current_xact_id() OR t.posted_at <> e.posted_at) AS sealed,
         b.account_id IS NULL AS unknown_account,
         b.currency AS account_currency
  INTO v_bad
  FROM new_entries e
  LEFT JOIN transactions t ON t.id = e.transaction_id
  LEFT JOIN account_balances b ON b.account_id = e.account_id
  WHERE t.id IS NULL OR t.created_xact_id <> pg_current_xact_id() OR t.posted_at <> e.posted_at
     OR b.account_id IS NULL OR b.currency <> e.currency
  LIMIT 1;
  IF FOUND THEN
    IF v_bad.unknown_transaction THEN
      RAISE EXCEPTION 'entry % refers to transaction %, which does not exist', v_bad.entry_number, v_bad.transaction_id
        USING ERRCODE = 'foreign_key_violation';
    ELSIF v_bad.sealed THEN
      RAISE EXCEPTION 'entry % of transaction % does not belong to a transaction created by this database transaction',
        v_bad.entry_number, v_bad.transaction_id
        USING ERRCODE = 'LG003',
              HINT = 'a committed transaction is sealed; post a new transaction instead';
    ELSIF v_bad.unknown_account THEN
      RAISE EXCEPTION 'entry % of transaction % refers to account %, which does not exist',
        v_bad.entry_number, v_bad.transaction_id, v_bad.account_id
        USING ERRCODE = 'foreign_key_violation';
    ELSE
      RAISE EXCEPTION 'entry % of transaction % is in % but account % holds %',
        v_bad.entry_number, v_bad.transaction_id, v_bad.currency, v_bad.account_id, v_bad.account_currency
        USING ERRCODE = 'LG009';
    END IF;
  END IF;

  -- Written at once: the transactions this statement wrote entries for have no entry from an
  -- earlier statement (the new rows are already in ledger_entries, so the counts must agree).
  -- One probe of the primary key per transaction.
  SELECT n.transaction_id, n.entry_count, x.stored_count
  INTO v_bad
  FROM (SELECT e.transaction_id, count(*) AS entry_count FROM new_entries e GROUP BY e.transaction_id) n
  CROSS JOIN LATERAL (SELECT count(*) AS stored_count FROM ledger_entries s WHERE s.transaction_id = n.transaction_id) x
  WHERE x.stored_count <> n.entry_count
  LIMIT 1;
  IF FOUND THEN
    RAISE EXCEPTION 'transaction % already has % entries from an earlier statement: a transaction''s entries are written by one statement',
      v_bad.transaction_id, v_bad.stored_count - v_bad.entry_count
      USING ERRCODE = 'LG003',
            HINT = 'write every leg of a transaction in one INSERT (ledger_post does)';
  END IF;

  -- Balanced per transaction and currency, now (not at COMMIT: nothing can defer or spend this).
  SELECT e.transaction_id, t.reference, e.currency,
         coalesce(sum(e.amount_minor::numeric) FILTER (WHERE e.side = 'debit'), 0) AS debits_minor,
         coalesce(sum(e.amount_minor::numeric) FILTER (WHERE e.side = 'credit'), 0) AS credits_minor
  INTO v_bad
  FROM new_entries e JOIN transactions t ON t.id = e.transaction_id
  GROUP BY e.transaction_id, t.reference, e.currency
  HAVING sum(CASE e.side WHEN 'debit' THEN e.amount_minor::numeric ELSE -e.amount_minor::numeric END) <> 0
  ORDER BY e.transaction_id, e.currency
  LIMIT 1;
  IF FOUND THEN
    RAISE EXCEPTION 'transaction % (%) is unbalanced in %: debits % <> credits %',
      v_bad.transaction_id, v_bad.reference, v_bad.currency, v_bad.debits_minor, v_bad.credits_minor
      USING ERRCODE = 'LG001';
  END IF;

  -- Lock every affected balance row in account-id order before changing any (see 0002_ledger.sql).
  SELECT min(x.account_id) FILTER (
           WHERE x.next_balance_minor NOT BETWEEN -9223372036854775808 AND 9223372036854775807
              OR (NOT x.allow_negative AND x.next_balance_minor < 0))
  INTO v_rejected_account_id
  FROM (
    SELECT b.account_id, b.allow_negative,
           b.balance_minor::numeric
             + CASE b.normal_side WHEN 'debit' THEN d.debit_minus_credit_minor ELSE -d.debit_minus_credit_minor END
             AS next_balance_minor
    FROM (
      SELECT e.account_id,
             sum(CASE e.side WHEN 'debit' THEN e.amount_minor::numeric ELSE -e.amount_minor::numeric END)
               AS debit_minus_credit_minor
      FROM new_entries e
      GROUP BY e.account_id
    ) d
    JOIN account_balances b ON b.account_id = d.account_id
    ORDER BY b.account_id
    FOR NO KEY UPDATE OF b
  ) x;

  IF v_rejected_account_id IS NOT NULL THEN
    SELECT a.code, b.balance_minor,
           b.balance_minor::numeric
             + CASE b.normal_side WHEN 'debit' THEN 1 ELSE -1 END
             * (SELECT sum(CASE e.side WHEN 'debit' THEN e.amount_minor::numeric ELSE -e.amount_minor::numeric END)
                FROM new_entries e WHERE e.account_id = b.account_id) AS next_balance_minor,
           (SELECT t.reference FROM new_entries e JOIN transactions t ON t.id = e.transaction_id
            WHERE e.account_id = b.account_id ORDER BY t.id LIMIT 1) AS reference
    INTO v_bad
    FROM account_balances b JOIN accounts a ON a.id = b.account_id
    WHERE b.account_id = v_rejected_account_id;
    PERFORM ledger_raise_balance_rejection(v_bad.code, v_bad.balance_minor, v_bad.next_balance_minor, v_bad.reference);
  END IF;

  -- The CHECK account_balances_no_negative stands behind the check above.
  UPDATE account_balances b
  SET balance_minor = b.balance_minor
    + CASE b.normal_side WHEN 'debit' THEN d.debit_minus_credit_minor ELSE -d.debit_minus_credit_minor END
  FROM (
    SELECT e.account_id,
           sum(CASE e.side WHEN 'debit' THEN e.amount_minor ELSE -e.amount_minor END) AS debit_minus_credit_minor
    FROM new_entries e
    GROUP BY e.account_id
  ) d
  WHERE b.account_id = d.account_id;
  RETURN NULL;
END
$$;

CREATE OR REPLACE FUNCTION ledger_open_balance() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp AS $$
BEGIN
  IF TG_RELID <> 'public.accounts'::regclass OR TG_LEVEL <> 'ROW' OR TG_OP <> 'INSERT' THEN
    RAISE EXCEPTION 'ledger_open_balance() fires only for rows inserted into public.accounts, not on %', TG_RELID::regclass
      USING ERRCODE = 'LG004';
  END IF;
  INSERT INTO account_balances (account_id, currency, normal_side, allow_negative, balance_minor)
  VALUES (NEW.id, NEW.currency, NEW.normal_side, NEW.allow_negative, 0);
  RETURN NULL;
END
$$;

-- The guard: a write to account_balances by anyone but the writer role is refused, whatever the
-- trigger depth. DELETE is refused for everyone (a balance row lives as long as its account).
DROP TRIGGER account_balances_guard ON account_balances;
CREATE TRIGGER account_balances_guard BEFORE INSERT OR UPDATE ON account_balances
  FOR EACH STATEMENT WHEN (current_user <> 'pay_ledger_writer'::name) EXECUTE FUNCTION ledger_reject_balance_write();
CREATE TRIGGER account_balances_no_delete BEFORE DELETE ON account_balances
  FOR EACH STATEMENT EXECUTE FUNCTION ledger_reject_balance_write();

-- Called from the entries trigger (as the writer role) on the error path.
GRANT EXECUTE ON FUNCTION ledger_raise_balance_rejection(text, bigint, numeric, text) TO pay_ledger_writer;

-- Owned by the writer role, executable by nobody else. ALTER ... OWNER needs the new owner to be
-- able to create in the schema (for the moment of the change only) unless a superuser migrates.
GRANT CREATE ON SCHEMA public TO pay_ledger_writer;
ALTER FUNCTION ledger_apply_entries() OWNER TO pay_ledger_writer;
ALTER FUNCTION ledger_open_balance() OWNER TO pay_ledger_writer;
REVOKE CREATE ON SCHEMA public FROM pay_ledger_writer;
REVOKE EXECUTE ON FUNCTION ledger_apply_entries() FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION ledger_open_balance() FROM PUBLIC;

-- Every function pins its search_path ------------------------------------------------------------------

-- pg_temp last: a temp table can no longer stand in for a ledger, payment or outbox table inside a
-- trigger. Functions added by later migrations must do the same (a test checks every function).
DO $$
DECLARE
  v_function regprocedure;
BEGIN
  FOR v_function IN
    SELECT p.oid::regprocedure
    FROM pg_proc p
    WHERE p.pronamespace = 'public'::regnamespace
      AND p.prokind = 'f'
      AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.objid = p.oid AND d.deptype = 'e')
      AND NOT coalesce(p.proconfig::text[] && ARRAY['search_path=pg_catalog, public, pg_temp'], false)
  LOOP
    EXECUTE format('ALTER FUNCTION %s SET search_path = pg_catalog, public, pg_temp', v_function);
  END LOOP;
END
$$;
