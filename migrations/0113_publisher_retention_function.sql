-- The publisher's role takes no table lock (outside review of 0108, 2026-12-05, F3). Its table-level
-- DELETE (for retention) let `pay_publisher` take any lock mode on `outbox_events`: `LOCK TABLE …
-- IN ACCESS EXCLUSIVE MODE` stalled every payment write (each inserts an event: 503 after the
-- answer bound) for as long as the lock was renewed. LOCK TABLE needs a table-level UPDATE, DELETE or
-- TRUNCATE; the role's UPDATE is on three columns only, which allows the claim's row locks
-- (`FOR UPDATE SKIP LOCKED` on unpublished rows, which no API statement waits for) and no table lock
-- but ACCESS SHARE. Retention now goes through one function, owned by a NOLOGIN role that holds
-- exactly SELECT and DELETE on the table (docs/security.md, "Rules for every migration", 2); the
-- rows it may delete are still those outbox_events_keep_unpublished allows.

DO $$
BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'pay_outbox_retention') THEN
    CREATE ROLE pay_outbox_retention NOLOGIN NOINHERIT;
  END IF;
EXCEPTION WHEN duplicate_object OR unique_violation THEN
  NULL;
END
$$;

GRANT USAGE ON SCHEMA public TO pay_outbox_retention;
GRANT SELECT, DELETE ON outbox_events TO pay_outbox_retention;

-- At most 10 000 rows a call (OUTBOX_RETENTION_BATCH's bound), the oldest published first.
CREATE FUNCTION outbox_delete_published_before(p_cutoff timestamptz, p_batch integer) RETURNS SETOF uuid
LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp AS $$
  DELETE FROM public.outbox_events WHERE id IN (
    SELECT id FROM public.outbox_events
    WHERE published_at IS NOT NULL AND published_at < p_cutoff
    ORDER BY published_at
    LIMIT least(greatest(p_batch, 0), 10000))
  RETURNING id
$$;

GRANT CREATE ON SCHEMA public TO pay_outbox_retention;
ALTER FUNCTION outbox_delete_published_before(timestamptz, integer) OWNER TO pay_outbox_retention;
REVOKE CREATE ON SCHEMA public FROM pay_outbox_retention;
REVOKE EXECUTE ON FUNCTION outbox_delete_published_before(timestamptz, integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION outbox_delete_published_before(timestamptz, integer) TO pay_publisher;

REVOKE DELETE ON outbox_events FROM pay_publisher;
