-- Per-merchant "fee returned on refund" (issue 19). By default the platform KEEPS its fee on a
-- refund (0047): the merchant's payable bears the whole refund. A merchant whose setting says
-- `fee_returned` gets back the refund's proportional share of the payment's fee, in the SAME
-- reversal posting (still one balanced transaction per refund):
--   debit  merchant payable      refund − fee returned
--   debit  platform fees         fee returned
--   credit acquirer receivable   refund
-- The share is decided when the refund is reserved (under the payment's row lock, as the cap is),
-- stored on the PENDING row, and posted if the refund succeeds; the reservation's balance check
-- then knows exactly what the merchant's payable will bear. The rounding rule (docs/refunds.md):
-- cumulative, rounded down. With F the payment's fee, C its captured amount and R the sum of its
-- refunds not FAILED reserved before this one, a refund of A returns
--   floor(F × (R + A) / C) − floor(F × R / C)
-- so, while no refund fails, the fee returned after refunds totalling T is exactly
-- floor(F × T / C): never above the proportional fee, and the whole fee once the whole capture is
-- refunded, whatever the split. A refund that FAILS gives its share back to nobody, so the others'
-- shares stay what they were: the total returned never exceeds F. All in integer minor units of the
-- payment's currency (JPY, KWD alike: nothing to scale); numeric in SQL (F × A may pass bigint).
-- Errors: SQLSTATE 23000 (integrity_constraint_violation), 23514 from the CHECK.

CREATE TABLE merchant_refund_settings (
  merchant_id text PRIMARY KEY REFERENCES merchants (id),
  fee_returned boolean NOT NULL,
  updated_at timestamptz NOT NULL DEFAULT now()
);
GRANT SELECT, INSERT, UPDATE ON merchant_refund_settings TO pay_app;

ALTER TABLE refunds ADD COLUMN fee_returned_minor bigint NOT NULL DEFAULT 0;
ALTER TABLE refunds ADD CONSTRAINT refunds_fee_returned_bounds CHECK (fee_returned_minor >= 0 AND fee_returned_minor <= amount_minor);

-- At INSERT (after refunds_guard_insert, which locked the payment row and checked the cap): the
-- share follows the rule, and is 0 unless the merchant's fee is returned.
CREATE FUNCTION refunds_insert_fee_returned() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, public, pg_temp AS $$
DECLARE
  v_returned boolean;
  v_fee bigint;
  v_captured bigint;
  v_before bigint;
  v_expected bigint;
BEGIN
  SELECT coalesce((SELECT s.fee_returned FROM merchant_refund_settings s WHERE s.merchant_id = NEW.merchant_id), false)
    INTO v_returned;
  SELECT ps.fee_minor, p.captured_amount_minor INTO v_fee, v_captured
  FROM payments p JOIN payment_settlements ps ON ps.payment_id = p.id WHERE p.id = NEW.payment_id;
  SELECT coalesce(sum(r.amount_minor), 0) INTO v_before
  FROM refunds r WHERE r.payment_id = NEW.payment_id AND r.status <> 'FAILED';
  v_expected := CASE WHEN v_returned AND v_captured > 0
    -- div() truncates, = floor here (all >= 0).
    THEN (div(v_fee::numeric * (v_before + NEW.amount_minor), v_captured) - div(v_fee::numeric * v_before, v_captured))::bigint
    ELSE 0 END;
  IF NEW.fee_returned_minor IS DISTINCT FROM v_expected THEN
    RAISE EXCEPTION 'refund % returns fee %, the rule says % (fee %, captured %, refunded before %, fee returned: %)',
      NEW.id, NEW.fee_returned_minor, v_expected, v_fee, v_captured, v_before, v_returned
      USING ERRCODE = 'integrity_constraint_violation';
  END IF;
  RETURN NEW;
END $$;
CREATE TRIGGER refunds_insert_fee_returned BEFORE INSERT ON refunds
  FOR EACH ROW EXECUTE FUNCTION refunds_insert_fee_returned();

-- At completion: the share never changes, and a SUCCEEDED refund's posting debits exactly it to
-- the platform's fees (the rest of the refund to the merchant's payable: 0047 checks the total).
CREATE FUNCTION refunds_guard_fee_returned() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, public, pg_temp AS $$
DECLARE
  v_posted bigint;
BEGIN
  IF NEW.fee_returned_minor IS DISTINCT FROM OLD.fee_returned_minor THEN
    RAISE EXCEPTION 'refund %: fee_returned_minor is decided at reservation and never changed (% -> %)',
      OLD.id, OLD.fee_returned_minor, NEW.fee_returned_minor
      USING ERRCODE = 'integrity_constraint_violation';
  END IF;
  IF NEW.status = 'SUCCEEDED' THEN
    SELECT coalesce(sum(e.amount_minor), 0) INTO v_posted
    FROM ledger_entries e JOIN accounts a ON a.id = e.account_id
    WHERE e.transaction_id = NEW.ledger_transaction_id AND e.side = 'debit' AND a.code = 'platform:fees:' || NEW.currency;
    IF v_posted IS DISTINCT FROM NEW.fee_returned_minor THEN
      RAISE EXCEPTION 'refund % returns fee % but its posting debits % to platform:fees:%', NEW.id, NEW.fee_returned_minor, v_posted, NEW.currency
        USING ERRCODE = 'integrity_constraint_violation';
    END IF;
  END IF;
  RETURN NEW;
END $$;
CREATE TRIGGER refunds_guard_fee_returned BEFORE UPDATE ON refunds
  FOR EACH ROW EXECUTE FUNCTION refunds_guard_fee_returned();
