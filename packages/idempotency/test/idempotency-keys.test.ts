import { assert, layer } from "@effect/vitest"
import { Redis, decodeRows } from "@pay/infra"
import { expectSqlRefusal, TestDatabase } from "@pay/testkit"
import { Effect, Exit, Layer, Schema } from "effect"
import { SqlClient } from "effect/sql"
import {
  fingerprintRequest,
  IdempotencyKeys,
  redisInFlightKey,
  redisResponseKey,
  storedAsIs,
  type BeginRequest,
  type Execution,
  type Began
} from "../src/index.ts"
import {
  createWorkTable,
  keyRowCount,
  newKey,
  newMerchant,
  oneStep,
  request,
  responseFor,
  runRedisLayer,
  workCount
} from "./support.ts"

const body = { amount_minor: 1250, currency: "EUR", payment_method: "pm_card_visa" }

const Live = IdempotencyKeys.layerWith({ lockTimeout_ms: 5_000 }).pipe(
  Layer.provideMerge(Layer.mergeAll(TestDatabase, runRedisLayer()))
)

const beginRequest = (merchantId: BeginRequest["merchantId"], key: BeginRequest["key"], lockTimeout_ms?: number): BeginRequest => ({
  merchantId,
  key,
  method: "POST",
  path: "/v1/payments",
  fingerprint: fingerprintRequest({ method: "POST", path: "/v1/payments", body }),
  ...(lockTimeout_ms === undefined ? {} : { lockTimeout_ms })
})

const expectTag = <T extends { readonly _tag: string }>(value: T, tag: string) =>
  assert.strictEqual(value._tag, tag, `expected ${tag}, got ${value._tag}`)

const recordOf = (began: Began) => {
  if (began._tag === "Replay") throw new Error("expected a lease, got a replay")
  return began.record
}

