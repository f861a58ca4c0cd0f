import { CreateRefundBody, CurrentMerchant } from "@pay/api"
import { AmountMinor, PAGE_LIMIT_MAX, PageLimit, PaymentId, PaymentNotFound } from "@pay/domain"
import { type PaymentOperation, PaymentUseCases } from "@pay/payments"
import { Effect, Option, Schema } from "effect"
import { pageLimitParam } from "../http/Paging.ts"
import { json } from "../http/Problem.ts"
import { bodyOrEmpty, decodeBody } from "../http/RequestBody.ts"
import { answerErrors } from "../http/Respond.ts"
import { toHttpResponse } from "../http/StoredResponse.ts"
import { toRefundJson } from "./PaymentJson.ts"

const decodePaymentId = Schema.decodeUnknownOption(PaymentId)

/**
 * A page of refunds without `limit`: 100, not the other lists' 10. Before the list had paging it
 * answered up to 100 refunds in one page; a client written then, that never sends `limit`, keeps
 * getting what it got (and now can page on with `starting_after`).
 */
export const REFUNDS_PAGE_LIMIT_DEFAULT = PageLimit.make(PAGE_LIMIT_MAX)

/**
 * `POST /v1/payments/{id}/refunds` → the refund operation: the body decoded and validated before
 * anything is executed (amount 1..max, reason one of three, metadata like a payment's).
 */
export const refundOperation = (paymentId: string) => (body: Schema.Json | undefined) =>
  decodeBody(CreateRefundBody, bodyOrEmpty(body)).pipe(
    Effect.flatMap(({ amount, reason, ...requested }) =>
      Option.isNone(decodePaymentId(paymentId))
        ? Effect.fail(new PaymentNotFound({ paymentId: paymentId.slice(0, 100) }))
        : Effect.succeed<PaymentOperation>({
          _tag: "refund",
          payment_id: paymentId,
          ...(amount === undefined ? {} : { amount_minor: AmountMinor.make(BigInt(amount)) }),
          // null is "none given", as absent (CreateRefundBody).
          ...(reason === null || reason === undefined ? {} : { reason }),
          ...requested
        })
    )
  )

/** `GET /v1/payments/{id}/refunds[/{refund_id}]`. */
export const makeRefundReads = Effect.gen(function* () {
  const useCases = yield* PaymentUseCases
  const list = (paymentId: string, query: { readonly limit?: string; readonly starting_after?: string }) =>
    Effect.gen(function* () {
      const merchant = yield* CurrentMerchant
      const limit = (yield* pageLimitParam(query.limit)) ?? REFUNDS_PAGE_LIMIT_DEFAULT
      const page = yield* useCases.listRefunds(merchant.merchantId, paymentId, { limit, startingAfter: query.starting_after })
      return toHttpResponse(json(200, { object: "list", data: page.data.map(toRefundJson), has_more: page.hasMore }), false)
    }).pipe(answerErrors)
  const retrieve = (paymentId: string, refundId: string) =>
    Effect.gen(function* () {
      const merchant = yield* CurrentMerchant
      const refund = yield* useCases.findRefund(merchant.merchantId, paymentId, refundId)
      return toHttpResponse(json(200, toRefundJson(refund)), false)
    }).pipe(answerErrors)
  return { list, retrieve }
})
