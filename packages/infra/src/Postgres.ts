import { NodeServices } from "@effect/platform-node"
import { PgClient, PgMigrator } from "@effect/sql-pg"
import { Config, Effect, Layer, Redacted, Schedule, Schema } from "effect"
import * as Migrator from "effect/sql/Migrator"
import { SqlClient } from "effect/sql"
import { readFileSync } from "node:fs"
import { join } from "node:path"
import {
  ConsumersDatabasePoolSize,
  ConsumersDatabaseUrl,
  DatabaseAnswerTimeout,
  DatabaseIdleInTransactionTimeout,
  DatabasePoolSize,
  DatabaseUrl,
  KeysDatabaseUrl,
  MigrationDatabaseUrl,
  MigrationLockTimeout,
  PublisherDatabasePoolSize,
  PublisherDatabaseUrl
} from "./Config.ts"
import { databaseTarget } from "./DatabaseTarget.ts"
import { watchedAddressOf, watchedSocketFactory } from "./PostgresAnswerWatch.ts"
import { sessionStartupParameters } from "./PostgresSessionBounds.ts"
import { failureText, hasSqlState, sqlErrorIn, sqlStateOf } from "./SqlFailure.ts"
import { decodeRows } from "./SqlRows.ts"
import { splitSqlStatements } from "./SqlScript.ts"
import {
  buildFilesRefusal,
  carriedMigrations,
  compareMigrations,
  type MigrationComparison,
  migrationsDirectory,
  migrationsInBrief,
  unreachableMessage
} from "./MigrationComparison.ts"

export interface PostgresOptions {
  readonly url: Redacted.Redacted<string>
  readonly maxConnections: number
  readonly applicationName?: string
  /**
   * A connection whose statement has had no answer for this long is destroyed (PostgresAnswerWatch.ts:
   * a network partition becomes a dropped connection, answered 503). 0 or absent: no bound (tools
   * that run long statements). Over TLS the watch is coarser: a statement no byte answers.
   */
  readonly answerTimeout_ms?: number
  /**
   * When set, every connection's startup packet bounds the backend's side of a partition
   * (PostgresSessionBounds.ts): this `idle_in_transaction_session_timeout` (0: the server's) and the server's
   * TCP keepalives, user timeout and client check. Absent: the server's own settings.
   */
  readonly idleInTransactionTimeout_ms?: number
  /** When set, every connection's `lock_timeout` (the migrator's: MIGRATION_LOCK_TIMEOUT_MS). */
  readonly lockTimeout_ms?: number
}

/**
 * The `application_name` of this process's connections: the platform's, and the process (a
 * server instance, the publisher, the consumers, the sender, the CLI), so that `pg_stat_activity`
 * tells them apart and `db_client_connections` counts this process's own connections, not every
 * process's on the database. `application_name LIKE 'payments-platform/%'` finds them all.
 */
export const platformApplicationName = `payments-platform/${process.pid}`

/**
 * The consumers' pool's `application_name` (`CONSUMERS_DATABASE_URL`): apart from the API's inside
 * a server, so that each pool's sample (`db_client_connections{pool}`) counts its own connections;
 * `LIKE 'payments-platform/%'` still finds them all.
 */
export const consumersApplicationName = `${platformApplicationName}/consumers`

/** The publisher's pool's `application_name` (`PUBLISHER_DATABASE_URL`), apart likewise. */
export const publisherApplicationName = `${platformApplicationName}/publisher`

/**
 * Options are explicit on the money path (TIGER_STYLE: never rely on a library default):
 * a bounded pool, a connect timeout so a dead database fails fast instead of hanging a request,
 * and idle connections recycled.
 */
