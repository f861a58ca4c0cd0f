-- Refunds (issue 19): a refund is its own object, PENDING until the acquirer answers, then
-- SUCCEEDED (with exactly one ledger transaction that reverses the money) or FAILED. The rule
-- that matters: the sum of a payment's non-failed refunds never exceeds what was captured. The code
-- checks it first (packages/payments/src/Refunds.ts, typed `refund_exceeds_captured`); this
-- migration makes the database the last word, under a lock on the payment row, so that neither
-- concurrency nor raw SQL can break it. See docs/refunds.md.
-- Errors: SQLSTATE 23000 (integrity_constraint_violation), like 0003 and 0006.

CREATE TABLE refunds (
  id text PRIMARY KEY CHECK (id ~ '^re_[0-9a-hjkmnp-tv-z]{24}$'),
  payment_id text NOT NULL REFERENCES payments (id),
  merchant_id text NOT NULL REFERENCES merchants (id),
  amount_minor bigint NOT NULL CHECK (amount_minor > 0 AND amount_minor <= 99999999999),
  currency char(3) NOT NULL,
  status text NOT NULL CHECK (status IN ('PENDING', 'SUCCEEDED', 'FAILED')),
  reason text CHECK (reason IS NULL OR reason IN ('requested_by_customer', 'duplicate', 'fraudulent')),
  metadata jsonb NOT NULL DEFAULT '{}'::jsonb
    CHECK (jsonb_typeof(metadata) = 'object' AND octet_length(metadata::text) <= 32768),
  failure_code text CHECK (failure_code IS NULL OR failure_code ~ '^[a-z][a-z0-9_]{0,63}$'),
  failure_message text CHECK (failure_message IS NULL OR length(failure_message) BETWEEN 1 AND 500),
  ledger_transaction_id bigint UNIQUE REFERENCES transactions (id),
  created_at timestamptz NOT NULL,
  updated_at timestamptz NOT NULL,
  CONSTRAINT refunds_failure_iff_failed CHECK (
    (status = 'FAILED') = (failure_code IS NOT NULL AND failure_message IS NOT NULL)
    AND (status = 'FAILED' OR (failure_code IS NULL AND failure_message IS NULL))),
  CONSTRAINT refunds_posting_iff_succeeded CHECK ((status = 'SUCCEEDED') = (ledger_transaction_id IS NOT NULL)),
  CONSTRAINT refunds_updated_after_created CHECK (updated_at >= created_at)
);
CREATE INDEX refunds_payment ON refunds (payment_id, created_at, id);

-- The cap, at INSERT: the payment row is locked (FOR NO KEY UPDATE, the lock a transition takes),
-- so two refunds of one payment are decided one after the other; under READ COMMITTED each
-- statement below reads after the lock is granted, so the sum includes every refund committed
-- before. A refund is born PENDING, for a SETTLED payment of the same merchant and currency.
CREATE FUNCTION refunds_guard_insert() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, public, pg_temp AS $$
DECLARE
  v_payment payments%ROWTYPE;
  v_refunded bigint;
BEGIN
  IF NEW.status IS DISTINCT FROM 'PENDING' THEN
    RAISE EXCEPTION 'refund % must be inserted PENDING, not %', NEW.id, NEW.status
      USING ERRCODE = 'integrity_constraint_violation';
  END IF;
  SELECT * INTO v_payment FROM payments WHERE id = NEW.payment_id FOR NO KEY UPDATE;
  IF v_payment.status IS DISTINCT FROM 'SETTLED' THEN
    RAISE EXCEPTION 'refund % of payment %: the payment is %, only a SETTLED payment can be refunded',
      NEW.id, NEW.payment_id, v_payment.status
      USING ERRCODE = 'integrity_constraint_violation';
  END IF;
  IF v_payment.merchant_id IS DISTINCT FROM NEW.merchant_id OR v_payment.currency IS DISTINCT FROM NEW.currency THEN
    RAISE EXCEPTION 'refund % does not match payment % (merchant or currency)', NEW.id, NEW.payment_id
      USING ERRCODE = 'integrity_constraint_violation';
  END IF;
  SELECT coalesce(sum(r.amount_minor), 0) INTO v_refunded
  FROM refunds r WHERE r.payment_id = NEW.payment_id AND r.status <> 'FAILED';
  IF v_refunded + NEW.amount_minor > v_payment.captured_amount_minor THEN
    RAISE EXCEPTION 'refund cap: payment % captured %, refunds not failed already hold %, % more would exceed it',
      NEW.payment_id, v_payment.captured_amount_minor, v_refunded, NEW.amount_minor
      USING ERRCODE = 'integrity_constraint_violation';
  END IF;
  RETURN NEW;
END $$;
CREATE TRIGGER refunds_guard_insert BEFORE INSERT ON refunds
  FOR EACH ROW EXECUTE FUNCTION refunds_guard_insert();

