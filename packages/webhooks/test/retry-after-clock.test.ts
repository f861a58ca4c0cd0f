// A receiver's `Retry-After: <HTTP-date>` is read against Effect's Clock (the database's in the
// server): an outside clock review's sender, its host 10 minutes behind, waited 10 min 5 s for a
// date 5 s ahead. Here the sender's Clock is the true time while the process's is 10 minutes behind.
import { assert, it } from "@effect/vitest"
import { offsetClock } from "@pay/infra"
import { Clock, Effect } from "effect"
import { send } from "../src/Sender.ts"
import { startReceiver } from "./support/Receiver.ts"

it.effect("an HTTP-date Retry-After is measured from the Clock the sender is given, not the host's wall clock", () =>
  Effect.gen(function* () {
    const host = Clock.Clock.defaultValue()
    const behind_ms = 10 * 60 * 1_000
    // The receiver's date: 60 s after the true time.
    const receiver = yield* startReceiver(() => ({ status: 503, headers: { "retry-after": new Date(Date.now() + 60_000).toUTCString() } }))
    const attempt = send({ url: receiver.url, headers: {}, body: "{}", timeout_ms: 5_000, allowLoopbackHttp: true })
    const onTime = yield* attempt.pipe(Effect.provideService(Clock.Clock, host))
    const late = yield* attempt.pipe(Effect.provideService(Clock.Clock, offsetClock(host, { offset_ms: -behind_ms })))
    assert.strictEqual(onTime._tag, "Answered")
    assert.strictEqual(late._tag, "Answered")
    if (onTime._tag !== "Answered" || late._tag !== "Answered") return
    // HTTP dates have whole seconds: 59-61 s from the true time.
    assert.isAtLeast(onTime.retryAfter_ms ?? -1, 58_000)
    assert.isAtMost(onTime.retryAfter_ms ?? -1, 61_000)
    const lateBy_ms = (late.retryAfter_ms ?? 0) - (onTime.retryAfter_ms ?? 0)
    assert.isBelow(Math.abs(lateBy_ms - behind_ms), 2_000, "a Clock 10 minutes behind reads the date 10 minutes further away: the Clock is what counts")
  }).pipe(Effect.scoped))
