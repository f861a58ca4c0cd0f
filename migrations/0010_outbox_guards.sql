-- The outbox's promises, enforced by the database (issue 12, "invariants that the database does not
-- enforce"; docs/security.md, docs/invariants.md).
--
--   * Every committed payment state change produces its event: at COMMIT, each new
--     payment_status_history row has its outbox row (aggregate 'payment', the payment's id, event
--     type payment_<status>, payload version = the history row's version).
--   * Retention never deletes an unpublished event: DELETE of a row that is unpublished, or that was
--     created or marked published by the deleting transaction itself, is refused; TRUNCATE is refused.
--     (The retention job deletes rows published long before: published_at < cutoff.)
--   * An outbox row cannot be backdated at insert (created_at >= the transaction's start), so "created
--     by this transaction" is decidable, and the check above cannot be spent: an event written now
--     can be neither deleted nor changed (outbox_events_immutable, 0004) before COMMIT checks it.
-- A superuser can still switch triggers off; the application's role cannot (docs/security.md).
-- Errors: SQLSTATE 23000 (integrity_constraint_violation).

CREATE FUNCTION outbox_events_reject_loss() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, public, pg_temp AS $$
BEGIN
  IF TG_OP = 'INSERT' THEN
    RAISE EXCEPTION 'outbox event % is backdated: created_at % is before the transaction started', NEW.id, NEW.created_at
      USING ERRCODE = 'integrity_constraint_violation';
  ELSIF TG_OP = 'TRUNCATE' THEN
    RAISE EXCEPTION 'TRUNCATE on outbox_events is not allowed: unpublished events would be lost'
      USING ERRCODE = 'integrity_constraint_violation',
            HINT = 'retention deletes published rows only';
  END IF;
  RAISE EXCEPTION 'outbox event % cannot be deleted: %', OLD.id,
    CASE WHEN OLD.published_at IS NULL THEN 'it is not published yet'
         ELSE 'it was written or marked published by this same transaction' END
    USING ERRCODE = 'integrity_constraint_violation',
          HINT = 'retention deletes rows published before the deleting transaction started';
END $$;

CREATE TRIGGER outbox_events_not_backdated BEFORE INSERT ON outbox_events
  FOR EACH ROW WHEN (NEW.created_at < now())
  EXECUTE FUNCTION outbox_events_reject_loss();
-- WHEN clause: the retention job's deletes (old published rows) never call the function.
CREATE TRIGGER outbox_events_keep_unpublished BEFORE DELETE ON outbox_events
  FOR EACH ROW WHEN (OLD.published_at IS NULL OR OLD.published_at >= now() OR OLD.created_at >= now())
  EXECUTE FUNCTION outbox_events_reject_loss();
CREATE TRIGGER outbox_events_no_truncate BEFORE TRUNCATE ON outbox_events
  FOR EACH STATEMENT EXECUTE FUNCTION outbox_events_reject_loss();

CREATE FUNCTION payment_status_history_has_event() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, public, pg_temp AS $$
BEGIN
  IF NOT EXISTS (
    SELECT 1 FROM outbox_events o
    WHERE o.aggregate_type = 'payment' AND o.aggregate_id = NEW.payment_id
      AND o.event_type = 'payment_' || lower(NEW.to_status)
      AND o.payload -> 'version' = to_jsonb(NEW.version)
  ) THEN
    RAISE EXCEPTION 'payment % reached % (version %) without its outbox event payment_%',
      NEW.payment_id, NEW.to_status, NEW.version, lower(NEW.to_status)
      USING ERRCODE = 'integrity_constraint_violation',
            HINT = 'write the outbox row in the same transaction as the change (OutboxWriter.append)';
  END IF;
  RETURN NULL;
END $$;
CREATE CONSTRAINT TRIGGER payment_status_history_has_event AFTER INSERT ON payment_status_history
  DEFERRABLE INITIALLY DEFERRED FOR EACH ROW
  EXECUTE FUNCTION payment_status_history_has_event();
