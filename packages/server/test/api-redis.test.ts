// Redis is a cache in front of Postgres: the server on a private (throwaway) Redis that these tests
// flush and then kill. Postgres keeps deciding; the API keeps answering, in bounded time.
import { assert, layer } from "@effect/vitest"
import { fingerprintRequest, redisResponseKey } from "@pay/idempotency"
import { scaled_ms } from "@pay/testkit"
import { Effect } from "effect"
import { type Answer, jsonOf, stringField } from "./support/Http.ts"
import { redisCommand } from "./support/RedisCommand.ts"
import { createMerchant, createPayment, newKey, paymentBody, paymentCount, type TestMerchant, TestServer, testServerLayer } from "./support/TestServer.ts"

const Live = testServerLayer({ throwawayRedis: true })

const describeAnswer = (answer: Answer) => `${answer.status} ${answer.text.slice(0, 300)}`
const replayed = (answer: Answer) => answer.headers.get("idempotent-replayed") === "true"

/** The server's Redis, or a failed test when the layer was built without one. */
const serverRedis = Effect.gen(function* () {
  const server = yield* TestServer
  if (server.redis === undefined) return yield* Effect.die(new Error("this block needs the server's throwaway Redis"))
  return { server, redis: server.redis }
})

const cachedResponseExists = (m: TestMerchant, key: string) =>
  Effect.gen(function* () {
    const { server, redis } = yield* serverRedis
    return (yield* redisCommand(redis.url, ["EXISTS", `${server.redisKeyPrefix}${redisResponseKey(m.merchantId, key)}`])) === "1"
  })

/** Every answer with Redis dead must come within this: one fast failure per command, then Postgres. */
const boundedLatency_ms = scaled_ms(1_500)

