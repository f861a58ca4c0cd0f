import { Acquirer } from "@pay/acquirer"
import { type MerchantId, PaymentId, PaymentNotFound, RefundId } from "@pay/domain"
import type { Execution } from "@pay/idempotency"
import { Effect, Option, Schema } from "effect"
import { SqlClient } from "effect/sql"
import type { ChangeContext } from "./ChangeContext.ts"
import { PaymentOutcome, type PaymentRefusal, RecoveryPoint, type RefundOperation } from "./PaymentOperation.ts"
import { measureAcquirerCall } from "./PaymentMetrics.ts"
import { makeRefundStore } from "./RefundStore.ts"

const decodePaymentId = Schema.decodeUnknownOption(PaymentId)
const decodeRefundId = Schema.decodeUnknownOption(RefundId)

/** The acquirer's idempotency reference of a refund: one per refund object. */
export const refundReference = (refundId: string) => `refund:${refundId}`

/**
 * Refund a settled payment (docs/refunds.md), inside an idempotency execution, like settle:
 *
 * 1. fresh run: in ONE transaction, reserve the refund (the cap and the balance decided under
 *    locks, a PENDING row the database checks again) and commit the recovery point
 *    `refund_requested` naming it; a refusal is stored instead;
 * 2. ask the acquirer, outside any transaction, under `refund:<refund id>` (asking again after
 *    an unknown outcome is safe: the acquirer performs it once);
 * 3. in ONE transaction: SUCCEEDED with its reversal posting, or FAILED; the stored outcome.
 *
 * An unknown outcome (timeout, acquirer down, ledger down) leaves the refund PENDING: it keeps
 * counting toward the cap, and the retry with the same key (or the completer) finishes it.
 */
export const makeRefundPayment = Effect.gen(function* () {
  const sql = yield* SqlClient.SqlClient
  const acquirer = yield* Acquirer
  const store = yield* makeRefundStore

  const refuse = (execution: Execution<PaymentOutcome>, error: PaymentRefusal) =>
    sql.withTransaction(execution.finish(PaymentOutcome.Refused({ error })))

  /** Step 1: the PENDING refund and the recovery point, or the stored refusal. */
  const reserve = (
    merchantId: MerchantId,
    paymentId: PaymentId,
    operation: RefundOperation,
    context: ChangeContext,
    execution: Execution<PaymentOutcome>
  ) =>
    sql.withTransaction(
      store.reserve(merchantId, paymentId, operation, context).pipe(
        Effect.flatMap((refund) => execution.advance(RecoveryPoint.refundRequested, { refund_id: refund.id })),
        Effect.map((record) => ({ _tag: "Reserved" as const, record }))
      )
    ).pipe(
      // A decided refusal: stored with the key (its answer is final for the key).
      Effect.catchTags({
        PaymentNotFound: (error) => refuse(execution, error),
        PaymentNotRefundable: (error) => refuse(execution, error),
        RefundExceedsCaptured: (error) => refuse(execution, error),
        RefundExceedsBalance: (error) => refuse(execution, error)
      })
    )

  return (merchantId: MerchantId, operation: RefundOperation, context: ChangeContext, execution: Execution<PaymentOutcome>) =>
    Effect.gen(function* () {
      const paymentId = decodePaymentId(operation.payment_id)
      if (Option.isNone(paymentId)) return yield* refuse(execution, new PaymentNotFound({ paymentId: operation.payment_id.slice(0, 100) }))
      let record = execution.record
      if (record.recoveryPoint === RecoveryPoint.started) {
        const reserved = yield* reserve(merchantId, paymentId.value, operation, context, execution)
        if (!("_tag" in reserved)) return reserved
        record = reserved.record
      }
      const refundId = decodeRefundId(record.recoveryData["refund_id"])
      if (Option.isNone(refundId)) return yield* Effect.die(new Error(`refund key at ${execution.record.recoveryPoint} without a refund id`))
      // The key names this merchant's refund of this payment: not finding it is a defect. A lost
      // database is not (a SqlError: 503 database_unavailable, and the retry or the completer
      // resumes here; outside code review: orDie made it a 500 the runbook says to escalate).
      const refund = yield* store.findById(merchantId, paymentId.value, refundId.value).pipe(
        Effect.catchTags({ PaymentNotFound: (error) => Effect.die(error), RefundNotFound: (error) => Effect.die(error) })
      )
      const answer = yield* acquirer.refund({
        reference: refundReference(refund.id),
        paymentId: refund.payment_id,
        amount_minor: refund.amount_minor,
        currency: refund.currency
      }).pipe(measureAcquirerCall("refund"))
      return yield* sql.withTransaction(
        store.complete(refund.id, answer._tag === "Approved" ? { _tag: "Approved" } : { _tag: "Declined", code: answer.code, message: answer.message }, context).pipe(
          Effect.flatMap((completed) => execution.finish(PaymentOutcome.Refunded({ refund: completed })))
        )
      )
    })
})
