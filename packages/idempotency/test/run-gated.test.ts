// runGated: the key written leased at its recovery point by the statement that allows the step
// (issue 18). The guarantees of `run`: executed once per key under concurrency, a failure after the
// point keeps it and the retry resumes there, a replay is the first answer's bytes, and a gate that
// writes nothing leaves the decision to `run`.
import { assert, layer } from "@effect/vitest"
import { TestDatabase } from "@pay/testkit"
import { decodeRows } from "@pay/infra"
import { Effect, Exit, Layer, Option, Schema } from "effect"
import { SqlClient } from "effect/sql"
import { type Execution, IdempotencyKeys, type KeyGate, type StoredResponse } from "../src/index.ts"
import { createWorkTable, keyRowCount, newKey, newMerchant, request, responseFor, runRedisLayer, workCount } from "./support.ts"

const body = { amount_minor: 700 }
const point = "step_requested"

const Live = IdempotencyKeys.layerWith({ lockTimeout_ms: 5_000 }).pipe(
  Layer.provideMerge(Layer.mergeAll(TestDatabase, runRedisLayer()))
)

const GateRow = Schema.Struct({ id: Schema.String, lock_expires_at: Schema.Date, created_at: Schema.Date })

/** The start: one statement whose `allowed` CTE has a row only when `allow`; the key written FROM it. */
const start = (allow: boolean) => (gate: KeyGate) =>
  Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    const data = { step: "gated" }
    const rows = yield* decodeRows(GateRow)(sql`
      WITH allowed AS (SELECT 1 WHERE ${allow}::boolean),
      gate AS (${gate.insertLeasedFrom("allowed", point, data)})
      SELECT id, lock_expires_at, created_at FROM gate`)
    const row = rows[0]
    return row === undefined ? Option.none() : Option.some({ record: gate.recordOf(row, point, data), payload: "read" })
  })

/** The rest of the work: one row (its step names where it started from) and the response, in one transaction. */
const finishWork = (merchantId: string, key: string, fail: { failed: boolean } | undefined) =>
  (execution: Execution<StoredResponse>, payload?: string) =>
    Effect.gen(function* () {
      const sql = yield* SqlClient.SqlClient
      if (fail !== undefined && !fail.failed) {
        fail.failed = true
        return yield* Effect.fail("unknown outcome" as const)
      }
      const step = `${execution.record.recoveryPoint}:${payload ?? "run"}:${execution.resumed ? "resumed" : "fresh"}`
      return yield* sql.withTransaction(
        Effect.gen(function* () {
          yield* sql`INSERT INTO test_work (merchant_id, idempotency_key, step) VALUES (${merchantId}, ${key}, ${step})`
          return yield* execution.finish(responseFor(merchantId, key))
        })
      )
    })

const KeyRow = Schema.Struct({ recovery_point: Schema.String, lock_token: Schema.NullOr(Schema.String), finished: Schema.Boolean })
const keyRow = (merchantId: string, key: string) =>
  Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    const [row] = yield* decodeRows(KeyRow)(sql`
      SELECT recovery_point, lock_token, finished_at IS NOT NULL AS finished FROM idempotency_keys
      WHERE merchant_id = ${merchantId} AND idempotency_key = ${key}`)
    return row
  })

