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
BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'pay_app') THEN
    CREATE ROLE pay_app LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS NOINHERIT;
  END IF;
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'pay_consumer') THEN
    CREATE ROLE pay_consumer LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS NOINHERIT;
  END IF;
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'pay_publisher') THEN
    CREATE ROLE pay_publisher LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS NOINHERIT;
  END IF;
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'pay_keys') THEN
    CREATE ROLE pay_keys LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS NOINHERIT;
  END IF;
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'pay_ledger_writer') THEN
    CREATE ROLE pay_ledger_writer NOLOGIN NOINHERIT;
  END IF;
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'pay_outbox_retention') THEN
    CREATE ROLE pay_outbox_retention NOLOGIN NOINHERIT;
  END IF;
END
$$;
