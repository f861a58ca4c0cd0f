// runAtOnce: the key, the work and the response in ONE statement (issue 18). The same guarantees as
// `run`: executed once per key under concurrency, a replay is the first answer's bytes, another
// body is a 422, a key leased by a `run` in flight is a 409, and a failed statement leaves nothing.
import { assert, layer } from "@effect/vitest"
import { TestDatabase } from "@pay/testkit"
import { decodeRows } from "@pay/infra"
import { Deferred, Effect, Exit, Fiber, Layer, Option, Schema } from "effect"
import { SqlClient } from "effect/sql"
import { type Execution, IdempotencyKeys, type KeyAtOnce, type StoredResponse } from "../src/index.ts"
import { createWorkTable, keyRowCount, newKey, newMerchant, oneStep, request, responseFor, runRedisLayer, workCount } from "./support.ts"

const body = { amount_minor: 1250, currency: "EUR", payment_method: "pm_card_visa" }

const Live = IdempotencyKeys.layerWith({ lockTimeout_ms: 5_000 }).pipe(
  Layer.provideMerge(Layer.mergeAll(TestDatabase, runRedisLayer()))
)

/** The work as one statement: the key's INSERT as the gate, the work row FROM it. */
const atOnce = (merchantId: string, key: string, options: { readonly fail?: boolean } = {}) =>
  (gate: KeyAtOnce<StoredResponse>) =>
    Effect.gen(function* () {
      const sql = yield* SqlClient.SqlClient
      const { statement, finished } = gate.insertFinished(responseFor(merchantId, key))
      const rows = yield* decodeRows(Schema.Struct({ n: Schema.Number }))(sql`
        WITH gate AS (${statement}),
        work AS (INSERT INTO test_work (merchant_id, idempotency_key, step)
                 SELECT ${merchantId}, ${key}, ${options.fail === true ? null : "only"} FROM gate)
        SELECT count(*)::int AS n FROM gate`)
      return rows[0]?.n === 1 ? Option.some(finished) : Option.none()
    })

layer(Live)("IdempotencyKeys.runAtOnce (real Postgres and Redis)", (it) => {
  it.effect("once, then a byte-for-byte replay; another body is a 422; nothing but one key and one work row", () =>
    Effect.gen(function* () {
      yield* createWorkTable
      const keys = yield* IdempotencyKeys
      const merchantId = yield* newMerchant
      const key = newKey()
      const first = yield* keys.runAtOnce(request(merchantId, key, body), atOnce(merchantId, key), oneStep(merchantId, key))
      assert.strictEqual(first._tag, "Executed")
      const second = yield* keys.runAtOnce(request(merchantId, key, body), atOnce(merchantId, key), oneStep(merchantId, key))
      assert.strictEqual(second._tag, "Replayed")
      assert.strictEqual(second.response.body, first.response.body)
      const reused = yield* Effect.flip(keys.runAtOnce(request(merchantId, key, { ...body, amount_minor: 1 }), atOnce(merchantId, key), oneStep(merchantId, key)))
      assert.strictEqual(reused._tag, "IdempotencyKeyReused")
      assert.strictEqual(yield* workCount(merchantId, key), 1)
      assert.strictEqual(yield* keyRowCount(merchantId, key), 1)
    }))

  it.effect("50 concurrent calls with one key: one execution; every other answer the replay or a 409", () =>
    Effect.gen(function* () {
      yield* createWorkTable
      const keys = yield* IdempotencyKeys
      const merchantId = yield* newMerchant
      const key = newKey()
      const outcomes = yield* Effect.forEach(Array.from({ length: 50 }), () =>
        Effect.exit(keys.runAtOnce(request(merchantId, key, body), atOnce(merchantId, key), oneStep(merchantId, key))), { concurrency: 50 })
      const executed = outcomes.filter((exit) => Exit.isSuccess(exit) && exit.value._tag === "Executed")
      assert.strictEqual(executed.length, 1)
      for (const exit of outcomes) {
        if (Exit.isSuccess(exit)) assert.strictEqual(exit.value.response.body, responseFor(merchantId, key).body)
        else assert.include(String(exit.cause), "IdempotencyKeyInUse")
      }
      assert.strictEqual(yield* workCount(merchantId, key), 1)
    }))

  it.effect("a key leased by a run in flight: runAtOnce writes nothing and answers 409", () =>
    Effect.gen(function* () {
      yield* createWorkTable
      const keys = yield* IdempotencyKeys
      const merchantId = yield* newMerchant
      const key = newKey()
      // A `run` holds the key: its work starts (the lease is taken), then waits for our signal.
      const leased = yield* Deferred.make<void>()
      const proceed = yield* Deferred.make<void>()
      const held = (execution: Execution) =>
        Deferred.succeed(leased, undefined).pipe(Effect.andThen(Deferred.await(proceed)), Effect.andThen(oneStep(merchantId, key)(execution)))
      const holding = yield* Effect.forkChild(keys.run(request(merchantId, key, body), held))
      yield* Deferred.await(leased)
      const refused = yield* Effect.flip(keys.runAtOnce(request(merchantId, key, body), atOnce(merchantId, key), oneStep(merchantId, key)))
      assert.strictEqual(refused._tag, "IdempotencyKeyInUse")
      yield* Deferred.succeed(proceed, undefined)
      yield* Fiber.join(holding)
      assert.strictEqual(yield* workCount(merchantId, key), 1)
    }))

  it.effect("the statement fails: nothing is written (no key, no work), and the retry executes", () =>
    Effect.gen(function* () {
      yield* createWorkTable
      const keys = yield* IdempotencyKeys
      const merchantId = yield* newMerchant
      const key = newKey()
      const failed = yield* Effect.flip(keys.runAtOnce(request(merchantId, key, body), atOnce(merchantId, key, { fail: true }), oneStep(merchantId, key)))
      assert.strictEqual(failed._tag, "SqlError")
      assert.strictEqual(yield* keyRowCount(merchantId, key), 0)
      const retried = yield* keys.runAtOnce(request(merchantId, key, body), atOnce(merchantId, key), oneStep(merchantId, key))
      assert.strictEqual(retried._tag, "Executed")
      assert.strictEqual(yield* workCount(merchantId, key), 1)
    }))

  it.effect("inside a transaction it is refused loudly (its statement would not be its own commit)", () =>
    Effect.gen(function* () {
      const keys = yield* IdempotencyKeys
      const sql = yield* SqlClient.SqlClient
      const merchantId = yield* newMerchant
      const key = newKey()
      const exit = yield* Effect.exit(sql.withTransaction(keys.runAtOnce(request(merchantId, key, body), atOnce(merchantId, key), oneStep(merchantId, key))))
      assert.isTrue(Exit.isFailure(exit) && String(exit.cause).includes("must not run inside a transaction"))
    }))
})
