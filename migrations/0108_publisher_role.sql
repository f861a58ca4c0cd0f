-- The outbox publisher's own role (docs/security.md, "Database"). Until now `pay_app`, the API's
-- role, also marked outbox rows published (the publisher ran on its pool), so whoever held the
-- API's credentials could hide a real event: `LOCK TABLE outbox_events IN EXCLUSIVE MODE` (it held
-- DELETE for retention), which queues behind the writer, then a second transaction's mark, and the
-- event never reached Kafka (outside re-test of 0104, 2026-12-05: a real API cancel's event hidden
-- that way; 0104 refuses only the writing transaction's own mark).
--
-- `pay_publisher` (LOGIN) alone marks rows published, records send failures, re-queues history and
-- deletes what retention allows; the publisher (inside a server or `node packages/outbox/src/main.ts`)
-- logs in as it (PUBLISHER_DATABASE_URL; packages/infra/src/Config.ts). It inserts nothing: events
-- are written by the transactions that make the changes, as `pay_app`. `pay_app` keeps INSERT and
-- SELECT: with no UPDATE, DELETE or TRUNCATE it can neither mark, delete nor take a lock stronger
-- than ROW EXCLUSIVE on the table (LOCK TABLE needs one of them), nor `SELECT … FOR UPDATE` a row.
--
-- Roles are cluster-wide: scripts/roles.sql creates `pay_publisher` before migrating; this
-- migration creates it only where it is missing and the migrating role may (tests, superuser).

DO $$
BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'pay_publisher') THEN
    CREATE ROLE pay_publisher LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS NOINHERIT;
  END IF;
EXCEPTION WHEN duplicate_object OR unique_violation THEN
  NULL;
END
$$;

DO $$
BEGIN
  EXECUTE format('GRANT CONNECT ON DATABASE %I TO pay_publisher', current_database());
END
$$;
GRANT USAGE ON SCHEMA public TO pay_publisher;

-- The claim reads and locks rows (`FOR UPDATE SKIP LOCKED`), the mark and the failure bookkeeping
-- change the delivery columns only (the immutability trigger of 0010 refuses anything else, for
-- every role), retention deletes what outbox_events_keep_unpublished allows, and the schema check
-- at start-up reads the migrations table.
GRANT SELECT, DELETE ON outbox_events TO pay_publisher;
GRANT UPDATE (published_at, attempt_count, last_error) ON outbox_events TO pay_publisher;
GRANT SELECT ON platform_info, effect_sql_migrations TO pay_publisher;

-- The API's role keeps writing events (INSERT) and reading them (the backlog, reconciliation);
-- nothing else of the table.
REVOKE UPDATE, DELETE, TRUNCATE ON outbox_events FROM pay_app;
