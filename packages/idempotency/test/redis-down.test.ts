import { assert, layer } from "@effect/vitest"
import { defaultRedisTimeouts, Redis } from "@pay/infra"
import { scaled_ms, TestDatabase, throwaway } from "@pay/testkit"
import { Effect, Metric, Schedule } from "effect"
import { defaultIdempotencyOptions, IdempotencyKeys, randomCacheSecret, redisResponseKey } from "../src/index.ts"
import { idempotencyRedisFallbacks, redisFastPathOperations } from "../src/IdempotencyMetrics.ts"
import { createWorkTable, newKey, newMerchant, oneStep, request, responseFor, workCount } from "./support.ts"

const body = { amount_minor: 500, currency: "USD", payment_method: "pm_card_visa" }

/** The fast path's fallbacks so far for `reason`, over every operation (this process's counter). */
const fallbacks = (reason: "error" | "timeout") =>
  Effect.forEach(redisFastPathOperations, (operation) =>
    Metric.value(Metric.withAttributes(idempotencyRedisFallbacks, { operation, reason })).pipe(Effect.map((state) => state.count))).pipe(
    Effect.map((counts) => counts.reduce((total, count) => total + count, 0))
  )

/** Wall-clock duration of an effect, in milliseconds. */
const timed = <A, E, R>(effect: Effect.Effect<A, E, R>) =>
  Effect.gen(function* () {
    const started = Date.now()
    const value = yield* effect
    return [value, Date.now() - started] as const
  })

layer(TestDatabase, { excludeTestServices: true })("IdempotencyKeys when Redis dies (throwaway Redis)", (it) => {
  it.effect("Redis killed, then hung: exactly one execution per key, replays from Postgres, every call bounded", () =>
    Effect.scoped(
      Effect.gen(function* () {
        yield* createWorkTable
        const instance = yield* throwaway("redis")
        const redis = yield* Redis.make({ url: instance.url, keyPrefix: "t:", ...defaultRedisTimeouts })
        const keys = yield* IdempotencyKeys.make({ ...defaultIdempotencyOptions, lockTimeout_ms: 5_000 }, randomCacheSecret()).pipe(
          Effect.provideService(Redis, redis)
        )
        const merchantId = yield* newMerchant

        // Healthy: the response is cached.
        const key = newKey()
        const first = yield* keys.run(request(merchantId, key, body), oneStep(merchantId, key))
        assert.strictEqual(first._tag, "Executed")
        assert.isNotNull(yield* redis.get(redisResponseKey(merchantId, key)))

        // Killed (a crash, not a shutdown): replays come from Postgres, fast; counted as errors.
        const errorsBefore = yield* fallbacks("error")
        const timeoutsBefore = yield* fallbacks("timeout")
        yield* instance.kill
        const [replay, replay_ms] = yield* timed(keys.run(request(merchantId, key, body), oneStep(merchantId, key)))
        assert.deepStrictEqual(replay, { _tag: "Replayed", response: first.response, decidedBy: "postgres" })
        assert.isBelow(replay_ms, scaled_ms(1_000))
        assert.isAbove((yield* fallbacks("error")) - errorsBefore, 0, "a refused connection is an error")
        assert.strictEqual((yield* fallbacks("timeout")) - timeoutsBefore, 0, "not a timeout")

        // New keys still work, and concurrency is still decided exactly once (by Postgres).
        const busy = newKey()
        const [outcomes, concurrent_ms] = yield* timed(
          Effect.forEach(
            Array.from({ length: 20 }, (_, i) => i),
            () => Effect.result(keys.run(request(merchantId, busy, body), oneStep(merchantId, busy, { hold_ms: 100 }))),
            { concurrency: "unbounded" }
          )
        )
        const tags = outcomes.map((o) => (o._tag === "Success" ? o.success._tag : o.failure._tag))
        assert.strictEqual(tags.filter((t) => t === "Executed").length, 1)
        assert.strictEqual(tags.filter((t) => t === "Replayed" || t === "IdempotencyKeyInUse").length, 19)
        assert.strictEqual(yield* workCount(merchantId, busy), 1)
        assert.isBelow(concurrent_ms, scaled_ms(5_000))

        // Back, then hung (SIGSTOP: the socket stays open, nothing answers): every Redis command
        // waits for its timeout, so a request costs at most a few timeouts, never a hang.
        yield* instance.restart
        // The client reconnects in the background (backoff up to 2 s); wait for it, bounded.
        yield* redis.ping.pipe(Effect.retry({ schedule: Schedule.spaced(100), times: 50 }))
        const timeoutsBeforeHang = yield* fallbacks("timeout")
        yield* instance.pause
        const hung = newKey()
        const [executed, executed_ms] = yield* timed(keys.run(request(merchantId, hung, body), oneStep(merchantId, hung)))
        const [replayWhileHung, replayWhileHung_ms] = yield* timed(
          keys.run(request(merchantId, hung, body), oneStep(merchantId, hung))
        )
        yield* instance.resume
        // A hang is counted as a timeout (the client's 250 ms command timeout fires before the fast
        // path's own; it used to be counted as an error, and the `timeout` series never moved).
        assert.isAbove((yield* fallbacks("timeout")) - timeoutsBeforeHang, 0, "a hung Redis is counted as timeouts")
        assert.strictEqual(executed._tag, "Executed")
        assert.deepStrictEqual(replayWhileHung, { _tag: "Replayed", response: responseFor(merchantId, hung), decidedBy: "postgres" })
        assert.isBelow(executed_ms, scaled_ms(2_500))
        assert.isBelow(replayWhileHung_ms, scaled_ms(2_500))
        assert.strictEqual(yield* workCount(merchantId, hung), 1)
        yield* Effect.logInfo("redis-down timings").pipe(
          Effect.annotateLogs({ replay_ms, concurrent_ms, executed_ms, replayWhileHung_ms })
        )
      })
    ), 60_000)
})
