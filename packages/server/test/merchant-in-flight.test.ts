// Each merchant's requests in flight (MerchantInFlight.ts, security finding F2): at most the cap
// served at once, the rest in a bounded FIFO queue (length and wait), refused past it; a place is
// given back however its request ends (an answer, a failure, an interruption: the client gone),
// work that outlives its request (finishEvenIfClientLeaves) keeps the place until it ends, and the
// map keeps no entry for a merchant with nothing in flight. Over real HTTP: api-fairness.test.ts.
import { assert, describe, it } from "@effect/vitest"
import { Config, ConfigProvider, Deferred, Effect, Exit, Fiber, Result } from "effect"
import { TestClock } from "effect/testing"
import { type Entry, InFlightConfig, type InFlightSettings, MerchantInFlight, merchantPlaces, type Waiter } from "../src/http/MerchantInFlight.ts"
import { finishEvenIfClientLeaves } from "../src/http/Respond.ts"

const settings: InFlightSettings = { inFlight_max: 3, queued_max: 4, queueWait_ms_max: 2_000, merchants_max: 100 }

const waiterOf = (entry: Entry): Waiter => (entry._tag === "Queued" ? entry.waiter : assert.fail(`expected a place in the queue, got ${entry._tag}`))

describe("merchant places", () => {
  it("the cap in flight, then a FIFO queue of bounded length, then refused; places go to the waiters in order", () => {
    const places = merchantPlaces(settings)
    const woken: Array<number> = []
    const entries = Array.from({ length: 9 }, (_, i) => places.enter("a", () => woken.push(i)))
    assert.deepStrictEqual(entries.map((entry) => entry._tag), ["Admitted", "Admitted", "Admitted", "Queued", "Queued", "Queued", "Queued", "Refused", "Refused"])
    assert.deepStrictEqual(entries[7], { _tag: "Refused", reason: "queue_full" })
    assert.deepStrictEqual(places.load("a"), { inFlight: 3, queued: 4 })
    assert.strictEqual(places.enter("b", () => {})._tag, "Admitted", "another merchant has its own places")
    places.release("a")
    places.release("a")
    assert.deepStrictEqual(woken, [3, 4], "first in, first admitted")
    assert.deepStrictEqual(places.load("a"), { inFlight: 3, queued: 2 }, "a place handed on stays in flight")
    assert.isTrue(waiterOf(entries[3] ?? assert.fail("entry")).admitted)
  })

  it("a waiter that gives up leaves the queue; one handed a place as it gave up passes the place on", () => {
    const places = merchantPlaces(settings)
    const woken: Array<string> = []
    for (let i = 0; i < 3; i++) places.enter("a", () => {})
    const [first, second, third] = ["first", "second", "third"].map((name) => waiterOf(places.enter("a", () => woken.push(name))))
    if (first === undefined || second === undefined || third === undefined) return assert.fail("three waiters")
    places.leave(second)
    assert.deepStrictEqual(places.load("a"), { inFlight: 3, queued: 2 })
    places.release("a")
    assert.deepStrictEqual(woken, ["first"])
    places.leave(first)
    assert.deepStrictEqual(woken, ["first", "third"], "the place first was handed goes to the next")
    assert.deepStrictEqual(places.load("a"), { inFlight: 3, queued: 0 })
  })

  it("no entry for a merchant with nothing in flight or waiting; at most merchants_max entries", () => {
    const places = merchantPlaces({ ...settings, merchants_max: 100 })
    for (let i = 0; i < 1_000; i++) {
      assert.strictEqual(places.enter(`m${i}`, () => {})._tag, "Admitted")
      places.release(`m${i}`)
    }
    assert.strictEqual(places.merchants(), 0, "idle merchants leave nothing behind")
    for (let i = 0; i < 100; i++) places.enter(`busy${i}`, () => {})
    assert.deepStrictEqual(places.enter("one more", () => {}), { _tag: "Refused", reason: "merchants_max" })
    assert.strictEqual(places.enter("busy0", () => {})._tag, "Admitted", "a merchant already in the map is served")
    assert.strictEqual(places.merchants(), 100)
    const stray: Waiter = { merchantId: "busy1", admitted: false, wake: () => {} }
    assert.throws(() => places.leave(stray), /not in its queue/, "a waiter never queued is a bug")
    assert.throws(() => places.release("never"), /none holds/, "a place nobody holds is a bug")
  })
})