-- A refund changes once: PENDING -> SUCCEEDED or FAILED, nothing else about it changes, and a
-- SUCCEEDED one names its reversal posting: reference payment:<payment>:refund:<refund>, whose
-- debits total the refund's amount in its currency. FAILED -> anything is refused, so a refund
-- that stopped counting toward the cap can never count again without passing the INSERT check.
CREATE FUNCTION refunds_guard_update() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, public, pg_temp AS $$
DECLARE
  v_reference text;
  v_debits bigint;
BEGIN
  IF OLD.status <> 'PENDING' OR NEW.status NOT IN ('SUCCEEDED', 'FAILED') THEN
    RAISE EXCEPTION 'refund % cannot move % -> %', OLD.id, OLD.status, NEW.status
      USING ERRCODE = 'integrity_constraint_violation';
  END IF;
  IF NEW.id IS DISTINCT FROM OLD.id OR NEW.payment_id IS DISTINCT FROM OLD.payment_id
     OR NEW.merchant_id IS DISTINCT FROM OLD.merchant_id OR NEW.amount_minor IS DISTINCT FROM OLD.amount_minor
     OR NEW.currency IS DISTINCT FROM OLD.currency OR NEW.reason IS DISTINCT FROM OLD.reason
     OR NEW.metadata IS DISTINCT FROM OLD.metadata OR NEW.created_at IS DISTINCT FROM OLD.created_at
     OR NEW.updated_at < OLD.updated_at THEN
    RAISE EXCEPTION 'refund % may only change status, failure details, ledger_transaction_id and updated_at', OLD.id
      USING ERRCODE = 'integrity_constraint_violation';
  END IF;
  IF NEW.status = 'SUCCEEDED' THEN
    SELECT t.reference INTO v_reference FROM transactions t WHERE t.id = NEW.ledger_transaction_id;
    SELECT coalesce(sum(e.amount_minor), 0) INTO v_debits FROM ledger_entries e
    WHERE e.transaction_id = NEW.ledger_transaction_id AND e.side = 'debit' AND e.currency = NEW.currency;
    IF v_reference IS DISTINCT FROM 'payment:' || NEW.payment_id || ':refund:' || NEW.id OR v_debits <> NEW.amount_minor THEN
      RAISE EXCEPTION 'refund % SUCCEEDED must name its reversal posting of % % (got % moving %)',
        NEW.id, NEW.amount_minor, NEW.currency, v_reference, v_debits
        USING ERRCODE = 'integrity_constraint_violation';
    END IF;
  END IF;
  RETURN NEW;
END $$;
CREATE TRIGGER refunds_guard_update BEFORE UPDATE ON refunds
  FOR EACH ROW EXECUTE FUNCTION refunds_guard_update();

CREATE TRIGGER refunds_no_delete BEFORE DELETE ON refunds
  FOR EACH ROW EXECUTE FUNCTION payments_reject_rewrite('a refund is a financial record');
CREATE TRIGGER refunds_no_truncate BEFORE TRUNCATE ON refunds
  FOR EACH STATEMENT EXECUTE FUNCTION payments_reject_rewrite('a refund is a financial record');

-- A refund reference in the ledger is used only by the refund that names it (at COMMIT).
CREATE FUNCTION transactions_refund_has_row() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, public, pg_temp AS $$
BEGIN
  IF NOT EXISTS (SELECT 1 FROM refunds r WHERE r.ledger_transaction_id = NEW.id AND r.status = 'SUCCEEDED') THEN
    RAISE EXCEPTION 'ledger transaction % (%) uses a refund reference without a SUCCEEDED refund naming it',
      NEW.id, NEW.reference
      USING ERRCODE = 'integrity_constraint_violation';
  END IF;
  RETURN NULL;
END $$;
CREATE CONSTRAINT TRIGGER transactions_refund_has_row AFTER INSERT ON transactions
  DEFERRABLE INITIALLY DEFERRED FOR EACH ROW
  WHEN (NEW.reference LIKE 'payment:%:refund:%')
  EXECUTE FUNCTION transactions_refund_has_row();

GRANT SELECT, INSERT, UPDATE ON refunds TO pay_app;

ALTER TABLE acquirer_sim.operations DROP CONSTRAINT operations_operation_check;
ALTER TABLE acquirer_sim.operations ADD CONSTRAINT operations_operation_check
  CHECK (operation IN ('authorize', 'capture', 'void', 'refund'));
ALTER TABLE acquirer_sim.operations DROP CONSTRAINT operations_decline_code_check;
ALTER TABLE acquirer_sim.operations ADD CONSTRAINT operations_decline_code_check
  CHECK (decline_code IN ('card_declined', 'insufficient_funds', 'authorization_voided', 'authorization_captured',
                          'refund_declined'));
