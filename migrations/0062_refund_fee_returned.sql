-- Per-merchant "fee returned on refund" (issue 19). By default the platform KEEPS its fee on a
-- refund (0047): the merchant's payable bears the whole refund. A merchant whose setting says
-- `fee_returned` gets back the refund's proportional share of the payment's fee, in the SAME
-- reversal posting (still one balanced transaction per refund):
--   debit  merchant payable      refund − fee returned
--   debit  platform fees         fee returned
--   credit acquirer receivable   refund
-- The rounding rule (docs/refunds.md): cumulative, rounded down. With F the payment's fee, C its
-- captured amount and R the sum of its SUCCEEDED refunds before this one, a refund of A returns
--   floor(F × (R + A) / C) − floor(F × R / C)
-- so the fee returned after refunds totalling T is exactly floor(F × T / C): never more than the
-- proportional fee, and the whole fee once the whole capture is refunded, whatever the split. All
-- in integer minor units of the payment's currency (JPY, KWD alike: nothing to scale).
-- Enforced here as in the code (RefundFees.ts): the completion holds the payment's row lock, so R
-- is stable while this trigger reads it.
-- Errors: SQLSTATE 23000 (integrity_constraint_violation), 23514 from the CHECK.

CREATE TABLE merchant_refund_settings (
  merchant_id text PRIMARY KEY REFERENCES merchants (id),
  fee_returned boolean NOT NULL,
  updated_at timestamptz NOT NULL DEFAULT now()
);
GRANT SELECT, INSERT, UPDATE ON merchant_refund_settings TO pay_app;

ALTER TABLE refunds ADD COLUMN fee_returned_minor bigint NOT NULL DEFAULT 0;
ALTER TABLE refunds ADD CONSTRAINT refunds_fee_returned_bounds CHECK (
  fee_returned_minor >= 0 AND fee_returned_minor <= amount_minor AND (status = 'SUCCEEDED' OR fee_returned_minor = 0));

CREATE FUNCTION refunds_guard_fee_returned() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, public, pg_temp AS $$
DECLARE
  v_returned boolean;
  v_fee bigint;
  v_captured bigint;
  v_before bigint;
  v_expected bigint;
  v_posted bigint;
BEGIN
  SELECT coalesce((SELECT s.fee_returned FROM merchant_refund_settings s WHERE s.merchant_id = NEW.merchant_id), false)
    INTO v_returned;
  SELECT ps.fee_minor, p.captured_amount_minor INTO v_fee, v_captured
  FROM payments p JOIN payment_settlements ps ON ps.payment_id = p.id WHERE p.id = NEW.payment_id;
  SELECT coalesce(sum(r.amount_minor), 0) INTO v_before
  FROM refunds r WHERE r.payment_id = NEW.payment_id AND r.status = 'SUCCEEDED' AND r.id <> NEW.id;
  v_expected := CASE WHEN v_returned AND v_captured > 0
    -- numeric: fee × amount can exceed bigint (both up to 10^11); div() truncates, = floor here (all ≥ 0).
    THEN (div(v_fee::numeric * (v_before + NEW.amount_minor), v_captured) - div(v_fee::numeric * v_before, v_captured))::bigint
    ELSE 0 END;
  SELECT coalesce(sum(e.amount_minor), 0) INTO v_posted
  FROM ledger_entries e JOIN accounts a ON a.id = e.account_id
  WHERE e.transaction_id = NEW.ledger_transaction_id AND e.side = 'debit' AND a.code = 'platform:fees:' || NEW.currency;
  IF NEW.fee_returned_minor IS DISTINCT FROM v_expected OR v_posted IS DISTINCT FROM NEW.fee_returned_minor THEN
    RAISE EXCEPTION 'refund % returns fee % (posted %), the rule says % (fee %, captured %, refunded before %, fee returned: %)',
      NEW.id, NEW.fee_returned_minor, v_posted, v_expected, v_fee, v_captured, v_before, v_returned
      USING ERRCODE = 'integrity_constraint_violation';
  END IF;
  RETURN NEW;
END $$;
CREATE TRIGGER refunds_guard_fee_returned BEFORE UPDATE ON refunds
  FOR EACH ROW WHEN (NEW.status = 'SUCCEEDED' AND OLD.status = 'PENDING')
  EXECUTE FUNCTION refunds_guard_fee_returned();
