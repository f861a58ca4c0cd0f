import type { MerchantId } from "@pay/domain"
import type { Execution } from "@pay/idempotency"
import { annotateRequest } from "@pay/infra"
import { Effect } from "effect"
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
        yield* annotateRequest({ payment_id: payment.id })
        return yield* execution.finish(PaymentOutcome.Created({ payment }))
      })
    )
})
