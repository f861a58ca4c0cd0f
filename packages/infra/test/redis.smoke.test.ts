import { assert, layer } from "@effect/vitest"
import { defaultRedisTimeouts, Redis } from "@pay/infra"
import { testRun } from "@pay/testkit"
import { Effect } from "effect"

const run = testRun()
const RedisTest = Redis.layerWith({ url: run.redisUrl, keyPrefix: run.redisKeyPrefix, ...defaultRedisTimeouts })

layer(RedisTest)("Redis (real server)", (it) => {
  it.effect("SET NX PX wins once, GET reads it back, the TTL expires it", () =>
    Effect.gen(function* () {
      const redis = yield* Redis
      const key = `smoke:${Math.random().toString(36).slice(2)}`
      assert.isTrue(yield* redis.setIfAbsent(key, "first", 200))
      assert.isFalse(yield* redis.setIfAbsent(key, "second", 200))
      assert.strictEqual(yield* redis.get(key), "first")
      yield* Effect.promise(() => new Promise((resolve) => setTimeout(resolve, 300)))
      assert.isNull(yield* redis.get(key))
    }))
})
