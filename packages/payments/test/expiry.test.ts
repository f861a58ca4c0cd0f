// Authorization expiry (issue 19): the bounded job moves due authorizations to EXPIRED after a
// void at the acquirer (which excludes a capture), the settle use case refuses a capture after
// expiry (typed, before the acquirer is asked), and the database refuses an early expiry and any
// rewrite of authorization_expires_at (raw SQL).
import { assert, layer } from "@effect/vitest"
import { Acquirer, AcquirerSimulator, Declined } from "@pay/acquirer"
import { DateTime, Effect, Layer } from "effect"
import { SqlClient } from "effect/sql"
import { acquirerSteps, refusalBeforeAsking } from "../src/AcquirerTransition.ts"
import { PaymentExpiry } from "../src/PaymentExpiry.ts"
import { acquirerReference } from "../src/PaymentOperation.ts"
import { PaymentRepository } from "../src/PaymentRepository.ts"
import { authorizedExpiringIn, context, PaymentsTestLayer, postgresError } from "./support.ts"

const TestLayer = PaymentExpiry.layer.pipe(
  Layer.provideMerge(AcquirerSimulator.layerWith({ latency_ms: 0 })),
  Layer.provideMerge(PaymentsTestLayer)
)


const statusOf = (paymentId: string) =>
  Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    const rows = yield* sql`SELECT status FROM payments WHERE id = ${paymentId}`
    return rows[0]?.["status"]
  })

