import type { Acquirer } from "@pay/acquirer"
import { OutboxWriter } from "@pay/outbox"
import type { InvalidCursor, MerchantId, PaymentLocked, PaymentNotFound, Refund, RefundNotFound } from "@pay/domain"
import type { Execution, Finished, GatedStart, KeyAtOnce } from "@pay/idempotency"
import type { RefundPosting, SettlementPosting } from "@pay/settlement"
import { Context, Effect, Layer, type Option } from "effect"
import type { SqlClient } from "effect/sql"
import type { SqlError } from "effect/sql/SqlError"
import { type GatedPayment, makeAcquirerGate } from "./AcquirerGate.ts"
import { acquirerSteps, makeAcquirerTransition } from "./AcquirerTransition.ts"
import type { ChangeContext } from "./ChangeContext.ts"
import { makeCreatePaymentAtOnce } from "./CreateAtOnce.ts"
import { makeCreatePayment } from "./CreatePayment.ts"
import { makeRefundPayment } from "./RefundPayment.ts"
import { makeRefundStore, type RefundPage, type RefundPageRequest } from "./RefundStore.ts"
import type { CreateOperation, GatedOperation, PaymentOperation, PaymentOutcome, Unfinished } from "./PaymentOperation.ts"
import type { PaymentRepository } from "./PaymentRepository.ts"

/**
 * The payment use cases behind the idempotent POSTs: create (CreatePayment.ts), authorize,
 * settle and cancel (AcquirerTransition.ts). Each runs inside an idempotency execution and ends with
 * `execution.finish(outcome)` in the same transaction as its last write, so the stored response
 * (the caller's rendering of the outcome) and the work commit together. A decided outcome
 * (created, transitioned, refused) is stored; an unknown one fails with `Unfinished` and is not.
 * Called by the HTTP handlers and, for abandoned keys, by the completer.
 */
export class PaymentUseCases extends Context.Service<PaymentUseCases, {
  readonly execute: (
    merchantId: MerchantId,
    operation: PaymentOperation,
    context: ChangeContext,
    execution: Execution<PaymentOutcome>
  ) => Effect.Effect<Finished<PaymentOutcome>, Unfinished>
  /** Create as one statement with its idempotency key (`IdempotencyKeys.runAtOnce`, CreatePayment.ts). */
  readonly createAtOnce: (
    merchantId: MerchantId,
    operation: CreateOperation,
    context: ChangeContext,
    key: KeyAtOnce<PaymentOutcome>
  ) => Effect.Effect<Option.Option<Finished<PaymentOutcome>>, SqlError>
  /**
   * Authorize, settle, cancel with `IdempotencyKeys.runGated` (AcquirerGate.ts): `gatedStart` reads
   * the payment and writes the key at the step's recovery point in one statement; `gatedContinue`
   * asks the acquirer and applies the answer, as `execute` does from that point.
   */
  readonly gatedStart: (merchantId: MerchantId, operation: GatedOperation) => GatedStart<GatedPayment, SqlError | PaymentLocked, never>
  readonly gatedContinue: (
    merchantId: MerchantId,
    operation: GatedOperation,
    context: ChangeContext,
    execution: Execution<PaymentOutcome>,
    read: GatedPayment
  ) => Effect.Effect<Finished<PaymentOutcome>, Unfinished>
  /**
   * One refund of one of the merchant's payments: an unknown, foreign or malformed payment id is
   * `PaymentNotFound` (checked first, as `listRefunds` does), any other refund id `RefundNotFound`.
   */
  readonly findRefund: (merchantId: MerchantId, paymentId: string, refundId: string) => Effect.Effect<Refund, PaymentNotFound | RefundNotFound | SqlError>
  /**
   * A payment's refunds, oldest first, `limit` at a time after `startingAfter` (one of this
   * payment's refunds, else InvalidCursor; an unknown or foreign payment is PaymentNotFound).
   */
  readonly listRefunds: (merchantId: MerchantId, paymentId: string, page: RefundPageRequest) => Effect.Effect<RefundPage, PaymentNotFound | InvalidCursor | SqlError>
}>()("payments/PaymentUseCases") {
  /** Needs the repository, the acquirer, the settlement posting and the SQL client (the refunds' outbox writer is built on it). */
  static readonly layer: Layer.Layer<
    PaymentUseCases,
    never,
    SqlClient.SqlClient | PaymentRepository | Acquirer | SettlementPosting | RefundPosting
  > = Layer.effect(
    PaymentUseCases,
    Effect.gen(function* () {
      const create = yield* makeCreatePayment
      const createAtOnce = yield* makeCreatePaymentAtOnce
      const { transition, askAndApply } = yield* makeAcquirerTransition
      const gate = yield* makeAcquirerGate
      const refund = yield* makeRefundPayment
      const refunds = yield* makeRefundStore
      const execute = (merchantId: MerchantId, operation: PaymentOperation, context: ChangeContext, execution: Execution<PaymentOutcome>) => {
        switch (operation._tag) {
          case "create":
            return create(merchantId, operation, context, execution)
          case "authorize":
          case "cancel":
            return transition(acquirerSteps[operation._tag], merchantId, operation.payment_id, context, execution)
          case "settle":
            return transition(acquirerSteps.settle, merchantId, operation.payment_id, context, execution, operation.amount_minor)
          case "refund":
            return refund(merchantId, operation, context, execution)
        }
      }
      return PaymentUseCases.of({
        gatedStart: (merchantId, operation) =>
          gate(acquirerSteps[operation._tag], merchantId, operation.payment_id, operation._tag === "settle" ? operation.amount_minor : undefined),
        gatedContinue: (merchantId, operation, context, execution, read) =>
          askAndApply(acquirerSteps[operation._tag], merchantId, read.payment, read.amount_minor, context, execution, read.feeScheduleRead).pipe(
            Effect.withSpan(`PaymentUseCases.${operation._tag}`, { attributes: { merchant_id: merchantId, gated: true } })
          ),
        findRefund: refunds.findById,
        listRefunds: refunds.list,
        createAtOnce: (merchantId, operation, context, key) =>
          createAtOnce(merchantId, operation, context, key).pipe(
            Effect.withSpan("PaymentUseCases.createAtOnce", { attributes: { merchant_id: merchantId } })
          ),
        execute: (merchantId, operation, context, execution) =>
          execute(merchantId, operation, context, execution).pipe(
            Effect.withSpan(`PaymentUseCases.${operation._tag}`, {
              attributes: { merchant_id: merchantId, resumed: execution.resumed, recovery_point: execution.record.recoveryPoint }
            })
          )
      })
    })
  ).pipe(Layer.provide(OutboxWriter.layer))
}
