// The counters behind the HTTP limits: fixed windows that refuse past the limit with the seconds
// left, start over when the window ends, and never hold more than `keys_max` keys (the source
// address counters are keyed by whoever connects); authentication attempts counted from their
// admission, so that concurrent lookups never get past the limit, valid keys waiting for a place
// rather than refused (over real HTTP: api-source-limits.test.ts); and /health/ready's probes run
// once per cache window however many requests ask; the socket limits are the Node server's own
// settings (the header size and the timeouts are also proven over real HTTP in api-edge.test.ts).
import { assert, describe, it } from "@effect/vitest"
import { ConfigProvider, Deferred, Effect, Exit, Fiber, Layer } from "effect"
import { TestClock } from "effect/testing"
import { Readiness } from "../src/health/Readiness.ts"
import { type Admission, type AttemptTicket, attemptWindows, authenticationWait_ms_max, fixedWindows, rateLimitDefaults, RateLimits } from "../src/http/RateLimits.ts"
import { clientErrorProblem, createLimitedServer, offendingHeader } from "../src/http/Socket.ts"

describe("fixed windows", () => {
  it("refuses past the limit with the seconds left, and starts over after the window", () => {
    const windows = fixedWindows(3, 10_000, 100)
    assert.deepStrictEqual([1, 2, 3].map(() => windows.hit("m", 1_000)), [{ allowed: true }, { allowed: true }, { allowed: true }])
    assert.deepStrictEqual(windows.hit("m", 2_500), { allowed: false, retryAfter_s: 9 })
    assert.deepStrictEqual(windows.hit("m", 10_999), { allowed: false, retryAfter_s: 1 })
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

const ticketOf = (admission: Admission): AttemptTicket =>
  admission._tag === "Admitted" ? admission.ticket : assert.fail(`expected an admission, got ${JSON.stringify(admission)}`)

describe("authentication attempts (counted from their admission)", () => {
  it("at most the limit in flight; a failure keeps its place, anything else gives it back; past the limit, refused", () => {
    const attempts = attemptWindows(3, 10_000, 100)
    const [a, b, c] = [1, 2, 3].map(() => ticketOf(attempts.begin("s", 1_000)))
    assert.deepStrictEqual(attempts.begin("s", 1_000), { _tag: "Busy" }, "3 lookups in flight fill the limit")
    if (a === undefined || b === undefined || c === undefined) return assert.fail("three admissions")
    attempts.settle(a, false, 1_100)
    const d = ticketOf(attempts.begin("s", 1_200))
    for (const ticket of [b, c, d]) attempts.settle(ticket, true, 1_300)
    assert.deepStrictEqual(attempts.begin("s", 2_500), { _tag: "Refused", retryAfter_s: 9 })
    assert.strictEqual(attempts.begin("other", 2_500)._tag, "Admitted")
    assert.strictEqual(attempts.begin("s", 11_000)._tag, "Admitted", "a new window")
  })

  it("attempts in flight carry into the next window: no window settles more than the limit of failures", () => {
    const attempts = attemptWindows(2, 1_000, 100)
    const [x, y] = [1, 2].map(() => ticketOf(attempts.begin("s", 0)))
    if (x === undefined || y === undefined) return assert.fail("two admissions")
    assert.deepStrictEqual(attempts.begin("s", 1_500), { _tag: "Busy" }, "a new window, its places still held")
    attempts.settle(x, true, 1_600)
    attempts.settle(y, true, 1_600)
    assert.deepStrictEqual(attempts.begin("s", 1_700), { _tag: "Refused", retryAfter_s: 1 })
  })

  it("holds at most keys_max keys; an attempt whose counter was dropped settles into nothing", () => {
    const attempts = attemptWindows(1, 1_000, 100)
    const early = ticketOf(attempts.begin("early", 0))
    for (let i = 0; i < 1_000; i++) attempts.begin(`source-${i}`, i)
    assert.isAtMost(attempts.size(), 100)
    attempts.settle(early, true, 1_000)
    assert.strictEqual(attempts.begin("early", 1_000)._tag, "Admitted")
  })
})

describe("RateLimits.authenticationAttempt", () => {
  const limit = 5
  const limits = RateLimits.layerWith({ ...rateLimitDefaults, authenticationFailures_max: limit })
  const run = <A, E>(effect: Effect.Effect<A, E, RateLimits>) => Effect.provide(effect, limits)
  /** Concurrent attempts whose lookups wait for `gate`; how many lookups started. */
  const concurrently = <A, E>(count: number, gate: Deferred.Deferred<void>, result: Effect.Effect<A, E>) =>
    Effect.gen(function* () {
      const rateLimits = yield* RateLimits
      const started = { lookups: 0 }
      const lookup = Effect.sync(() => void started.lookups++).pipe(Effect.andThen(Deferred.await(gate)), Effect.andThen(result))
      const fiber = yield* Effect.forkChild(Effect.all(
        Array.from({ length: count }, () => Effect.exit(rateLimits.authenticationAttempt("s", lookup, (error) => error === "unauthorized"))),
        { concurrency: "unbounded" }
      ))
      for (let round = 0; round < 100 && started.lookups < limit; round++) yield* Effect.yieldNow
      return { fiber, started }
    })

  it.effect("50 bad keys at once: exactly the limit looked up, the other 45 refused", () =>
    run(Effect.gen(function* () {
      const gate = yield* Deferred.make<void>()
      const { fiber, started } = yield* concurrently(50, gate, Effect.fail("unauthorized" as const))
      assert.strictEqual(started.lookups, limit, "lookups in flight hold the places")
      yield* Deferred.succeed(gate, undefined)
      const exits = yield* Fiber.join(fiber)
      const tags = exits.map((exit) => (Exit.isSuccess(exit) ? exit.value._tag : "failed"))
      assert.strictEqual(tags.filter((tag) => tag === "failed").length, limit)
      assert.strictEqual(tags.filter((tag) => tag === "Refused").length, 50 - limit)
    })))

  it.effect("50 valid keys at once: all looked up, limit at a time, none refused", () =>
    run(Effect.gen(function* () {
      const gate = yield* Deferred.make<void>()
      const { fiber, started } = yield* concurrently(50, gate, Effect.succeed("merchant"))
      assert.strictEqual(started.lookups, limit)
      yield* Deferred.succeed(gate, undefined)
      const exits = yield* Fiber.join(fiber)
      assert.deepStrictEqual(new Set(exits.map((exit) => (Exit.isSuccess(exit) ? exit.value._tag : "failed"))), new Set(["LookedUp"]))
      assert.strictEqual(started.lookups, 50)
    })))

  it.effect("lookups that fail otherwise (the database) or are interrupted give their place back", () =>
    run(Effect.gen(function* () {
      const rateLimits = yield* RateLimits
      for (let i = 0; i < 2 * limit; i++) {
        const exit = yield* Effect.exit(rateLimits.authenticationAttempt("s", Effect.fail("database" as const), () => false))
        assert.isTrue(Exit.isFailure(exit))
      }
      const stuck = yield* Effect.forkChild(rateLimits.authenticationAttempt("s", Effect.never, () => true))
      yield* Effect.yieldNow
      yield* Fiber.interrupt(stuck)
      for (let i = 0; i < limit; i++) yield* Effect.exit(rateLimits.authenticationAttempt("s", Effect.fail("bad"), () => true))
      assert.deepStrictEqual((yield* rateLimits.authenticationAttempt("s", Effect.succeed(1), () => true))._tag, "Refused")
    })))

  it.effect(`a place held longer than ${authenticationWait_ms_max} ms: the waiting attempt ends without a lookup`, () =>
    run(Effect.gen(function* () {
      const rateLimits = yield* RateLimits
      const holders = yield* Effect.forkChild(Effect.all(
        Array.from({ length: limit }, () => rateLimits.authenticationAttempt("s", Effect.never, () => true)),
        { concurrency: "unbounded" }
      ))
      yield* Effect.yieldNow
      const waiting = yield* Effect.forkChild(rateLimits.authenticationAttempt("s", Effect.succeed(1), () => true))
      yield* TestClock.adjust(authenticationWait_ms_max)
      assert.deepStrictEqual(yield* Fiber.join(waiting), { _tag: "WaitedTooLong" })
      yield* Fiber.interrupt(holders)
      assert.deepStrictEqual(yield* rateLimits.authenticationAttempt("s", Effect.succeed(1), () => true), { _tag: "LookedUp", value: 1 })
    })))
})

describe("readiness cache", () => {
  it.effect("20 concurrent checks within READINESS_CACHE_MS run the probes once", () =>
    Effect.gen(function* () {
      let runs = 0
      const probe = Effect.succeed({ name: "counted", required: true, check: Effect.sync(() => void runs++) })
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
      requestsPerSocket_max: 11,
      pipelinedRequests_max: 5,
      writeStall_ms: 6_000
    }
    const server = createLimitedServer(limits)()
    assert.deepStrictEqual(
      [server.headersTimeout, server.requestTimeout, server.keepAliveTimeout, server.maxConnections, server.maxRequestsPerSocket, server.timeout],
      [4_000, 9_000, 3_000, 7, 11, 6_000]
    )
    const overflow = Object.assign(new Error("overflow"), { code: "HPE_HEADER_OVERFLOW" })
    assert.strictEqual(clientErrorProblem(overflow, limits, "headers").code, "headers_too_large")
    // The size is never said alone: a chunk of 20,000 parsed bytes may hold earlier pipelined
    // requests before 1,100 short lines (outside re-test: told "over … bytes"). The lines are said
    // when the whole connection read less than the size limit.
    const pipelined = Object.assign(new Error("overflow"), { code: "HPE_HEADER_OVERFLOW", bytesParsed: 20_000 })
    assert.strictEqual(clientErrorProblem(pipelined, limits, "headers", 26_000).message, `the request headers are over ${limits.headerSize_bytes_max} bytes or 1000 lines`)
    assert.strictEqual(clientErrorProblem(overflow, limits, "headers", limits.headerSize_bytes_max - 1).message, "the request has over 1000 header lines")
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