layer(Live, { excludeTestServices: true, timeout: "90 seconds" })("payments API over HTTP with Redis flushed, then dead (throwaway Redis)", (it) => {
  it.effect("Redis flushed between the first request and its retry: still one payment; the retry replays from Postgres and refills the cache", () =>
    Effect.gen(function* () {
      const { redis } = yield* serverRedis
      const m = yield* createMerchant("Flushed")
      const key = newKey()
      const first = yield* createPayment(m, key)
      assert.strictEqual(first.status, 201, describeAnswer(first))
      assert.isTrue(yield* cachedResponseExists(m, key), "the response was cached after commit")

      assert.strictEqual(yield* redisCommand(redis.url, ["FLUSHALL"]), "OK")
      assert.strictEqual(yield* redisCommand(redis.url, ["DBSIZE"]), "0")

      const retry = yield* createPayment(m, key)
      assert.strictEqual(retry.status, 201)
      assert.isTrue(replayed(retry), "a replay decided by Postgres")
      assert.strictEqual(retry.text, first.text)
      assert.strictEqual(yield* paymentCount(m.merchantId), 1)
      assert.isTrue(yield* cachedResponseExists(m, key), "Postgres' answer was put back into Redis")
    }))

  it.effect("a response forged into Redis (pay:idem:resp:*, the cache's own format, any MAC) is never replayed: a new key executes, a used key replays Postgres' bytes", () =>
    Effect.gen(function* () {
      const { server, redis } = yield* serverRedis
      const m = yield* createMerchant("Forged cache")
      const forgedBody = `{"id":"pay_forged00000000000000000","status":"SETTLED","amount":1}`
      const fingerprint = fingerprintRequest({ method: "POST", path: "/v1/payments", body: paymentBody() })
      const forge = (key: string, value: Record<string, unknown>) =>
        redisCommand(redis.url, ["SET", `${server.redisKeyPrefix}${redisResponseKey(m.merchantId, key)}`, JSON.stringify(value), "PX", "60000"])
      const forgeries = [
        { v: 1, fingerprint, status: 201, contentType: "application/json", body: forgedBody },
        { v: 2, fingerprint, status: 201, contentType: "application/json", body: forgedBody, mac: "00".repeat(32) }
      ]
      for (const value of forgeries) {
        const fresh = newKey("forged-fresh")
        assert.strictEqual(yield* forge(fresh, value), "OK")
        const answer = yield* createPayment(m, fresh)
        assert.strictEqual(answer.status, 201, describeAnswer(answer))
        assert.isFalse(replayed(answer), "executed, not replayed from the forgery")
        assert.notStrictEqual(answer.text, forgedBody)

        const used = newKey("forged-used")
        const first = yield* createPayment(m, used)
        assert.strictEqual(yield* forge(used, value), "OK")
        const retry = yield* createPayment(m, used)
        assert.isTrue(replayed(retry))
        assert.strictEqual(retry.text, first.text, "Postgres' stored bytes, not the forgery")
      }
      assert.strictEqual(yield* paymentCount(m.merchantId), 4)
    }))

  it.effect("Redis killed: /health/ready stays 200 and names redis as degraded (the instance serves; a shared Redis must not take every instance out of rotation); replays, new payments and one-key storms still work, each answer bounded", () =>
    Effect.gen(function* () {
      const { server, redis } = yield* serverRedis
      const m = yield* createMerchant("Redis dead")
      const cachedKey = newKey()
      const cached = yield* createPayment(m, cachedKey)
      assert.strictEqual(cached.status, 201)

      yield* redis.kill

      const ready = yield* server.request("GET", "/health/ready")
      assert.strictEqual(ready.status, 200, describeAnswer(ready))
      assert.deepStrictEqual([jsonOf(ready)["status"], jsonOf(ready)["degraded"]], ["degraded", ["redis"]])
      const redisCheck = (jsonOf(ready)["checks"] as ReadonlyArray<{ readonly name: string; readonly status: string; readonly required: boolean; readonly error?: string }>).find((check) => check.name === "redis")
      assert.deepStrictEqual([redisCheck?.status, redisCheck?.required], ["down", false])
      // The public answer names no address (a balancer and anyone else read it); the operator's
      // log says where it is (not the client library's own words alone).
      assert.notInclude(redisCheck?.error ?? "", String(redis.port))
      for (let poll = 0; poll < 40 && !server.process.output().includes("readiness: redis is down"); poll++) yield* Effect.sleep("50 millis")
      assert.include(server.process.output(), "readiness: redis is down")
      assert.include(server.process.output(), `Redis at 127.0.0.1:${redis.port} did not answer a PING`)
      assert.isBelow(ready.elapsed_ms, scaled_ms(3_000), "the probe is bounded")

      // A replay of a response that only Postgres can serve now.
      const replay = yield* createPayment(m, cachedKey)
      assert.strictEqual(replay.status, 201, describeAnswer(replay))
      assert.isTrue(replayed(replay))
      assert.strictEqual(replay.text, cached.text)
      assert.isBelow(replay.elapsed_ms, boundedLatency_ms)

      // A new payment, authorized and replayed, with Redis dead.
      const key = newKey()
      const created = yield* createPayment(m, key)
      assert.strictEqual(created.status, 201, describeAnswer(created))
      assert.isBelow(created.elapsed_ms, boundedLatency_ms)
      const id = stringField(created, "id")
      const authorizeKey = newKey("auth")
      const authorized = yield* server.request("POST", `/v1/payments/${id}/authorize`, { apiKey: m.apiKey, idempotencyKey: authorizeKey })
      assert.strictEqual(authorized.status, 200, describeAnswer(authorized))
      assert.isBelow(authorized.elapsed_ms, boundedLatency_ms)
      const authorizedAgain = yield* server.request("POST", `/v1/payments/${id}/authorize`, { apiKey: m.apiKey, idempotencyKey: authorizeKey })
      assert.isTrue(replayed(authorizedAgain))
      assert.strictEqual(authorizedAgain.text, authorized.text)

      // 20 at once on one key: Postgres alone decides, exactly once.
      const stormKey = newKey("storm")
      const storm = yield* Effect.forEach(Array.from({ length: 20 }), () => createPayment(m, stormKey), { concurrency: "unbounded" })
      const created201 = storm.filter((a) => a.status === 201)
      assert.strictEqual(created201.length + storm.filter((a) => a.status === 409).length, 20, storm.map(describeAnswer).join("\n"))
      assert.strictEqual(new Set(created201.map((a) => stringField(a, "id"))).size, 1)
      for (const answer of storm) assert.isBelow(answer.elapsed_ms, scaled_ms(5_000))
      // Postgres' 409 in use says when to retry, as the Redis fast path's does.
      for (const answer of storm.filter((a) => a.status === 409)) assert.strictEqual(answer.headers.get("retry-after"), "1", describeAnswer(answer))

      // cached + new + storm
      assert.strictEqual(yield* paymentCount(m.merchantId), 3)

      // Redis back: readiness recovers without restarting the server (the client reconnects, backoff ≤ 2 s).
      yield* redis.restart
      let readyAgain: unknown = "degraded"
      for (let attempt = 0; attempt < 40 && readyAgain !== "ready"; attempt++) {
        yield* Effect.sleep(250)
        readyAgain = jsonOf(yield* server.request("GET", "/health/ready"))["status"]
      }
      assert.strictEqual(readyAgain, "ready", "nothing degraded within 10 s of Redis coming back")
    }))
})
