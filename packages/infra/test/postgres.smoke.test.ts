import { decodeRows } from "../src/index.ts"
import { assert, layer } from "@effect/vitest"
import { TestDatabase } from "@pay/testkit"
import { Effect, Schema } from "effect"
import { SqlClient } from "effect/sql"

layer(TestDatabase)("Postgres (real server)", (it) => {
  it.effect("round-trips a bigint exactly inside a transaction", () =>
    Effect.gen(function* () {
      const sql = yield* SqlClient.SqlClient
      // 2^53 + 1 does not survive a JS number; it must come back as the same bigint.
      const big = 9007199254740993n
      const rows = yield* sql.withTransaction(
        decodeRows(Schema.Struct({ v: Schema.BigInt, db: Schema.String }))(sql`SELECT ${big}::bigint AS v, current_database() AS db`)
      )
      assert.strictEqual(rows[0]?.v, big)
      assert.match(rows[0]?.db ?? "", /^pay_t_[0-9a-f]+_[0-9a-f]+$/)
    }))

  it.effect("a failed transaction leaves nothing behind", () =>
    Effect.gen(function* () {
      const sql = yield* SqlClient.SqlClient
      yield* sql`CREATE TABLE smoke (id int PRIMARY KEY)`
      const attempt = sql.withTransaction(
        Effect.gen(function* () {
          yield* sql`INSERT INTO smoke VALUES (1)`
          yield* sql`INSERT INTO smoke VALUES (1)` // unique violation: the whole transaction rolls back
        })
      )
      const outcome = yield* Effect.result(attempt)
      assert.isTrue(outcome._tag === "Failure")
      const count = yield* decodeRows(Schema.Struct({ n: Schema.BigInt }))(sql`SELECT count(*)::bigint AS n FROM smoke`)
      assert.strictEqual(count[0]?.n, 0n)
    }))

  it.effect("the template carries the migrations", () =>
    Effect.gen(function* () {
      const sql = yield* SqlClient.SqlClient
      const rows = yield* decodeRows(Schema.Struct({ value: Schema.String }))(sql`SELECT value FROM platform_info WHERE key = 'schema_owner'`)
      assert.strictEqual(rows[0]?.value, "payments-ledger-platform")
    }))
})
