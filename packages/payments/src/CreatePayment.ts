import type { MerchantId } from "@pay/domain"
import type { Execution, Finished, KeyAtOnce } from "@pay/idempotency"
import { Effect, Option } from "effect"
import { SqlClient } from "effect/sql"
import type { ChangeContext } from "./ChangeContext.ts"
import { type CreateOperation, PaymentOutcome } from "./PaymentOperation.ts"
import { PaymentRepository } from "./PaymentRepository.ts"

/**
 * Create: the payment, its history row, its `payment_created` event and the stored outcome, in one
 * transaction (one durable commit per create). The merchant is the authenticated caller, so an
 * unknown merchant here is a bug upstream: a defect.
 */
export const makeCreatePayment = Effect.gen(function* () {
  const sql = yield* SqlClient.SqlClient
  const payments = yield* PaymentRepository
  return (merchantId: MerchantId, operation: CreateOperation, context: ChangeContext, execution: Execution<PaymentOutcome>) =>
    sql.withTransaction(
      Effect.gen(function* () {
        const { _tag: _, ...requested } = operation
        const payment = yield* payments.create({ merchant_id: merchantId, ...requested }, context).pipe(
          Effect.catchTag("MerchantNotFound", (error) => Effect.die(error))
        )
        return yield* execution.finish(PaymentOutcome.Created({ payment }))
      })
    )
})

/**
 * Create at once (`IdempotencyKeys.runAtOnce`): the key, finished with the rendered `Created`
 * outcome, the payment, its history row and its event in ONE statement: one round trip and one
 * durable commit. None when the key existed (nothing written; the caller decides the key).
 */
export const makeCreatePaymentAtOnce = Effect.gen(function* () {
  const payments = yield* PaymentRepository
  return (merchantId: MerchantId, operation: CreateOperation, context: ChangeContext, key: KeyAtOnce<PaymentOutcome>) =>
    Effect.gen(function* () {
      const { _tag: _, ...requested } = operation
      const created = yield* payments.prepareCreate({ merchant_id: merchantId, ...requested })
      const { statement, finished } = key.insertFinished(PaymentOutcome.Created({ payment: created.payment }))
      const written = yield* payments.createGated(statement, created, context)
      return written ? Option.some<Finished<PaymentOutcome>>(finished) : Option.none<Finished<PaymentOutcome>>()
    })
})
