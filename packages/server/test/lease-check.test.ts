// A key's lease shorter than the acquirer's timeout (an outside clock review: 500 ms against 3 s
// was taken in silence; the first caller got 409 and the acquirer was asked twice) is said at start.
import { assert, it } from "@effect/vitest"
import { ConfigProvider, Effect, Layer, Logger } from "effect"
import { LeaseCheckLive } from "../src/LeaseCheck.ts"

const warningsWith = (env: Record<string, string>) =>
  Effect.gen(function* () {
    const logged: Array<string> = []
    const capture = Logger.layer([Logger.make((options) => {
      logged.push(`${options.logLevel} ${String(Logger.formatStructured.log(options).message)}`)
    })])
    yield* Effect.scoped(Layer.build(LeaseCheckLive.pipe(Layer.provide(ConfigProvider.layer(ConfigProvider.fromEnv({ env })))))).pipe(Effect.provide(capture))
    return logged
  })

it.effect("a lease not longer than the acquirer's timeout is a WARN naming both settings; the defaults say nothing", () =>
  Effect.gen(function* () {
    const short = yield* warningsWith({ IDEMPOTENCY_LOCK_TIMEOUT_MS: "500", ACQUIRER_TIMEOUT_MS: "3000" })
    assert.strictEqual(short.length, 1, short.join("\n"))
    assert.match(short[0] ?? "", /^Warn IDEMPOTENCY_LOCK_TIMEOUT_MS=500 is not longer than ACQUIRER_TIMEOUT_MS=3000/)
    assert.strictEqual((yield* warningsWith({ IDEMPOTENCY_LOCK_TIMEOUT_MS: "3000", ACQUIRER_TIMEOUT_MS: "3000" })).length, 1)
    assert.deepStrictEqual(yield* warningsWith({}), [])
    assert.deepStrictEqual(yield* warningsWith({ IDEMPOTENCY_LOCK_TIMEOUT_MS: "3001", ACQUIRER_TIMEOUT_MS: "3000" }), [])
  }))