layer(Live, { excludeTestServices: true })("IdempotencyKeys.runGated (real Postgres and Redis)", (it) => {
  it.effect("the gate writes the key leased at its point; a failure keeps the point; the retry resumes from it; then a byte-for-byte replay", () =>
    Effect.gen(function* () {
      yield* createWorkTable
      const keys = yield* IdempotencyKeys
      const merchantId = yield* newMerchant
      const key = newKey()
      const fail = { failed: false }
      const work = finishWork(merchantId, key, fail)
      const first = yield* Effect.exit(keys.runGated(request(merchantId, key, body), start(true), work, work))
      assert.isTrue(Exit.isFailure(first))
      // Released with its point kept (no response, no lease): the gate's write was durable.
      assert.deepStrictEqual(yield* keyRow(merchantId, key), { recovery_point: point, lock_token: null, finished: false })
      const retried = yield* keys.runGated(request(merchantId, key, body), start(true), work, work)
      assert.deepStrictEqual(retried, { _tag: "Executed", response: responseFor(merchantId, key), resumed: true })
      // The key existed: the gate wrote nothing, `run` resumed it from the point.
      assert.strictEqual(yield* workCount(merchantId, key, `${point}:run:resumed`), 1)
      const replayed = yield* keys.runGated(request(merchantId, key, body), start(true), work, work)
      assert.strictEqual(replayed._tag, "Replayed")
      assert.strictEqual(replayed.response.body, retried.response.body)
      assert.strictEqual(yield* workCount(merchantId, key), 1)
      assert.strictEqual(yield* keyRowCount(merchantId, key), 1)
    }))

  it.effect("a gated run goes on from its point with what the statement read; a closed gate writes nothing and `run` starts afresh", () =>
    Effect.gen(function* () {
      yield* createWorkTable
      const keys = yield* IdempotencyKeys
      const merchantId = yield* newMerchant
      const gatedKey = newKey()
      const gated = yield* keys.runGated(request(merchantId, gatedKey, body), start(true), finishWork(merchantId, gatedKey, undefined), finishWork(merchantId, gatedKey, undefined))
      assert.strictEqual(gated._tag, "Executed")
      assert.strictEqual(yield* workCount(merchantId, gatedKey, `${point}:read:fresh`), 1)
      const closedKey = newKey()
      const closed = yield* keys.runGated(request(merchantId, closedKey, body), start(false), finishWork(merchantId, closedKey, undefined), finishWork(merchantId, closedKey, undefined))
      assert.strictEqual(closed._tag, "Executed")
      assert.strictEqual(yield* workCount(merchantId, closedKey, "started:run:fresh"), 1)
      assert.deepStrictEqual(yield* keyRow(merchantId, closedKey), { recovery_point: "finished", lock_token: null, finished: true })
    }))

  it.effect("50 concurrent calls with one key: one execution; every other answer the replay or a 409; another body a 422", () =>
    Effect.gen(function* () {
      yield* createWorkTable
      const keys = yield* IdempotencyKeys
      const merchantId = yield* newMerchant
      const key = newKey()
      const work = finishWork(merchantId, key, undefined)
      const slow = (execution: Execution<StoredResponse>, payload?: string) => Effect.sleep(50).pipe(Effect.andThen(work(execution, payload)))
      const outcomes = yield* Effect.forEach(Array.from({ length: 50 }), () =>
        Effect.exit(keys.runGated(request(merchantId, key, body), start(true), slow, slow)), { concurrency: 50 })
      assert.strictEqual(outcomes.filter((exit) => Exit.isSuccess(exit) && exit.value._tag === "Executed").length, 1)
      for (const exit of outcomes) {
        if (Exit.isSuccess(exit)) assert.strictEqual(exit.value.response.body, responseFor(merchantId, key).body)
        else assert.include(String(exit.cause), "IdempotencyKeyInUse")
      }
      assert.strictEqual(yield* workCount(merchantId, key), 1)
      const reused = yield* Effect.flip(keys.runGated(request(merchantId, key, { amount_minor: 1 }), start(true), work, work))
      assert.strictEqual(typeof reused === "string" ? reused : reused._tag, "IdempotencyKeyReused")
    }))

  it.effect("inside a caller's transaction it refuses to run (its recovery point would not be committed before the call)", () =>
    Effect.gen(function* () {
      const sql = yield* SqlClient.SqlClient
      const keys = yield* IdempotencyKeys
      const merchantId = yield* newMerchant
      const key = newKey()
      const work = finishWork(merchantId, key, undefined)
      const exit = yield* Effect.exit(sql.withTransaction(keys.runGated(request(merchantId, key, body), start(true), work, work)))
      assert.isTrue(Exit.isFailure(exit) && String(exit.cause).includes("must not run inside a transaction"))
      assert.strictEqual(yield* keyRowCount(merchantId, key), 0)
    }))
})
