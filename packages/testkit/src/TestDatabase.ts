import { postgresLayer } from "@pay/infra"
import { PgClient } from "@effect/sql-pg"
import { Effect, Layer, Redacted } from "effect"
import { SqlClient } from "effect/sql"
import { shortId, runDatabasePrefix, withDatabase } from "./names.ts"
import { testRun } from "./RunContext.ts"

/** A one-connection client on the maintenance database, for CREATE/DROP DATABASE. */
export const adminLayer = (adminDatabaseUrl: string) =>
  postgresLayer({ url: Redacted.make(adminDatabaseUrl), maxConnections: 1, applicationName: "pay-testkit-admin" })

const quoteIdent = (name: string): string => {
  if (!/^[a-z0-9_]+$/.test(name)) throw new Error(`unsafe database name ${name}`)
  return `"${name}"`
}

export const createDatabase = (name: string, template?: string) =>
  Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    const from = template === undefined ? "" : ` TEMPLATE ${quoteIdent(template)}`
    yield* sql.unsafe(`CREATE DATABASE ${quoteIdent(name)}${from}`)
    // A database's own privileges are not copied from its template: the clone gets what
    // migrations/0012_app_role.sql gives the real database (no temp tables for PUBLIC).
    if (template !== undefined) yield* sql.unsafe(`REVOKE TEMPORARY ON DATABASE ${quoteIdent(name)} FROM PUBLIC`)
  })

export const dropDatabase = (name: string) =>
  Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    yield* sql.unsafe(`DROP DATABASE IF EXISTS ${quoteIdent(name)} WITH (FORCE)`)
  })

export interface TestDatabaseInfo {
  readonly name: string
  readonly url: string
}

/**
 * A database of its own for one test file (or one `layer(...)` block): cloned from the run's
 * migrated template, dropped when the layer is released. Provides `PgClient`/`SqlClient` on it.
 */
export const makeTestDatabase = (options: { readonly maxConnections?: number } = {}) =>
  Layer.unwrap(
    Effect.gen(function* () {
      const info = yield* acquireTestDatabase
      return postgresLayer({
        url: Redacted.make(info.url),
        maxConnections: options.maxConnections ?? 16,
        applicationName: "pay-test"
      })
    })
  )

/** A test database's URL as one of the platform's roles (`pay_app`, `pay_consumer`, `pay_publisher`: scripts/roles.sql), no password (trust on loopback). */
export const testDatabaseUrlAsRole = (url: string, role: string): string => {
  const asRole = new URL(url)
  asRole.username = role
  asRole.password = ""
  return asRole.toString()
}

/** A client on a test database logged in as one of the platform's roles, to run code with exactly that role's grants. */
export const testDatabaseAsRole = (info: TestDatabaseInfo, role: string, maxConnections = 4) =>
  postgresLayer({ url: Redacted.make(testDatabaseUrlAsRole(info.url, role)), maxConnections, applicationName: `pay-test-${role}` })

/** A database of the run (a clone of `template`, or empty), dropped (FORCE) when the scope closes. */
const acquireDatabase = (template: "migrated" | "empty") =>
  Effect.gen(function* () {
    const run = testRun()
    const name = `${runDatabasePrefix(run.runId)}_${shortId()}`
    const admin = adminLayer(run.adminDatabaseUrl)
    yield* Effect.acquireRelease(
      createDatabase(name, template === "migrated" ? run.templateDatabase : undefined).pipe(Effect.provide(admin)),
      () => dropDatabase(name).pipe(Effect.provide(admin), Effect.orDie)
    )
    const info: TestDatabaseInfo = { name, url: withDatabase(run.adminDatabaseUrl, name) }
    return info
  })

/** Creates a fresh clone of the migrated template and drops it (FORCE) when the scope closes. */
export const acquireTestDatabase = acquireDatabase("migrated")

/** An EMPTY database (not cloned from the migrated template), dropped (FORCE) when the scope closes: what a first deployment meets. */
export const acquireEmptyTestDatabase = acquireDatabase("empty")

export const TestDatabase = makeTestDatabase()
export type TestSql = PgClient.PgClient
