-- A mark of publication is never backdated past its own transaction (outside test audit, reproduced
-- as pay_app). 0010 refuses to delete an event "written or marked published by the deleting
-- transaction", deciding "marked by this transaction" by `published_at >= now()`. A mark written
-- in the past (`SET published_at = now() - interval '1 day'` on an unpublished row, or on a row this
-- transaction had just marked) passed for an old one: in one transaction a never-published event
-- could be marked and deleted, and with the deferred check fired early (SET CONSTRAINTS ALL
-- IMMEDIATE) a committed state change lost its event.
--
-- Refused now: setting `published_at` to a time before the transaction began on a row that was
-- unpublished, or that this transaction marked. The publisher marks with clock_timestamp(), after
-- the start of its transaction; re-queueing sets it back to NULL; a row published by an earlier
-- transaction may still be moved (bookkeeping: the retention tests age rows that way).
-- What stays possible for pay_app is said in docs/security.md: marking an unpublished row "now" in
-- one transaction (the publisher needs that grant) and deleting it after retention in a later one.
-- Errors: SQLSTATE 23000 (integrity_constraint_violation), like 0010.

CREATE FUNCTION outbox_events_mark_not_backdated() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, public, pg_temp AS $$
BEGIN
  RAISE EXCEPTION 'outbox event %: its mark of publication % is before the transaction started (a mark is never backdated)', OLD.id, NEW.published_at
    USING ERRCODE = 'integrity_constraint_violation',
          HINT = 'the publisher marks rows with clock_timestamp(); re-queueing sets published_at to NULL';
END $$;

CREATE TRIGGER outbox_events_mark_not_backdated BEFORE UPDATE OF published_at ON outbox_events
  FOR EACH ROW
  WHEN (NEW.published_at < now() AND NEW.published_at IS DISTINCT FROM OLD.published_at
        AND (OLD.published_at IS NULL OR OLD.published_at >= now()))
  EXECUTE FUNCTION outbox_events_mark_not_backdated();
