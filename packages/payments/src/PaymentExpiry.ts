import { Acquirer } from "@pay/acquirer"
import { MerchantId, PaymentId } from "@pay/domain"
import { decodeRows, isWithin, sqlFailureKind } from "@pay/infra"
import { OutboxWriter } from "@pay/outbox"
import { Cause, Context, Effect, Layer, Schema } from "effect"
import { SqlClient } from "effect/sql"
import { isSqlError, type SqlError } from "effect/sql/SqlError"
import { expiryWarningLeadBounds, makeExpiryWarnings } from "./ExpiryWarning.ts"
import { acquirerReference } from "./PaymentOperation.ts"
import { PaymentRepository } from "./PaymentRepository.ts"

/** `EXPIRY_BATCH_MAX`-like bound of one run: at most this many authorizations are looked at. */
export const expiryBatchBounds = { min: 1, max: 1_000 } as const

/**
 * A due authorization a run skipped (its void declined: a capture won at the acquirer, and the
 * settle that finishes it may be parked) is left out of the runs of the next hour, at most this many
 * remembered per process (the oldest forgotten first): it stays due, and 100 of them at the head of
 * `ORDER BY authorization_expires_at LIMIT EXPIRY_BATCH_MAX` stopped every later authorization from
 * expiring (outside diff review).
 */
export const skippedExpiryBounds = { retryAfter_ms: 60 * 60 * 1_000, remembered_max: 10_000 } as const

/** A failure every due payment would meet alike: the database out of reach (SqlFailure.ts). */
const isOutage = <E>(cause: Cause.Cause<E>): boolean => {
  const failure = Cause.findErrorOption(cause)
  return failure._tag === "Some" && isSqlError(failure.value) && sqlFailureKind(failure.value) === "unavailable"
}

/**
 * A due payment's failure, logged with its ids. A lost database fails every payment alike:
 * "failed", tried at the next run. Anything else (a defect, a statement the database refuses)
 * fails this payment at every run: "refused", left out for an hour like a skipped one (outside
 * re-test: a batch's worth of them stopped every later authorization from expiring).
 */
const failedOutcome = (due: typeof DueRow.Type) => <E>(cause: Cause.Cause<E>) => {
  if (Cause.hasInterruptsOnly(cause)) return Effect.interrupt
  const outage = isOutage(cause)
  const when = outage ? "tried again at the next run" : "left out of this process's runs for an hour"
  return (Cause.hasDies(cause)
    ? Effect.logError(`expiry: this payment could not be expired, a defect (${when})`, cause)
    : Effect.logWarning(`expiry: this payment could not be expired (${when})`, cause)
  ).pipe(
    Effect.annotateLogs({ payment_id: due.id, merchant_id: due.merchant_id }),
    Effect.as(outage ? "failed" as const : "refused" as const)
  )
}

/** The skipped payments of this process: id → when it may be looked at again (oldest first). */
const makeSkippedMemory = () => {
  const skippedUntil = new Map<string, number>()
  const remember = (id: string, now_ms: number) => {
    skippedUntil.delete(id)
    skippedUntil.set(id, now_ms + skippedExpiryBounds.retryAfter_ms)
    for (const oldest of skippedUntil.keys()) {
      if (skippedUntil.size <= skippedExpiryBounds.remembered_max) break
      skippedUntil.delete(oldest)
    }
  }
  /** The ids still left out at `now_ms` (the ones whose hour passed are forgotten). */
  const current = (now_ms: number): ReadonlyArray<string> => {
    for (const [id, until_ms] of skippedUntil) if (until_ms <= now_ms) skippedUntil.delete(id)
    return [...skippedUntil.keys()]
  }
  return { remember, current }
}

export interface ExpiryReport {
  /** Moved AUTHORIZED → EXPIRED. */
  readonly expired: number
  /** Left alone: a capture of the authorization won at the acquirer (its settle finishes it), or the payment moved meanwhile. */
  readonly skipped: number
  /** The acquirer did not answer: tried again at the next run. */
  readonly unanswered: number
  /**
   * Failed for this payment alone (logged with the payment's id), and the batch's other payments
   * still tried: a lost database is tried again at the next run; anything else (a defect, a
   * statement the database refuses) is left out of this process's runs for an hour.
   */
  readonly failed: number
}

const DueRow = Schema.Struct({ id: PaymentId, merchant_id: MerchantId })

/**
 * Authorization expiry (issue 19): one bounded run moves the authorizations whose
 * `authorization_expires_at` has passed (the database's clock) to EXPIRED, oldest first. Each is
 * first released at the acquirer with a void under the payment's own void reference
 * (`payment:<id>:void`), which excludes a capture of the same authorization: a void declined
 * because a capture was approved leaves the payment to the settle that is finishing; an unknown
 * outcome leaves it for the next run. A merchant's concurrent cancel shares the reference, so the
 * acquirer voids once and one of the two transitions wins.
 */
