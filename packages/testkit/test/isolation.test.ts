// "Test runs never see each other's data" (docs/invariants.md), attacked: two test databases of one
// run (as two test files get them) are distinct clones of the migrated template, a row written in
// one is not in the other, and the run's names all carry its id.
import { assert, it } from "@effect/vitest"
import { decodeRows, postgresLayer } from "@pay/infra"
import { acquireTestDatabase, testRun } from "@pay/testkit"
import { Effect, Redacted, Schema } from "effect"
import { SqlClient } from "effect/sql"

const onDatabase = <A, E>(url: string, effect: Effect.Effect<A, E, SqlClient.SqlClient>) =>
  effect.pipe(Effect.provide(postgresLayer({ url: Redacted.make(url), maxConnections: 1, applicationName: "pay-test-isolation" })))

const merchantNames = Effect.gen(function* () {
  const sql = yield* SqlClient.SqlClient
  return (yield* decodeRows(Schema.Struct({ name: Schema.String }))(sql`SELECT name FROM merchants ORDER BY name`)).map((row) => row.name)
})

it.live("two test databases of one run are separate migrated clones: a row written in one is not in the other", () =>
  Effect.scoped(Effect.gen(function* () {
    const run = testRun()
    const first = yield* acquireTestDatabase
    const second = yield* acquireTestDatabase
    assert.notStrictEqual(first.name, second.name)
    for (const database of [first, second]) assert.include(database.name, run.runId, "a database name carries the run's id")
    assert.include(run.redisKeyPrefix, run.runId)
    assert.include(run.kafkaTopicPrefix, run.runId)

    yield* onDatabase(first.url, Effect.gen(function* () {
      const sql = yield* SqlClient.SqlClient
      yield* sql`INSERT INTO merchants (id, name) VALUES ('mer_00000000000000000000abcd', 'only in the first')`
    }))
    assert.deepStrictEqual(yield* onDatabase(first.url, merchantNames), ["only in the first"])
    // The second is a clone of the template, migrated (the table exists) and empty of the first's rows.
    assert.deepStrictEqual(yield* onDatabase(second.url, merchantNames), [])
  })), 60_000)
