-- 0093's rule for refund events (the same class as the third outside re-test's F1): a
-- `refund_succeeded` inserted by pay_app for a refund still PENDING (or one that does not exist)
-- would be published, and the projection and the webhooks would count a refund that never moved
-- money. 0060 ties each refund change to its event; now each refund event of an existing payment
-- needs, by COMMIT, its refund: of that payment, and SUCCEEDED for `refund_succeeded`, FAILED for
-- `refund_failed`. The application writes both in one transaction (RefundStore). Events of ids
-- that are no payment (tests of the outbox and the webhooks alone) are not concerned.
-- Errors: SQLSTATE 23000 (integrity_constraint_violation).
CREATE FUNCTION outbox_events_refund_exists() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, public, pg_temp AS $$
BEGIN
  IF NOT EXISTS (SELECT 1 FROM payments WHERE id = NEW.aggregate_id) THEN
    RETURN NULL;
  END IF;
  IF NOT EXISTS (
    SELECT 1 FROM refunds r
    WHERE r.id = NEW.payload ->> 'refund_id' AND r.payment_id = NEW.aggregate_id
      AND CASE NEW.event_type WHEN 'refund_succeeded' THEN r.status = 'SUCCEEDED'
                              WHEN 'refund_failed' THEN r.status = 'FAILED'
                              ELSE true END
  ) THEN
    RAISE EXCEPTION 'outbox event % (%) of payment % names refund %, which is not a refund of that payment in that state',
      NEW.id, NEW.event_type, NEW.aggregate_id, NEW.payload ->> 'refund_id'
      USING ERRCODE = 'integrity_constraint_violation',
            HINT = 'a refund''s event is written with the refund''s change, in one transaction';
  END IF;
  RETURN NULL;
END $$;
CREATE CONSTRAINT TRIGGER outbox_events_refund_exists AFTER INSERT ON outbox_events
  DEFERRABLE INITIALLY DEFERRED
  FOR EACH ROW WHEN (NEW.aggregate_type = 'payment' AND NEW.event_type IN ('refund_created', 'refund_succeeded', 'refund_failed'))
  EXECUTE FUNCTION outbox_events_refund_exists();