describe("MerchantInFlight.serve", () => {
  const run = <A, E>(effect: Effect.Effect<A, E, MerchantInFlight>, with_: InFlightSettings = settings) =>
    Effect.provide(effect, MerchantInFlight.layerWith(with_))

  /** `count` requests of merchant "a" at once, each running while `gate` is closed; how many ran at once, at most. */
  const concurrently = (count: number, gate: Deferred.Deferred<void>) =>
    Effect.gen(function* () {
      const inFlight = yield* MerchantInFlight
      const running = { now: 0, max: 0 }
      const request = Effect.sync(() => {
        running.now += 1
        running.max = Math.max(running.max, running.now)
      }).pipe(Effect.andThen(Deferred.await(gate)), Effect.ensuring(Effect.sync(() => void running.now--)), Effect.as("ok"))
      const fiber = yield* Effect.forkChild(Effect.all(Array.from({ length: count }, () => inFlight.serve("a", request)), { concurrency: "unbounded" }))
      for (let round = 0; round < 100 && running.now < settings.inFlight_max; round++) yield* Effect.yieldNow
      return { fiber, running }
    })

  it.effect("20 requests at once: 3 run, 4 wait and then run, 13 refused with queue_full; nothing left in the map", () =>
    run(Effect.gen(function* () {
      const inFlight = yield* MerchantInFlight
      const gate = yield* Deferred.make<void>()
      const { fiber, running } = yield* concurrently(20, gate)
      assert.deepStrictEqual(yield* inFlight.load("a"), { inFlight: 3, queued: 4 })
      assert.deepStrictEqual(yield* inFlight.serve("b", Effect.succeed(1)), { _tag: "Served", value: 1 }, "another merchant is served meanwhile")
      yield* Deferred.succeed(gate, undefined)
      const served = yield* Fiber.join(fiber)
      assert.strictEqual(served.filter((s) => s._tag === "Served").length, 7)
      assert.deepStrictEqual(served.filter((s) => s._tag === "Refused"), Array.from({ length: 13 }, () => ({ _tag: "Refused", reason: "queue_full" })))
      assert.strictEqual(running.max, 3, "never more than the cap at once")
      assert.strictEqual(yield* inFlight.merchants, 0)
    })))

  it.effect("failed, defective and interrupted requests give their place back (running or waiting)", () =>
    run(Effect.gen(function* () {
      const inFlight = yield* MerchantInFlight
      for (let i = 0; i < 10; i++) assert.isTrue(Exit.isFailure(yield* Effect.exit(inFlight.serve("a", Effect.fail("database")))))
      for (let i = 0; i < 10; i++) assert.isTrue(Exit.isFailure(yield* Effect.exit(inFlight.serve("a", Effect.die("bug")))))
      assert.deepStrictEqual(yield* inFlight.load("a"), { inFlight: 0, queued: 0 })
      // Clients gone: first the 4 waiting (the 3 running keep their places), then the 3 running.
      const never = (count: number) => Effect.forkChild(Effect.all(Array.from({ length: count }, () => inFlight.serve("a", Effect.never)), { concurrency: "unbounded" }))
      const holders = yield* never(3)
      yield* Effect.yieldNow
      const waiting = yield* never(4)
      yield* Effect.yieldNow
      assert.deepStrictEqual(yield* inFlight.load("a"), { inFlight: 3, queued: 4 })
      yield* Fiber.interrupt(waiting)
      assert.deepStrictEqual(yield* inFlight.load("a"), { inFlight: 3, queued: 0 }, "the waiters left the queue")
      yield* Fiber.interrupt(holders)
      assert.deepStrictEqual(yield* inFlight.load("a"), { inFlight: 0, queued: 0 })
      assert.strictEqual(yield* inFlight.merchants, 0)
      const gate = yield* Deferred.make<void>()
      const { fiber, running } = yield* concurrently(7, gate)
      assert.strictEqual(running.now, 3, "every place is free again")
      yield* Deferred.succeed(gate, undefined)
      assert.isTrue((yield* Fiber.join(fiber)).every((s) => s._tag === "Served"))
    })))

  it.effect("a request waiting longer than queueWait_ms_max is refused with queue_wait and leaves the queue", () =>
    run(Effect.gen(function* () {
      const inFlight = yield* MerchantInFlight
      const holders = yield* Effect.forkChild(Effect.all(Array.from({ length: 3 }, () => inFlight.serve("a", Effect.never)), { concurrency: "unbounded" }))
      yield* Effect.yieldNow
      const waiting = yield* Effect.forkChild(inFlight.serve("a", Effect.succeed(1)))
      yield* Effect.yieldNow
      assert.deepStrictEqual(yield* inFlight.load("a"), { inFlight: 3, queued: 1 })
      yield* TestClock.adjust(settings.queueWait_ms_max - 1)
      assert.isUndefined(waiting.pollUnsafe(), "still waiting just before the bound")
      yield* TestClock.adjust(1)
      assert.deepStrictEqual(yield* Fiber.join(waiting), { _tag: "Refused", reason: "queue_wait" })
      assert.deepStrictEqual(yield* inFlight.load("a"), { inFlight: 3, queued: 0 })
      yield* Fiber.interrupt(holders)
      assert.strictEqual(yield* inFlight.merchants, 0)
    })))

  it.effect("work that outlives its request (finishEvenIfClientLeaves) keeps the place until it ends, not after", () =>
    run(Effect.gen(function* () {
      const inFlight = yield* MerchantInFlight
      const workGate = yield* Deferred.make<void>()
      const workStarted = yield* Deferred.make<void>()
      const work = Deferred.succeed(workStarted, undefined).pipe(Effect.andThen(Deferred.await(workGate)))
      const request = yield* Effect.forkChild(inFlight.serve("a", finishEvenIfClientLeaves(work)))
      yield* Deferred.await(workStarted)
      yield* Fiber.interrupt(request)
      assert.deepStrictEqual(yield* inFlight.load("a"), { inFlight: 1, queued: 0 }, "the client left; its write still runs and holds the place")
      yield* Deferred.succeed(workGate, undefined)
      for (let round = 0; round < 100 && (yield* inFlight.merchants) > 0; round++) yield* Effect.yieldNow
      assert.deepStrictEqual(yield* inFlight.load("a"), { inFlight: 0, queued: 0 }, "given back when the work ended")
      assert.strictEqual(yield* inFlight.merchants, 0)
    }), { ...settings, inFlight_max: 1 }))
})

