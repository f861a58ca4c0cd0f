-- A re-test of 0098 (2026-12-05), as `pay_app`, with a webhook receiver of its own: false facts
-- still reached a merchant's own endpoint, signed, through members 0098 did not compare:
--   * a `payment_settled` without fee and net but with `captured_amount_minor` 5000 for a capture of
--     1000 (or without it: a consumer reads the whole amount); the projection parks it, the
--     merchant's endpoint does not: the captured amount is now the payment's own, whatever else
--     the event carries;
--   * `occurred_at` in 2019 or 2031, `previous_status` CREATED for AUTHORIZED, a refund's `reason`
--     changed, a `failure_message` changed: `occurred_at` is now the instant of the history row of
--     that version (a refund's: its row's `updated_at`; to the millisecond: the event and the row
--     are written from one instant; a warning's, the job's clock, is not checked), `previous_status`
--     the history row's `from_status`, `reason` and `failure_message` the rows';
--   * the sender (`pay_consumer`) could relabel an endpoint the merchant disabled as failing (its
--     events then queued for 30 days, all sent when the merchant enabled it again): the sender
--     changes nothing of a disabled endpoint.
-- Errors: SQLSTATE 23000 (integrity_constraint_violation).

CREATE OR REPLACE FUNCTION outbox_events_truthful() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, public, pg_temp AS $$
DECLARE
  v_payment payments%ROWTYPE;
  v_settlement payment_settlements%ROWTYPE;
  v_refund refunds%ROWTYPE;
  v_p jsonb := NEW.payload;
  v_wrong text;
  v_from_status text;
  v_at timestamptz;
  v_history_at timestamptz;