layer(Live, { excludeTestServices: true })("IdempotencyKeys (real Postgres and Redis)", (it) => {
  it.effect("same request twice: one execution, the second is a byte-for-byte replay", () =>
    Effect.gen(function* () {
      const keys = yield* IdempotencyKeys
      yield* createWorkTable
      const merchantId = yield* newMerchant
      const key = newKey()
      const first = yield* keys.run(request(merchantId, key, body), oneStep(merchantId, key))
      const second = yield* keys.run(request(merchantId, key, body), oneStep(merchantId, key))
      expectTag(first, "Executed")
      expectTag(second, "Replayed")
      assert.strictEqual(yield* workCount(merchantId, key), 1)
      assert.deepStrictEqual(second.response, first.response)
      assert.isTrue(Buffer.from(second.response.body, "utf8").equals(Buffer.from(responseFor(merchantId, key).body, "utf8")))
      if (second._tag === "Replayed") assert.strictEqual(second.decidedBy, "redis")
    }))

  it.effect("50 concurrent requests with one key: exactly one execution; every other answer a replay or a 409", () =>
    Effect.gen(function* () {
      const keys = yield* IdempotencyKeys
      yield* createWorkTable
      const merchantId = yield* newMerchant
      const key = newKey()
      const outcomes = yield* Effect.forEach(
        Array.from({ length: 50 }, (_, i) => i),
        () => Effect.result(keys.run(request(merchantId, key, body), oneStep(merchantId, key, { hold_ms: 150 }))),
        { concurrency: "unbounded" }
      )
      const tags = outcomes.map((o) => (o._tag === "Success" ? o.success._tag : o.failure._tag))
      assert.strictEqual(tags.filter((t) => t === "Executed").length, 1)
      assert.strictEqual(tags.filter((t) => t === "Executed" || t === "Replayed" || t === "IdempotencyKeyInUse").length, 50)
      assert.strictEqual(yield* workCount(merchantId, key), 1)
      // Afterwards, every retry is a replay.
      const after = yield* keys.run(request(merchantId, key, body), oneStep(merchantId, key))
      expectTag(after, "Replayed")
    }))

  it.effect("same key, different body: 422 idempotency_key_reused, nothing executed or written (Redis and Postgres)", () =>
    Effect.gen(function* () {
      const keys = yield* IdempotencyKeys
      const redis = yield* Redis
      const sql = yield* SqlClient.SqlClient
      yield* createWorkTable
      const merchantId = yield* newMerchant
      const key = newKey()
      yield* keys.run(request(merchantId, key, body), oneStep(merchantId, key))
      const snapshot = yield* sql`SELECT * FROM idempotency_keys WHERE merchant_id = ${merchantId} AND idempotency_key = ${key}`

      const other = { ...body, amount_minor: 1251 }
      const viaRedis = yield* Effect.flip(keys.run(request(merchantId, key, other), oneStep(merchantId, key)))
      assert.strictEqual(viaRedis._tag, "IdempotencyKeyReused")
      if (viaRedis._tag === "IdempotencyKeyReused") {
        assert.strictEqual(viaRedis.decidedBy, "redis")
        assert.strictEqual(viaRedis.code, "idempotency_key_reused")
      }

      yield* redis.del(redisResponseKey(merchantId, key))
      const viaPostgres = yield* Effect.flip(keys.run(request(merchantId, key, other), oneStep(merchantId, key)))
      assert.strictEqual(viaPostgres._tag, "IdempotencyKeyReused")
      if (viaPostgres._tag === "IdempotencyKeyReused") assert.strictEqual(viaPostgres.decidedBy, "postgres")

      // A different path with the same body is a different request too.
      const otherPath = yield* Effect.flip(
        keys.run({ ...request(merchantId, key, body), path: "/v1/payments/x/authorize" }, oneStep(merchantId, key))
      )
      assert.strictEqual(otherPath._tag, "IdempotencyKeyReused")

      assert.strictEqual(yield* workCount(merchantId, key), 1)
      const after = yield* sql`SELECT * FROM idempotency_keys WHERE merchant_id = ${merchantId} AND idempotency_key = ${key}`
      assert.deepStrictEqual(after, snapshot)
      // The in-flight marker of the refused requests is gone (it would turn later replays into 409s).
      assert.isNull(yield* redis.get(redisInFlightKey(merchantId, key)))
    }))

  it.effect("a different body while the first is in flight is a 422, not a 409", () =>
    Effect.gen(function* () {
      const keys = yield* IdempotencyKeys
      const merchantId = yield* newMerchant
      const key = newKey()
      const first = yield* keys.begin(beginRequest(merchantId, key))
      expectTag(first, "Fresh")
      const other = yield* Effect.flip(
        keys.begin({ ...beginRequest(merchantId, key), fingerprint: fingerprintRequest({ method: "POST", path: "/v1/payments", body: {} }) })
      )
      assert.strictEqual(other._tag, "IdempotencyKeyReused")
      const same = yield* Effect.flip(keys.begin(beginRequest(merchantId, key)))
      assert.strictEqual(same._tag, "IdempotencyKeyInUse")
      if (same._tag === "IdempotencyKeyInUse") assert.strictEqual(same.decidedBy, "redis")
      yield* keys.release(recordOf(first))
    }))

  it.effect("Redis flushed between the first request and the retry: replay from Postgres, then Redis again", () =>
    Effect.gen(function* () {
      const keys = yield* IdempotencyKeys
      const redis = yield* Redis
      yield* createWorkTable
      const merchantId = yield* newMerchant
      const key = newKey()
      const first = yield* keys.run(request(merchantId, key, body), oneStep(merchantId, key))
      assert.isNotNull(yield* redis.get(redisResponseKey(merchantId, key)))
      // What a FLUSHALL does to this key (the shared Redis is never flushed by tests).
      yield* redis.del(redisResponseKey(merchantId, key))
      yield* redis.del(redisInFlightKey(merchantId, key))
      const fromPostgres = yield* keys.run(request(merchantId, key, body), oneStep(merchantId, key))
      const fromRedis = yield* keys.run(request(merchantId, key, body), oneStep(merchantId, key))
      assert.deepStrictEqual(fromPostgres, { _tag: "Replayed", response: first.response, decidedBy: "postgres" })
      assert.deepStrictEqual(fromRedis, { _tag: "Replayed", response: first.response, decidedBy: "redis" })
      assert.strictEqual(yield* workCount(merchantId, key), 1)
    }))

  it.effect("cross-merchant: merchant B's same key is a different key", () =>
    Effect.gen(function* () {
      const keys = yield* IdempotencyKeys
      yield* createWorkTable
      const merchantA = yield* newMerchant
      const merchantB = yield* newMerchant
      const key = newKey()
      const a = yield* keys.run(request(merchantA, key, body), oneStep(merchantA, key))
      const b = yield* keys.run(request(merchantB, key, body), oneStep(merchantB, key))
      expectTag(a, "Executed")
      expectTag(b, "Executed")
      assert.notStrictEqual(a.response.body, b.response.body)
      // A third merchant with A's key and a different body is not a 422 either: A's fingerprint is
      // not its business.
      const merchantC = yield* newMerchant
      const c = yield* keys.run(request(merchantC, key, { other: true }), oneStep(merchantC, key))
      expectTag(c, "Executed")
      assert.strictEqual(yield* workCount(merchantA, key), 1)
      assert.strictEqual(yield* workCount(merchantB, key), 1)
      assert.strictEqual(yield* workCount(merchantC, key), 1)
    }))

  it.effect("begin / advance / finish / replay, with the recovery point written in the work's transaction", () =>
    Effect.gen(function* () {
      const keys = yield* IdempotencyKeys
      const sql = yield* SqlClient.SqlClient
      const merchantId = yield* newMerchant
      const key = newKey()
      const fresh = yield* keys.begin(beginRequest(merchantId, key))
      expectTag(fresh, "Fresh")
      const record = recordOf(fresh)
      assert.strictEqual(record.recoveryPoint, "started")
      assert.strictEqual(record.runCount, 1)

      // A step whose transaction rolls back leaves the recovery point where it was.
      const failed = yield* Effect.flip(
        sql.withTransaction(
          Effect.gen(function* () {
            yield* keys.advance(record, "payment_created", { payment_id: "pay_rolled_back" })
            return yield* Effect.fail("boom" as const)
          })
        )
      )
      assert.strictEqual(failed, "boom")
      const afterRollback = yield* decodeRows(Schema.Struct({ recovery_point: Schema.String }))(sql`SELECT recovery_point FROM idempotency_keys WHERE id = ${record.id}`)
      assert.strictEqual(afterRollback[0]?.recovery_point, "started")

      const advanced = yield* sql.withTransaction(keys.advance(record, "payment_created", { payment_id: "pay_1" }))
      assert.strictEqual(advanced.recoveryPoint, "payment_created")
      assert.deepStrictEqual(advanced.recoveryData, { payment_id: "pay_1" })

      const response = responseFor(merchantId, key)
      yield* sql.withTransaction(keys.finish(advanced, response))
      const replay = yield* keys.begin(beginRequest(merchantId, key))
      assert.deepStrictEqual(replay, { _tag: "Replay", response, decidedBy: "redis" })

      // The database refuses to rewrite a stored response, whoever asks.
      yield* expectSqlRefusal(sql`UPDATE idempotency_keys SET response_body = 'x' WHERE id = ${record.id}`, {
        code: "23000",
        message: /is finished: its stored response is final/
      })
    }))

  it.effect("begin inside a transaction is refused loudly (its lease would be invisible until commit)", () =>
    Effect.gen(function* () {
      const keys = yield* IdempotencyKeys
      const sql = yield* SqlClient.SqlClient
      const merchantId = yield* newMerchant
      const exit = yield* Effect.exit(sql.withTransaction(keys.begin(beginRequest(merchantId, newKey()))))
      assert.isTrue(Exit.isFailure(exit) && exit.cause.reasons.some((reason) => reason._tag === "Die"))
    }))

  it.effect("finishFrom: the answer written by the work's own statement only when its change wrote a row; the proof, the replay and the cache as finish gives them", () =>
    Effect.gen(function* () {
      yield* createWorkTable
      const sql = yield* SqlClient.SqlClient
      const [keys, redis, merchantId] = [yield* IdempotencyKeys, yield* Redis, yield* newMerchant]
      const rows = decodeRows(Schema.Struct({ written: Schema.Number, answered: Schema.Number }))
      /** The work's change (a row of test_work, or none) and the answer, in one statement. */
      const work = (key: string, change: boolean) => (execution: Execution) =>
        sql.withTransaction(Effect.gen(function* () {
          const answer = execution.finishFrom(responseFor(merchantId, key))
          const [counts] = yield* rows(sql`
            WITH work AS (
              INSERT INTO test_work (merchant_id, idempotency_key, step)
              SELECT ${merchantId}, ${key}, 'only' WHERE ${change}
              RETURNING id),
            answered AS (${answer.statement("work")})
            SELECT (SELECT count(*) FROM work)::int AS written, (SELECT count(*) FROM answered)::int AS answered`)
          assert.strictEqual(counts?.written, change ? 1 : 0)
          return yield* answer.confirm(counts?.answered ?? -1)
        }))

      const key = newKey()
      const first = yield* keys.run(request(merchantId, key, body), work(key, true))
      expectTag(first, "Executed")
      const replay = yield* keys.run(request(merchantId, key, body), work(key, true))
      expectTag(replay, "Replayed")
      assert.deepStrictEqual(replay.response, first.response)
      assert.isNotNull(yield* redis.get(redisResponseKey(merchantId, key)))
      assert.strictEqual(yield* workCount(merchantId, key), 1)

      // The change wrote nothing: no answer either, and the run fails (IdempotencyLockLost, as
      // finish's check): its transaction rolls back and the key, never past 'started', is freed.
      const other = newKey()
      const failed = yield* Effect.exit(keys.run(request(merchantId, other, body), work(other, false)))
      const error = Exit.findErrorOption(failed)
      assert.strictEqual(error._tag === "Some" ? error.value._tag : "no typed failure", "IdempotencyLockLost")
      const state = yield* decodeRows(Schema.Struct({ finished: Schema.Boolean }))(sql`
        SELECT finished_at IS NOT NULL AS finished FROM idempotency_keys WHERE merchant_id = ${merchantId} AND idempotency_key = ${other}`)
      assert.deepStrictEqual(state.map((row) => row.finished), [])
      assert.isNull(yield* redis.get(redisResponseKey(merchantId, other)))
    }))

  it.effect("finish inside a transaction that rolls back stores nothing and caches nothing", () =>
    Effect.gen(function* () {
      const keys = yield* IdempotencyKeys
      const redis = yield* Redis
      const sql = yield* SqlClient.SqlClient
      const merchantId = yield* newMerchant
      const key = newKey()
      const record = recordOf(yield* keys.begin(beginRequest(merchantId, key)))
      yield* Effect.flip(
        sql.withTransaction(
          Effect.gen(function* () {
            yield* keys.finish(record, responseFor(merchantId, key))
            return yield* Effect.fail("commit never happens" as const)
          })
        )
      )
      assert.isNull(yield* redis.get(redisResponseKey(merchantId, key)))
      const rows = yield* decodeRows(Schema.Struct({ finished: Schema.Boolean }))(sql`SELECT finished_at IS NOT NULL AS finished FROM idempotency_keys WHERE id = ${record.id}`)
      assert.strictEqual(rows[0]?.finished, false)
      // The run still holds the key and can finish it for real.
      yield* sql.withTransaction(keys.finish(record, responseFor(merchantId, key)))
      expectTag(yield* keys.begin(beginRequest(merchantId, key)), "Replay")
    }))

  it.effect("lock expiry: a dead run's key answers 409 until its lease ends, then resumes from the recovery point; the dead run is fenced", () =>
    Effect.gen(function* () {
      const keys = yield* IdempotencyKeys
      const sql = yield* SqlClient.SqlClient
      const merchantId = yield* newMerchant
      const key = newKey()
      const lease_ms = 300
      const dead = recordOf(yield* keys.begin(beginRequest(merchantId, key, lease_ms)))
      const deadAdvanced = yield* keys.advance(dead, "payment_created", { payment_id: "pay_a" })
      // ... and the process "crashes" here: no finish, no release.

      const during = yield* Effect.flip(keys.begin(beginRequest(merchantId, key, lease_ms)))
      assert.strictEqual(during._tag, "IdempotencyKeyInUse")

      yield* Effect.sleep(lease_ms + 150)
      const resumed = yield* keys.begin(beginRequest(merchantId, key, lease_ms))
      expectTag(resumed, "Resume")
      const record = recordOf(resumed)
      assert.strictEqual(record.recoveryPoint, "payment_created")
      assert.deepStrictEqual(record.recoveryData, { payment_id: "pay_a" })
      assert.strictEqual(record.runCount, 2)

      // The dead run wakes up: its writes match no row, so its transaction rolls back.
      const fenced = yield* Effect.flip(sql.withTransaction(keys.finish(deadAdvanced, responseFor(merchantId, "dead"))))
      assert.strictEqual(fenced._tag, "IdempotencyLockLost")
      const fencedAdvance = yield* Effect.flip(keys.advance(dead, "payment_authorized", {}))
      assert.strictEqual(fencedAdvance._tag, "IdempotencyLockLost")

      const response = responseFor(merchantId, key)
      yield* sql.withTransaction(keys.finish(record, response))
      const replay = yield* keys.begin(beginRequest(merchantId, key, lease_ms))
      assert.deepStrictEqual(replay, { _tag: "Replay", response, decidedBy: "redis" })
    }))

  it.effect("advance renews the lease in Postgres: after the Redis marker expires, Postgres still answers 409", () =>
    Effect.gen(function* () {
      const keys = yield* IdempotencyKeys
      const merchantId = yield* newMerchant
      const key = newKey()
      const lease_ms = 1_000
      const record = recordOf(yield* keys.begin(beginRequest(merchantId, key, lease_ms)))
      yield* Effect.sleep(600)
      yield* keys.advance(record, "payment_created", { payment_id: "pay_b" }) // lease now ends ~1600 ms
      yield* Effect.sleep(600) // ~1200 ms: the marker (1000 ms) is gone, the lease is not
      const busy = yield* Effect.flip(keys.begin(beginRequest(merchantId, key, lease_ms)))
      assert.strictEqual(busy._tag, "IdempotencyKeyInUse")
      if (busy._tag === "IdempotencyKeyInUse") assert.strictEqual(busy.decidedBy, "postgres")
      yield* keys.release(record)
    }))

  it.effect("release: a never-started key is deleted (reusable); a started one keeps its point and resumes at once", () =>
    Effect.gen(function* () {
      const keys = yield* IdempotencyKeys
      const redis = yield* Redis
      const merchantId = yield* newMerchant
      const key = newKey()
      const first = recordOf(yield* keys.begin(beginRequest(merchantId, key)))
      assert.deepStrictEqual(yield* keys.release(first), { _tag: "Deleted" })
      assert.strictEqual(yield* keyRowCount(merchantId, key), 0)
      assert.isNull(yield* redis.get(redisInFlightKey(merchantId, key)))

      // A validation failure must not poison the key: the next request with it is simply new.
      const again = yield* keys.begin({ ...beginRequest(merchantId, key), fingerprint: "f".repeat(64) })
      expectTag(again, "Fresh")
      const advanced = yield* keys.advance(recordOf(again), "payment_created", { payment_id: "pay_c" })
      assert.deepStrictEqual(yield* keys.release(advanced), { _tag: "Unlocked", recoveryPoint: "payment_created" })
      const resumed = yield* keys.begin({ ...beginRequest(merchantId, key), fingerprint: "f".repeat(64) })
      expectTag(resumed, "Resume")
      assert.strictEqual(recordOf(resumed).recoveryPoint, "payment_created")
      // Releasing with a stale lease changes nothing.
      assert.deepStrictEqual(yield* keys.release(advanced), { _tag: "NotOwner" })
      yield* keys.release(recordOf(resumed))
    }))

  it.effect("run: an unknown outcome is not frozen; the retry resumes and the work happens exactly once", () =>
    Effect.gen(function* () {
      const keys = yield* IdempotencyKeys
      const sql = yield* SqlClient.SqlClient
      yield* createWorkTable
      const merchantId = yield* newMerchant
      const key = newKey()
      class AcquirerTimedOut extends Schema.TaggedError<AcquirerTimedOut>()("AcquirerTimedOut", {}) {}
      let acquirerAnswers = false
      const twoSteps = (execution: Execution) =>
        Effect.gen(function* () {
          let record = execution.record
          if (record.recoveryPoint === "started") {
            record = yield* sql.withTransaction(
              Effect.gen(function* () {
                yield* sql`INSERT INTO test_work (merchant_id, idempotency_key, step) VALUES (${merchantId}, ${key}, 'create')`
                return yield* execution.advance("payment_created", { payment_id: "pay_d" })
              })
            )
          }
          if (!acquirerAnswers) return yield* new AcquirerTimedOut()
          return yield* sql.withTransaction(
            Effect.gen(function* () {
              yield* sql`INSERT INTO test_work (merchant_id, idempotency_key, step) VALUES (${merchantId}, ${key}, 'authorize')`
              return yield* execution.finish(responseFor(merchantId, key))
            })
          )
        })

      const first = yield* Effect.flip(keys.run(request(merchantId, key, body), twoSteps))
      assert.strictEqual(first._tag, "AcquirerTimedOut")
      const stored = yield* decodeRows(Schema.Struct({ locked: Schema.Boolean, point: Schema.String, status: Schema.NullOr(Schema.Number) }))(sql`
        SELECT locked_at IS NOT NULL AS locked, recovery_point AS point, response_status AS status
        FROM idempotency_keys WHERE merchant_id = ${merchantId} AND idempotency_key = ${key}`)
      assert.deepStrictEqual(stored[0], { locked: false, point: "payment_created", status: null })

      acquirerAnswers = true
      const retry = yield* keys.run(request(merchantId, key, body), twoSteps)
      assert.deepStrictEqual(retry, { _tag: "Executed", response: responseFor(merchantId, key), resumed: true })
      const replay = yield* keys.run(request(merchantId, key, body), twoSteps)
      expectTag(replay, "Replayed")
      assert.strictEqual(yield* workCount(merchantId, key, "create"), 1)
      assert.strictEqual(yield* workCount(merchantId, key, "authorize"), 1)
    }))

  it.effect("the completer: abandoned keys are listed, resumed from their point, finished once", () =>
    Effect.gen(function* () {
      const keys = yield* IdempotencyKeys
      const sql = yield* SqlClient.SqlClient
      yield* createWorkTable
      const merchantId = yield* newMerchant
      const key = newKey()
      const dead = recordOf(yield* keys.begin({ ...beginRequest(merchantId, key, 100), canonicalBody: "{\"a\":1}" }))
      yield* keys.advance(dead, "payment_created", { payment_id: "pay_e" })
      yield* Effect.sleep(200)
      const found = yield* keys.abandoned({ olderThan_ms: 50, limit: 100 })
      const mine = found.find((k) => k.key === key && k.merchantId === merchantId)
      assert.isDefined(mine)
      if (mine === undefined) return
      assert.strictEqual(mine.recoveryPoint, "payment_created")
      assert.deepStrictEqual(mine.recoveryData, { payment_id: "pay_e" })
      assert.deepStrictEqual(mine.requestBody, { a: 1 })
      const done = yield* keys.resume(mine, storedAsIs, (execution) =>
        sql.withTransaction(
          Effect.gen(function* () {
            assert.strictEqual(execution.record.recoveryPoint, "payment_created")
            yield* sql`INSERT INTO test_work (merchant_id, idempotency_key, step) VALUES (${merchantId}, ${key}, 'completer')`
            return yield* execution.finish(responseFor(merchantId, key))
          })
        ))
      expectTag(done, "Executed")
      const again = yield* keys.abandoned({ olderThan_ms: 0, limit: 1_000 })
      assert.isUndefined(again.find((k) => k.key === key && k.merchantId === merchantId))
      // The client's retry now gets the completer's response.
      const replay = yield* keys.begin(beginRequest(merchantId, key, 100))
      assert.deepStrictEqual(replay, { _tag: "Replay", response: responseFor(merchantId, key), decidedBy: "redis" })
    }))

  it.effect("the reaper deletes only finished keys older than the retention (and never-started leftovers)", () =>
    Effect.gen(function* () {
      const keys = yield* IdempotencyKeys
      const redis = yield* Redis
      yield* createWorkTable
      const merchantId = yield* newMerchant
      const old = newKey()
      const neverStarted = newKey()
      yield* keys.run(request(merchantId, old, body), oneStep(merchantId, old))
      yield* keys.begin(beginRequest(merchantId, neverStarted, 50)) // dies at 'started'
      const inProgress = newKey()
      const inProgressRecord = recordOf(yield* keys.begin(beginRequest(merchantId, inProgress, 60_000)))
      yield* keys.advance(inProgressRecord, "payment_created", {})
      yield* Effect.sleep(800)
      const recent = newKey()
      yield* keys.run(request(merchantId, recent, body), oneStep(merchantId, recent))

      const reaped = yield* keys.reap({ retention_ms: 600, batch: 1_000 })
      assert.isAtLeast(reaped.finished, 1)
      assert.isAtLeast(reaped.neverStarted, 1)
      assert.strictEqual(yield* keyRowCount(merchantId, old), 0)
      assert.strictEqual(yield* keyRowCount(merchantId, neverStarted), 0)
      assert.strictEqual(yield* keyRowCount(merchantId, recent), 1)
      assert.strictEqual(yield* keyRowCount(merchantId, inProgress), 1)
      assert.isNull(yield* redis.get(redisResponseKey(merchantId, old)))
      // After retention, the key is new again (documented: retention is the replay window).
      const reused = yield* keys.run(request(merchantId, old, body), oneStep(merchantId, old))
      expectTag(reused, "Executed")
      yield* keys.release(inProgressRecord)
    }))

  it.effect("the database refuses what the code refuses: empty/long/control keys, bad fingerprints, a response without finishing", () =>
    Effect.gen(function* () {
      const sql = yield* SqlClient.SqlClient
      const merchantId = yield* newMerchant
      const insert = (key: string, fingerprint = "a".repeat(64)) => sql`
        INSERT INTO idempotency_keys (id, merchant_id, idempotency_key, request_method, request_path, request_fingerprint)
        VALUES (gen_random_uuid(), ${merchantId}, ${key}, 'POST', '/v1/payments', ${fingerprint})`
      for (const bad of ["", "k".repeat(256), "a\nb"]) {
        yield* expectSqlRefusal(insert(bad), { code: "23514", constraint: "idempotency_keys_idempotency_key_check" })
      }
      yield* insert("k".repeat(255))
      yield* expectSqlRefusal(insert("ok-key", "not-a-sha256"), { code: "23514", constraint: "idempotency_keys_request_fingerprint_check" })
      yield* expectSqlRefusal(sql`
        INSERT INTO idempotency_keys (id, merchant_id, idempotency_key, request_method, request_path, request_fingerprint, response_status, response_body, response_content_type)
        VALUES (gen_random_uuid(), ${merchantId}, 'k2', 'POST', '/v1/payments', ${"a".repeat(64)}, 200, '{}', 'application/json')`,
        { code: "23514", constraint: "idempotency_keys_finished_iff_response" })
    }))
})

