// The HTTP edge's limits over real HTTP (the real server process, limits lowered): a merchant over
// its rate gets 429 rate_limited with Retry-After before any idempotency work (nothing written,
// another merchant unaffected); /metrics is not on the API port but on the operators' own; a
// source over its failed authentications gets 429 authentication_rate_limited, valid key or not.
// (The last case blocks this file's only source address, 127.0.0.1: it runs last.)
import { assert, layer } from "@effect/vitest"
import { problemType } from "@pay/api"
import { Effect } from "effect"
import { type Answer, call, jsonOf } from "./support/Http.ts"
import { freePort } from "./support/ServerProcess.ts"
import { createMerchant, createPayment, newKey, TestServer, testServerLayer, unknownApiKey, writtenRows } from "./support/TestServer.ts"

const metricsPort = await Effect.runPromise(freePort)
const Live = testServerLayer({
  env: {
    RATE_LIMIT_MERCHANT_REQUESTS_MAX: "5",
    RATE_LIMIT_MERCHANT_WINDOW_MS: "60000",
    RATE_LIMIT_AUTH_FAILURES_MAX: "3",
    RATE_LIMIT_AUTH_FAILURES_WINDOW_MS: "60000",
    METRICS_PORT: String(metricsPort)
  }
})

const assertTooMany = (answer: Answer, code: string, label: string) => {
  assert.strictEqual(answer.status, 429, `${label}: ${answer.status} ${answer.text.slice(0, 300)}`)
  assert.strictEqual(answer.contentType, "application/problem+json", label)
  assert.strictEqual(jsonOf(answer)["code"], code, label)
  assert.strictEqual(jsonOf(answer)["type"], problemType(code === "rate_limited" ? "rate_limited" : "authentication_rate_limited"), label)
  const retryAfter = Number(answer.headers.get("retry-after"))
  assert.isTrue(Number.isInteger(retryAfter) && retryAfter >= 1 && retryAfter <= 60, `${label}: Retry-After ${answer.headers.get("retry-after")}`)
}

layer(Live, { excludeTestServices: true, timeout: "60 seconds" })("HTTP limits (real server process)", (it) => {
  it.effect("a merchant over its rate: 429 rate_limited with Retry-After, nothing written; another merchant is unaffected", () =>
    Effect.gen(function* () {
      const server = yield* TestServer
      const a = yield* createMerchant("Busy")
      const b = yield* createMerchant("Quiet")
      for (let i = 0; i < 5; i++) {
        const answer = yield* server.request("GET", "/v1/balance", { apiKey: a.apiKey })
        assert.strictEqual(answer.status, 200, answer.text)
      }
      const before = yield* writtenRows(a.merchantId)
      const sixth = yield* server.request("GET", "/v1/balance", { apiKey: a.apiKey })
      assertTooMany(sixth, "rate_limited", "6th read")
      // The limit as configured (5 per 60 s), not a per-second rate rounded to "1 per second".
      assert.match(String(jsonOf(sixth)["detail"]), /^over 5 requests per 60 seconds for this merchant; nothing was executed, retry in \d+ s$/)
      assertTooMany(yield* createPayment(a, newKey("limited")), "rate_limited", "create over the limit")
      assert.deepStrictEqual(yield* writtenRows(a.merchantId), before, "no payment, no key: refused before any idempotency work")
      const other = yield* server.request("GET", "/v1/balance", { apiKey: b.apiKey })
      assert.strictEqual(other.status, 200, other.text)
    }))

  it.effect("/metrics: not on the API port (route_not_found), served on METRICS_PORT", () =>
    Effect.gen(function* () {
      const server = yield* TestServer
      const onApi = yield* server.request("GET", "/metrics")
      assert.strictEqual(onApi.status, 404, onApi.text)
      assert.strictEqual(jsonOf(onApi)["code"], "route_not_found")
      const onOperators = yield* call(`http://127.0.0.1:${metricsPort}`, "GET", "/metrics")
      assert.strictEqual(onOperators.status, 200, onOperators.text.slice(0, 200))
      assert.match(onOperators.text, /# (TYPE|HELP) /)
    }))

  it.effect("a source over its failed authentications: 429 authentication_rate_limited with Retry-After, even with a valid key", () =>
    Effect.gen(function* () {
      const server = yield* TestServer
      const m = yield* createMerchant("Guessed")
      // No key, or one that cannot be a key: refused without a lookup, and never an attempt of the
      // source (a probe without its key behind a merchant's NAT must not lock out its valid keys).
      for (let i = 0; i < 5; i++) {
        const none = yield* server.request("GET", "/v1/balance")
        assert.strictEqual(none.status, 401, none.text)
        const malformed = yield* server.request("GET", "/v1/balance", { apiKey: `sk_test_guess${i}` })
        assert.strictEqual(malformed.status, 401, malformed.text)
      }
      assert.strictEqual((yield* server.request("GET", "/v1/balance", { apiKey: m.apiKey })).status, 200, "no attempt counted yet")
      for (let i = 0; i < 3; i++) {
        const answer = yield* server.request("GET", "/v1/balance", { apiKey: unknownApiKey() })
        assert.strictEqual(answer.status, 401, answer.text)
      }
      assertTooMany(yield* server.request("GET", "/v1/balance", { apiKey: unknownApiKey() }), "authentication_rate_limited", "4th guess")
      assertTooMany(yield* server.request("GET", "/v1/balance", { apiKey: m.apiKey }), "authentication_rate_limited", "valid key, same source")
      const live = yield* server.request("GET", "/health/live")
      assert.strictEqual(live.status, 200, "unauthenticated endpoints are not limited")
      // Its access lines say which 429 it is (outside re-test: no code, like a merchant's rate limit).
      const refusals = server.process.output().split("\n").filter((line) => line.includes('"message":"http request"') && line.includes('"status":"429"'))
      for (const line of refusals) assert.match(line, /"code":"(authentication_rate_limited|rate_limited)"/u, line)
      assert.isAtLeast(refusals.filter((line) => line.includes('"code":"authentication_rate_limited"')).length, 2, refusals.join("\n"))
    }))
})