export class PaymentExpiry extends Context.Service<PaymentExpiry, {
  readonly expireDue: (batch_max: number) => Effect.Effect<ExpiryReport, SqlError>
  /**
   * Writes `payment_expiring` (once per payment) for at most `batch_max` authorizations that lapse
   * within `lead_ms` (0: none); how many were warned (ExpiryWarning.ts).
   */
  readonly warnDue: (lead_ms: number, batch_max: number) => Effect.Effect<number, SqlError>
}>()("payments/PaymentExpiry") {
  static readonly layer: Layer.Layer<PaymentExpiry, never, SqlClient.SqlClient | PaymentRepository | Acquirer> = Layer.effect(
    PaymentExpiry,
    Effect.gen(function* () {
      const sql = yield* SqlClient.SqlClient
      const payments = yield* PaymentRepository
      const acquirer = yield* Acquirer
      const warnings = makeExpiryWarnings(sql, yield* OutboxWriter)
      const context = { actor: "system:expiry", correlationId: "authorization-expiry" }
      const skipped = makeSkippedMemory()

      /**
       * One due authorization: "expired", "skipped", "unanswered", "failed" or "refused" (both
       * counted as failed: `failedOutcome`). A failure is this
       * payment's alone: one that failed every run (a row a trigger refuses, an adapter's defect)
       * would otherwise end every run at the same place, and the due authorizations after it in
       * the batch's order would never expire (outside code review).
       */
      const expireOne = (due: typeof DueRow.Type) =>
        Effect.gen(function* () {
          const payment = yield* payments.findById(due.merchant_id, due.id)
          if (payment.status !== "AUTHORIZED") return "skipped" as const
          const answer = yield* acquirer.void({
            reference: acquirerReference(payment.id, "void"),
            paymentId: payment.id,
            amount_minor: payment.amount_minor,
            currency: payment.currency
          })
          if (answer._tag !== "Approved") return "skipped" as const
          yield* payments.apply(payment.merchant_id, payment.id, { _tag: "expire" }, context)
          return "expired" as const
        }).pipe(
          Effect.catchTags({
            AcquirerTimeout: () => Effect.succeed("unanswered" as const),
            AcquirerUnavailable: () => Effect.succeed("unanswered" as const),
            // The payment moved meanwhile (a cancel won with the same void): nothing to do.
            InvalidTransition: () => Effect.succeed("skipped" as const),
            PaymentNotFound: () => Effect.succeed("skipped" as const),
            ConcurrentModification: () => Effect.succeed("unanswered" as const),
            CaptureExceedsAuthorized: (error) => Effect.die(error),
            SettlementUnavailable: (error) => Effect.die(error)
          }),
          Effect.catchCause(failedOutcome(due))
        )

      const expireDue = Effect.fn("PaymentExpiry.expireDue")(function* (batch_max: number) {
        if (!Number.isInteger(batch_max) || batch_max < expiryBatchBounds.min || batch_max > expiryBatchBounds.max) {
          return yield* Effect.die(new Error(`expiry batch ${batch_max} outside ${expiryBatchBounds.min}..${expiryBatchBounds.max}`))
        }
        const excluded = skipped.current(Date.now())
        const due = yield* decodeRows(DueRow)(sql`
          SELECT id, merchant_id FROM payments
          WHERE status = 'AUTHORIZED' AND authorization_expires_at <= now()
            -- A hashed subplan: up to remembered_max ids cost one probe per row read, not a scan each.
            AND id NOT IN (SELECT unnest(${excluded}::text[]))
          ORDER BY authorization_expires_at LIMIT ${batch_max}`)
        const outcomes = yield* Effect.forEach(due, expireOne)
        const now_ms = Date.now()
        due.forEach((row, index) => {
          if (outcomes[index] === "skipped" || outcomes[index] === "refused") skipped.remember(row.id, now_ms)
        })
        const report: ExpiryReport = {
          expired: outcomes.filter((o) => o === "expired").length,
          skipped: outcomes.filter((o) => o === "skipped").length,
          unanswered: outcomes.filter((o) => o === "unanswered").length,
          failed: outcomes.filter((o) => o === "failed" || o === "refused").length
        }
        return report
      })
      const warnDue = Effect.fn("PaymentExpiry.warnDue")(function* (lead_ms: number, batch_max: number) {
        if (!isWithin(lead_ms, expiryWarningLeadBounds) || !isWithin(batch_max, expiryBatchBounds)) {
          return yield* Effect.die(new Error(`expiry warning lead ${lead_ms} ms or batch ${batch_max} out of bounds`))
        }
        return yield* warnings.warnDue(lead_ms, batch_max)
      })
      return PaymentExpiry.of({ expireDue, warnDue })
    })
  ).pipe(Layer.provide(OutboxWriter.layer))
}
