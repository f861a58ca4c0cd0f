import { CreateRefundBody, CurrentMerchant } from "@pay/api"
import { AmountMinor, PaymentId, PaymentNotFound } from "@pay/domain"
import { type PaymentOperation, PaymentUseCases } from "@pay/payments"
import { Effect, Option, Schema } from "effect"
import { json } from "../http/Problem.ts"
import { decodeBody } from "../http/RequestBody.ts"
import { answerErrors } from "../http/Respond.ts"
import { toHttpResponse } from "../http/StoredResponse.ts"
import { toRefundJson } from "./PaymentJson.ts"

const decodePaymentId = Schema.decodeUnknownOption(PaymentId)

/** A payment's refunds are few (each takes ≥ 1 minor unit of the capture); a list answers at most this many. */
export const REFUNDS_LIST_MAX = 100

/**
 * `POST /v1/payments/{id}/refunds` → the refund operation: the body decoded and validated before
 * anything is executed (amount 1..max, reason one of three, metadata like a payment's).
 */
export const refundOperation = (paymentId: string) => (body: Schema.Json | undefined) =>
  decodeBody(CreateRefundBody, body ?? {}).pipe(
    Effect.flatMap(({ amount, ...requested }) =>
      Option.isNone(decodePaymentId(paymentId))
        ? Effect.fail(new PaymentNotFound({ paymentId: paymentId.slice(0, 100) }))
        : Effect.succeed<PaymentOperation>({
          _tag: "refund",
          payment_id: paymentId,
          ...(amount === undefined ? {} : { amount_minor: AmountMinor.make(BigInt(amount)) }),
          ...requested
        })
    )
  )

/** `GET /v1/payments/{id}/refunds[/{refund_id}]`. */
export const makeRefundReads = Effect.gen(function* () {
  const useCases = yield* PaymentUseCases
  const list = (paymentId: string) =>
    Effect.gen(function* () {
      const merchant = yield* CurrentMerchant
      const refunds = yield* useCases.listRefunds(merchant.merchantId, paymentId, REFUNDS_LIST_MAX + 1)
      const data = refunds.slice(0, REFUNDS_LIST_MAX).map(toRefundJson)
      return toHttpResponse(json(200, { object: "list", data, has_more: refunds.length > REFUNDS_LIST_MAX }), false)
    }).pipe(answerErrors)
  const retrieve = (paymentId: string, refundId: string) =>
    Effect.gen(function* () {
      const merchant = yield* CurrentMerchant
      const refund = yield* useCases.findRefund(merchant.merchantId, paymentId, refundId)
      return toHttpResponse(json(200, toRefundJson(refund)), false)
    }).pipe(answerErrors)
  return { list, retrieve }
})
