import { AUTHORIZATION_TTL_MS_DEFAULT, authorizationLifetimeBounds } from "@pay/domain"
import { boundedInt, offOrBoundedInt } from "@pay/infra"
import { AuthorizationLifetime, EXPIRY_WARNING_LEAD_MS_DEFAULT, expiryBatchBounds, expiryWarningLeadBounds, PaymentExpiry } from "@pay/payments"
import { Cause, Effect, Layer, Metric, Schedule } from "effect"

/**
 * The authorization expiry job (issue 19, `PaymentExpiry`): every `EXPIRY_INTERVAL_MS` it writes
 * the `payment_expiring` warning (once per payment) for at most `EXPIRY_BATCH_MAX` authorizations
 * that lapse within `EXPIRY_WARNING_LEAD_MS`, then moves at most `EXPIRY_BATCH_MAX` due
 * authorizations to EXPIRED (after voiding each at the acquirer). An authorization lapses
 * `AUTHORIZATION_LIFETIME_MS` after it is approved.
 * `0` turns it off (e.g. on all but one replica; running on several is safe, only wasteful: the
 * void and the transition happen once whoever runs them).
 *
 * | variable             | default | bounds                  |
 * | -------------------- | ------- | ----------------------- |
 * | `EXPIRY_INTERVAL_MS` | 60000   | 0 (off), 1000..86400000 |
 * | `EXPIRY_BATCH_MAX`   | 100     | 1..1000                 |
 * | `EXPIRY_WARNING_LEAD_MS` | 86400000 (24 h) | 0 (off)..2592000000 (30 days) |
 * | `AUTHORIZATION_LIFETIME_MS` | 604800000 (7 days) | 60000 (1 min)..2592000000 (30 days) |
 */
export const ExpiryInterval = offOrBoundedInt("EXPIRY_INTERVAL_MS", { min: 1_000, max: 24 * 60 * 60 * 1_000 }, 60_000)
export const ExpiryBatch = boundedInt("EXPIRY_BATCH_MAX", expiryBatchBounds, 100)
export const ExpiryWarningLead = boundedInt("EXPIRY_WARNING_LEAD_MS", expiryWarningLeadBounds, EXPIRY_WARNING_LEAD_MS_DEFAULT)
export const AuthorizationLifetimeConfig = boundedInt("AUTHORIZATION_LIFETIME_MS", authorizationLifetimeBounds, AUTHORIZATION_TTL_MS_DEFAULT)

/** The configured authorization lifetime, for the authorize use case. */
export const AuthorizationLifetimeLive = Layer.effect(AuthorizationLifetime, Effect.gen(function* () {
  return yield* AuthorizationLifetimeConfig
}))

/**
 * What the expiry job could not do: `scope="run"`, a run that failed (the database unavailable, a
 * defect); `scope="payment"`, a due authorization a run could not expire (PaymentExpiry's
 * `failed`: its WARN or ERROR line names the payment). The next run tries again either way. Before,
 * only a SqlError was caught: any other failure ended the loop without a word (a failed forked
 * fiber reports nothing), leaving every later authorization held at the acquirer and no
 * `payment_expired` sent (outside code review). AuthorizationExpiryFailing reads it.
 */
export const expiryFailures = Metric.counter("payment_expiry_failures_total", {
  description: "What the authorization expiry job could not do (scope: run = a run failed, payment = one due authorization not expired); the next run tries again",
  incremental: true
})
const runFailures = Metric.withAttributes(expiryFailures, { scope: "run" })
const paymentFailures = Metric.withAttributes(expiryFailures, { scope: "payment" })

/** The expiry loop (a no-op when the interval is 0), interrupted with the server. */
export const AuthorizationExpiryLive = Layer.effectDiscard(
  Effect.gen(function* () {
    const interval_ms = yield* ExpiryInterval
    if (interval_ms === 0) return
    const batch_max = yield* ExpiryBatch
    const lead_ms = yield* ExpiryWarningLead
    const expiry = yield* PaymentExpiry
    const once = expiry.warnDue(lead_ms, batch_max).pipe(
      Effect.flatMap((warned) => Effect.map(expiry.expireDue(batch_max), (report) => ({ ...report, warned }))),
      Effect.tap((report) => (report.expired + report.skipped + report.unanswered + report.failed + report.warned > 0 ? Effect.logInfo("expiry job: run", report) : Effect.void)),
      Effect.tap((report) => (report.failed > 0 ? Metric.update(paymentFailures, report.failed) : Effect.void)),
      Effect.withSpan("ExpiryJob.run"),
      // Any failure ends this run only: a database outage (WARN: DatabaseUnreachable pages for it)
      // or a defect (ERROR). The server's interruption still stops the loop.
      Effect.catchCause((cause) =>
        Cause.hasInterruptsOnly(cause)
          ? Effect.interrupt
          : Metric.update(runFailures, 1).pipe(
            Effect.andThen(Cause.hasDies(cause)
              ? Effect.logError("expiry job: the run failed with a defect (the next run tries again)", cause)
              : Effect.logWarning("expiry job: the run failed (the next run tries again)", cause))
          )
      )
    )
    // Shown from the start (0): a scrape tells "none failed" from "not exported".
    yield* Metric.update(runFailures, 0)
    yield* Metric.update(paymentFailures, 0)
    yield* Effect.forkScoped(Effect.repeat(once, Schedule.spaced(interval_ms)))
  })
)
