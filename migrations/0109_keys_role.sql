-- The role that issues API keys (docs/security.md, "Database"). Until now `pay_app`, the API's role,
-- also inserted keys (the CLI's `merchants create` and `keys create` ran as it): whoever held the
-- API's credentials could insert a key with a hash of their choice for any merchant, as good as the
-- merchant's own (the re-test of 0104/0105 refunded a merchant's payment through the API with one,
-- the acquirer asked). 0105 fixed a key's merchant, hash and revocation once written; who may write
-- one was still the API's role.
--
-- `pay_keys` (LOGIN) alone inserts keys and revokes them; the CLI's key commands (`merchants
-- create`, `keys create`, `keys revoke`) log in as it (KEYS_DATABASE_URL; packages/infra/src/Config.ts).
-- The API reads keys to authenticate and never writes one: `pay_app` keeps SELECT only. Merchants
-- stay insertable by `pay_app` too (a merchant without a key reaches nothing).
--
-- Roles are cluster-wide: scripts/roles.sql creates `pay_keys` before migrating; this migration
-- creates it only where it is missing and the migrating role may (tests, superuser).

DO $$
BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'pay_keys') THEN
    CREATE ROLE pay_keys LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS NOINHERIT;
  END IF;
EXCEPTION WHEN duplicate_object OR unique_violation THEN
  NULL;
END
$$;

DO $$
BEGIN
  EXECUTE format('GRANT CONNECT ON DATABASE %I TO pay_keys', current_database());
END
$$;
GRANT USAGE ON SCHEMA public TO pay_keys;

-- A merchant and its first key in one transaction (`merchants create`), a key for a merchant that
-- exists (`keys create`: the merchant read first), a revocation (`keys revoke`: the row locked,
-- `revoked_at` set once: api_keys_fixed, 0105). The schema check at start reads the migrations table.
GRANT SELECT, INSERT ON merchants, api_keys TO pay_keys;
GRANT UPDATE (revoked_at) ON api_keys TO pay_keys;
GRANT SELECT ON platform_info, effect_sql_migrations TO pay_keys;

-- The API authenticates (SELECT) and writes no key.
REVOKE INSERT, UPDATE, DELETE, TRUNCATE ON api_keys FROM pay_app;
