import { Acquirer, type AcquirerError, type AcquirerOutcome, type Declined } from "@pay/acquirer"
import {
  commandTarget,
  InvalidTransition,
  type MerchantId,
  type Payment,
  type PaymentCommand,
  PaymentId,
  PaymentLocked,
  PaymentNotFound,
  ruleFor
} from "@pay/domain"
import type { Execution } from "@pay/idempotency"
import { SettlementPosting } from "@pay/settlement"
import { Effect, Option, Schema } from "effect"
import { SqlClient } from "effect/sql"
import type { ChangeContext } from "./ChangeContext.ts"
import { acquirerReference, PaymentOutcome, type PaymentRefusal, RecoveryPoint } from "./PaymentOperation.ts"
import { measureAcquirerCall } from "./PaymentMetrics.ts"
import { PaymentRepository } from "./PaymentRepository.ts"

/**
 * A transition the acquirer decides: authorize (the issuer approves or declines) and settle (the
 * capture is approved, and the money moves, or declined). One table row each; one function runs
 * both:
 *
 * 1. load the payment (a stored 404 when there is none for this merchant);
 * 2. on a fresh run, check the transition is allowed (a stored 409) and commit the recovery point
 *    BEFORE calling the acquirer, so a crash after it leaves a key that resumes right there;
 * 3. ask the acquirer, outside any database transaction, with our idempotency reference (asking
 *    again after an unknown outcome is safe);
 * 4. in ONE transaction: apply the command the answer calls for, do what an approval also does
 *    (the settlement posting), and store the rendered outcome with the key.
 */
export interface AcquirerStep {
  readonly command: "authorize" | "settle"
  readonly recoveryPoint: string
  readonly ask: (acquirer: Acquirer["Service"], payment: Payment) => Effect.Effect<AcquirerOutcome, AcquirerError>
  readonly declined: (answer: Declined) => PaymentCommand
}

export const acquirerSteps = {
  authorize: {
    command: "authorize",
    recoveryPoint: RecoveryPoint.authorizationRequested,
    ask: (acquirer, payment) =>
      acquirer.authorize({
        reference: acquirerReference(payment.id, "authorization"),
        paymentId: payment.id,
        amount_minor: payment.amount_minor,
        currency: payment.currency,
        paymentMethod: payment.payment_method
      }),
    declined: (answer) => ({ _tag: "decline", failure_code: answer.code, failure_message: answer.message })
  },
  settle: {
    command: "settle",
    recoveryPoint: RecoveryPoint.captureRequested,
    ask: (acquirer, payment) =>
      acquirer.capture({
        reference: acquirerReference(payment.id, "capture"),
        paymentId: payment.id,
        amount_minor: payment.amount_minor,
        currency: payment.currency
      }),
    declined: (answer) => ({ _tag: "fail", failure_code: answer.code, failure_message: answer.message })
  }
} as const satisfies Readonly<Record<AcquirerStep["command"], AcquirerStep>>

const decodePaymentId = Schema.decodeUnknownOption(PaymentId)

export const makeAcquirerTransition = Effect.gen(function* () {
  const sql = yield* SqlClient.SqlClient
  const payments = yield* PaymentRepository
  const acquirer = yield* Acquirer
  const settlement = yield* SettlementPosting

  const refuse = (execution: Execution<PaymentOutcome>, error: PaymentRefusal) =>
    sql.withTransaction(execution.finish(PaymentOutcome.Refused({ error })))

  /** The payment, or None for an unknown, foreign or malformed id (the same answer for all three). */
  const load = (merchantId: MerchantId, rawId: string) =>
    Option.match(decodePaymentId(rawId), {
      onNone: () => Effect.succeedNone,
      onSome: (paymentId) =>
        payments.findById(merchantId, paymentId).pipe(
          Effect.map(Option.some),
          Effect.catchTag("PaymentNotFound", () => Effect.succeedNone)
        )
    })

  /** Step 4: the command, what an approval also does, and the stored outcome, in one transaction. */
  const applyAndFinish = (
    merchantId: MerchantId,
    payment: Payment,
    command: PaymentCommand,
    context: ChangeContext,
    execution: Execution<PaymentOutcome>
  ) =>
    sql.withTransaction(
      // A settled payment's money moves in the same transaction as its status (docs/settlement.md),
      // and its fee split is written into the payment_settled event (docs/events.md).
      payments.apply(merchantId, payment.id, command, context, settlement.post).pipe(
        Effect.flatMap((updated) => execution.finish(PaymentOutcome.Transitioned({ payment: updated }))),
        // Someone else won the race (or the state machine refuses): a decided outcome, stored.
        Effect.catchTags({
          InvalidTransition: (error) => execution.finish(PaymentOutcome.Refused({ error })),
          PaymentNotFound: (error) => execution.finish(PaymentOutcome.Refused({ error })),
          // The acquirer has acted, and the row stayed locked past the bound (or could not be
          // serialized): nothing was decided here. Stored, a 409 would be the key's final answer
          // while the capture stands at the acquirer with no posting (issue 11). Unfinished: the
          // key keeps its recovery point and the retry or the completer finishes the work once.
          ConcurrentModification: (error) => Effect.fail(new PaymentLocked({ paymentId: error.paymentId, reason: error.reason }))
        })
      )
    )

  return (step: AcquirerStep, merchantId: MerchantId, rawId: string, context: ChangeContext, execution: Execution<PaymentOutcome>) =>
    Effect.gen(function* () {
      const found = yield* load(merchantId, rawId)
      if (Option.isNone(found)) return yield* refuse(execution, new PaymentNotFound({ paymentId: rawId }))
      const payment = found.value
      if (execution.record.recoveryPoint === RecoveryPoint.started) {
        if (ruleFor(step.command, payment.status) === undefined) {
          const to = commandTarget[step.command]
          return yield* refuse(execution, new InvalidTransition({ paymentId: payment.id, from: payment.status, to, command: step.command }))
        }
        yield* execution.advance(step.recoveryPoint, { payment_id: payment.id })
      }
      const answer = yield* step.ask(acquirer, payment).pipe(measureAcquirerCall(step.command === "authorize" ? "authorize" : "capture"))
      const command: PaymentCommand = answer._tag === "Approved" ? { _tag: step.command } : step.declined(answer)
      return yield* applyAndFinish(merchantId, payment, command, context, execution)
    })
})
