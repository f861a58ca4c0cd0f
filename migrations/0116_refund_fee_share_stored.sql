-- Each refund stores its share of the payment's fee under the proportional rule, whether the
-- merchant's fee is returned or kept (`fee_share_minor`), and the rule counts the shares already
-- taken instead of re-deriving them from the amounts (issue 19's rule, docs/refunds.md).
--
-- Why: 0062's rule, floor(F × (R + A) / C) − floor(F × R / C) with R the refunds not FAILED, assumes
-- the earlier refunds' shares are exactly floor(F × R / C). A share decided while a refund was
-- PENDING, that refund FAILED later, breaks it both ways: 0115 capped the side that returned more
-- than the fee (36 of 35); the other left a full refund 1 unit short (outside re-test: fee 35,
-- captured 1,000, refunds 20, 9 pending (share 1), 20; the 9 failed; the last 960 returned 34, the
-- merchant's payable debited 1 too much). The rule that corrects both ways, "the cumulative target
-- less what was taken", must count as taken the shares of refunds reserved while the fee was kept
-- (else a later refund under "returned" would give those back, which the per-refund setting
-- forbids): so each refund keeps its would-be share, and
--   share = clamp(floor(F × (T + A) / C) − S, 0, A)
--   fee_returned = share when the merchant's fee is returned, else 0
-- with T and S the amounts and the shares of the payment's refunds not FAILED. Without failures it
-- is 0062's rule (the shares telescope); after refunds totalling the whole capture, S = F: the
-- whole fee, once. The code (`proportionalFeeShare`, packages/settlement/src/RefundFees.ts)
-- computes the same and passes both; this trigger recomputes and refuses a difference. A raw INSERT
-- that leaves `fee_share_minor` out gets the rule's value (a derived figure: what is stored is the
-- rule's either way).

ALTER TABLE refunds ADD COLUMN fee_share_minor bigint;

-- Existing refunds, replayed in the order they were reserved, each against the refunds of its
-- payment that were not FAILED at its reservation (a FAILED one counts until its `updated_at`): a
-- share that was returned is what it was; a refund that returned 0 of a merchant whose fee is
-- returned now was most likely reserved under "returned", where 0 was its share (an outside
-- re-test of a first form, which gave it the new rule's share as if kept, found the rest of such a
-- capture returning 34 of 35); any other (kept) gets the new rule's. A merchant whose setting
-- changed since cannot be told apart: its kept refunds count as returned 0. The guards refuse any
-- update of a finished refund, so they are off for this block (inside the migration's transaction:
-- nobody sees them off).
ALTER TABLE refunds DISABLE TRIGGER refunds_guard_update;
ALTER TABLE refunds DISABLE TRIGGER refunds_guard_fee_returned;
DO $$
DECLARE
  r record;
  v_before bigint;
  v_shares_before bigint;
BEGIN
  FOR r IN
    SELECT f.id, f.payment_id, f.amount_minor, f.fee_returned_minor, f.created_at, ps.fee_minor AS fee, p.captured_amount_minor AS captured,
           coalesce(s.fee_returned, false) AS returned_now
    FROM refunds f JOIN payments p ON p.id = f.payment_id LEFT JOIN payment_settlements ps ON ps.payment_id = f.payment_id
    LEFT JOIN merchant_refund_settings s ON s.merchant_id = f.merchant_id
    ORDER BY f.payment_id, f.created_at, f.id
  LOOP
    SELECT coalesce(sum(o.amount_minor), 0), coalesce(sum(o.fee_share_minor), 0) INTO v_before, v_shares_before
    FROM refunds o
    WHERE o.payment_id = r.payment_id AND o.fee_share_minor IS NOT NULL
      AND NOT (o.status = 'FAILED' AND o.updated_at <= r.created_at);
    UPDATE refunds SET fee_share_minor = CASE
      WHEN r.fee_returned_minor > 0 OR r.returned_now THEN r.fee_returned_minor
      WHEN coalesce(r.captured, 0) > 0 AND r.fee IS NOT NULL
        THEN greatest(least((div(r.fee::numeric * (v_before + r.amount_minor), r.captured) - v_shares_before)::bigint, r.amount_minor), 0)
      ELSE 0 END
    WHERE id = r.id;
  END LOOP;
END $$;
ALTER TABLE refunds ENABLE TRIGGER refunds_guard_update;
ALTER TABLE refunds ENABLE TRIGGER refunds_guard_fee_returned;

ALTER TABLE refunds ALTER COLUMN fee_share_minor SET NOT NULL;
ALTER TABLE refunds ADD CONSTRAINT refunds_fee_share_bounds
  CHECK (fee_share_minor >= 0 AND fee_share_minor <= amount_minor AND fee_returned_minor IN (0, fee_share_minor));

CREATE OR REPLACE FUNCTION refunds_insert_fee_returned() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, public, pg_temp AS $$
DECLARE
  v_returned boolean;
  v_fee bigint;
  v_captured bigint;
  v_before bigint;
  v_shares_before bigint;
  v_share bigint;
  v_expected bigint;
BEGIN
  SELECT coalesce((SELECT s.fee_returned FROM merchant_refund_settings s WHERE s.merchant_id = NEW.merchant_id), false)
    INTO v_returned;
  SELECT ps.fee_minor, p.captured_amount_minor INTO v_fee, v_captured
  FROM payments p JOIN payment_settlements ps ON ps.payment_id = p.id WHERE p.id = NEW.payment_id;
  SELECT coalesce(sum(r.amount_minor), 0), coalesce(sum(r.fee_share_minor), 0) INTO v_before, v_shares_before
  FROM refunds r WHERE r.payment_id = NEW.payment_id AND r.status <> 'FAILED';
  v_share := CASE WHEN coalesce(v_captured, 0) > 0 AND v_fee IS NOT NULL
    -- div() truncates, = floor here (all >= 0).
    THEN greatest(least((div(v_fee::numeric * (v_before + NEW.amount_minor), v_captured) - v_shares_before)::bigint, NEW.amount_minor), 0)
    ELSE 0 END;
  IF NEW.fee_share_minor IS NULL THEN
    NEW.fee_share_minor := v_share;
  END IF;
  v_expected := CASE WHEN v_returned THEN v_share ELSE 0 END;
  IF NEW.fee_share_minor IS DISTINCT FROM v_share OR NEW.fee_returned_minor IS DISTINCT FROM v_expected THEN
    RAISE EXCEPTION 'refund % returns fee % of share %, the rule says % of share % (fee %, captured %, refunded before %, shares before %, fee returned: %)',
      NEW.id, NEW.fee_returned_minor, NEW.fee_share_minor, v_expected, v_share, v_fee, v_captured, v_before, v_shares_before, v_returned
      USING ERRCODE = 'integrity_constraint_violation';
  END IF;
  RETURN NEW;
END $$;

-- The share, like the fee returned, is decided at reservation and never changes.
CREATE OR REPLACE FUNCTION refunds_guard_fee_returned() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, public, pg_temp AS $$
DECLARE
  v_posted bigint;
BEGIN
  IF NEW.fee_returned_minor IS DISTINCT FROM OLD.fee_returned_minor OR NEW.fee_share_minor IS DISTINCT FROM OLD.fee_share_minor THEN
    RAISE EXCEPTION 'refund %: fee_returned_minor and fee_share_minor are decided at reservation and never changed (% -> %, % -> %)',
      OLD.id, OLD.fee_returned_minor, NEW.fee_returned_minor, OLD.fee_share_minor, NEW.fee_share_minor
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
