-- The last forgery of the fourth outside re-test (2026-12-04) left to the API's role: a
-- `payment_expiring` outbox event inserted by hand. 0061 ties each warning row to its event; nothing
-- tied the event to a warning, so `pay_app` could announce an expiry that no warning recorded (for
-- any payment, any instant, as often as it liked), and the webhooks consumer sent it to the
-- merchant; the real warning, later, was then skipped as stale (same aggregate and version).
--
-- Now a `payment_expiring` event of a payment needs, by COMMIT, the payment's warning row written
-- by the SAME transaction (its xmin), naming the same `authorization_expires_at`, and no other
-- `payment_expiring` event of that payment. A warning is once per payment (0061's primary key) and
-- only for an AUTHORIZED payment of its own expiry, so the event is once per payment and true of
-- it; what the database cannot check is the lead time (a setting of the expiry job), so the worst
-- left is an early warning of a real expiry. Events of ids that are no payment are refused by 0095.
--
-- Errors: SQLSTATE 23000 (integrity_constraint_violation).

CREATE FUNCTION outbox_events_expiring_has_warning() RETURNS trigger
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
    WHERE w.payment_id = NEW.aggregate_id AND w.xmin = xid(pg_current_xact_id())
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
CREATE CONSTRAINT TRIGGER outbox_events_expiring_has_warning AFTER INSERT ON outbox_events
  DEFERRABLE INITIALLY DEFERRED
  FOR EACH ROW WHEN (NEW.aggregate_type = 'payment' AND NEW.event_type = 'payment_expiring')
  EXECUTE FUNCTION outbox_events_expiring_has_warning();
