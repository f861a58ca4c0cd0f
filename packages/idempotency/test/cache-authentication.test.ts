// Issue 11: "Redis can make the API replay a response Postgres never stored". Whoever can write to
// Redis plants `idem:resp:*` values; the fast path must never replay one it did not write itself
// (HMAC under the server's secret over the Redis key, fingerprint, status, type and body), and
// must then let Postgres decide. Each case writes a forged value straight into the run's Redis.
import { assert, layer } from "@effect/vitest"
import { Redis } from "@pay/infra"
import { TestDatabase } from "@pay/testkit"
import { Effect, Layer, Metric, Redacted } from "effect"
import {
  fingerprintRequest,
  idempotencyCacheRejected,
  IdempotencyKeys,
  makeCacheMac,
  redisResponseKey
} from "../src/index.ts"
import { createWorkTable, keyRowCount, newKey, newMerchant, oneStep, request, responseFor, runRedisLayer, workCount } from "./support.ts"

const body = { amount_minor: 1250, currency: "EUR", payment_method: "pm_card_visa" }
const secret = Redacted.make("a-test-secret-that-is-long-enough-0123456789")

const Live = IdempotencyKeys.layerWith({ lockTimeout_ms: 5_000 }, secret).pipe(
  Layer.provideMerge(Layer.mergeAll(TestDatabase, runRedisLayer()))
)

const forgedBody = `{"id":"pay_forged","status":"SETTLED","note":"never stored by Postgres"}`
const fingerprintOf = () => fingerprintRequest({ method: "POST", path: "/v1/payments", body })

/** The value a forger writes: the cache's format, with a MAC computed without the server's secret (or none). */
const forged = (mac: string) =>
  JSON.stringify({ v: 2, fingerprint: fingerprintOf(), status: 201, contentType: "application/json", body: forgedBody, mac })

const forgedBeforeFirstUse = (plant: (redisKey: string) => string) =>
  Effect.gen(function* () {
    const keys = yield* IdempotencyKeys
    const redis = yield* Redis
    yield* createWorkTable
    const merchantId = yield* newMerchant
    const key = newKey()
    const redisKey = redisResponseKey(merchantId, key)
    yield* redis.set(redisKey, plant(redisKey), 60_000)

    const first = yield* keys.run(request(merchantId, key, body), oneStep(merchantId, key))
    assert.strictEqual(first._tag, "Executed", "the forged entry was not replayed")
    assert.notStrictEqual(first.response.body, forgedBody)
    assert.deepStrictEqual(first.response, responseFor(merchantId, key))
    assert.strictEqual(yield* workCount(merchantId, key), 1)
    // The next retry replays the real response, from Redis again (rewritten after the commit).
    const again = yield* keys.run(request(merchantId, key, body), oneStep(merchantId, key))
    assert.deepStrictEqual(again, { _tag: "Replayed", response: first.response, decidedBy: "redis" })
    assert.strictEqual(yield* workCount(merchantId, key), 1)
  })

