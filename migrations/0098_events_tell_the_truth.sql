-- A fifth outside re-test (2026-12-05), as `pay_app`, after 0096/0097:
--
--   * HIGH: the outbox guards (0093, 0094, 0097) checked an event's type, version and state, never
--     what it says about the money: a `payment_settled` (or a `payment_expiring`) of merchant A's
--     payment naming merchant B and 990,000.00 USD was accepted; the webhooks consumer picks the
--     endpoints by the event's `merchant_id`, so B received it signed with B's own secret, and the
--     settlement projection credited B. Now, by COMMIT, what an event of a payment says is what
--     the database says (`outbox_events_truthful`): its `type` and `payment_id` the row's, its
--     `merchant_id`, `currency` and `amount_minor` the payment's (a refund event's: the refund's), a
--     settlement's fee, net and captured amount the settlement row's, a refund's fee returned the
--     refund's, a failure's code the row's, a warning's version the payment's (its expiry: 0097).
--     A member the event lacks is not invented here: the consumers' decoder refuses an event
--     without one it needs (a settlement without its split included) and parks it, so it credits
--     no one; a refund's absent `fee_returned_minor` reads as 0 and so must be 0.
--   * MEDIUM: `pay_app`'s re-queue columns on `webhook_deliveries` (0096) let it mark a delivery
--     `delivered` that was never sent, `failed`, or pending at `infinity`. As `pay_app`, an UPDATE
--     of a delivery must now be the re-queue: pending, now, counts reset
--     (`webhook_deliveries_app_requeue_only`).
--   * MEDIUM: `pay_app` could move an endpoint to another merchant (`merchant_id`) or bring a
--     deleted one back (`deleted_at = NULL`): an endpoint's id and merchant never change, and a
--     deletion is final, for every role (`webhook_endpoints_fixed`).
--   * LOW: `pay_consumer` (the sender marks endpoints failing or disabled) could enable an endpoint
--     the merchant or the sender disabled: only the API enables (`webhook_endpoints_fixed`).
--
-- A code review of 0096/0097 found, fixed here too:
--   * the sender reseals stored signing secrets at start (SecretSealing.ts) and now runs as
--     `pay_consumer`, which could not write them: UPDATE of the `secret` column only;
--   * 0097 compared the warning row's `xmin` with the transaction's id: a warning inserted under a
--     savepoint has its subtransaction's xmin and was refused. The row now carries the top-level
--     transaction's id (`warned_xact_id`, set by the database, never by the writer).
--
-- Errors: SQLSTATE 23000 (integrity_constraint_violation).

-- The events say what the rows say. A member an event carries must be true; a member it lacks is
-- the consumers' business (their decoder refuses an event without one it needs, and parks it:
-- docs/consumers.md), except a refund's `fee_returned_minor`, which a consumer reads as 0 when absent.
CREATE FUNCTION jsonb_text_member_differs(p_object jsonb, p_key text, p_expected text) RETURNS boolean
LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, public, pg_temp
AS $$ SELECT p_object ? p_key AND (jsonb_typeof(p_object -> p_key) IS DISTINCT FROM 'string' OR p_object ->> p_key IS DISTINCT FROM p_expected) $$;

CREATE FUNCTION jsonb_number_member_differs(p_object jsonb, p_key text, p_expected numeric) RETURNS boolean
LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, public, pg_temp
AS $$ SELECT p_object ? p_key AND (jsonb_typeof(p_object -> p_key) IS DISTINCT FROM 'number'
                                  OR (CASE WHEN jsonb_typeof(p_object -> p_key) = 'number' THEN (p_object ->> p_key)::numeric END) IS DISTINCT FROM p_expected) $$;

CREATE FUNCTION outbox_events_truthful() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, public, pg_temp AS $$
DECLARE
  v_payment payments%ROWTYPE;
  v_settlement payment_settlements%ROWTYPE;
  v_refund refunds%ROWTYPE;
  v_p jsonb := NEW.payload;
  v_wrong text;
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
  IF v_wrong IS NULL AND NEW.event_type LIKE 'payment\_%' THEN
    v_wrong := CASE
      WHEN jsonb_number_member_differs(v_p, 'amount_minor', v_payment.amount_minor) THEN 'amount_minor'
      WHEN NEW.event_type = 'payment_failed' AND jsonb_text_member_differs(v_p, 'failure_code', v_payment.failure_code) THEN 'failure_code'
      WHEN NEW.event_type = 'payment_expiring' AND jsonb_number_member_differs(v_p, 'version', v_payment.version) THEN 'version'
    END;
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
CREATE CONSTRAINT TRIGGER outbox_events_truthful AFTER INSERT ON outbox_events
  DEFERRABLE INITIALLY DEFERRED
  FOR EACH ROW WHEN (NEW.aggregate_type = 'payment')
  EXECUTE FUNCTION outbox_events_truthful();

