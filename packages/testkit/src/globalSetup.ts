/**
 * Vitest global setup: one per `vitest run`. Creates the run's migrated template database and
 * hands every test file the names it must use; at the end drops every database, Redis key and
 * Kafka topic the run created, so runs never see each other's data.
 */
import { KafkaBrokers, MigrationDatabaseUrl, RedisUrl } from "@pay/infra/Config"
import { decodeRows, postgresLayer, sqlFileLoader } from "@pay/infra"
import { NodeServices } from "@effect/platform-node"
import { PgMigrator } from "@effect/sql-pg"
import { Effect, Layer, Redacted, Schema } from "effect"
import { SqlClient } from "effect/sql"
import type { TestProject } from "vitest/node"
import { runDatabasePrefix, shortId, withDatabase } from "./names.ts"
import type { TestRun } from "./RunContext.ts"
import { adminLayer, createDatabase, dropDatabase } from "./TestDatabase.ts"
import { cleanupRedisPrefix } from "./cleanupRedis.ts"
import { cleanupKafkaPrefix } from "./cleanupKafka.ts"

const readEnvironment = Effect.gen(function* () {
  // The owner's URL: the run creates, migrates and drops databases (the app role cannot).
  const databaseUrl = Redacted.value(yield* MigrationDatabaseUrl)
  const redisUrl = yield* RedisUrl
  const kafkaBrokers = yield* KafkaBrokers
  return { databaseUrl, redisUrl, kafkaBrokers }
})

const migrateTemplate = (url: string) =>
  PgMigrator.run({ loader: sqlFileLoader() }).pipe(
    Effect.provide(Layer.mergeAll(postgresLayer({ url: Redacted.make(url), maxConnections: 1 }), NodeServices.layer))
  )

const databaseNames = decodeRows(Schema.Struct({ datname: Schema.String }))

const dropRunDatabases = (run: TestRun) =>
  Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    const rows = yield* databaseNames(sql`
      SELECT datname FROM pg_database WHERE datname LIKE ${runDatabasePrefix(run.runId) + "\\_%"}`)
    // the template must lose its flag before it can be dropped
    for (const row of rows) yield* dropDatabase(row.datname)
  }).pipe(Effect.provide(adminLayer(run.adminDatabaseUrl)))

export default async function setup(project: TestProject) {
  const env = await Effect.runPromise(readEnvironment)
  // Read once, here. The processes the tests start (servers, workers, the CLI) are given their
  // test database as DATABASE_URL and must migrate that one: inheriting a shell's
  // MIGRATION_DATABASE_URL (`eval "$(scripts/stack.sh env)"`) would have them migrate the
  // developer's own database instead. The test workers are forked after this, without it.
  delete process.env["MIGRATION_DATABASE_URL"]
  const runId = shortId(5)
  const adminDatabaseUrl = withDatabase(env.databaseUrl, "postgres")
  const templateDatabase = `${runDatabasePrefix(runId)}_tmpl`
  const run: TestRun = {
    runId,
    adminDatabaseUrl,
    templateDatabase,
    redisUrl: env.redisUrl,
    redisKeyPrefix: `t:${runId}:`,
    kafkaBrokers: env.kafkaBrokers,
    kafkaTopicPrefix: `t.${runId}.`
  }
  await Effect.runPromise(createDatabase(templateDatabase).pipe(Effect.provide(adminLayer(adminDatabaseUrl))))
  await Effect.runPromise(migrateTemplate(withDatabase(adminDatabaseUrl, templateDatabase)))
  project.provide("testRun", run)

  return async () => {
    const results = await Promise.allSettled([
      Effect.runPromise(dropRunDatabases(run)),
      Effect.runPromise(cleanupRedisPrefix(run.redisUrl, run.redisKeyPrefix)),
      Effect.runPromise(cleanupKafkaPrefix(run.kafkaBrokers, run.kafkaTopicPrefix))
    ])
    for (const result of results) {
      if (result.status === "rejected") console.error("[testkit] cleanup failed:", result.reason)
    }
  }
}