export const postgresLayer = (options: PostgresOptions) => {
  const answerTimeout_ms = options.answerTimeout_ms ?? 0
  const address = answerTimeout_ms > 0 ? watchedAddressOf(Redacted.value(options.url)) : undefined
  return PgClient.layer({
    url: options.url,
    ...(address === undefined ? {} : { stream: watchedSocketFactory(address, answerTimeout_ms) }),
    ...(options.idleInTransactionTimeout_ms === undefined && options.lockTimeout_ms === undefined
      ? {}
      : {
        startupParameters: {
          ...(options.idleInTransactionTimeout_ms === undefined ? {} : sessionStartupParameters(options.idleInTransactionTimeout_ms)),
          ...(options.lockTimeout_ms === undefined ? {} : { lock_timeout: String(options.lockTimeout_ms) })
        }
      }),
    maxConnections: options.maxConnections,
    minConnections: 1,
    connectTimeout: "5 seconds",
    idleTimeout: "30 seconds",
    connectionTTL: "30 minutes",
    applicationName: options.applicationName ?? platformApplicationName
  })
}

/** A client whose URL and pool size come from the given settings, with the answer and session bounds of DATABASE_*. */
const postgresFrom = (
  urlConfig: Config.Config<Redacted.Redacted<string>>,
  poolSizeConfig: Config.Config<number>,
  answerTimeoutDefault_ms: number,
  applicationName: string = platformApplicationName
) =>
  Layer.unwrap(
    Effect.gen(function* () {
      const url = yield* urlConfig
      const maxConnections = yield* poolSizeConfig
      const answerTimeout_ms = yield* DatabaseAnswerTimeout(answerTimeoutDefault_ms)
      const idleInTransactionTimeout_ms = yield* DatabaseIdleInTransactionTimeout
      if (answerTimeout_ms > 0 && watchedAddressOf(Redacted.value(url)) === undefined) {
        // Said once at start-up: otherwise a partition would find the bound silently absent.
        yield* Effect.logWarning("DATABASE_ANSWER_TIMEOUT_MS does not apply: the database URL names several hosts or is not one the driver reads (a bad escape, port or sslmode); a statement on a partitioned connection waits for TCP to give up")
      }
      return postgresLayer({ url, maxConnections, answerTimeout_ms, idleInTransactionTimeout_ms, applicationName })
    })
  )

/**
 * The Postgres client configured from `DATABASE_URL`, `DATABASE_POOL_SIZE`,
 * `DATABASE_ANSWER_TIMEOUT_MS` (its default `answerTimeoutDefault_ms`) and
 * `DATABASE_IDLE_IN_TRANSACTION_TIMEOUT_MS` (with the server's TCP bounds, PostgresSessionBounds.ts).
 */
export const postgresLiveWith = (answerTimeoutDefault_ms: number) => postgresFrom(DatabaseUrl, DatabasePoolSize, answerTimeoutDefault_ms)

/**
 * A service's client (the server, the publisher, the consumers, the sender): answers bounded by
 * 10 s unless configured. Twice the one wait with a bound of its own (a payment's row lock,
 * `lock_timeout` 5 s, PaymentRepository.ts): that wait ends in its own typed answer (409), never in
 * the watch's 503. Waits without a bound of their own (other row and advisory locks) end here
 * after 10 s (ADR 0015).
 */
export const defaultAnswerTimeout_ms = 10_000
export const PostgresLive = postgresLiveWith(defaultAnswerTimeout_ms)

/** A tool's client (the CLI, migrations): its statements may run long (a reconcile of a big ledger); no answer bound unless configured. */
export const PostgresToolLive = postgresLiveWith(0)

/**
 * The consumers' client (`CONSUMERS_DATABASE_URL`, `CONSUMERS_DATABASE_POOL_SIZE`; the role
 * `pay_consumer`, migrations/0096): the consumers and the webhook sender, in their own processes or
 * inside a server (a pool apart from the API's), with the services' answer bound.
 */
export const ConsumersPostgresLive = postgresFrom(ConsumersDatabaseUrl, ConsumersDatabasePoolSize, defaultAnswerTimeout_ms, consumersApplicationName)

