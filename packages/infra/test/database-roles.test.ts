// The split of roles at start-up (docs/security.md, "Database"): migrations run as the schema owner
// (MIGRATION_DATABASE_URL), the application's pool connects as pay_app (DATABASE_URL).
import { assert, it } from "@effect/vitest"
import { acquireEmptyTestDatabase, acquireTestDatabase } from "@pay/testkit"
import { Cause, type Config, ConfigProvider, Deferred, Effect, Exit, Fiber, Layer, Redacted, Result, Schema } from "effect"
import { SqlClient } from "effect/sql"
import { ConsumersDatabaseUrl, KeysDatabaseUrl, MigrationDatabaseUrl, PublisherDatabaseUrl } from "../src/Config.ts"
import { DatabaseLive, decodeRows, migrationsDirectory, OwnerMigrationsLive, postgresLayer } from "../src/index.ts"
import { readdirSync } from "node:fs"

/** A database URL setting read from `env`, its value in the clear (or the failure). */
const urlFrom = (setting: Config.Config<Redacted.Redacted<string>>) => (env: Record<string, string>) =>
  Effect.result(setting.parse(ConfigProvider.fromEnv({ env }))).pipe(Effect.map(Result.map(Redacted.value)))

const urlOf = urlFrom(MigrationDatabaseUrl)

it.effect("MIGRATION_DATABASE_URL: its own value, else DATABASE_URL, else the local owner; a bad value is an error", () =>
  Effect.gen(function* () {
    assert.deepStrictEqual(yield* urlOf({}), Result.succeed("postgres://postgres@127.0.0.1:5432/payments"))
    assert.deepStrictEqual(yield* urlOf({ DATABASE_URL: "postgres://a@h/db" }), Result.succeed("postgres://a@h/db"))
    assert.deepStrictEqual(
      yield* urlOf({ DATABASE_URL: "postgres://a@h/db", MIGRATION_DATABASE_URL: "postgres://owner@h/db" }),
      Result.succeed("postgres://owner@h/db")
    )
    assert.isTrue(Result.isFailure(yield* urlOf({ DATABASE_URL: "postgres://a@h/db", MIGRATION_DATABASE_URL: "has spaces" })))
  }))

const consumersUrlOf = urlFrom(ConsumersDatabaseUrl)

it.effect("CONSUMERS_DATABASE_URL: its own value, else DATABASE_URL as pay_consumer when that is pay_app's (no password; the user before the @ or in ?user=, a socket host too), else DATABASE_URL; a bad value is an error", () =>
  Effect.gen(function* () {
    assert.deepStrictEqual(yield* consumersUrlOf({}), Result.succeed("postgres://pay_consumer@127.0.0.1:5432/payments"))
    assert.deepStrictEqual(
      yield* consumersUrlOf({ DATABASE_URL: "postgres://pay_app:app-secret@db.internal:6432/pay?sslmode=require" }),
      Result.succeed("postgres://pay_consumer@db.internal:6432/pay?sslmode=require")
    )
    assert.deepStrictEqual(yield* consumersUrlOf({ DATABASE_URL: "postgres://owner@h/db" }), Result.succeed("postgres://owner@h/db"))
    assert.deepStrictEqual(
      yield* consumersUrlOf({ DATABASE_URL: "postgres://pay_app@h/db", CONSUMERS_DATABASE_URL: "postgres://pay_consumer:c@h/db" }),
      Result.succeed("postgres://pay_consumer:c@h/db")
    )
    assert.isTrue(Result.isFailure(yield* consumersUrlOf({ CONSUMERS_DATABASE_URL: "has spaces" })))
    // The user wherever a libpq-style URL puts it (outside review: these stayed pay_app's, and the
    // consumers ran as the API's role); a password, anywhere, is never carried over.
    const derived = (DATABASE_URL: string) => consumersUrlOf({ DATABASE_URL })
    assert.deepStrictEqual(yield* derived("postgres://pay_app@/payments?host=/var/run/postgresql"), Result.succeed("postgres://pay_consumer@/payments?host=/var/run/postgresql"))
    assert.deepStrictEqual(yield* derived("postgres://h/db?user=pay_app&password=x&sslmode=require"), Result.succeed("postgres://h/db?user=pay_consumer&sslmode=require"))
    assert.deepStrictEqual(yield* derived("postgresql://pay%5Fapp:pw@h/db?password=y"), Result.succeed("postgresql://pay_consumer@h/db"))
    assert.deepStrictEqual(yield* derived("postgres://a%zz@h/db"), Result.succeed("postgres://a%zz@h/db"), "a malformed escape is not a failure")
  }))

