-- The warning before an authorization lapses (issue 19): the expiry job writes `payment_expiring`
-- ONCE per payment, a configurable lead time (EXPIRY_WARNING_LEAD_MS) before its
-- authorization_expires_at (packages/payments/src/ExpiryWarning.ts, docs/events.md).
--   * once per payment: payment_expiry_warnings' primary key;
--   * only for an AUTHORIZED payment, naming its own authorization_expires_at;
--   * never without its event: at COMMIT the row has its outbox row payment_expiring (aggregate
--     'payment', the payment's id), like 0010 for a payment's changes;
--   * a fact: never updated, deleted or truncated.
-- Errors: SQLSTATE 23000 (integrity_constraint_violation).

CREATE TABLE payment_expiry_warnings (
  payment_id text PRIMARY KEY REFERENCES payments (id),
  authorization_expires_at timestamptz NOT NULL,
  warned_at timestamptz NOT NULL DEFAULT now()
);

CREATE FUNCTION payment_expiry_warnings_guard() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, public, pg_temp AS $$
DECLARE
  v_payment payments%ROWTYPE;
BEGIN
  IF TG_OP <> 'INSERT' THEN
    RAISE EXCEPTION 'payment_expiry_warnings: % refused, a warning is a fact', TG_OP
      USING ERRCODE = 'integrity_constraint_violation';
  END IF;
  SELECT * INTO v_payment FROM payments WHERE id = NEW.payment_id;
  IF v_payment.status IS DISTINCT FROM 'AUTHORIZED'
     OR v_payment.authorization_expires_at IS DISTINCT FROM NEW.authorization_expires_at THEN
    RAISE EXCEPTION 'payment % is %, expiring at %: only an AUTHORIZED payment is warned, of its own expiry (got %)',
      NEW.payment_id, v_payment.status, v_payment.authorization_expires_at, NEW.authorization_expires_at
      USING ERRCODE = 'integrity_constraint_violation';
  END IF;
  RETURN NEW;
END $$;
CREATE TRIGGER payment_expiry_warnings_guard BEFORE INSERT OR UPDATE OR DELETE ON payment_expiry_warnings
  FOR EACH ROW EXECUTE FUNCTION payment_expiry_warnings_guard();
CREATE TRIGGER payment_expiry_warnings_no_truncate BEFORE TRUNCATE ON payment_expiry_warnings
  FOR EACH STATEMENT EXECUTE FUNCTION payment_expiry_warnings_guard();

CREATE FUNCTION payment_expiry_warnings_have_event() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, public, pg_temp AS $$
BEGIN
  IF NOT EXISTS (
    SELECT 1 FROM outbox_events o
    WHERE o.aggregate_type = 'payment' AND o.aggregate_id = NEW.payment_id AND o.event_type = 'payment_expiring'
  ) THEN
    RAISE EXCEPTION 'payment % was warned of its expiry without its outbox event payment_expiring', NEW.payment_id
      USING ERRCODE = 'integrity_constraint_violation',
            HINT = 'write the outbox row in the same transaction (ExpiryWarning.ts)';
  END IF;
  RETURN NULL;
END $$;
CREATE CONSTRAINT TRIGGER payment_expiry_warnings_have_event AFTER INSERT ON payment_expiry_warnings
  DEFERRABLE INITIALLY DEFERRED FOR EACH ROW
  EXECUTE FUNCTION payment_expiry_warnings_have_event();

GRANT SELECT, INSERT ON payment_expiry_warnings TO pay_app;