/**
 * The outbox publisher's client (`PUBLISHER_DATABASE_URL`, `PUBLISHER_DATABASE_POOL_SIZE`; the role
 * `pay_publisher`, migrations/0108), inside a server (a pool apart from the API's) or in its own
 * process, with the services' answer bound.
 */
export const PublisherPostgresLive = postgresFrom(PublisherDatabaseUrl, PublisherDatabasePoolSize, defaultAnswerTimeout_ms, publisherApplicationName)

/** The same for the CLI's consumer commands (a replay or reconcile may run long): no answer bound unless configured. */
export const ConsumersPostgresToolLive = postgresFrom(ConsumersDatabaseUrl, ConsumersDatabasePoolSize, 0, consumersApplicationName)

/**
 * Loads `migrations/*.sql`. Each file is split into statements (the driver's extended protocol
 * takes one at a time) that run inside the migrator's transaction, so a migration applies whole
 * or not at all.
 */
export const sqlFileLoader = (directory: string = migrationsDirectory): Migrator.Loader =>
  Effect.try({
    try: () =>
      carriedMigrations(directory).map(({ id, name, stem }): Migrator.ResolvedMigration => {
        const statements = splitSqlStatements(readFileSync(join(directory, `${stem}.sql`), "utf8"))
        // The migrator expects `load` to yield the migration (like a dynamic import does).
        const migration = Effect.gen(function* () {
          const sql = yield* SqlClient.SqlClient
          for (const statement of statements) yield* sql.unsafe(statement)
        })
        return [id, name, Effect.succeed(migration)]
      }),
    catch: (cause) =>
      new Migrator.MigrationError({ kind: "ImportError", message: `cannot read ${directory}`, cause })
  })

/** Runs every pending migration when the layer is built. */
export const MigrationsLive = PgMigrator.layer({ loader: sqlFileLoader() }).pipe(
  Layer.provide(NodeServices.layer)
)

const AppliedMigrations = decodeRows(Schema.Struct({ migration_id: Schema.Number, name: Schema.String }))

/** What the database has applied, from the migrator's table. */
const appliedMigrations = (sql: SqlClient.SqlClient) =>
  AppliedMigrations(sql`SELECT migration_id, name FROM effect_sql_migrations ORDER BY migration_id`)

/** The table the migrator keeps does not exist yet (an empty database): nothing applied. */
const isUndefinedTable = hasSqlState("42P01")

/** The comparison, read on `sql`'s connection (an empty database has applied none). */
const migrationsOf = (sql: SqlClient.SqlClient) =>
  appliedMigrations(sql).pipe(
    Effect.catchIf(isUndefinedTable, () => Effect.succeed([])),
    Effect.map((applied) => compareMigrations(applied))
  )

/**
 * True when the database already has every migration this build carries, read as the application's
 * role (`DATABASE_URL`; 0085 lets it read the migrator's table) on one connection closed at once.
 * Every carried migration must be there, by id, and no two files share one (`compareMigrations`). False when
 * it cannot tell (no such table yet, a database before 0085, no answer), said in an INFO line with
 * the reason: the migrator then runs and reports what is wrong, as it always did.
 */