/** Redis unreachable from the start (nothing listens on port 1): Postgres alone must be correct. */
const PostgresOnly = IdempotencyKeys.layerWith({ lockTimeout_ms: 5_000 }).pipe(
  Layer.provideMerge(
    Layer.mergeAll(
      TestDatabase,
      Redis.layerWith({ url: "redis://127.0.0.1:1/0", keyPrefix: "unreachable:", connectTimeout_ms: 200, commandTimeout_ms: 250 })
    )
  )
)

layer(PostgresOnly, { excludeTestServices: true })("IdempotencyKeys with Redis unreachable (Postgres decides alone)", (it) => {
  it.effect("50 concurrent requests with one key on parallel connections: exactly one execution", () =>
    Effect.gen(function* () {
      const keys = yield* IdempotencyKeys
      yield* createWorkTable
      const merchantId = yield* newMerchant
      const key = newKey()
      const started = Date.now()
      const outcomes = yield* Effect.forEach(
        Array.from({ length: 50 }, (_, i) => i),
        () => Effect.result(keys.run(request(merchantId, key, body), oneStep(merchantId, key, { hold_ms: 150 }))),
        { concurrency: "unbounded" }
      )
      const tags = outcomes.map((o) => (o._tag === "Success" ? o.success._tag : o.failure._tag))
      assert.strictEqual(tags.filter((t) => t === "Executed").length, 1)
      assert.strictEqual(tags.filter((t) => t === "Replayed" || t === "IdempotencyKeyInUse").length, 49)
      for (const o of outcomes) {
        if (o._tag === "Failure" && o.failure._tag === "IdempotencyKeyInUse") assert.strictEqual(o.failure.decidedBy, "postgres")
      }
      assert.strictEqual(yield* workCount(merchantId, key), 1)
      const replay = yield* keys.run(request(merchantId, key, body), oneStep(merchantId, key))
      assert.deepStrictEqual(replay, { _tag: "Replayed", response: responseFor(merchantId, key), decidedBy: "postgres" })
      assert.isBelow(Date.now() - started, 10_000)
    }))
})
