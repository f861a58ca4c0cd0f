-- Two more from the outside re-tests (.scratch/review-retest-2.md N1, N3):
--
--   * N3: pay_app could insert a payment_status_history row (and its outbox event) for a version
--     the payment never reached. The payment's next real transition then collided with it
--     (UNIQUE (payment_id, version)) for ever: a settle captured at the acquirer and answered 500
--     every time, and the expiry job failed on it every run. A history row now needs its payment to
--     have reached it by COMMIT: the payment's version past it, or at it with that status. The
--     application writes the row in the transaction that moves the payment (PaymentRepository).
--   * N1: the runbook's answer to a LedgerDiscrepancy of kind balance_mismatch (a stored balance
--     that is not the sum of its account's entries) could not be carried out: a correcting posting
--     moves the balance and the entries alike, and a hand edit of account_balances is refused (and
--     forbidden by the runbook). The entries are the facts and the balance their cache: an operator
--     now rebuilds one account's balance from its entries with `SELECT * FROM
--     ledger_rebuild_balance('<code>')`, a SECURITY DEFINER function of the writer role (the only
--     one the guard lets write balances, 0009), executable by the migration's owner, not by pay_app.
--     It locks the balance row first, so a posting in flight either committed before (its entries
--     are summed) or waits and adds its delta after.
--
-- Errors: SQLSTATE 23000 (integrity_constraint_violation); the function raises LG008 for an
-- unknown account and leaves the no-negative CHECK to refuse a rebuilt balance below zero.

CREATE FUNCTION payment_status_history_reached() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, public, pg_temp AS $$
BEGIN
  IF NOT EXISTS (
    SELECT 1 FROM payments p
    WHERE p.id = NEW.payment_id AND (p.version > NEW.version OR (p.version = NEW.version AND p.status = NEW.to_status))
  ) THEN
    RAISE EXCEPTION 'payment_status_history row of payment % (version %, %) records a change the payment never made',
      NEW.payment_id, NEW.version, NEW.to_status
      USING ERRCODE = 'integrity_constraint_violation',
            HINT = 'a history row is written in the transaction that moves its payment';
  END IF;
  RETURN NULL;
END $$;
CREATE CONSTRAINT TRIGGER payment_status_history_reached AFTER INSERT ON payment_status_history
  DEFERRABLE INITIALLY DEFERRED
  FOR EACH ROW EXECUTE FUNCTION payment_status_history_reached();

CREATE FUNCTION ledger_rebuild_balance(p_account_code text)
RETURNS TABLE (account text, stored_minor bigint, rebuilt_minor bigint)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp AS $$
DECLARE
  v_account_id bigint;
  v_normal_side ledger_side;
  v_stored bigint;
  v_rebuilt numeric;
BEGIN
  SELECT a.id, a.normal_side INTO v_account_id, v_normal_side FROM accounts a WHERE a.code = p_account_code;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'ledger_rebuild_balance: no account %', p_account_code USING ERRCODE = 'LG008';
  END IF;
  SELECT b.balance_minor INTO v_stored FROM account_balances b WHERE b.account_id = v_account_id FOR UPDATE;
  -- READ COMMITTED: this statement's snapshot is taken after the lock above was granted.
  SELECT coalesce(sum(CASE WHEN e.side = v_normal_side THEN e.amount_minor::numeric ELSE -e.amount_minor::numeric END), 0)
    INTO v_rebuilt
  FROM ledger_entries e WHERE e.account_id = v_account_id;
  UPDATE account_balances SET balance_minor = v_rebuilt::bigint WHERE account_id = v_account_id;
  RETURN QUERY SELECT p_account_code, v_stored, v_rebuilt::bigint;
END $$;

-- Owned by the writer role (as 0009's functions), executable by the owner running this migration
-- and by no one else (pay_app included).
GRANT CREATE ON SCHEMA public TO pay_ledger_writer;
ALTER FUNCTION ledger_rebuild_balance(text) OWNER TO pay_ledger_writer;
REVOKE CREATE ON SCHEMA public FROM pay_ledger_writer;
REVOKE EXECUTE ON FUNCTION ledger_rebuild_balance(text) FROM PUBLIC;
DO $$ BEGIN EXECUTE format('GRANT EXECUTE ON FUNCTION ledger_rebuild_balance(text) TO %I', current_user); END $$;
