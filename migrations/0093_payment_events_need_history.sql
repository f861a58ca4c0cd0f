-- The third outside re-test (.scratch/review-retest-3.md F1, F2):
--
--   * F1: pay_app inserted a well-formed `payment_settled` outbox event for a payment that was only
--     AUTHORIZED, with no history row. It was published; the settlement projection and the
--     webhooks counted a settlement that never happened, and when the payment was settled for
--     real the consumers dropped the real event as stale (same version). 0010 ties each history
--     row to its event; nothing tied an event to its history row. Now a payment's status event
--     (`payment_<status>` of an existing payment) needs, by COMMIT, the history row it announces:
--     the same payment, the payload's `version`, that status. The application writes both in one
--     transaction (PaymentRepository, OutboxWriter). Events of ids that are no payment (tests of
--     the outbox alone) and other event types (refunds, `payment_expiring`) are not concerned.
--   * F2: a history row's `from_status` was never checked (a real AUTHORIZED → CANCELED was
--     recorded as CREATED → CANCELED). It is now the status of the payment's previous row (none
--     for version 1).
--
-- Errors: SQLSTATE 23000 (integrity_constraint_violation).

CREATE FUNCTION outbox_events_announce_history() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, public, pg_temp AS $$
DECLARE
  v_status text := upper(substr(NEW.event_type, length('payment_') + 1));
BEGIN
  IF NOT EXISTS (SELECT 1 FROM payments WHERE id = NEW.aggregate_id) THEN
    RETURN NULL;
  END IF;
  IF NOT EXISTS (
    SELECT 1 FROM payment_status_history h
    WHERE h.payment_id = NEW.aggregate_id AND h.to_status = v_status
      AND h.version = CASE WHEN jsonb_typeof(NEW.payload -> 'version') = 'number' THEN (NEW.payload ->> 'version')::numeric END
  ) THEN
    RAISE EXCEPTION 'outbox event % (%) of payment % announces version % reaching %, which its history does not record',
      NEW.id, NEW.event_type, NEW.aggregate_id, NEW.payload -> 'version', v_status
      USING ERRCODE = 'integrity_constraint_violation',
            HINT = 'a payment''s status event is written with its history row, in the transaction that moves the payment';
  END IF;
  RETURN NULL;
END $$;
CREATE CONSTRAINT TRIGGER outbox_events_announce_history AFTER INSERT ON outbox_events
  DEFERRABLE INITIALLY DEFERRED
  FOR EACH ROW WHEN (NEW.aggregate_type = 'payment' AND NEW.event_type IN (
    'payment_created', 'payment_authorized', 'payment_settled', 'payment_failed', 'payment_canceled', 'payment_expired'))
  EXECUTE FUNCTION outbox_events_announce_history();

CREATE FUNCTION payment_status_history_from_previous() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, public, pg_temp AS $$
DECLARE
  v_previous text;
BEGIN
  SELECT h.to_status INTO v_previous FROM payment_status_history h
  WHERE h.payment_id = NEW.payment_id AND h.version = NEW.version - 1;
  IF NEW.from_status IS DISTINCT FROM v_previous THEN
    RAISE EXCEPTION 'payment_status_history row of payment % (version %) says it left %, the previous row says %',
      NEW.payment_id, NEW.version, coalesce(NEW.from_status, 'nothing'), coalesce(v_previous, 'nothing')
      USING ERRCODE = 'integrity_constraint_violation';
  END IF;
  RETURN NULL;
END $$;
CREATE CONSTRAINT TRIGGER payment_status_history_from_previous AFTER INSERT ON payment_status_history
  DEFERRABLE INITIALLY DEFERRED
  FOR EACH ROW EXECUTE FUNCTION payment_status_history_from_previous();
