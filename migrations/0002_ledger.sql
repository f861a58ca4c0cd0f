-- The ledger: double entry, enforced by PostgreSQL itself (docs/ledger.md explains each rule).
--
-- Everything the ledger promises holds even when the application is bypassed with raw SQL:
--   * a transaction commits only with >= 2 entries and debits = credits in every currency
--     (deferred constraint trigger on `transactions`);
--   * an entry's transaction and account exist, and its currency is its account's currency
--     (statement trigger on `ledger_entries`);
--   * `transactions`, `ledger_entries` and `accounts` are append-only (statement triggers that
--     raise on UPDATE, DELETE and TRUNCATE, for the table owner too);
--   * a committed transaction is sealed: entries can be added only by the database transaction
--     that created it;
--   * every account has one stored balance, changed only by the entries trigger, in the same
--     database transaction as the entries, with rows locked in account-id order;
--   * an account that may not go negative cannot (funds check in the trigger, CHECK behind it).
-- `ledger_verify()` recomputes everything from the entries and returns the discrepancies.
-- `ledger_post(postings jsonb)` posts one or many transactions in one round trip.
--
-- Error codes raised here (SQLSTATE class "LG", user-defined; those marked * carry a jsonb DETAIL):
--   LG001 transaction unbalanced or with fewer than two entries (at commit)
--   LG002 append-only table: UPDATE / DELETE / TRUNCATE rejected
--   LG003 entry added to a transaction created by another database transaction (sealed)
--   LG004 stored balance written directly (only the entries trigger may)
--   LG005 transaction stamps forged (created_xact_id / posted_at not the current transaction's)
--   LG006* insufficient funds on a no-negative account
--   LG007* reference already recorded with different legs (inside a batch that wrote others)
--   LG008* posting names an unknown account
--   LG009* entry currency differs from the account's
-- and 22003* (numeric_value_out_of_range) when a balance would leave the bigint range.

CREATE TYPE ledger_account_type AS ENUM ('asset', 'liability', 'equity', 'revenue', 'expense');
CREATE TYPE ledger_side AS ENUM ('debit', 'credit');

-- Accounts ---------------------------------------------------------------------------------------

CREATE TABLE accounts (
  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  -- What people read and what the API speaks: `merchant:42:payable:USD`, `platform:cash:EUR`.
  code text NOT NULL,
  type ledger_account_type NOT NULL,
  -- The side on which the balance normally grows. Assets and expenses are debit-normal;
  -- liabilities, equity and revenue are credit-normal. Derived, so it can never disagree.
  normal_side ledger_side NOT NULL GENERATED ALWAYS AS (
    CASE WHEN type IN ('asset', 'expense') THEN 'debit'::ledger_side ELSE 'credit'::ledger_side END
  ) STORED,
  currency text NOT NULL,
  -- false: the balance (in the normal direction) may never go below zero.
  allow_negative boolean NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  CONSTRAINT accounts_code_key UNIQUE (code),
  CONSTRAINT accounts_code_format CHECK (
    length(code) BETWEEN 1 AND 200 AND code ~ '^[A-Za-z0-9_.-]+(:[A-Za-z0-9_.-]+)*$'
  ),
  CONSTRAINT accounts_currency_format CHECK (currency ~ '^[A-Z]{3}$'),
  -- Target of the balance rows' foreign key: the copies of currency, normal side and the
  -- no-negative rule on `account_balances` are then guaranteed equal to the account's.
  CONSTRAINT accounts_balance_terms_key UNIQUE (id, currency, normal_side, allow_negative)
);

-- Stored balances --------------------------------------------------------------------------------

-- One row per account, created with the account. `balance_minor` is signed in the account's
-- normal direction (a merchant payable of 500 is +500 although it is made of credits).
-- This table is NOT append-only: the entries trigger updates it. Nothing else may write it.
CREATE TABLE account_balances (
  account_id bigint PRIMARY KEY,
  currency text NOT NULL,
  normal_side ledger_side NOT NULL,
  allow_negative boolean NOT NULL,
  balance_minor bigint NOT NULL DEFAULT 0,
  CONSTRAINT account_balances_account_fkey FOREIGN KEY (account_id, currency, normal_side, allow_negative)
    REFERENCES accounts (id, currency, normal_side, allow_negative),
  -- Target of the entries' foreign key (see ledger_entries).
  CONSTRAINT account_balances_currency_key UNIQUE (account_id, currency),
  -- The no-negative rule, checked on the row every posting updates.
  CONSTRAINT account_balances_no_negative CHECK (allow_negative OR balance_minor >= 0)
) WITH (fillfactor = 50); -- room on the page for HOT updates: hot accounts are updated constantly

-- Transactions -----------------------------------------------------------------------------------

CREATE TABLE transactions (
  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  -- The business fact's identity. Unique: the same fact cannot be posted twice.
  reference text NOT NULL,
  description text NOT NULL,
  -- The start of the database transaction that posted it (now()); checked at commit.
  posted_at timestamptz NOT NULL DEFAULT now(),
  -- The top-level database transaction that created the row; checked at commit, used to seal
  -- the transaction against entries added later.
  created_xact_id xid8 NOT NULL DEFAULT pg_current_xact_id(),
  CONSTRAINT transactions_reference_key UNIQUE (reference),
  CONSTRAINT transactions_reference_length CHECK (length(reference) BETWEEN 1 AND 200),
  CONSTRAINT transactions_description_length CHECK (length(description) BETWEEN 1 AND 1000)
);

-- Entries ----------------------------------------------------------------------------------------

CREATE TABLE ledger_entries (
  transaction_id bigint NOT NULL,
  -- 1-based position of the leg within its transaction.
  entry_number integer NOT NULL,
  account_id bigint NOT NULL,
  side ledger_side NOT NULL,
  amount_minor bigint NOT NULL,
  currency text NOT NULL,
  -- Copy of the transaction's posted_at (checked by the entries trigger), so that "balance as of"
  -- reads one table.
  posted_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (transaction_id, entry_number),
  CONSTRAINT ledger_entries_entry_number_positive CHECK (entry_number >= 1),
  CONSTRAINT ledger_entries_amount_positive CHECK (amount_minor > 0)
  -- References are enforced by the entries trigger (ledger_apply_entries), once per INSERT
  -- statement and set-based, instead of by FOREIGN KEY clauses (which PostgreSQL runs as one
  -- trigger query per row per key): the transaction must exist and have been created by the same
  -- database transaction (stronger than a foreign key), and (account_id, currency) must be an
  -- account in that currency. Neither side can be deleted or changed (append-only triggers), so the
  -- lock a foreign key takes on the referenced row would protect nothing.
);

-- An account's entries in posting order: pagination, and "balance as of" (which filters on posted_at).
CREATE INDEX ledger_entries_account_idx ON ledger_entries (account_id, transaction_id, entry_number);

-- Append-only ------------------------------------------------------------------------------------

CREATE FUNCTION ledger_reject_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION '% on % is not allowed: the ledger is append-only', TG_OP, TG_TABLE_NAME
    USING ERRCODE = 'LG002',
          HINT = 'a correction is a new, reversing transaction';
END
$$;

-- Statement-level and BEFORE: fires even when the statement would touch no row, and applies to
-- every role including the table owner (only DDL or session_replication_role, both privileged,
-- can switch it off).
CREATE TRIGGER transactions_append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON transactions
  FOR EACH STATEMENT EXECUTE FUNCTION ledger_reject_change();
CREATE TRIGGER ledger_entries_append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON ledger_entries
  FOR EACH STATEMENT EXECUTE FUNCTION ledger_reject_change();
-- Accounts never change either: their type (hence normal side), currency and rule give the
-- stored balance its meaning.
CREATE TRIGGER accounts_append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON accounts
  FOR EACH STATEMENT EXECUTE FUNCTION ledger_reject_change();

-- Balance rows: written only from inside a trigger ----------------------------------------------

CREATE FUNCTION ledger_reject_balance_write() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION '% on account_balances is not allowed: stored balances change only through ledger entries', TG_OP
    USING ERRCODE = 'LG004';
END
$$;

-- pg_trigger_depth() = 0 means the statement was issued directly, not by the accounts trigger
-- (which creates the row) or the entries trigger (which updates it). The WHEN clause costs
-- nothing on the posting path: the function is not even called.
CREATE TRIGGER account_balances_guard BEFORE INSERT OR UPDATE OR DELETE ON account_balances
  FOR EACH STATEMENT WHEN (pg_trigger_depth() = 0) EXECUTE FUNCTION ledger_reject_balance_write();
CREATE TRIGGER account_balances_no_truncate BEFORE TRUNCATE ON account_balances
  FOR EACH STATEMENT EXECUTE FUNCTION ledger_reject_balance_write();

CREATE FUNCTION ledger_open_balance() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO account_balances (account_id, currency, normal_side, allow_negative, balance_minor)
  VALUES (NEW.id, NEW.currency, NEW.normal_side, NEW.allow_negative, 0);
  RETURN NULL;
END
$$;

CREATE TRIGGER accounts_open_balance AFTER INSERT ON accounts
  FOR EACH ROW EXECUTE FUNCTION ledger_open_balance();

-- Entries: seal check and balance update, once per INSERT statement ----------------------------

CREATE FUNCTION ledger_apply_entries() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
  v_bad record;
  v_rejected_account_id bigint;
BEGIN
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

  -- Lock every affected balance row in account-id order before changing any (LockRows sits above
  -- the Sort), so that concurrent postings, even raw multi-row INSERTs, always wait for each other
  -- in the same order and never deadlock. NO KEY UPDATE is the lock an UPDATE of a non-key column
  -- takes; it does not block the foreign-key checks (KEY SHARE) of other postings. A row we had to
  -- wait for is re-read in its latest committed version (READ COMMITTED), so the funds check sees
  -- the balance the UPDATE below will change. The aggregate around the locking subquery keeps the
  -- check from being pushed below the lock.
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
    -- Error path: gather what the caller needs to understand the rejection, then raise.
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

-- Raises the rejection of a balance change with a machine-readable DETAIL (jsonb text) that the
-- Ledger service turns into a typed error: LG006 insufficient funds, or 22003 overflow. Called by
-- the entries trigger, on the error path only. p_reference: the first transaction of the
-- statement that moves the account.
CREATE FUNCTION ledger_raise_balance_rejection(
  p_account text, p_balance_minor bigint, p_next_balance_minor numeric, p_reference text
) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
  IF p_next_balance_minor NOT BETWEEN -9223372036854775808 AND 9223372036854775807 THEN
    RAISE EXCEPTION 'the balance of % would overflow bigint (% -> %)', p_account, p_balance_minor, p_next_balance_minor
      USING ERRCODE = 'numeric_value_out_of_range',
            DETAIL = jsonb_build_object('account', p_account, 'reference', p_reference,
                                        'balance_minor', p_balance_minor::text,
                                        'next_balance_minor', p_next_balance_minor::text)::text;
  END IF;
  RAISE EXCEPTION 'insufficient funds on %: balance %, short by %', p_account, p_balance_minor, -p_next_balance_minor
    USING ERRCODE = 'LG006',
          DETAIL = jsonb_build_object('account', p_account, 'reference', p_reference,
                                      'balance_minor', p_balance_minor::text,
                                      'shortfall_minor', (-p_next_balance_minor)::text)::text;
END
$$;

CREATE TRIGGER ledger_entries_apply AFTER INSERT ON ledger_entries
  REFERENCING NEW TABLE AS new_entries
  FOR EACH STATEMENT EXECUTE FUNCTION ledger_apply_entries();

-- Transactions: balanced at commit ---------------------------------------------------------------

CREATE FUNCTION ledger_check_transaction() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
  v_check record;
BEGIN
  IF NEW.created_xact_id <> pg_current_xact_id() OR NEW.posted_at <> now() THEN
    RAISE EXCEPTION 'transaction % (%) carries a created_xact_id or posted_at that is not its own', NEW.id, NEW.reference
      USING ERRCODE = 'LG005';
  END IF;

  -- One pass over the transaction's entries, without grouping: the common single-currency case
  -- needs only a count and a net sum. Compared in numeric: a thousand legs of the largest bigint
  -- do not overflow.
  SELECT count(*) AS entry_count, min(e.currency) AS first_currency, max(e.currency) AS last_currency,
         sum(CASE e.side WHEN 'debit' THEN e.amount_minor::numeric ELSE -e.amount_minor::numeric END)
           AS debit_minus_credit_minor
  INTO v_check
  FROM ledger_entries e
  WHERE e.transaction_id = NEW.id;
  IF v_check.entry_count < 2 THEN
    RAISE EXCEPTION 'transaction % (%) has % entries; at least two are required', NEW.id, NEW.reference, v_check.entry_count
      USING ERRCODE = 'LG001';
  END IF;
  IF v_check.first_currency = v_check.last_currency AND v_check.debit_minus_credit_minor = 0 THEN
    RETURN NULL;
  END IF;
  -- Several currencies (or an imbalance): check each currency on its own.
  SELECT e.currency,
         coalesce(sum(e.amount_minor::numeric) FILTER (WHERE e.side = 'debit'), 0) AS debits_minor,
         coalesce(sum(e.amount_minor::numeric) FILTER (WHERE e.side = 'credit'), 0) AS credits_minor
  INTO v_check
  FROM ledger_entries e
  WHERE e.transaction_id = NEW.id
  GROUP BY e.currency
  HAVING coalesce(sum(e.amount_minor::numeric) FILTER (WHERE e.side = 'debit'), 0)
      <> coalesce(sum(e.amount_minor::numeric) FILTER (WHERE e.side = 'credit'), 0)
  ORDER BY e.currency
  LIMIT 1;
  IF FOUND THEN
    RAISE EXCEPTION 'transaction % (%) is unbalanced in %: debits % <> credits %',
      NEW.id, NEW.reference, v_check.currency, v_check.debits_minor, v_check.credits_minor
      USING ERRCODE = 'LG001';
  END IF;
  RETURN NULL;
END
$$;

-- Deferred to COMMIT: the transaction row is inserted before its entries. One firing per
-- transaction; entries cannot be added later (sealed), so checking at the transaction's own
-- commit covers every entry it will ever have. SET CONSTRAINTS ... IMMEDIATE only makes the check
-- run earlier (and fail), never skips it.
CREATE CONSTRAINT TRIGGER transactions_balanced AFTER INSERT ON transactions
  DEFERRABLE INITIALLY DEFERRED
  FOR EACH ROW EXECUTE FUNCTION ledger_check_transaction();

-- Posting ----------------------------------------------------------------------------------------

-- true when the stored transaction has exactly these legs (as a multiset: order does not matter).
-- p_legs: [{"account": "code", "side": "debit", "amount_minor": "100", "currency": "USD"}, ...]
CREATE FUNCTION ledger_same_legs(p_transaction_id bigint, p_legs jsonb) RETURNS boolean
LANGUAGE sql STABLE AS $$
  SELECT NOT EXISTS (
    (SELECT a.code, e.side, e.amount_minor, e.currency
     FROM ledger_entries e JOIN accounts a ON a.id = e.account_id
     WHERE e.transaction_id = p_transaction_id
     EXCEPT ALL
     SELECT l.account, l.side, l.amount_minor, l.currency
     FROM jsonb_to_recordset(p_legs) AS l(account text, side ledger_side, amount_minor bigint, currency text))
    UNION ALL
    (SELECT l.account, l.side, l.amount_minor, l.currency
     FROM jsonb_to_recordset(p_legs) AS l(account text, side ledger_side, amount_minor bigint, currency text)
     EXCEPT ALL
     SELECT a.code, e.side, e.amount_minor, e.currency
     FROM ledger_entries e JOIN accounts a ON a.id = e.account_id
     WHERE e.transaction_id = p_transaction_id)
  )
$$;

-- Rejections found while writing a posting, raised with a machine-readable DETAIL (jsonb text).
CREATE FUNCTION ledger_reject_unknown_account(p_reference text, p_account text) RETURNS bigint
LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION 'posting % names unknown account %', p_reference, p_account
    USING ERRCODE = 'LG008',
          DETAIL = jsonb_build_object('reference', p_reference, 'account', p_account)::text;
END
$$;

CREATE FUNCTION ledger_reject_currency(p_reference text, p_account text, p_account_currency text, p_leg_currency text)
RETURNS bigint
LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION 'posting % has a % leg on account %, which holds %', p_reference, p_leg_currency, p_account, p_account_currency
    USING ERRCODE = 'LG009',
          DETAIL = jsonb_build_object('reference', p_reference, 'account', p_account,
                                      'account_currency', p_account_currency, 'leg_currency', p_leg_currency)::text;
END
$$;

CREATE FUNCTION ledger_reject_reference(p_reference text, p_transaction_id bigint) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION 'reference % already holds transaction % with different legs', p_reference, p_transaction_id
    USING ERRCODE = 'LG007',
          DETAIL = jsonb_build_object('reference', p_reference, 'transaction_id', p_transaction_id::text)::text;
END
$$;

-- Posts a batch of transactions (one or many) atomically, in one round trip.
--
-- Input (amounts as strings, never JSON numbers, so no digit is lost on the way):
--   [{"reference": "...", "description": "...",
--     "legs": [{"account": "code", "side": "debit", "amount_minor": "100", "currency": "USD"}, ...]}]
--
-- Returns one row per posting: outcome 'posted' (new) or 'replayed' (its reference already holds
-- exactly these legs: nothing is written for it, and the existing transaction is returned).
-- A reference that already holds different legs is a conflict: returned as a single
-- 'reference_conflict' row when nothing else was written, raised as LG007 otherwise (so that the
-- rest of the batch rolls back).
--
-- Everything else is rejected with an exception that aborts the whole call (write first, let the
-- database refuse): LG008 unknown account, LG009 leg currency <> account currency, LG006
-- insufficient funds and 22003 balance overflow (entries trigger), LG001 unbalanced or fewer than
-- two legs (at commit), 23514 amount <= 0, 23505 the same reference twice in one batch. LG00x
-- errors carry a jsonb DETAIL. Inside a caller's transaction, call this under a savepoint so that
-- such an exception leaves the caller's transaction usable.
--
-- Concurrency (READ COMMITTED): references are inserted in reference order (ON CONFLICT waits
-- for a concurrent insert of the same reference and then skips it), then the entries trigger
-- locks every balance row in account-id order. Two postings therefore always wait for each other
-- in the same order.
--
-- Each account and reference lookup is a LATERAL ... LIMIT 1 probe of a unique index, whatever
-- the planner guesses for the size of the JSON.
CREATE FUNCTION ledger_post(p_postings jsonb)
RETURNS TABLE (item integer, outcome text, transaction_id bigint, posted_at timestamptz, description text, detail jsonb)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
  v_item_count integer := jsonb_array_length(p_postings);
  v_posted_items integer[];
  v_posted_ids bigint[];
  v_posted_at timestamptz[];
  v_posted_descriptions text[];
  v_existing_items integer[];
  v_existing_ids bigint[];
  v_existing_posted_at timestamptz[];
  v_existing_descriptions text[];
  v_conflict_ord integer;
  v_conflict_reference text;
  v_conflict_id bigint;
  v_conflict_posted_at timestamptz;
  v_conflict_description text;
  v_index integer;
BEGIN
  WITH items AS (
    SELECT p.ord::integer AS ord, p.posting ->> 'reference' AS reference,
           p.posting ->> 'description' AS description, p.posting -> 'legs' AS legs
    FROM jsonb_array_elements(p_postings) WITH ORDINALITY AS p(posting, ord)
  ),
  inserted AS (
    INSERT INTO transactions (reference, description)
    SELECT i.reference, i.description FROM items i ORDER BY i.reference
    ON CONFLICT (reference) DO NOTHING
    RETURNING transactions.id, transactions.reference, transactions.posted_at, transactions.description
  ),
  written AS (
    INSERT INTO ledger_entries (transaction_id, entry_number, account_id, side, amount_minor, currency, posted_at)
    SELECT n.id, l.ord::integer,
           CASE WHEN a.id IS NULL THEN ledger_reject_unknown_account(n.reference, l.account)
                WHEN a.currency <> l.currency THEN ledger_reject_currency(n.reference, l.account, a.currency, l.currency)
                ELSE a.id END,
           l.side, l.amount_minor, l.currency, n.posted_at
    FROM inserted n
    JOIN items i ON i.reference = n.reference
    CROSS JOIN LATERAL ROWS FROM (
      jsonb_to_recordset(i.legs) AS (account text, side ledger_side, amount_minor bigint, currency text)
    ) WITH ORDINALITY AS l(account, side, amount_minor, currency, ord)
    LEFT JOIN LATERAL (SELECT a.id, a.currency FROM accounts a WHERE a.code = l.account LIMIT 1) a ON true
    RETURNING 1
  )
  SELECT array_agg(i.ord), array_agg(n.id), array_agg(n.posted_at), array_agg(n.description)
  INTO v_posted_items, v_posted_ids, v_posted_at, v_posted_descriptions
  FROM inserted n JOIN items i ON i.reference = n.reference;

  IF coalesce(cardinality(v_posted_items), 0) < v_item_count THEN
    -- Some references already existed (committed earlier, or concurrently: ON CONFLICT waited for
    -- that transaction to commit). Same legs: a replay. Different legs: a conflict.
    SELECT array_agg(x.ord ORDER BY x.ord), array_agg(x.id ORDER BY x.ord), array_agg(x.posted_at ORDER BY x.ord),
           array_agg(x.description ORDER BY x.ord),
           (array_agg(x.ord ORDER BY x.ord) FILTER (WHERE NOT x.same_legs))[1],
           (array_agg(x.reference ORDER BY x.ord) FILTER (WHERE NOT x.same_legs))[1],
           (array_agg(x.id ORDER BY x.ord) FILTER (WHERE NOT x.same_legs))[1],
           (array_agg(x.posted_at ORDER BY x.ord) FILTER (WHERE NOT x.same_legs))[1],
           (array_agg(x.description ORDER BY x.ord) FILTER (WHERE NOT x.same_legs))[1]
    INTO v_existing_items, v_existing_ids, v_existing_posted_at, v_existing_descriptions,
         v_conflict_ord, v_conflict_reference, v_conflict_id, v_conflict_posted_at, v_conflict_description
    FROM (
      SELECT p.ord::integer AS ord, p.posting ->> 'reference' AS reference, t.id, t.posted_at, t.description,
             ledger_same_legs(t.id, p.posting -> 'legs') AS same_legs
      FROM jsonb_array_elements(p_postings) WITH ORDINALITY AS p(posting, ord)
      JOIN LATERAL (SELECT t.id, t.posted_at, t.description FROM transactions t
                    WHERE t.reference = p.posting ->> 'reference' LIMIT 1) t ON true
      WHERE p.ord::integer <> ALL (coalesce(v_posted_items, '{}'))
    ) x;
    IF v_conflict_ord IS NOT NULL THEN
      IF v_posted_items IS NOT NULL THEN
        PERFORM ledger_reject_reference(v_conflict_reference, v_conflict_id);
      END IF;
      RETURN QUERY SELECT v_conflict_ord - 1, 'reference_conflict'::text, v_conflict_id,
        v_conflict_posted_at, v_conflict_description, jsonb_build_object('reference', v_conflict_reference);
      RETURN;
    END IF;
    RETURN QUERY
    SELECT u.ord - 1, 'replayed'::text, u.id, u.posted_at, u.description, NULL::jsonb
    FROM unnest(v_existing_items, v_existing_ids, v_existing_posted_at, v_existing_descriptions)
      AS u(ord, id, posted_at, description);
  END IF;

  -- Plain assignments, not a query: cheaper for the usual one posting.
  FOR v_index IN 1 .. coalesce(cardinality(v_posted_items), 0) LOOP
    item := v_posted_items[v_index] - 1;
    outcome := 'posted';
    transaction_id := v_posted_ids[v_index];
    posted_at := v_posted_at[v_index];
    description := v_posted_descriptions[v_index];
    detail := NULL;
    RETURN NEXT;
  END LOOP;
END
$$;

-- Verification -----------------------------------------------------------------------------------

-- Recomputes the ledger from its entries and returns every discrepancy; no row means healthy.
-- Full scans: meant for tests after every scenario and for a periodic monitoring job, not for the
-- request path. Amounts are compared in numeric, so nothing here can overflow.
--   balance_mismatch         stored balance <> sum of the account's entries (normal direction)
--   balance_row_missing      an account without its stored balance row
--   negative_balance         a no-negative account below zero
--   transaction_unbalanced   debits <> credits in one currency of one transaction
--   transaction_too_few_entries  a transaction with fewer than two entries
--   entry_currency_mismatch  an entry whose currency is not its account's
--   trial_balance_nonzero    the debit-positive balances of a currency do not sum to zero
CREATE FUNCTION ledger_verify()
RETURNS TABLE (check_name text, subject text, expected_minor numeric, actual_minor numeric, detail text)
LANGUAGE sql STABLE AS $$
  WITH derived AS (
    SELECT e.account_id,
           sum(CASE e.side WHEN 'debit' THEN e.amount_minor::numeric ELSE -e.amount_minor::numeric END)
             AS debit_minus_credit_minor
    FROM ledger_entries e
    GROUP BY e.account_id
  ),
  per_transaction AS (
    SELECT e.transaction_id, e.currency,
           coalesce(sum(e.amount_minor::numeric) FILTER (WHERE e.side = 'debit'), 0) AS debits_minor,
           coalesce(sum(e.amount_minor::numeric) FILTER (WHERE e.side = 'credit'), 0) AS credits_minor
    FROM ledger_entries e
    GROUP BY e.transaction_id, e.currency
  )
  SELECT 'balance_mismatch', a.code,
         CASE a.normal_side WHEN 'debit' THEN coalesce(d.debit_minus_credit_minor, 0)
                            ELSE -coalesce(d.debit_minus_credit_minor, 0) END,
         b.balance_minor::numeric,
         'stored balance differs from the sum of the account''s entries'
  FROM accounts a
  JOIN account_balances b ON b.account_id = a.id
  LEFT JOIN derived d ON d.account_id = a.id
  WHERE b.balance_minor::numeric
        <> CASE a.normal_side WHEN 'debit' THEN coalesce(d.debit_minus_credit_minor, 0)
                              ELSE -coalesce(d.debit_minus_credit_minor, 0) END
  UNION ALL
  SELECT 'balance_row_missing', a.code, NULL, NULL, 'account has no stored balance row'
  FROM accounts a
  WHERE NOT EXISTS (SELECT 1 FROM account_balances b WHERE b.account_id = a.id)
  UNION ALL
  SELECT 'negative_balance', a.code, 0, b.balance_minor::numeric, 'no-negative account below zero'
  FROM accounts a JOIN account_balances b ON b.account_id = a.id
  WHERE NOT a.allow_negative AND b.balance_minor < 0
  UNION ALL
  SELECT 'transaction_unbalanced', t.reference || ' ' || p.currency, p.debits_minor, p.credits_minor,
         'transaction ' || t.id || ': debits (expected) <> credits (actual)'
  FROM per_transaction p JOIN transactions t ON t.id = p.transaction_id
  WHERE p.debits_minor <> p.credits_minor
  UNION ALL
  SELECT 'transaction_too_few_entries', t.reference, 2, count(e.transaction_id)::numeric,
         'transaction ' || t.id || ' has fewer than two entries'
  FROM transactions t LEFT JOIN ledger_entries e ON e.transaction_id = t.id
  GROUP BY t.id, t.reference
  HAVING count(e.transaction_id) < 2
  UNION ALL
  SELECT 'entry_currency_mismatch', a.code, NULL, NULL,
         'entry ' || e.transaction_id || '/' || e.entry_number || ' is in ' || e.currency || ', account in ' || a.currency
  FROM ledger_entries e JOIN accounts a ON a.id = e.account_id
  WHERE e.currency <> a.currency
  UNION ALL
  SELECT 'trial_balance_nonzero', a.currency, 0,
         sum(CASE a.normal_side WHEN 'debit' THEN b.balance_minor::numeric ELSE -b.balance_minor::numeric END),
         'debit-positive stored balances of the currency do not sum to zero'
  FROM accounts a JOIN account_balances b ON b.account_id = a.id
  GROUP BY a.currency
  HAVING sum(CASE a.normal_side WHEN 'debit' THEN b.balance_minor::numeric ELSE -b.balance_minor::numeric END) <> 0
$$;
