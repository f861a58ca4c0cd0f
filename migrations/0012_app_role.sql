-- The application's role (issue 11, "the application is a superuser that owns every table";
-- docs/security.md). `pay_app` is neither superuser nor owner: it cannot ALTER TABLE ... DISABLE
-- TRIGGER, SET session_replication_role, create objects or temp tables, or run the balance writers,
-- and it holds only the grants the code needs: no UPDATE, DELETE or TRUNCATE on the ledger, the
-- status history or settlements. The owner (whoever runs migrations) keeps DDL.
--
-- Roles are cluster-wide: scripts/stack.sh and docker-compose.yml create `pay_app` (LOGIN) before
-- migrating; this migration creates it only where it is missing and the migrating role may (tests,
-- superuser). A migration that adds a table or function must add its grants here-like, explicitly:
-- nothing is granted by default.

DO $$
BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'pay_app') THEN
    CREATE ROLE pay_app LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS NOINHERIT;
  END IF;
EXCEPTION WHEN duplicate_object OR unique_violation THEN
  NULL;
END
$$;

-- No temp tables (a temp table or pg_temp function is the first tool of a hostile session) and no
-- objects in the schema, for anyone but the owner.
DO $$
BEGIN
  EXECUTE format('REVOKE TEMPORARY ON DATABASE %I FROM PUBLIC', current_database());
  EXECUTE format('GRANT CONNECT ON DATABASE %I TO pay_app', current_database());
END
$$;
REVOKE CREATE ON SCHEMA public FROM PUBLIC;
GRANT USAGE ON SCHEMA public, acquirer_sim TO pay_app;

-- Reference data and read models.
GRANT SELECT ON platform_info, payment_transitions, account_balances TO pay_app;
-- Append-only facts: read and add, never change.
GRANT SELECT, INSERT ON accounts, transactions, ledger_entries, payment_status_history, payment_settlements,
  merchants TO pay_app;
-- Rows with a life cycle (each guarded by its own triggers).
GRANT SELECT, INSERT, UPDATE ON payments, api_keys, merchant_fee_schedules TO pay_app;
-- Queues with retention: the publisher marks delivery (bookkeeping columns only), retention and the
-- reaper delete (the outbox's own trigger refuses unpublished rows).
GRANT SELECT, INSERT, DELETE ON outbox_events TO pay_app;
GRANT UPDATE (published_at, attempt_count, last_error) ON outbox_events TO pay_app;
GRANT SELECT, INSERT, UPDATE, DELETE ON idempotency_keys TO pay_app;
-- The acquirer simulator's own memory.
GRANT SELECT, INSERT, UPDATE ON acquirer_sim.operations TO pay_app;
-- Identity columns.
GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO pay_app;
