import { NodeServices } from "@effect/platform-node"
import { PgClient, PgMigrator } from "@effect/sql-pg"
import { Effect, Layer, Redacted } from "effect"
import * as Migrator from "effect/sql/Migrator"
import { SqlClient } from "effect/sql"
import { readdirSync, readFileSync } from "node:fs"
import { join } from "node:path"
import { fileURLToPath } from "node:url"
import { DatabasePoolSize, DatabaseUrl, MigrationDatabaseUrl } from "./Config.ts"
import { splitSqlStatements } from "./SqlScript.ts"

/** The project's `migrations/` folder: hand-written SQL, `NNNN_name.sql`, applied in id order. */
export const migrationsDirectory = fileURLToPath(new URL("../../../migrations", import.meta.url))

export interface PostgresOptions {
  readonly url: Redacted.Redacted<string>
  readonly maxConnections: number
  readonly applicationName?: string
}

/**
 * The `application_name` of this process's connections: the platform's, and the process (a
 * server instance, the publisher, the consumers, the sender, the CLI), so that `pg_stat_activity`
 * tells them apart and `db_client_connections` counts this process's own connections, not every
 * process's on the database. `application_name LIKE 'payments-platform/%'` finds them all.
 */
export const platformApplicationName = `payments-platform/${process.pid}`

/**
 * Options are explicit on the money path (TIGER_STYLE: never rely on a library default):
 * a bounded pool, a connect timeout so a dead database fails fast instead of hanging a request,
 * and idle connections recycled.
 */
export const postgresLayer = (options: PostgresOptions) =>
  PgClient.layer({
    url: options.url,
    maxConnections: options.maxConnections,
    minConnections: 1,
    connectTimeout: "5 seconds",
    idleTimeout: "30 seconds",
    connectionTTL: "30 minutes",
    applicationName: options.applicationName ?? platformApplicationName
  })

/** The Postgres client configured from `DATABASE_URL` and `DATABASE_POOL_SIZE`. */
export const PostgresLive = Layer.unwrap(
  Effect.gen(function* () {
    const url = yield* DatabaseUrl
    const maxConnections = yield* DatabasePoolSize
    return postgresLayer({ url, maxConnections })
  })
)

const migrationFile = /^(\d+)_([a-z0-9_]+)\.sql$/

/**
 * Loads `migrations/*.sql`. Each file is split into statements (the driver's extended protocol
 * takes one at a time) that run inside the migrator's transaction, so a migration applies whole
 * or not at all.
 */
export const sqlFileLoader = (directory: string = migrationsDirectory): Migrator.Loader =>
  Effect.try({
    try: () =>
      readdirSync(directory)
        .flatMap((file): ReadonlyArray<Migrator.ResolvedMigration> => {
          const match = migrationFile.exec(file)
          if (match === null || match[1] === undefined || match[2] === undefined) return []
          const text = readFileSync(join(directory, file), "utf8")
          const statements = splitSqlStatements(text)
          // The migrator expects `load` to yield the migration (like a dynamic import does).
          const migration = Effect.gen(function* () {
            const sql = yield* SqlClient.SqlClient
            for (const statement of statements) yield* sql.unsafe(statement)
          })
          const load = Effect.succeed(migration)
          return [[Number(match[1]), match[2], load]]
        })
        .sort((a, b) => a[0] - b[0]),
    catch: (cause) =>
      new Migrator.MigrationError({ kind: "ImportError", message: `cannot read ${directory}`, cause })
  })

/** Runs every pending migration when the layer is built. */
export const MigrationsLive = PgMigrator.layer({ loader: sqlFileLoader() }).pipe(
  Layer.provide(NodeServices.layer)
)

/**
 * Applies pending migrations as the schema owner (`MIGRATION_DATABASE_URL`), on one connection that
 * is closed when they are done: the application's own role cannot run DDL.
 */
export const OwnerMigrationsLive = Layer.effectDiscard(
  Effect.gen(function* () {
    const url = yield* MigrationDatabaseUrl
    yield* PgMigrator.run({ loader: sqlFileLoader() }).pipe(
      Effect.provide(Layer.mergeAll(
        postgresLayer({ url, maxConnections: 1, applicationName: "payments-migrator" }),
        NodeServices.layer
      ))
    )
  })
)

/** A migrated database: migrations applied by the owner first, then the application's client. */
export const DatabaseLive = PostgresLive.pipe(Layer.provideMerge(OwnerMigrationsLive))