const publisherUrlOf = urlFrom(PublisherDatabaseUrl)

it.effect("PUBLISHER_DATABASE_URL: its own value, else DATABASE_URL as pay_publisher when that is pay_app's (no password), else DATABASE_URL; a bad value is an error", () =>
  Effect.gen(function* () {
    assert.deepStrictEqual(yield* publisherUrlOf({}), Result.succeed("postgres://pay_publisher@127.0.0.1:5432/payments"))
    assert.deepStrictEqual(
      yield* publisherUrlOf({ DATABASE_URL: "postgres://pay_app:app-secret@db.internal:6432/pay?sslmode=require" }),
      Result.succeed("postgres://pay_publisher@db.internal:6432/pay?sslmode=require")
    )
    assert.deepStrictEqual(yield* publisherUrlOf({ DATABASE_URL: "postgres://h/db?user=pay_app&password=x" }), Result.succeed("postgres://h/db?user=pay_publisher"))
    assert.deepStrictEqual(yield* publisherUrlOf({ DATABASE_URL: "postgres://owner@h/db" }), Result.succeed("postgres://owner@h/db"))
    assert.deepStrictEqual(
      yield* publisherUrlOf({ DATABASE_URL: "postgres://pay_app@h/db", PUBLISHER_DATABASE_URL: "postgres://pay_publisher:p@h/db" }),
      Result.succeed("postgres://pay_publisher:p@h/db")
    )
    assert.isTrue(Result.isFailure(yield* publisherUrlOf({ PUBLISHER_DATABASE_URL: "has spaces" })))
  }))

it.effect("KEYS_DATABASE_URL: its own value, else DATABASE_URL as pay_keys when that is pay_app's (no password), else DATABASE_URL", () =>
  Effect.gen(function* () {
    const keysUrlOf = urlFrom(KeysDatabaseUrl)
    assert.deepStrictEqual(yield* keysUrlOf({}), Result.succeed("postgres://pay_keys@127.0.0.1:5432/payments"))
    assert.deepStrictEqual(yield* keysUrlOf({ DATABASE_URL: "postgres://pay_app:s@h:6432/pay?sslmode=require" }), Result.succeed("postgres://pay_keys@h:6432/pay?sslmode=require"))
    assert.deepStrictEqual(yield* keysUrlOf({ DATABASE_URL: "postgres://owner@h/db" }), Result.succeed("postgres://owner@h/db"))
    assert.deepStrictEqual(yield* keysUrlOf({ KEYS_DATABASE_URL: "postgres://pay_keys:k@h/db" }), Result.succeed("postgres://pay_keys:k@h/db"))
    assert.isTrue(Result.isFailure(yield* keysUrlOf({ KEYS_DATABASE_URL: "has spaces" })))
  }))

it.effect("DatabaseLive migrates an empty database as the owner, then serves the application as pay_app", () =>
  Effect.gen(function* () {
    const ownerUrl = (yield* acquireEmptyTestDatabase).url
    const appUrl = new URL(ownerUrl)
    appUrl.username = "pay_app"
    const env = { DATABASE_URL: appUrl.toString(), MIGRATION_DATABASE_URL: ownerUrl, DATABASE_POOL_SIZE: "2" }
    const seen = yield* Effect.gen(function* () {
      const sql = yield* SqlClient.SqlClient
      const rows = yield* decodeRows(Schema.Struct({ user: Schema.String, migrated: Schema.Boolean }))(sql`
        SELECT current_user AS user, to_regclass('public.ledger_entries') IS NOT NULL AS migrated`)
      return rows[0]
    }).pipe(Effect.provide(DatabaseLive.pipe(Layer.provide(ConfigProvider.layer(ConfigProvider.fromEnv({ env }))))))
    assert.deepStrictEqual(seen, { user: "pay_app", migrated: true })
  }).pipe(Effect.scoped), { timeout: 60_000 })

/** OwnerMigrationsLive on `url` (owner everywhere) with a lock timeout of 300 ms, built and released. */
const migrateWithLockTimeout = (url: string) => {
  const env = { DATABASE_URL: url, MIGRATION_DATABASE_URL: url, MIGRATION_LOCK_TIMEOUT_MS: "300" }
  return Layer.build(OwnerMigrationsLive.pipe(Layer.provide(ConfigProvider.layer(ConfigProvider.fromEnv({ env }))))).pipe(Effect.scoped)
}