BEGIN
  SELECT * INTO v_payment FROM payments WHERE id = NEW.aggregate_id;
  IF NOT FOUND THEN
    RETURN NULL; -- an event of no payment is refused by 0095
  END IF;
  v_wrong := CASE
    WHEN jsonb_text_member_differs(v_p, 'type', NEW.event_type) THEN 'type'
    WHEN jsonb_text_member_differs(v_p, 'payment_id', NEW.aggregate_id) THEN 'payment_id'
    WHEN jsonb_text_member_differs(v_p, 'merchant_id', v_payment.merchant_id) THEN 'merchant_id'
    WHEN jsonb_text_member_differs(v_p, 'currency', v_payment.currency::text) THEN 'currency'
  END;
  -- When it happened: a payment's change at its history row's instant, a refund's at its row's
  -- (both written from the same instant, to the millisecond); a warning's is the job's clock.
  IF v_wrong IS NULL AND v_p ? 'occurred_at' AND NEW.event_type <> 'payment_expiring' THEN
    BEGIN
      v_at := CASE WHEN jsonb_typeof(v_p -> 'occurred_at') = 'string' THEN (v_p ->> 'occurred_at')::timestamptz END;
    EXCEPTION WHEN invalid_datetime_format OR datetime_field_overflow OR invalid_text_representation THEN
      v_at := NULL;
    END;
    IF NEW.event_type LIKE 'payment\_%' THEN
      SELECT h.occurred_at INTO v_history_at FROM payment_status_history h
      WHERE h.payment_id = NEW.aggregate_id
        AND h.version = CASE WHEN jsonb_typeof(v_p -> 'version') = 'number' THEN (v_p ->> 'version')::numeric END;
    ELSE
      SELECT r.updated_at INTO v_history_at FROM refunds r WHERE r.id = v_p ->> 'refund_id' AND r.payment_id = NEW.aggregate_id;
    END IF;
    IF v_at IS NULL OR date_trunc('milliseconds', v_at) IS DISTINCT FROM date_trunc('milliseconds', v_history_at) THEN
      v_wrong := 'occurred_at';
    END IF;
  END IF;
  IF v_wrong IS NULL AND NEW.event_type LIKE 'payment\_%' THEN
    v_wrong := CASE
      WHEN jsonb_number_member_differs(v_p, 'amount_minor', v_payment.amount_minor) THEN 'amount_minor'
      WHEN NEW.event_type = 'payment_failed' AND jsonb_text_member_differs(v_p, 'failure_code', v_payment.failure_code) THEN 'failure_code'
      WHEN NEW.event_type = 'payment_failed' AND jsonb_text_member_differs(v_p, 'failure_message', v_payment.failure_message) THEN 'failure_message'
      -- What was captured: the settled payment's own amount; absent, a consumer reads the whole amount.
      WHEN NEW.event_type = 'payment_settled' AND v_payment.captured_amount_minor IS NOT NULL AND (
        CASE WHEN v_p ? 'captured_amount_minor' THEN jsonb_number_member_differs(v_p, 'captured_amount_minor', v_payment.captured_amount_minor)
             ELSE v_payment.captured_amount_minor <> v_payment.amount_minor END) THEN 'captured_amount_minor'
      WHEN NEW.event_type = 'payment_expiring' AND jsonb_number_member_differs(v_p, 'version', v_payment.version) THEN 'version'
    END;
    IF v_wrong IS NULL AND v_p ? 'previous_status' THEN
      SELECT h.from_status INTO v_from_status FROM payment_status_history h
      WHERE h.payment_id = NEW.aggregate_id
        AND h.version = CASE WHEN jsonb_typeof(v_p -> 'version') = 'number' THEN (v_p ->> 'version')::numeric END;
      IF jsonb_text_member_differs(v_p, 'previous_status', v_from_status) THEN
        v_wrong := 'previous_status';
      END IF;
    END IF;
    -- A settlement's split: without fee and net the consumers park the event (it moves no money).
    IF v_wrong IS NULL AND NEW.event_type = 'payment_settled' AND (v_p ? 'fee_minor' OR v_p ? 'net_minor') THEN
      SELECT * INTO v_settlement FROM payment_settlements WHERE payment_id = NEW.aggregate_id;
      v_wrong := CASE
        WHEN NOT FOUND THEN 'split (the payment has no settlement)'
        WHEN jsonb_number_member_differs(v_p, 'fee_minor', v_settlement.fee_minor) THEN 'fee_minor'
        WHEN jsonb_number_member_differs(v_p, 'net_minor', v_settlement.net_minor) THEN 'net_minor'
        WHEN jsonb_number_member_differs(v_p, 'captured_amount_minor', v_settlement.gross_minor) THEN 'captured_amount_minor'
      END;
    END IF;
  ELSIF v_wrong IS NULL AND NEW.event_type LIKE 'refund\_%' AND v_p ? 'refund_id' THEN
    SELECT * INTO v_refund FROM refunds WHERE id = v_p ->> 'refund_id' AND payment_id = NEW.aggregate_id;
    v_wrong := CASE
      WHEN NOT FOUND THEN 'refund_id'
      WHEN jsonb_text_member_differs(v_p, 'merchant_id', v_refund.merchant_id) THEN 'merchant_id'
      WHEN jsonb_text_member_differs(v_p, 'currency', v_refund.currency::text) THEN 'currency'
      WHEN jsonb_number_member_differs(v_p, 'amount_minor', v_refund.amount_minor) THEN 'amount_minor'
      WHEN NEW.event_type = 'refund_succeeded' AND coalesce(v_refund.fee_returned_minor, 0) <> 0 AND NOT v_p ? 'fee_returned_minor' THEN 'fee_returned_minor'
      WHEN NEW.event_type = 'refund_succeeded' AND jsonb_number_member_differs(v_p, 'fee_returned_minor', coalesce(v_refund.fee_returned_minor, 0)) THEN 'fee_returned_minor'
      WHEN NEW.event_type = 'refund_failed' AND jsonb_text_member_differs(v_p, 'failure_code', v_refund.failure_code) THEN 'failure_code'
      WHEN NEW.event_type = 'refund_failed' AND jsonb_text_member_differs(v_p, 'failure_message', v_refund.failure_message) THEN 'failure_message'
      WHEN v_p ? 'reason' AND (v_p -> 'reason') IS DISTINCT FROM coalesce(to_jsonb(v_refund.reason), 'null'::jsonb) THEN 'reason'
    END;
  END IF;
  IF v_wrong IS NOT NULL THEN
    RAISE EXCEPTION 'outbox event % (%) of payment %: its % is not what the database says',
      NEW.id, NEW.event_type, NEW.aggregate_id, v_wrong
      USING ERRCODE = 'integrity_constraint_violation',
            HINT = 'an event is written from the rows it announces, in their transaction (OutboxWriter)';
  END IF;
  RETURN NULL;
END $$;

CREATE OR REPLACE FUNCTION webhook_endpoints_fixed() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, public, pg_temp AS $$
BEGIN
  IF NEW.id IS DISTINCT FROM OLD.id OR NEW.merchant_id IS DISTINCT FROM OLD.merchant_id THEN
    RAISE EXCEPTION 'webhook endpoint %: its id and merchant never change', OLD.id
      USING ERRCODE = 'integrity_constraint_violation';
  END IF;
  IF OLD.deleted_at IS NOT NULL AND NEW.deleted_at IS DISTINCT FROM OLD.deleted_at THEN
    RAISE EXCEPTION 'webhook endpoint %: deleted, for good', OLD.id
      USING ERRCODE = 'integrity_constraint_violation';
  END IF;
  IF current_user = 'pay_consumer' AND NEW.status = 'enabled' AND OLD.status IS DISTINCT FROM 'enabled' THEN
    RAISE EXCEPTION 'webhook endpoint %: the sender disables an endpoint, it never enables one', OLD.id
      USING ERRCODE = 'integrity_constraint_violation';
  END IF;
  IF current_user = 'pay_consumer' AND OLD.status = 'disabled'
     AND (NEW.status, NEW.disabled_reason, NEW.disabled_at) IS DISTINCT FROM (OLD.status, OLD.disabled_reason, OLD.disabled_at) THEN
    RAISE EXCEPTION 'webhook endpoint %: disabled (%); the sender changes nothing of it', OLD.id, OLD.disabled_reason
      USING ERRCODE = 'integrity_constraint_violation';
  END IF;
  RETURN NEW;
END $$;
