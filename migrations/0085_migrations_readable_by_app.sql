-- The application's role may read which migrations are applied (never change them): a process that
-- finds every migration it carries already applied (packages/infra/src/Postgres.ts,
-- `schemaIsCurrent`) starts without the schema owner's credentials. Before, every process and every
-- CLI command (`consumers lag`, `idempotency parked`: an operator's read-only triage) ran the
-- migrator as MIGRATION_DATABASE_URL, which defaults to DATABASE_URL: with only the application's
-- URL it failed ("permission denied for table effect_sql_migrations"), and with the owner's it took
-- the migrator's ACCESS EXCLUSIVE lock on that table for a command that changes nothing.
GRANT SELECT ON effect_sql_migrations TO pay_app;
