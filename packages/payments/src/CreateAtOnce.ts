import type { MerchantId } from "@pay/domain"
import type { Finished, KeyAtOnce } from "@pay/idempotency"
import { annotateRequest } from "@pay/infra"
import { Effect, Option } from "effect"
import type { ChangeContext } from "./ChangeContext.ts"
import { type CreateOperation, PaymentOutcome } from "./PaymentOperation.ts"
import { PaymentRepository } from "./PaymentRepository.ts"

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
      // The request's access line names the payment it made, as on the transactional path.
      if (written) yield* annotateRequest({ payment_id: created.payment.id })
      return written ? Option.some<Finished<PaymentOutcome>>(finished) : Option.none<Finished<PaymentOutcome>>()
    })
})
