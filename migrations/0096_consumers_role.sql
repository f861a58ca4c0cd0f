-- The consumers' own role (docs/security.md, "Database"). Until now `pay_app`, the API's role, also
-- wrote what the consumers keep, so whoever held the API's credentials could make the read models
-- and the webhooks show what never happened, or miss what did (outside re-test, 2026-12-04): a
-- webhook delivery inserted by hand (signed and sent to the merchant like a real one), a payment's
-- consumer version raised ahead of its real settle (the real event then dropped as stale), a
-- projection row edited, a processed_events row that makes a real event a "duplicate".
--
-- `pay_consumer` (LOGIN) alone writes the consumers' tables; the consumers, the webhook sender
-- and the CLI's consumer commands log in as it (CONSUMERS_DATABASE_URL; packages/infra/src/Config.ts).
-- `pay_app` keeps reading them, and keeps the one change the API makes to a delivery: sending it
-- again (its status and schedule, never its body, event or endpoint).
--
-- Roles are cluster-wide: scripts/roles.sql creates `pay_consumer` before migrating; this
-- migration creates it only where it is missing and the migrating role may (tests, superuser).

DO $$
BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'pay_consumer') THEN
    CREATE ROLE pay_consumer LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS NOINHERIT;
  END IF;
EXCEPTION WHEN duplicate_object OR unique_violation THEN
  NULL;
END
$$;

DO $$
BEGIN
  EXECUTE format('GRANT CONNECT ON DATABASE %I TO pay_consumer', current_database());
END
$$;
GRANT USAGE ON SCHEMA public TO pay_consumer;

-- The consumers' bookkeeping and read models (0015, 0086): read, add, move forward. No DELETE or
-- TRUNCATE, as for pay_app before (a replay builds a new generation and swaps).
GRANT SELECT, INSERT, UPDATE ON processed_events, consumer_payment_versions, consumer_offsets, consumer_topic_ids,
  dead_letter_events, settlement_projection, settlement_projection_event_counts, settlement_projection_live TO pay_consumer;
GRANT USAGE ON SEQUENCE dead_letter_events_id_seq TO pay_consumer;

-- The webhooks consumer queues deliveries for the merchant's endpoints; the sender leases them,
-- records each attempt, reads the endpoint's (sealed) signing secrets, and marks an endpoint
-- failing or disabled.
GRANT SELECT, INSERT, UPDATE ON webhook_deliveries, webhook_attempts TO pay_consumer;
GRANT SELECT ON webhook_endpoints, webhook_endpoint_secrets TO pay_consumer;
GRANT UPDATE (status, disabled_reason, disabled_at, failing_since, updated_at) ON webhook_endpoints TO pay_consumer;

-- Reconciliation (the consumers process's gauge, `pnpm cli reconcile`) compares the projection with
-- the ledger and the payments: read only. The schema check at start-up reads the migrations table.
GRANT SELECT ON payments, payment_settlements, refunds, transactions, ledger_entries, accounts, account_balances,
  platform_info, effect_sql_migrations TO pay_consumer;

-- The API's role loses every write on those tables but the redelivery a merchant asks for
-- (Deliveries.ts: status back to pending, its schedule and round count; webhook_deliveries_guard
-- still decides which changes a delivery may make). Reading stays (the API lists deliveries and
-- their attempts; operators read the consumers' tables as pay_app).
REVOKE INSERT, UPDATE, DELETE, TRUNCATE ON processed_events, consumer_payment_versions, consumer_offsets, consumer_topic_ids,
  dead_letter_events, settlement_projection, settlement_projection_event_counts, settlement_projection_live FROM pay_app;
REVOKE INSERT, UPDATE, DELETE, TRUNCATE ON webhook_deliveries, webhook_attempts FROM pay_app;
GRANT UPDATE (status, failed_reason, finished_at, next_attempt_at, round_attempt_count) ON webhook_deliveries TO pay_app;
