import { NodeServices } from "@effect/platform-node"
import { PgMigrator } from "@effect/sql-pg"
import { DatabaseUrl, KafkaBrokers, MigrationDatabaseUrl, RedisUrl } from "@pay/infra/Config"
import { postgresLayer, sqlFileLoader } from "@pay/infra"
import { cleanupKafkaPrefix } from "@pay/testkit/cleanupKafka"
import { cleanupRedisPrefix } from "@pay/testkit/cleanupRedis"
import { shortId, withDatabase } from "@pay/testkit/names"
import { Cause, Effect, Layer, Redacted } from "effect"
import { SqlClient } from "effect/sql"

/**
 * Where one scenario lives: a database of its own (`pay_s_<id>`, migrated, dropped at the end), a
 * Redis key prefix `s:<id>:` and a Kafka topic prefix `s.<id>.` (deleted at the end). Two scenarios
 * (or a scenario and the test suite) share nothing but the servers.
 */
export interface ScenarioStack {
  readonly id: string
  readonly database: string
  /** The schema owner's URL (migrations, the scenario's own evidence and raw-SQL attacks). */
  readonly ownerUrl: string
  /** The application role's URL (what the API server connects with). */
  readonly appUrl: string
  readonly redisUrl: string
  readonly redisKeyPrefix: string
  readonly kafkaBrokers: string
  readonly topicPrefix: string
  /** The payment events topic of this scenario. */
  readonly eventsTopic: string
}

const quoteIdent = (name: string): string => {
  if (!/^[a-z0-9_]+$/.test(name)) throw new Error(`unsafe database name ${name}`)
  return `"${name}"`
}

const onAdmin = <A, E>(ownerUrl: string, statement: (sql: SqlClient.SqlClient) => Effect.Effect<A, E>) =>
  Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    return yield* statement(sql)
  }).pipe(
    Effect.provide(postgresLayer({ url: Redacted.make(withDatabase(ownerUrl, "postgres")), maxConnections: 1, applicationName: "pay-scenario-admin" }))
  )

const migrate = (url: string) =>
  PgMigrator.run({ loader: sqlFileLoader() }).pipe(
    Effect.provide(Layer.mergeAll(postgresLayer({ url: Redacted.make(url), maxConnections: 1, applicationName: "pay-scenario-migrator" }), NodeServices.layer))
  )

/** Creates and migrates the scenario's database; drops it, its Redis keys and its topics when the scope closes. */
export const acquireStack = Effect.gen(function* () {
  const owner = Redacted.value(yield* MigrationDatabaseUrl)
  const app = Redacted.value(yield* DatabaseUrl)
  const redisUrl = yield* RedisUrl
  const kafkaBrokers = yield* KafkaBrokers
  const id = shortId(4)
  const database = `pay_s_${id}`
  const stack: ScenarioStack = {
    id,
    database,
    ownerUrl: withDatabase(owner, database),
    appUrl: withDatabase(app, database),
    redisUrl,
    redisKeyPrefix: `s:${id}:`,
    kafkaBrokers,
    topicPrefix: `s.${id}.`,
    eventsTopic: `s.${id}.payments.events`
  }
  yield* Effect.acquireRelease(
    onAdmin(owner, (sql) => sql.unsafe(`CREATE DATABASE ${quoteIdent(database)}`)),
    () =>
      Effect.forEach(
        ((): ReadonlyArray<Effect.Effect<void, unknown>> => [
          Effect.asVoid(onAdmin(owner, (sql) => sql.unsafe(`DROP DATABASE IF EXISTS ${quoteIdent(database)} WITH (FORCE)`))),
          Effect.asVoid(cleanupRedisPrefix(redisUrl, stack.redisKeyPrefix)),
          Effect.asVoid(cleanupKafkaPrefix(kafkaBrokers, stack.topicPrefix))
        ])(),
        // Cleanup must not hide the verdict: a failure is logged (the names carry the scenario's id).
        (cleanup: Effect.Effect<void, unknown>) => cleanup.pipe(Effect.catchCause((cause) => Effect.logWarning(`scenario cleanup failed: ${Cause.pretty(cause)}`))),
        { concurrency: "unbounded", discard: true }
      )
  )
  yield* migrate(stack.ownerUrl)
  return stack
})

/** The scenario's own SQL client: the owner, on the scenario's database. */
export const ownerSqlLayer = (stack: ScenarioStack) =>
  postgresLayer({ url: Redacted.make(stack.ownerUrl), maxConnections: 6, applicationName: "pay-scenario" })
