// The authorization expiry loop outlives a failed run. It used to catch only a SqlError: any other
// failure (a defect in a run) ended the forked loop without a word, and from then on no due
// authorization was ever released at the acquirer or sent as payment_expired (outside code review).
// Now every failure ends its run only and is counted (payment_expiry_failures_total{scope="run"}),
// and a run's payments that could not be expired are counted too (scope="payment").
// PaymentExpiry's own behaviour is tested on real Postgres (packages/payments/test/expiry.test.ts);
// here its runs are scripted, to make a run die.
import { assert, describe, it } from "@effect/vitest"
import { PaymentExpiry, type ExpiryReport } from "@pay/payments"
import { ConfigProvider, Effect, Layer, Metric } from "effect"
import { TestClock } from "effect/testing"
import { ConnectionError, SqlError } from "effect/sql/SqlError"
import { AuthorizationExpiryLive, expiryFailures } from "../src/workers/AuthorizationExpiry.ts"

const countOf = (scope: string) => Metric.value(Metric.withAttributes(expiryFailures, { scope })).pipe(Effect.map((state) => state.count))

describe("the authorization expiry loop", () => {
  it.effect("a run that dies, a run the database fails and a run with a payment that failed are each counted, and the loop goes on", () =>
    Effect.scoped(Effect.gen(function* () {
      const ok: ExpiryReport = { expired: 1, skipped: 0, unanswered: 0, failed: 0 }
      const script: ReadonlyArray<Effect.Effect<ExpiryReport, SqlError>> = [
        Effect.die(new TypeError("a bug in a run")),
        Effect.fail(new SqlError({ reason: new ConnectionError({ cause: new Error("connect ECONNREFUSED 127.0.0.1:5432"), message: "Failed to connect" }) })),
        Effect.succeed({ ...ok, failed: 2 }),
        Effect.succeed(ok)
      ]
      let runs = 0
      const scripted = PaymentExpiry.of({
        warnDue: () => Effect.succeed(0),
        expireDue: () => Effect.suspend(() => script[Math.min(runs++, script.length - 1)] ?? Effect.succeed(ok))
      })
      const runsAtStart = yield* countOf("run")
      const paymentsAtStart = yield* countOf("payment")
      yield* Layer.build(AuthorizationExpiryLive.pipe(
        Layer.provide(Layer.succeed(PaymentExpiry, scripted)),
        Layer.provide(ConfigProvider.layer(ConfigProvider.fromEnv({ env: { EXPIRY_INTERVAL_MS: "1000" } })))
      ))
      for (let second = 0; second < 4; second++) yield* TestClock.adjust("1 second")
      assert.isAtLeast(runs, 4, "the loop stopped after a failed run")
      assert.strictEqual((yield* countOf("run")) - runsAtStart, 2, "the defect and the database failure")
      assert.strictEqual((yield* countOf("payment")) - paymentsAtStart, 2)
    })))
})
