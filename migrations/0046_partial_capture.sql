-- Partial capture (issue 19): a settle may capture less than was authorized. The payment keeps
-- its authorized `amount_minor`; `captured_amount_minor` is what was captured and what the money
-- is: set exactly when the payment is SETTLED (SETTLED is terminal, so it never changes after),
-- never above the authorized amount. The settlement tie (0006, 0011) now checks the posting
-- against the captured amount instead of the authorized one: a raw settlement row or posting for
-- any other amount is refused at COMMIT.
-- Errors: SQLSTATE 23000 (integrity_constraint_violation) from the trigger, 23514 from the CHECKs.

ALTER TABLE payments ADD COLUMN captured_amount_minor bigint;

-- Payments settled before this migration captured their whole amount. The update guard (0003)
-- refuses any change to a terminal payment; this reviewed backfill switches it off for itself only.
ALTER TABLE payments DISABLE TRIGGER payments_guard_update;
UPDATE payments SET captured_amount_minor = amount_minor WHERE status = 'SETTLED';
ALTER TABLE payments ENABLE TRIGGER payments_guard_update;

ALTER TABLE payments ADD CONSTRAINT payments_captured_iff_settled
  CHECK ((status = 'SETTLED') = (captured_amount_minor IS NOT NULL));
ALTER TABLE payments ADD CONSTRAINT payments_captured_within_authorized
  CHECK (captured_amount_minor IS NULL OR (captured_amount_minor > 0 AND captured_amount_minor <= amount_minor));

-- 0011's check, with gross = the captured amount.
CREATE OR REPLACE FUNCTION payment_settlements_check() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, public, pg_temp AS $$
DECLARE
  v_payment payments%ROWTYPE;
  v_reference text;
  v_expected jsonb;
  v_actual jsonb;
BEGIN
  SELECT * INTO v_payment FROM payments WHERE id = NEW.payment_id;
  IF v_payment.status IS DISTINCT FROM 'SETTLED' THEN
    RAISE EXCEPTION 'settlement of payment % recorded but the payment is %', NEW.payment_id, v_payment.status
      USING ERRCODE = 'integrity_constraint_violation';
  END IF;
  IF v_payment.captured_amount_minor IS DISTINCT FROM NEW.gross_minor OR v_payment.currency <> NEW.currency THEN
    RAISE EXCEPTION 'settlement of payment % is % % but the payment captured % %',
      NEW.payment_id, NEW.gross_minor, NEW.currency, v_payment.captured_amount_minor, v_payment.currency
      USING ERRCODE = 'integrity_constraint_violation';
  END IF;
  SELECT reference INTO v_reference FROM transactions WHERE id = NEW.ledger_transaction_id;
  IF v_reference IS DISTINCT FROM 'payment:' || NEW.payment_id || ':settlement' THEN
    RAISE EXCEPTION 'settlement of payment % points at ledger transaction % (%), not its settlement posting',
      NEW.payment_id, NEW.ledger_transaction_id, v_reference
      USING ERRCODE = 'integrity_constraint_violation';
  END IF;

  -- The legs, as sorted lists of [side, account, amount, currency].
  SELECT coalesce(jsonb_agg(jsonb_build_array(l.side, l.account, l.amount_minor::text, NEW.currency)
                            ORDER BY l.side, l.account, l.amount_minor), '[]'::jsonb)
  INTO v_expected
  FROM (VALUES ('debit', 'acquirer:receivable:' || NEW.currency, NEW.gross_minor),
               ('credit', 'merchant:' || v_payment.merchant_id || ':payable:' || NEW.currency, NEW.net_minor),
               ('credit', 'platform:fees:' || NEW.currency, NEW.fee_minor)) AS l(side, account, amount_minor)
  WHERE l.amount_minor > 0;
  SELECT coalesce(jsonb_agg(jsonb_build_array(e.side::text, a.code, e.amount_minor::text, e.currency)
                            ORDER BY e.side::text, a.code, e.amount_minor), '[]'::jsonb)
  INTO v_actual
  FROM ledger_entries e JOIN accounts a ON a.id = e.account_id
  WHERE e.transaction_id = NEW.ledger_transaction_id;
  IF v_actual <> v_expected THEN
    RAISE EXCEPTION 'settlement of payment %: posting % has legs %, a settlement of % % (fee %, net %) has %',
      NEW.payment_id, NEW.ledger_transaction_id, v_actual, NEW.gross_minor, NEW.currency, NEW.fee_minor, NEW.net_minor, v_expected
      USING ERRCODE = 'integrity_constraint_violation';
  END IF;
  RETURN NULL;
END $$;
