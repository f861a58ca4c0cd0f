-- The fee a refund returns is capped at what is left of the payment's fee (issue 19's rule,
-- docs/refunds.md). 0062's rule counts the refunds not FAILED as "before"; a share decided while a
-- refund was PENDING, that refund FAILED later, left the next share computed on another base: fee
-- 35, captured 1,000, 1 pending (share 0), 999 returning 35, the 1 failed, a new 1 returned
-- 35 - floor(35 * 999 / 1,000) = 1 more: 36 of a fee of 35 (outside re-test, 2026-12-05). The
-- expected share is now the rule's, but at most the fee less the shares of the refunds not FAILED;
-- the code's `proportionalFeeReturned` (packages/settlement/src/RefundFees.ts) computes the same.
CREATE OR REPLACE FUNCTION refunds_insert_fee_returned() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, public, pg_temp AS $$
DECLARE
  v_returned boolean;
  v_fee bigint;
  v_captured bigint;
  v_before bigint;
  v_returned_before bigint;
  v_expected bigint;
BEGIN
  SELECT coalesce((SELECT s.fee_returned FROM merchant_refund_settings s WHERE s.merchant_id = NEW.merchant_id), false)
    INTO v_returned;
  SELECT ps.fee_minor, p.captured_amount_minor INTO v_fee, v_captured
  FROM payments p JOIN payment_settlements ps ON ps.payment_id = p.id WHERE p.id = NEW.payment_id;
  SELECT coalesce(sum(r.amount_minor), 0), coalesce(sum(r.fee_returned_minor), 0) INTO v_before, v_returned_before
  FROM refunds r WHERE r.payment_id = NEW.payment_id AND r.status <> 'FAILED';
  v_expected := CASE WHEN v_returned AND v_captured > 0
    -- div() truncates, = floor here (all >= 0).
    THEN least(
      (div(v_fee::numeric * (v_before + NEW.amount_minor), v_captured) - div(v_fee::numeric * v_before, v_captured))::bigint,
      greatest(v_fee - v_returned_before, 0))
    ELSE 0 END;
  IF NEW.fee_returned_minor IS DISTINCT FROM v_expected THEN
    RAISE EXCEPTION 'refund % returns fee %, the rule says % (fee %, captured %, refunded before %, returned before %, fee returned: %)',
      NEW.id, NEW.fee_returned_minor, v_expected, v_fee, v_captured, v_before, v_returned_before, v_returned
      USING ERRCODE = 'integrity_constraint_violation';
  END IF;
  RETURN NEW;
END $$;
