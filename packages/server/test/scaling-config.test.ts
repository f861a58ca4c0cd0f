// The settings issue 18 added are bounded like every other (config-bounds.test.ts): the API-key
// cache may never keep a key longer than 1 s (the revocation bound), and the instance count is finite.
import { assert, describe, it } from "@effect/vitest"
import { ApiKeyCacheConfig } from "@pay/merchants"
import { type Config, ConfigProvider, Effect, Result } from "effect"
import { ServerInstances } from "../src/Cluster.ts"

const refusal = <A>(config: Config.Config<A>, env: Record<string, string>) =>
  Effect.gen(function* () {
    const result = yield* Effect.result(config.parse(ConfigProvider.fromEnv({ env })))
    return Result.isFailure(result) ? String(result.failure) : assert.fail(`accepted ${JSON.stringify(env)}`)
  })

describe("scaling settings", () => {
  it.effect("defaults: a 1 s cache of 10 000 keys, one instance", () =>
    Effect.gen(function* () {
      assert.deepStrictEqual(yield* ApiKeyCacheConfig.parse(ConfigProvider.fromEnv({ env: {} })), { ttl_ms: 1_000, entries_max: 10_000 })
      assert.strictEqual(yield* ServerInstances.parse(ConfigProvider.fromEnv({ env: {} })), 1)
      assert.strictEqual(yield* ServerInstances.parse(ConfigProvider.fromEnv({ env: { SERVER_INSTANCES: "4" } })), 4)
    }))

  it.effect("out of bounds is refused when read: a cache TTL above 1 s, no instance, too many", () =>
    Effect.gen(function* () {
      assert.include(yield* refusal(ApiKeyCacheConfig, { API_KEY_CACHE_TTL_MS: "1001" }), "API_KEY_CACHE_TTL_MS must be an integer between 0 and 1000")
      assert.include(yield* refusal(ApiKeyCacheConfig, { API_KEY_CACHE_ENTRIES_MAX: "0" }), "API_KEY_CACHE_ENTRIES_MAX must be an integer between 1 and 100000")
      assert.include(yield* refusal(ServerInstances, { SERVER_INSTANCES: "0" }), "SERVER_INSTANCES must be an integer between 1 and 32")
      assert.include(yield* refusal(ServerInstances, { SERVER_INSTANCES: "33" }), "SERVER_INSTANCES must be an integer between 1 and 32")
    }))
})