layer(TestLayer, { excludeTestServices: true, timeout: "60 seconds" })("authorization expiry (real Postgres, simulated acquirer)", (it) => {
  it.effect("the job expires a due authorization after voiding it at the acquirer (payment_expired), leaves one not yet due, and skips one whose capture won", () =>
    Effect.gen(function* () {
      const sql = yield* SqlClient.SqlClient
      const acquirer = yield* Acquirer
      const expiry = yield* PaymentExpiry
      const due = yield* authorizedExpiringIn(-1_000)
      const later = yield* authorizedExpiringIn(3_600_000)
      const captured = yield* authorizedExpiringIn(-1_000)
      const capture = yield* acquirer.capture({
        reference: acquirerReference(captured.id, "capture"), paymentId: captured.id, amount_minor: captured.amount_minor, currency: captured.currency
      })
      assert.strictEqual(capture._tag, "Approved")
      const report = yield* expiry.expireDue(100)
      assert.isAtLeast(report.expired, 1)
      assert.strictEqual(yield* statusOf(due.id), "EXPIRED")
      assert.strictEqual(yield* statusOf(later.id), "AUTHORIZED")
      assert.strictEqual(yield* statusOf(captured.id), "AUTHORIZED", "the capture won at the acquirer: its settle finishes the payment")
      const events = yield* sql`SELECT 1 FROM outbox_events WHERE aggregate_id = ${due.id} AND event_type = 'payment_expired'`
      assert.strictEqual(events.length, 1)
      const voids = yield* sql`SELECT outcome FROM acquirer_sim.operations WHERE reference = ${acquirerReference(due.id, "void")}`
      assert.deepStrictEqual(voids.map((row) => row["outcome"]), ["approved"])
      // Run again: nothing new to expire for these payments; the captured one is skipped again.
      yield* expiry.expireDue(100)
      assert.strictEqual(yield* statusOf(captured.id), "AUTHORIZED")
    }))

  it.effect("a payment that cannot be expired (here the acquirer adapter dies on its void) fails alone: counted, and the due authorizations after it in the batch still expire", () =>
    Effect.gen(function* () {
      const simulator = yield* Acquirer
      // The older one comes first in the batch's order (authorization_expires_at).
      const poisoned = yield* authorizedExpiringIn(-2_000)
      const due = yield* authorizedExpiringIn(-1_000)
      const dyingOnOne = Acquirer.of({
        ...simulator,
        void: (request) => (request.paymentId === poisoned.id ? Effect.die(new Error("adapter bug")) : simulator.void(request))
      })
      const report = yield* Effect.gen(function* () {
        return yield* (yield* PaymentExpiry).expireDue(100)
      }).pipe(
        // fresh: the suite's layer already built one on the simulator, and layers are memoized.
        Effect.provide(Layer.fresh(PaymentExpiry.layer).pipe(Layer.provide(Layer.succeed(Acquirer, dyingOnOne))))
      )
      assert.isAtLeast(report.failed, 1)
      assert.strictEqual(yield* statusOf(poisoned.id), "AUTHORIZED", "tried again at the next run")
      assert.strictEqual(yield* statusOf(due.id), "EXPIRED", "the batch went on past the failed payment")
    }))

  it.effect("a payment whose void the acquirer declines, or that fails at every run, is left out for an hour: with a batch of 1, the authorization behind them expires", () =>
    Effect.gen(function* () {
      const simulator = yield* Acquirer
      const broken = yield* authorizedExpiringIn(-3_000)
      const captureWon = yield* authorizedExpiringIn(-2_000)
      const behind = yield* authorizedExpiringIn(-1_000)
      // One payment fails at every run (not an outage: a defect here), one's void is declined.
      const declinesOne = Acquirer.of({
        ...simulator,
        void: (request) => request.paymentId === broken.id
          ? Effect.die(new Error("adapter bug"))
          : request.paymentId === captureWon.id
          ? Effect.succeed(new Declined({ code: "authorization_captured", message: "The authorization was already captured." }))
          : simulator.void(request)
      })
      // Runs of one authorization each (other tests' skipped payments may be due ahead of these:
      // each is skipped once). Without the memory every run took the same head again, and the one
      // behind never expired (outside diff review: 100 such payments, the default batch, did that).
      const runs = yield* Effect.gen(function* () {
        const expiry = yield* PaymentExpiry
        const reports = []
        for (let run = 0; run < 8 && (yield* statusOf(behind.id)) === "AUTHORIZED"; run++) reports.push(yield* expiry.expireDue(1))
        return reports
      }).pipe(Effect.provide(Layer.fresh(PaymentExpiry.layer).pipe(Layer.provide(Layer.succeed(Acquirer, declinesOne)))))
      assert.strictEqual(runs.at(-1)?.expired, 1, JSON.stringify(runs))
      assert.isAtMost(Math.max(...runs.map((report) => report.skipped)), 1)
      assert.strictEqual(runs.filter((report) => report.failed > 0).length, 1, "the broken payment failed once, then was left out")
      assert.strictEqual(yield* statusOf(captureWon.id), "AUTHORIZED")
      assert.strictEqual(yield* statusOf(behind.id), "EXPIRED")
    }))

  it.effect("a capture after expiry is refused before the acquirer is asked (AuthorizationExpired); before expiry it is allowed", () =>
    Effect.gen(function* () {
      const expired = yield* authorizedExpiringIn(-1)
      const now = yield* DateTime.now
      const refusal = refusalBeforeAsking(acquirerSteps.settle, expired, expired.amount_minor, now)
      assert.strictEqual(refusal?._tag, "AuthorizationExpired")
      const alive = yield* authorizedExpiringIn(60_000)
      assert.isUndefined(refusalBeforeAsking(acquirerSteps.settle, alive, alive.amount_minor, now))
      // A void of an expired authorization is not a capture: allowed.
      assert.isUndefined(refusalBeforeAsking(acquirerSteps.cancel, expired, expired.amount_minor, now))
    }))

  it.effect("raw SQL: expiring before authorization_expires_at, or moving authorization_expires_at, is refused", () =>
    Effect.gen(function* () {
      const sql = yield* SqlClient.SqlClient
      const payments = yield* PaymentRepository
      const alive = yield* authorizedExpiringIn(3_600_000)
      const early = yield* Effect.flip(payments.apply(alive.merchant_id, alive.id, { _tag: "expire" }, context))
      assert.strictEqual(early._tag, "SqlError")
      if (early._tag === "SqlError") assert.match(postgresError(early).message, /cannot expire before its authorization does/)
      const moved = yield* Effect.flip(sql`UPDATE payments SET authorization_expires_at = now() + interval '30 days' WHERE id = ${alive.id}`)
      assert.match(postgresError(moved).message, /never changed after|illegal payment transition/)
      assert.strictEqual(yield* statusOf(alive.id), "AUTHORIZED")
    }))
})