-- pay_app re-queues a delivery, nothing else.
CREATE FUNCTION webhook_deliveries_app_requeue_only() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, public, pg_temp AS $$
BEGIN
  IF current_user = 'pay_app' AND (
       NEW.status <> 'pending' OR NEW.finished_at IS NOT NULL OR NEW.failed_reason IS NOT NULL
       OR NEW.round_attempt_count <> 0 OR NEW.next_attempt_at > clock_timestamp()) THEN
    RAISE EXCEPTION 'webhook delivery %: the application may only send it again now (pending, due, counts reset)', OLD.id
      USING ERRCODE = 'integrity_constraint_violation';
  END IF;
  RETURN NEW;
END $$;
CREATE TRIGGER webhook_deliveries_app_requeue_only BEFORE UPDATE ON webhook_deliveries
  FOR EACH ROW EXECUTE FUNCTION webhook_deliveries_app_requeue_only();

-- An endpoint's identity and owner never change, a deletion is final, and only the API enables.
CREATE FUNCTION webhook_endpoints_fixed() RETURNS trigger
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
  RETURN NEW;
END $$;
CREATE TRIGGER webhook_endpoints_fixed BEFORE UPDATE ON webhook_endpoints
  FOR EACH ROW EXECUTE FUNCTION webhook_endpoints_fixed();

-- The sender reseals stored secrets under the current key (SecretSealing.ts): that column only.
GRANT UPDATE (secret) ON webhook_endpoint_secrets TO pay_consumer;

-- 0097's "written by this transaction", savepoints included: the top-level transaction's id, set here.
ALTER TABLE payment_expiry_warnings ADD COLUMN warned_xact_id xid8;
CREATE FUNCTION payment_expiry_warnings_stamp() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, public, pg_temp AS $$
BEGIN
  NEW.warned_xact_id := pg_current_xact_id();
  RETURN NEW;
END $$;
CREATE TRIGGER payment_expiry_warnings_stamp BEFORE INSERT ON payment_expiry_warnings
  FOR EACH ROW EXECUTE FUNCTION payment_expiry_warnings_stamp();

CREATE OR REPLACE FUNCTION outbox_events_expiring_has_warning() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, public, pg_temp AS $$
DECLARE
  v_expires_at timestamptz;
BEGIN
  BEGIN
    v_expires_at := (NEW.payload ->> 'authorization_expires_at')::timestamptz;
  EXCEPTION WHEN invalid_datetime_format OR datetime_field_overflow OR invalid_text_representation THEN
    v_expires_at := NULL;
  END;
  IF NOT EXISTS (
    SELECT 1 FROM payment_expiry_warnings w
    WHERE w.payment_id = NEW.aggregate_id AND w.warned_xact_id = pg_current_xact_id()
      AND w.authorization_expires_at = v_expires_at
  ) THEN
    RAISE EXCEPTION 'outbox event % (payment_expiring) of payment % has no warning written with it naming its authorization_expires_at %',
      NEW.id, NEW.aggregate_id, NEW.payload -> 'authorization_expires_at'
      USING ERRCODE = 'integrity_constraint_violation',
            HINT = 'the expiry job writes the warning row and its event in one transaction (ExpiryWarning.ts)';
  END IF;
  IF EXISTS (
    SELECT 1 FROM outbox_events o
    WHERE o.aggregate_type = 'payment' AND o.aggregate_id = NEW.aggregate_id AND o.event_type = 'payment_expiring'
      AND o.id <> NEW.id
  ) THEN
    RAISE EXCEPTION 'outbox event % (payment_expiring) of payment %: the payment''s expiry was announced already', NEW.id, NEW.aggregate_id
      USING ERRCODE = 'integrity_constraint_violation';
  END IF;
  RETURN NULL;
END $$;
