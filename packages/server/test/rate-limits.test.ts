// The counters behind the HTTP limits: fixed windows that refuse past the limit with the seconds
// left, start over when the window ends, and never hold more than `keys_max` keys (the source
// address counters are keyed by whoever connects); and /health/ready's probes run once per cache
// window however many requests ask; the socket limits are the Node server's own settings (the
// header size and the timeouts are also proven over real HTTP in api-edge.test.ts).
import { assert, describe, it } from "@effect/vitest"
import { ConfigProvider, Effect, Layer } from "effect"
import { Readiness } from "../src/health/Readiness.ts"
import { fixedWindows } from "../src/http/RateLimits.ts"
import { clientErrorProblem, createLimitedServer, offendingHeader } from "../src/http/Socket.ts"

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

describe("socket limits are set explicitly on the server", () => {
  it("every limit of the configuration is the Node server's, and parser refusals are problems", () => {
    const limits = {
      headersTimeout_ms: 4_000,
      requestTimeout_ms: 9_000,
      keepAliveTimeout_ms: 3_000,
      headerSize_bytes_max: 8_192,
      connections_max: 7,
      requestsPerSocket_max: 11
    }
    const server = createLimitedServer(limits)()
    assert.deepStrictEqual(
      [server.headersTimeout, server.requestTimeout, server.keepAliveTimeout, server.maxConnections, server.maxRequestsPerSocket],
      [4_000, 9_000, 3_000, 7, 11]
    )
    const overflow = Object.assign(new Error("overflow"), { code: "HPE_HEADER_OVERFLOW" })
    assert.strictEqual(clientErrorProblem(overflow, limits, "headers").code, "headers_too_large")
    const timeout = Object.assign(new Error("timeout"), { code: "ERR_HTTP_REQUEST_TIMEOUT" })
    // Node reports both timers with the same code: the problem names the one that fired.
    const headersLate = clientErrorProblem(timeout, limits, "headers")
    assert.deepStrictEqual([headersLate.code, headersLate.message], ["request_timeout", "the request did not arrive within 4000 ms; nothing was executed"])
    const bodyLate = clientErrorProblem(timeout, limits, "request")
    assert.deepStrictEqual([bodyLate.code, bodyLate.message], ["request_timeout", "the request did not arrive within 9000 ms; nothing was executed"])
    const raw = Buffer.from("POST / HTTP/1.1\r\nHost: x\r\nIdempotency-Key: a\u0001b\r\n\r\n", "latin1")
    const bad = Object.assign(new Error("bad"), { code: "HPE_INVALID_HEADER_TOKEN", rawPacket: raw, bytesParsed: raw.indexOf("\u0001") })
    assert.strictEqual(offendingHeader(bad), "idempotency-key")
    assert.strictEqual(clientErrorProblem(bad, limits, "headers").code, "idempotency_key_invalid")
  })
})
