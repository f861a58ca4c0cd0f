-- Events of the `payment` aggregate only for payments that exist (a fourth outside re-test,
-- .scratch/review-retest-4.md F1): 0093 and 0094 left events of ids that are no payment alone (for
-- the outbox's own tests), and pay_app inserted `payment_settled` and `refund_succeeded` events for
-- a made-up, well-formed payment id naming a real merchant: the projection counted a settlement
-- and a refund that never happened and the merchant was sent their webhooks. Now such an event is
-- refused at COMMIT. The application writes a payment's events in the statement or transaction
-- that writes the payment; the outbox's tests use an aggregate of their own.
-- Errors: SQLSTATE 23000 (integrity_constraint_violation).
CREATE FUNCTION outbox_events_payment_exists() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, public, pg_temp AS $$
BEGIN
  IF NOT EXISTS (SELECT 1 FROM payments WHERE id = NEW.aggregate_id) THEN
    RAISE EXCEPTION 'outbox event % (%) names payment %, which does not exist', NEW.id, NEW.event_type, NEW.aggregate_id
      USING ERRCODE = 'integrity_constraint_violation',
            HINT = 'a payment''s events are written with the payment';
  END IF;
  RETURN NULL;
END $$;
CREATE CONSTRAINT TRIGGER outbox_events_payment_exists AFTER INSERT ON outbox_events
  DEFERRABLE INITIALLY DEFERRED
  FOR EACH ROW WHEN (NEW.aggregate_type = 'payment')
  EXECUTE FUNCTION outbox_events_payment_exists();