/**
 * A long transaction that has read the migrator's table, forked: its ACCESS SHARE lock blocks the
 * migrator's ACCESS EXCLUSIVE one (as any long reader of a table a migration alters would), until
 * the returned `release` runs (it waits for the transaction's end).
 */
const holdMigratorsTable = Effect.gen(function* () {
  const sql = yield* SqlClient.SqlClient
  const held = yield* Deferred.make<void>()
  const released = yield* Deferred.make<void>()
  const holder = yield* Effect.forkChild(sql.withTransaction(Effect.gen(function* () {
    yield* sql`SELECT count(*) FROM effect_sql_migrations`
    yield* Deferred.succeed(held, undefined)
    yield* Deferred.await(released)
  })))
  yield* Deferred.await(held)
  return Effect.andThen(Deferred.succeed(released, undefined), Fiber.join(holder))
})

it.live("MIGRATION_LOCK_TIMEOUT_MS: a pending migration behind a long transaction gives up after the bound, naming the wait, instead of waiting without end", () =>
  Effect.gen(function* () {
    const info = yield* acquireTestDatabase
    const owner = postgresLayer({ url: Redacted.make(info.url), maxConnections: 2, applicationName: "pay-test-lock-holder" })
    yield* Effect.gen(function* () {
      const sql = yield* SqlClient.SqlClient
      // The newest migration made pending again (its row removed): the migrator's table lock comes
      // first, so the file's own statements never run here.
      yield* sql`DELETE FROM effect_sql_migrations WHERE migration_id = (SELECT max(migration_id) FROM effect_sql_migrations)`
      const release = yield* holdMigratorsTable
      const refused = yield* Effect.exit(migrateWithLockTimeout(info.url).pipe(Effect.timeout("30 seconds")))
      yield* release
      assert.isTrue(Exit.isFailure(refused), "the migration gave up")
      if (Exit.isFailure(refused)) assert.match(Cause.pretty(refused.cause), /lock timeout/, "it names the wait, not the 30 s guard")
    }).pipe(Effect.provide(owner))
  }).pipe(Effect.scoped), { timeout: 60_000 })

it.live("MIGRATION_LOCK_TIMEOUT_MS: a lock released while the migrations wait between attempts (another process migrating, a long transaction ending): a later attempt applies them all", () =>
  Effect.gen(function* () {
    const info = yield* acquireEmptyTestDatabase
    const owner = postgresLayer({ url: Redacted.make(info.url), maxConnections: 2, applicationName: "pay-test-lock-holder" })
    yield* Effect.gen(function* () {
      const sql = yield* SqlClient.SqlClient
      // The migrator's table as the migrator makes it (it creates it only when missing), read by a
      // transaction that holds its lock past the first attempt.
      yield* sql`CREATE TABLE effect_sql_migrations (migration_id integer primary key, created_at timestamp with time zone not null default now(), name text not null)`
      const release = yield* holdMigratorsTable
      const migrating = yield* Effect.forkChild(migrateWithLockTimeout(info.url).pipe(Effect.timeout("60 seconds")))
      yield* Effect.sleep("700 millis")
      yield* release
      yield* Fiber.join(migrating)
      const [applied] = yield* decodeRows(Schema.Struct({ n: Schema.Int }))(sql`SELECT count(*)::int AS n FROM effect_sql_migrations`)
      const carried = readdirSync(migrationsDirectory).filter((file) => /^\d+_[a-z0-9_]+\.sql$/.test(file)).length
      assert.strictEqual(applied?.n, carried)
    }).pipe(Effect.provide(owner))
  }).pipe(Effect.scoped), { timeout: 90_000 })

it.effect("MIGRATION_LOCK_TIMEOUT_MS out of bounds is refused at every start, not only when a migration is pending (it used to pass until the next upgrade)", () =>
  Effect.gen(function* () {
    const info = yield* acquireTestDatabase
    for (const value of ["50", "700000", "abc"]) {
      const env = { DATABASE_URL: info.url, MIGRATION_DATABASE_URL: info.url, MIGRATION_LOCK_TIMEOUT_MS: value }
      const started = yield* Effect.exit(Layer.build(OwnerMigrationsLive.pipe(Layer.provide(ConfigProvider.layer(ConfigProvider.fromEnv({ env }))))).pipe(Effect.scoped))
      assert.isTrue(Exit.isFailure(started), `MIGRATION_LOCK_TIMEOUT_MS=${value} refused`)
      if (Exit.isFailure(started)) assert.include(Cause.pretty(started.cause), "MIGRATION_LOCK_TIMEOUT_MS")
    }
  }).pipe(Effect.scoped), { timeout: 60_000 })
