-- A settled payment is tied to its money by the database (issue 11; docs/security.md).
--
-- Before: a raw `UPDATE payments SET status = 'SETTLED'` with its history row committed with no
-- posting, and a posting under `payment:<id>:settlement` could credit any account. Now, at COMMIT:
--   * a payment that reaches SETTLED has its payment_settlements row (hence exactly one posting:
--     primary key on payment_id, unique ledger_transaction_id);
--   * a ledger transaction under a settlement reference (`payment:%:settlement`) has the
--     payment_settlements row that names it (which requires the payment SETTLED, 0006);
--   * the settlement row's posting has exactly the legs of a settlement: acquirer:receivable:<CUR>
--     debited gross, merchant:<that merchant>:payable:<CUR> credited net, platform:fees:<CUR>
--     credited the fee (a zero leg is absent), all in the payment's currency.
-- Every fact checked is monotone: settlement rows and entries are append-only, SETTLED is terminal,
-- and a transaction's entries are sealed at the end of the statement that wrote them (0009), so a
-- check fired early (SET CONSTRAINTS ... IMMEDIATE) cannot be spent and undone afterwards.
-- Errors: SQLSTATE 23000 (integrity_constraint_violation), like 0003 and 0006.

CREATE FUNCTION payments_settled_has_settlement() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, public, pg_temp AS $$
BEGIN
  IF NOT EXISTS (SELECT 1 FROM payment_settlements s WHERE s.payment_id = NEW.id) THEN
    RAISE EXCEPTION 'payment % reached SETTLED without its settlement posting (no payment_settlements row)', NEW.id
      USING ERRCODE = 'integrity_constraint_violation';
  END IF;
  RETURN NULL;
END $$;
CREATE CONSTRAINT TRIGGER payments_settled_has_settlement AFTER UPDATE ON payments
  DEFERRABLE INITIALLY DEFERRED FOR EACH ROW
  WHEN (NEW.status = 'SETTLED')
  EXECUTE FUNCTION payments_settled_has_settlement();

CREATE FUNCTION transactions_settlement_has_row() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, public, pg_temp AS $$
BEGIN
  IF NOT EXISTS (SELECT 1 FROM payment_settlements s WHERE s.ledger_transaction_id = NEW.id) THEN
    RAISE EXCEPTION 'ledger transaction % (%) uses a settlement reference without a payment_settlements row',
      NEW.id, NEW.reference
      USING ERRCODE = 'integrity_constraint_violation',
            HINT = 'references payment:<id>:settlement are reserved for settlement postings';
  END IF;
  RETURN NULL;
END $$;
CREATE CONSTRAINT TRIGGER transactions_settlement_has_row AFTER INSERT ON transactions
  DEFERRABLE INITIALLY DEFERRED FOR EACH ROW
  WHEN (NEW.reference LIKE 'payment:%:settlement')
  EXECUTE FUNCTION transactions_settlement_has_row();

-- The existing check (0006), plus the legs.
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
  IF v_payment.amount_minor <> NEW.gross_minor OR v_payment.currency <> NEW.currency THEN
    RAISE EXCEPTION 'settlement of payment % is % % but the payment is % %',
      NEW.payment_id, NEW.gross_minor, NEW.currency, v_payment.amount_minor, v_payment.currency
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