const schemaIsCurrent = Effect.gen(function* () {
  const url = yield* DatabaseUrl
  const comparison = yield* Effect.flatMap(SqlClient.SqlClient, appliedMigrations).pipe(
    Effect.map((applied) => compareMigrations(applied)),
    Effect.provide(postgresLayer({ url, maxConnections: 1, applicationName: "payments-schema-check" }))
  )
  const current = comparison.missing.length === 0 && comparison.shared_ids.length === 0 && comparison.misnamed.length === 0
  yield* Effect.logDebug(current ? "migrations: none pending" : "migrations: pending").pipe(
    Effect.annotateLogs({ newest_applied: comparison.newest_applied, newest_carried: comparison.newest_carried, missing: comparison.missing })
  )
  if (comparison.renamed.length > 0) {
    yield* Effect.logWarning("migrations: applied under another name (a file renamed after it shipped, or two files sharing an id: check which)").pipe(
      Effect.annotateLogs({ renamed: migrationsInBrief(comparison.renamed) })
    )
  }
  return current
}).pipe(
  // The driver's own words (a pre-0085 database: "permission denied for table …"), not only the client's "Query failed".
  Effect.mapError(failureText),
  Effect.catch((reason) =>
    Effect.as(
      Effect.logInfo("migrations: could not read which are applied as the application's role; the migrator decides").pipe(
        Effect.annotateLogs({ reason })
      ),
      false
    )
  )
)

/**
 * Pending migrations could not be applied (rolled back whole): what the database said
 * (`refused_by: "database"`), or why this build's own files would not all run (`"build"`).
 */
export class MigrationsFailed extends Schema.TaggedError<MigrationsFailed>()("MigrationsFailed", {
  message: Schema.String,
  refused_by: Schema.Literals(["database", "build"])
}) {}

/** How many times, in all, the migrations are tried when a lock is not granted within MIGRATION_LOCK_TIMEOUT_MS. */
export const MIGRATION_LOCK_ATTEMPTS = 3

/** Stops (nothing applied) on what the migrator would otherwise skip for ever. */
const refuseWhatTheMigratorWouldSkip = (comparison: MigrationComparison) => {
  const refusal = buildFilesRefusal(comparison) ?? (comparison.unreachable.length > 0 ? unreachableMessage(comparison) : undefined)
  return refusal === undefined ? Effect.void : Effect.fail(new MigrationsFailed({ message: refusal, refused_by: "build" }))
}

/** A statement (or the migrator's failure wrapping it) ended by `lock_timeout` (SQLSTATE 55P03). */
const isLockTimeout = hasSqlState("55P03")

/**
 * Applies pending migrations as the schema owner (`MIGRATION_DATABASE_URL`), on one connection that
 * is closed when they are done: the application's own role cannot run DDL. That connection waits
 * at most `MIGRATION_LOCK_TIMEOUT_MS` for any one lock (then the migrations roll back whole and the
 * process stops, naming the wait): the pending files run in one transaction, and a DDL lock
 * request queued behind a long transaction would otherwise hold every statement on its table. When none is pending
 * (`schemaIsCurrent`), the owner is never connected: a process or a CLI command needs only the
 * application's URL once the schema is deployed.
 */
export const OwnerMigrationsLive = Layer.effectDiscard(
  Effect.gen(function* () {
    // Read first, so that a value out of bounds is refused at every start, not at the next upgrade.
    const lockTimeout_ms = yield* MigrationLockTimeout
    if (yield* schemaIsCurrent) return
    const url = yield* MigrationDatabaseUrl
    yield* Effect.flatMap(SqlClient.SqlClient, migrationsOf).pipe(
      Effect.flatMap(refuseWhatTheMigratorWouldSkip),
      Effect.andThen(PgMigrator.run({ loader: sqlFileLoader() })),
      // A lock not granted in time rolls the migrations back whole: tried again, at most
      // MIGRATION_LOCK_ATTEMPTS times in all, a second apart (another process migrating, a
      // publisher's transaction around a slow Kafka send), then the process stops naming the wait.
      Effect.tapError((error) =>
        isLockTimeout(error)
          ? Effect.logWarning("migrations: a lock was not granted in time; nothing applied").pipe(Effect.annotateLogs({ lock_timeout_ms: lockTimeout_ms }))
          : Effect.void
      ),
      Effect.retry({ times: MIGRATION_LOCK_ATTEMPTS - 1, while: isLockTimeout, schedule: Schedule.spaced("1 second") }),
      // One error that says what failed and as whom, with the driver's reason (a refused DDL, a
      // lock timeout): the process's one failure line, and the CLI's, read it as it is.
      // A database that does not answer stays the driver's error (an outage, said as such by the
      // caller); a refusal it answered with is the migrations' failure.
      Effect.mapError((error) => {
        if (error instanceof MigrationsFailed) return error
        const sqlError = sqlErrorIn(error)
        if (sqlError !== undefined && sqlStateOf(sqlError) === undefined) return sqlError
        return new MigrationsFailed({
          refused_by: "database",
          message: `migrations as MIGRATION_DATABASE_URL (${databaseTarget(Redacted.value(url))}) failed, nothing applied: ${failureText(sqlError ?? error)}`
        })
      }),
      Effect.provide(Layer.mergeAll(
        postgresLayer({ url, maxConnections: 1, applicationName: "payments-migrator", lockTimeout_ms }),
        NodeServices.layer
      ))
    )
  })
)