layer(Live, { excludeTestServices: true })("cached responses are authenticated (forged values in Redis)", (it) => {
  it.effect("a forged response for a key never used (the old unsigned format, or signed with another secret): not replayed; the request executes once and Postgres' response replaces the forgery", () =>
    Effect.gen(function* () {
      const wrongSecret = makeCacheMac(Redacted.make("not-the-server-secret-but-long-enough-0123"))
      const unsigned = (_redisKey: string) =>
        JSON.stringify({ v: 1, fingerprint: fingerprintOf(), status: 201, contentType: "application/json", body: forgedBody })
      const signedElsewhere = (redisKey: string) =>
        forged(wrongSecret.sign({ redisKey, fingerprint: fingerprintOf(), status: 201, contentType: "application/json", body: forgedBody }))
      for (const plant of [unsigned, signedElsewhere]) yield* forgedBeforeFirstUse(plant)
    }))

  it.effect("a forged response over a finished key (no MAC, a garbage MAC, another key's valid MAC): Postgres' stored bytes are replayed each time", () =>
    Effect.gen(function* () {
      const keys = yield* IdempotencyKeys
      const redis = yield* Redis
      yield* createWorkTable
      const merchantId = yield* newMerchant
      const key = newKey()
      const first = yield* keys.run(request(merchantId, key, body), oneStep(merchantId, key))
      const redisKey = redisResponseKey(merchantId, key)
      // A genuine value of ANOTHER key (same merchant, same request): valid MAC, wrong place.
      const otherKey = newKey()
      yield* keys.run(request(merchantId, otherKey, body), oneStep(merchantId, otherKey))
      const moved = yield* redis.get(redisResponseKey(merchantId, otherKey))
      assert.isNotNull(moved)
      const plants = [
        JSON.stringify({ v: 1, fingerprint: fingerprintOf(), status: 201, contentType: "application/json", body: forgedBody }),
        forged(""),
        forged("00".repeat(32)),
        forged("zz"),
        moved ?? ""
      ]
      for (const plant of plants) {
        yield* redis.set(redisKey, plant, 60_000)
        const replay = yield* keys.run(request(merchantId, key, body), oneStep(merchantId, key))
        assert.deepStrictEqual(replay, { _tag: "Replayed", response: first.response, decidedBy: "postgres" }, plant.slice(0, 120))
      }
      assert.strictEqual(yield* workCount(merchantId, key), 1)
      assert.strictEqual(yield* keyRowCount(merchantId, key), 1)
    }))

  it.effect("a forged response with another request's fingerprint is not trusted for a 422 either: the request executes", () =>
    Effect.gen(function* () {
      const keys = yield* IdempotencyKeys
      const redis = yield* Redis
      yield* createWorkTable
      const merchantId = yield* newMerchant
      const key = newKey()
      yield* redis.set(redisResponseKey(merchantId, key), JSON.stringify({ v: 2, fingerprint: "f".repeat(64), status: 201, contentType: "application/json", body: forgedBody, mac: "00".repeat(32) }), 60_000)
      const first = yield* keys.run(request(merchantId, key, body), oneStep(merchantId, key))
      assert.strictEqual(first._tag, "Executed")
      assert.strictEqual(yield* workCount(merchantId, key), 1)
    }))

  it.effect("a refusal says why: signed under another secret (a restart without IDEMPOTENCY_CACHE_SECRET) is reason other_secret; naming this secret with a MAC that fails (forged, moved) is reason mac", () =>
    Effect.gen(function* () {
      const keys = yield* IdempotencyKeys
      const redis = yield* Redis
      yield* createWorkTable
      const counted = (reason: string) => Effect.map(Metric.value(Metric.withAttributes(idempotencyCacheRejected, { reason })), (state) => state.count)
      const before = { other: yield* counted("other_secret"), mac: yield* counted("mac") }
      const previousLife = makeCacheMac(Redacted.make("the-secret-of-this-server-before-its-restart-0123"))
      const ours = makeCacheMac(secret)
      assert.notStrictEqual(previousLife.secretId, ours.secretId)
      const merchantId = yield* newMerchant
      const plant = (kid: string, macOf: (redisKey: string) => string) => (redisKey: string) =>
        JSON.stringify({ v: 2, fingerprint: fingerprintOf(), status: 201, contentType: "application/json", body: forgedBody, mac: macOf(redisKey), kid })
      const fieldsAt = (redisKey: string) => ({ redisKey, fingerprint: fingerprintOf(), status: 201, contentType: "application/json", body: forgedBody })
      for (const [label, value] of [
        ["another secret", plant(previousLife.secretId, (redisKey) => previousLife.sign(fieldsAt(redisKey)))],
        ["this secret's id, a forged MAC", plant(ours.secretId, () => "00".repeat(32))]
      ] as const) {
        const key = newKey()
        const redisKey = redisResponseKey(merchantId, key)
        yield* redis.set(redisKey, value(redisKey), 60_000)
        const answer = yield* keys.run(request(merchantId, key, body), oneStep(merchantId, key))
        assert.strictEqual(answer._tag, "Executed", label)
      }
      assert.strictEqual((yield* counted("other_secret")) - before.other, 1)
      assert.strictEqual((yield* counted("mac")) - before.mac, 1)
    }))

  it("the MAC binds every field: changing any one of them fails verification", () => {
    const mac = makeCacheMac(secret)
    const fields = { redisKey: "idem:resp:mer_1:k", fingerprint: "a".repeat(64), status: 201, contentType: "application/json", body: "{}" }
    const signed = mac.sign(fields)
    assert.isTrue(mac.verify(fields, signed))
    for (const changed of [
      { ...fields, redisKey: "idem:resp:mer_2:k" },
      { ...fields, fingerprint: "b".repeat(64) },
      { ...fields, status: 200 },
      { ...fields, contentType: "text/plain" },
      { ...fields, body: "{ }" }
    ]) assert.isFalse(mac.verify(changed, signed), JSON.stringify(changed))
    assert.throws(() => makeCacheMac(Redacted.make("short")), RangeError)
  })
})