describe("in-flight settings", () => {
  const read = (env: Record<string, string>) => Effect.result(InFlightConfig.parse(ConfigProvider.fromEnv({ env })))
  const valueOf = (result: Result.Result<InFlightSettings, Config.ConfigError>) =>
    Result.isSuccess(result) ? result.success : assert.fail(String(result.failure))

  it.effect("unset: half of DATABASE_POOL_SIZE in flight, 500 waiting for at most 2 s; out of bounds refused at start-up", () =>
    Effect.gen(function* () {
      assert.deepStrictEqual(valueOf(yield* read({})), { inFlight_max: 10, queued_max: 500, queueWait_ms_max: 2_000, merchants_max: 100_000 })
      assert.strictEqual(valueOf(yield* read({ DATABASE_POOL_SIZE: "50" })).inFlight_max, 25)
      assert.strictEqual(valueOf(yield* read({ DATABASE_POOL_SIZE: "1" })).inFlight_max, 1)
      assert.strictEqual(valueOf(yield* read({ DATABASE_POOL_SIZE: "50", RATE_LIMIT_MERCHANT_IN_FLIGHT_MAX: "4" })).inFlight_max, 4)
      assert.strictEqual(valueOf(yield* read({ RATE_LIMIT_MERCHANT_QUEUE_MAX: "0" })).queued_max, 0)
      for (const [name, value] of [
        ["RATE_LIMIT_MERCHANT_IN_FLIGHT_MAX", "0"],
        ["RATE_LIMIT_MERCHANT_IN_FLIGHT_MAX", "1001"],
        ["RATE_LIMIT_MERCHANT_QUEUE_MAX", "10001"],
        ["RATE_LIMIT_MERCHANT_QUEUE_WAIT_MS", "0"],
        ["RATE_LIMIT_MERCHANT_QUEUE_WAIT_MS", "60001"]
      ] as const) {
        const result = yield* read({ [name]: value })
        assert.isTrue(Result.isFailure(result), `${name}=${value} accepted`)
        assert.include(String(Result.isFailure(result) ? result.failure : ""), name)
      }
    }))
})
