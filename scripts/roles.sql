-- The cluster-wide roles the schema expects (docs/security.md, "Database"). Idempotent: run by
-- scripts/stack.sh on every `up`, and by the postgres image's init (docker-compose.yml) on a fresh
-- volume, before any migration. Migrations 0009 and 0012 create them only where they are missing
-- and the migrating role may; a migrating role without CREATEROLE relies on this file.
--   pay_app            LOGIN: the application's role (grants in migrations/0012_app_role.sql)
--   pay_consumer       LOGIN: the consumers' and webhook sender's role (migrations/0096_consumers_role.sql)
--   pay_publisher      LOGIN: the outbox publisher's role (migrations/0108_publisher_role.sql)
--   pay_keys           LOGIN: the role that issues and revokes API keys (migrations/0109_keys_role.sql)
--   pay_ledger_writer  NOLOGIN: owns the two trigger functions that write account_balances
--   pay_outbox_retention NOLOGIN: owns the outbox retention function (migrations/0113)
DO $$
DECLARE
  v_role text;
BEGIN
  -- The services' login roles: no privilege of their own beyond their grants (migrations).
  FOREACH v_role IN ARRAY ARRAY['pay_app', 'pay_consumer', 'pay_publisher', 'pay_keys'] LOOP
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = v_role) THEN
      EXECUTE format('CREATE ROLE %I LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS NOINHERIT', v_role);
    END IF;
  END LOOP;
  -- Owners of SECURITY DEFINER functions: nobody logs in as them.
  FOREACH v_role IN ARRAY ARRAY['pay_ledger_writer', 'pay_outbox_retention'] LOOP
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = v_role) THEN
      EXECUTE format('CREATE ROLE %I NOLOGIN NOINHERIT', v_role);
    END IF;
  END LOOP;
END
$$;
