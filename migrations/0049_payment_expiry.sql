-- Authorization expiry (issue 19): an authorization holds the payer's funds until
-- `authorization_expires_at` (set by authorize: 7 days by default). After it, a capture is refused
-- (the settle use case, typed `authorization_expired`, before the acquirer is asked) and the expiry
-- job (packages/payments/src/PaymentExpiry.ts) releases the authorization at the acquirer (a void,
-- which excludes a capture of the same authorization) and moves the payment AUTHORIZED -> EXPIRED,
-- a terminal status with its `payment_expired` event.
--   * EXPIRED joins the status CHECKs and AUTHORIZED -> EXPIRED the transition table (0045's way);
--   * authorization_expires_at: absent while CREATED, present once AUTHORIZED, set only by the
--     CREATED -> AUTHORIZED transition and never changed after;
--   * AUTHORIZED -> EXPIRED only once the expiry has passed (the database's clock);
--   * webhooks may subscribe to payment_expired.
-- Errors: SQLSTATE 23000 from the trigger, 23514 from the CHECKs.

ALTER TABLE payments ADD COLUMN authorization_expires_at timestamptz;

-- Authorizations made before this migration get the default lifetime from their last change.
ALTER TABLE payments DISABLE TRIGGER payments_guard_update;
UPDATE payments SET authorization_expires_at = updated_at + interval '7 days' WHERE status = 'AUTHORIZED';
ALTER TABLE payments ENABLE TRIGGER payments_guard_update;

ALTER TABLE payments ADD CONSTRAINT payments_authorized_has_expiry CHECK (
  (status <> 'AUTHORIZED' OR authorization_expires_at IS NOT NULL)
  AND (status <> 'CREATED' OR authorization_expires_at IS NULL));

ALTER TABLE payment_transitions DROP CONSTRAINT payment_transitions_from_status_check;
ALTER TABLE payment_transitions DROP CONSTRAINT payment_transitions_to_status_check;
ALTER TABLE payment_transitions ADD CONSTRAINT payment_transitions_from_status_check
  CHECK (from_status IN ('CREATED', 'AUTHORIZED', 'SETTLED', 'FAILED', 'CANCELED', 'EXPIRED'));
ALTER TABLE payment_transitions ADD CONSTRAINT payment_transitions_to_status_check
  CHECK (to_status IN ('CREATED', 'AUTHORIZED', 'SETTLED', 'FAILED', 'CANCELED', 'EXPIRED'));
ALTER TABLE payment_transitions DISABLE TRIGGER payment_transitions_immutable;
INSERT INTO payment_transitions (from_status, to_status) VALUES
  ('AUTHORIZED', 'EXPIRED');  -- expire
ALTER TABLE payment_transitions ENABLE TRIGGER payment_transitions_immutable;

ALTER TABLE payments DROP CONSTRAINT payments_status_check;
ALTER TABLE payments ADD CONSTRAINT payments_status_check
  CHECK (status IN ('CREATED', 'AUTHORIZED', 'SETTLED', 'FAILED', 'CANCELED', 'EXPIRED'));
ALTER TABLE payment_status_history DROP CONSTRAINT payment_status_history_to_status_check;
ALTER TABLE payment_status_history ADD CONSTRAINT payment_status_history_to_status_check
  CHECK (to_status IN ('CREATED', 'AUTHORIZED', 'SETTLED', 'FAILED', 'CANCELED', 'EXPIRED'));

CREATE FUNCTION payments_guard_expiry() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, public, pg_temp AS $$
BEGIN
  IF NEW.authorization_expires_at IS DISTINCT FROM OLD.authorization_expires_at
     AND NOT (OLD.status = 'CREATED' AND NEW.status = 'AUTHORIZED') THEN
    RAISE EXCEPTION 'payment %: authorization_expires_at is set by the authorization and never changed after', OLD.id
      USING ERRCODE = 'integrity_constraint_violation';
  END IF;
  IF OLD.status = 'AUTHORIZED' AND NEW.status = 'EXPIRED' AND OLD.authorization_expires_at > statement_timestamp() THEN
    RAISE EXCEPTION 'payment % cannot expire before its authorization does (%)', OLD.id, OLD.authorization_expires_at
      USING ERRCODE = 'integrity_constraint_violation';
  END IF;
  RETURN NEW;
END $$;
CREATE TRIGGER payments_guard_expiry BEFORE UPDATE ON payments
  FOR EACH ROW EXECUTE FUNCTION payments_guard_expiry();

-- The job finds due authorizations without scanning every payment.
CREATE INDEX payments_authorized_expiry ON payments (authorization_expires_at) WHERE status = 'AUTHORIZED';

ALTER TABLE webhook_endpoints DROP CONSTRAINT webhook_endpoints_event_types_check;
ALTER TABLE webhook_endpoints ADD CONSTRAINT webhook_endpoints_event_types_check CHECK (
  cardinality(event_types) BETWEEN 1 AND 8
  AND event_types <@ ARRAY['*', 'payment_created', 'payment_authorized', 'payment_settled', 'payment_failed',
                           'payment_canceled', 'payment_expired']::text[]);
