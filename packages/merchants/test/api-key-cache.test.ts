import { assert, describe, it, layer } from "@effect/vitest"
import { TestDatabase } from "@pay/testkit"
import { Effect, Layer, Redacted } from "effect"
import { SqlClient } from "effect/sql"
import { ApiKeys, makeApiKeyCache, MerchantRepository } from "../src/index.ts"

describe("ApiKeyCache (bounded, expiring)", () => {
  it("forgets an entry once its TTL has passed, and keeps at most entries_max (oldest out)", () => {
    let now_ms = 0
    const cache = makeApiKeyCache<string>({ ttl_ms: 1_000, entries_max: 2 }, () => now_ms)
    cache.set("a", "A")
    now_ms = 999
    assert.strictEqual(cache.get("a"), "A")
    now_ms = 1_000
    assert.strictEqual(cache.get("a"), undefined)
    cache.set("a", "A")
    cache.set("b", "B")
    cache.set("c", "C")
    assert.strictEqual(cache.size(), 2)
    assert.strictEqual(cache.get("a"), undefined)
    assert.deepStrictEqual([cache.get("b"), cache.get("c")], ["B", "C"])
    cache.drop((value) => value === "B")
    assert.strictEqual(cache.get("b"), undefined)
  })

  it("with ttl_ms 0 keeps nothing; a TTL above 1 s is refused", () => {
    const off = makeApiKeyCache<string>({ ttl_ms: 0, entries_max: 10 })
    off.set("a", "A")
    assert.strictEqual(off.get("a"), undefined)
    assert.throws(() => makeApiKeyCache<string>({ ttl_ms: 1_001, entries_max: 10 }))
    assert.throws(() => makeApiKeyCache<string>({ ttl_ms: 1_000, entries_max: 0 }))
  })
})

const Live = Layer.mergeAll(ApiKeys.layerWith({ ttl_ms: 1_000, entries_max: 100 }), MerchantRepository.layer).pipe(
  Layer.provideMerge(TestDatabase)
)

/** The cache's TTL: the bound within which a revocation made elsewhere must take effect. */
const revocationBound_ms = 1_000
const pollInterval_ms = 50

layer(Live)("ApiKeys with the cache (real Postgres)", (it) => {
  it.effect("a key revoked behind the server's back (SQL) is refused once the TTL has passed since the revocation", () =>
    Effect.gen(function* () {
      const apiKeys = yield* ApiKeys
      const sql = yield* SqlClient.SqlClient
      const merchant = yield* (yield* MerchantRepository).create("Cache merchant")
      const created = yield* apiKeys.create(merchant.id)
      const secret = Redacted.value(created.secret)
      // Authenticated, hence cached.
      assert.strictEqual((yield* apiKeys.authenticate(secret)).apiKeyId, created.id)
      // Revoked by another process (the CLI, an operator's SQL): this process is not told.
      yield* sql`UPDATE api_keys SET revoked_at = clock_timestamp() WHERE id = ${created.id}`
      const revoked_ms = performance.now()
      // Poll: an answer may be stale only while the TTL can still cover it; any call that starts
      // once the bound has passed since the revocation must be refused.
      for (;;) {
        const started_ms = performance.now()
        const answer = yield* Effect.result(apiKeys.authenticate(secret))
        if (started_ms - revoked_ms >= revocationBound_ms) {
          assert.strictEqual(answer._tag, "Failure", "a revoked key still authenticated after the cache's TTL")
          break
        }
        if (answer._tag === "Failure") break
        // Real time (it.effect runs on the TestClock, where Effect.sleep would never return).
        yield* Effect.promise(() => new Promise((resolve) => setTimeout(resolve, pollInterval_ms)))
      }
      const final = yield* Effect.flip(apiKeys.authenticate(secret))
      assert.strictEqual(final._tag, "Unauthorized")
    }))

  it.effect("a revocation through this process's ApiKeys takes effect at once, cache or not", () =>
    Effect.gen(function* () {
      const apiKeys = yield* ApiKeys
      const merchant = yield* (yield* MerchantRepository).create("Cache merchant 2")
      const created = yield* apiKeys.create(merchant.id)
      const secret = Redacted.value(created.secret)
      yield* apiKeys.authenticate(secret)
      yield* apiKeys.revoke(created.id)
      const refused = yield* Effect.flip(apiKeys.authenticate(secret))
      assert.strictEqual(refused._tag, "Unauthorized")
    }))
})