/** A migrated database: migrations applied by the owner first, then the application's client. */
export const DatabaseLive = PostgresLive.pipe(Layer.provideMerge(OwnerMigrationsLive))

/**
 * The database has not got every migration this build carries: a tool stops (nothing done) rather
 * than apply them as a side effect of a read (`pnpm cli migrate` applies them on purpose).
 */
export class SchemaBehind extends Schema.TaggedError<SchemaBehind>()("SchemaBehind", {
  newest_applied: Schema.Number,
  newest_carried: Schema.Number,
  /** The carried migrations the database lacks (`0101_name`). */
  missing: Schema.Array(Schema.String)
}) {}

/** How the database's migrations compare with this build's (the CLI's `migrate` prints it). */
export const migrationProgress = Effect.flatMap(SqlClient.SqlClient, migrationsOf)

/**
 * Stops the build with `SchemaBehind` unless the database has every migration this build carries,
 * read on the tool's own connection (the application's role reads `effect_sql_migrations` since
 * 0085). Never connects as the owner, never changes the schema.
 */
export const SchemaCurrentRequired = Layer.effectDiscard(
  Effect.gen(function* () {
    const progress = yield* migrationProgress
    const refusal = buildFilesRefusal(progress)
    if (refusal !== undefined) return yield* new MigrationsFailed({ message: refusal, refused_by: "build" })
    if (progress.missing.length > 0) {
      return yield* new SchemaBehind({ newest_applied: progress.newest_applied, newest_carried: progress.newest_carried, missing: progress.missing })
    }
  })
)

/**
 * The same for a tool (the CLI): no answer bound unless `DATABASE_ANSWER_TIMEOUT_MS` says so, and
 * the schema checked, not migrated: an operator's read during an incident never changes it.
 */
export const ToolDatabaseLive = SchemaCurrentRequired.pipe(Layer.provideMerge(PostgresToolLive))

/** How long a key command waits for a row lock (a key being revoked elsewhere) before it says so. */
export const keysLockTimeout_ms = 5_000

/**
 * The CLI's key commands' client (`KEYS_DATABASE_URL`, the role `pay_keys`: migrations/0109), two
 * connections at most, the schema checked as for the other commands, and row locks waited for at
 * most `keysLockTimeout_ms`: a revocation behind another session's lock on the key waited in silence
 * for ever (outside review of 0109); now it ends in a line saying so.
 */
export const KeysToolDatabaseLive = SchemaCurrentRequired.pipe(
  Layer.provideMerge(Layer.unwrap(Effect.map(KeysDatabaseUrl, (url) =>
    postgresLayer({ url, maxConnections: 2, lockTimeout_ms: keysLockTimeout_ms, applicationName: `${platformApplicationName}/keys` }))))
)

/** A tool that applies pending migrations (`pnpm cli migrate`) as the owner, then works as `DATABASE_URL`. */
export const MigratingToolDatabaseLive = PostgresToolLive.pipe(Layer.provideMerge(OwnerMigrationsLive))
