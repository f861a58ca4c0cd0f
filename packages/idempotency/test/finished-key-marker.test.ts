import { assert, layer } from "@effect/vitest"
import { Redis } from "@pay/infra"
import { TestDatabase } from "@pay/testkit"
import { Effect, Layer } from "effect"
import { fingerprintRequest, IdempotencyKeys, redisInFlightKey, redisResponseKey } from "../src/index.ts"
import { finishedKey, oneStep, request, runRedisLayer, workCount } from "./support.ts"

const body = { amount_minor: 700, currency: "EUR", payment_method: "pm_card_visa" }

const Live = IdempotencyKeys.layerWith({ lockTimeout_ms: 5_000 }).pipe(
  Layer.provideMerge(Layer.mergeAll(TestDatabase, runRedisLayer()))
)

/**
 * A FINISHED key must always replay, whatever Redis holds: the in-flight marker may answer 409
 * only once Postgres says the key is not finished. Before the fix, a replay that missed the cached
 * response (Redis flushed, evicted, or another server's copy) set the marker before asking
 * Postgres, and every concurrent replay of the same finished key got 409 from that marker.
 */
layer(Live, { excludeTestServices: true })("a finished key and the in-flight marker", (it) => {
  it.effect("a marker left by another request does not turn the replay of a finished key into a 409", () =>
    Effect.gen(function* () {
      const keys = yield* IdempotencyKeys
      const redis = yield* Redis
      const { merchantId, key, first } = yield* finishedKey(keys.run, body)
      assert.strictEqual(first._tag, "Executed")
      // Redis lost the cached copy; a concurrent replay of the same request (on this server or
      // another) is between its marker and its Postgres read.
      yield* redis.del(redisResponseKey(merchantId, key))
      const fingerprint = fingerprintRequest({ method: "POST", path: "/v1/payments", body })
      yield* redis.set(redisInFlightKey(merchantId, key), JSON.stringify({ token: "another-replay", fingerprint }), 5_000)
      const replay = yield* Effect.result(keys.run(request(merchantId, key, body), oneStep(merchantId, key)))
      assert.strictEqual(replay._tag, "Success", `a finished key answered ${replay._tag === "Failure" ? replay.failure._tag : ""}`)
      if (replay._tag === "Success") assert.deepStrictEqual(replay.success.response, first.response)
      assert.strictEqual(yield* workCount(merchantId, key), 1)
    }))

  it.effect("32 concurrent replays of a finished key after its cached copy is gone: every one replays", () =>
    Effect.gen(function* () {
      const keys = yield* IdempotencyKeys
      const redis = yield* Redis
      const { merchantId, key, first } = yield* finishedKey(keys.run, body)
      yield* redis.del(redisResponseKey(merchantId, key))
      const outcomes = yield* Effect.forEach(
        Array.from({ length: 32 }, (_, i) => i),
        () => Effect.result(keys.run(request(merchantId, key, body), oneStep(merchantId, key))),
        { concurrency: "unbounded" }
      )
      const tags = outcomes.map((o) => (o._tag === "Success" ? o.success._tag : o.failure._tag))
      assert.deepStrictEqual(tags.filter((t) => t !== "Replayed"), [])
      for (const o of outcomes) if (o._tag === "Success") assert.deepStrictEqual(o.success.response, first.response)
      assert.strictEqual(yield* workCount(merchantId, key), 1)
    }))
})
