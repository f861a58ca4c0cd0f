import { generateMerchantId, type MerchantId } from "@pay/domain"
import { defaultRedisTimeouts, Redis, decodeRows } from "@pay/infra"
import { testRun } from "@pay/testkit"
import { Effect, Schema } from "effect"
import { SqlClient } from "effect/sql"
import { randomUUID } from "node:crypto"
import { IdempotencyKey } from "../src/IdempotencyKey.ts"
import { type Execution, type IdempotentRequest, storedAsIs, type StoredResponse } from "../src/Model.ts"

/** Redis of this test run (keys under the run's prefix, deleted by the global teardown). */
export const runRedisLayer = () => {
  const run = testRun()
  return Redis.layerWith({ url: run.redisUrl, keyPrefix: run.redisKeyPrefix, ...defaultRedisTimeouts })
}

export const newMerchant = Effect.gen(function* () {
  const sql = yield* SqlClient.SqlClient
  const id = yield* generateMerchantId
  yield* sql`INSERT INTO merchants (id, name) VALUES (${id}, ${"Test merchant " + id})`
  return id
})

export const newKey = (): IdempotencyKey => IdempotencyKey.make(`test-${randomUUID()}`)

/** The work the tests protect: one row per execution, so "executed once" is a COUNT. */
export const createWorkTable = Effect.gen(function* () {
  const sql = yield* SqlClient.SqlClient
  yield* sql`CREATE TABLE IF NOT EXISTS test_work (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    merchant_id text NOT NULL,
    idempotency_key text NOT NULL,
    step text NOT NULL)`
})

export const workCount = (merchantId: MerchantId, key: string, step?: string) =>
  Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    const rows = step === undefined
      ? yield* decodeRows(Schema.Struct({ n: Schema.BigInt }))(sql`SELECT count(*)::bigint AS n FROM test_work WHERE merchant_id = ${merchantId} AND idempotency_key = ${key}`)
      : yield* decodeRows(Schema.Struct({ n: Schema.BigInt }))(sql`SELECT count(*)::bigint AS n FROM test_work
          WHERE merchant_id = ${merchantId} AND idempotency_key = ${key} AND step = ${step}`)
    return Number(rows[0]?.n ?? -1n)
  })

export const keyRowCount = (merchantId: MerchantId, key: string) =>
  Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    const rows = yield* decodeRows(Schema.Struct({ n: Schema.BigInt }))(sql`
      SELECT count(*)::bigint AS n FROM idempotency_keys WHERE merchant_id = ${merchantId} AND idempotency_key = ${key}`)
    return Number(rows[0]?.n ?? -1n)
  })

/** A response body with non-ASCII text and odd spacing: replays must return these exact bytes. */
export const responseFor = (merchantId: string, key: string): StoredResponse => ({
  status: 201,
  contentType: "application/json; charset=utf-8",
  body: `{"id":"pay_${key.slice(-8)}",  "merchant":"${merchantId}","note":"café ✓ 💶","amount_minor":99999999999}\n`
})

/**
 * A one-step operation: sleeps (so concurrent requests overlap), then in ONE transaction writes its
 * work row and stores the response.
 */
export const oneStep = (merchantId: MerchantId, key: string, options: { readonly hold_ms?: number } = {}) =>
(execution: Execution) =>
  Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    if (options.hold_ms !== undefined) yield* Effect.sleep(options.hold_ms)
    return yield* sql.withTransaction(
      Effect.gen(function* () {
        yield* sql`INSERT INTO test_work (merchant_id, idempotency_key, step) VALUES (${merchantId}, ${key}, 'only')`
        return yield* execution.finish(responseFor(merchantId, key))
      })
    )
  })

export const request = (merchantId: MerchantId, key: IdempotencyKey, body: IdempotentRequest["body"]): IdempotentRequest => ({
  merchantId,
  key,
  method: "POST",
  path: "/v1/payments",
  body,
  render: storedAsIs
})

/**
 * The start of every replay test: the work table, a merchant, a fresh key, and `body` run once
 * through `run` (IdempotencyKeys.run of the layer under test); what it answered first.
 */
export const finishedKey = <E, R>(
  run: (request: IdempotentRequest, operation: ReturnType<typeof oneStep>) => Effect.Effect<{ readonly _tag: string; readonly response: StoredResponse }, E, R>,
  body: IdempotentRequest["body"]
) =>
  Effect.gen(function* () {
    yield* createWorkTable
    const merchantId = yield* newMerchant
    const key = newKey()
    const first = yield* run(request(merchantId, key, body), oneStep(merchantId, key))
    return { merchantId, key, first }
  })
