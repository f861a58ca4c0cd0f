// The counters behind the HTTP limits: fixed windows that refuse past the limit with the seconds
// left, start over when the window ends, and never hold more than `keys_max` keys (the source
// address counters are keyed by whoever connects); and /health/ready's probes run once per cache
// window however many requests ask.
import { assert, describe, it } from "@effect/vitest"
import { ConfigProvider, Effect, Layer } from "effect"
import { Readiness } from "../src/health/Readiness.ts"
import { fixedWindows } from "../src/http/RateLimits.ts"

describe("fixed windows", () => {
  it("refuses past the limit with the seconds left, and starts over after the window", () => {
    const windows = fixedWindows(3, 10_000, 100)
    assert.deepStrictEqual([1, 2, 3].map(() => windows.hit("m", 1_000)), [{ allowed: true }, { allowed: true }, { allowed: true }])
    assert.deepStrictEqual(windows.hit("m", 2_500), { allowed: false, retryAfter_s: 9 })
    assert.deepStrictEqual(windows.check("m", 10_999), { allowed: false, retryAfter_s: 1 })
    assert.deepStrictEqual(windows.hit("other", 2_500), { allowed: true })
    assert.deepStrictEqual(windows.hit("m", 11_000), { allowed: true })
  })

  it("holds at most keys_max keys: expired windows go first, then the oldest", () => {
    const windows = fixedWindows(1, 1_000, 100)
    for (let i = 0; i < 1_000; i++) windows.hit(`source-${i}`, i)
    assert.isAtMost(windows.size(), 100)
    // The newest key is still counted.
    assert.deepStrictEqual(windows.hit("source-999", 999), { allowed: false, retryAfter_s: 1 })
  })
})

describe("readiness cache", () => {
  it.effect("20 concurrent checks within READINESS_CACHE_MS run the probes once", () =>
    Effect.gen(function* () {
      let runs = 0
      const probe = Effect.succeed({ name: "counted", check: Effect.sync(() => void runs++) })
      const readiness = yield* Readiness.pipe(
        Effect.provide(Readiness.layerWith([probe]).pipe(
          Layer.provide(ConfigProvider.layer(ConfigProvider.fromEnv({ env: { READINESS_CACHE_MS: "10000" } })))
        ))
      )
      const results = yield* Effect.all(Array.from({ length: 20 }, () => readiness.check), { concurrency: "unbounded" })
      assert.strictEqual(runs, 1)
      assert.strictEqual(results.length, 20)
    }))
})
