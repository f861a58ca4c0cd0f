import { CreatePaymentBody, CurrentMerchant, InvalidRequest, PaymentsApi, SettlePaymentBody } from "@pay/api"
import { AmountMinor, InvalidCursor, PaymentId, PaymentNotFound, withoutCardNumbers } from "@pay/domain"
import { type Execution, IdempotencyKeys, parseIdempotencyKeyResult } from "@pay/idempotency"
import { annotateRequest, correlationHttpHeader, correlationIdFrom, CurrentCorrelationId, currentTraceparent, withoutApiKeys } from "@pay/infra"
import {
  type ChangeContext,
  encodePaymentOperation,
  type PaymentOperation,
  type PaymentOutcome,
  PaymentRepository,
  PaymentUseCases,
  Traceparent
} from "@pay/payments"
import { MerchantBalances } from "@pay/settlement"
import { Effect, Option, Schema } from "effect"
import type { HttpServerRequest } from "effect/http"
import { HttpApiBuilder } from "effect/http-api"
import type { ApiError } from "../http/ApiErrors.ts"
import { pageLimitParam } from "../http/Paging.ts"
import { json } from "../http/Problem.ts"
import { bodyOrEmpty, bodyToFingerprint, decodeBody, fieldPath, readJsonBody } from "../http/RequestBody.ts"
import { answerErrors, finishEvenIfClientLeaves } from "../http/Respond.ts"
import { toCreatedHttpResponse, toHttpResponse } from "../http/StoredResponse.ts"
import { balanceBody, toPaymentJson } from "./PaymentJson.ts"
import { makeRefundReads, refundOperation } from "./RefundHttp.ts"
import { renderOutcome } from "./Render.ts"

const decodeTraceparent = Schema.decodeUnknownOption(Traceparent)
const decodePaymentId = Schema.decodeUnknownOption(PaymentId)

/**
 * Who and why, for the history row and the event headers: the API key, the request's correlation
 * id (set by the observation middleware, http/Observability.ts) and the trace context of the
 * current span (the request's, which continues the client's `traceparent`), so that the outbox
 * publisher's span links to this trace and consumers continue it.
 */
const changeContext = (request: HttpServerRequest.HttpServerRequest, apiKeyId: string): Effect.Effect<ChangeContext> =>
  Effect.gen(function* () {
    const correlationId = (yield* CurrentCorrelationId) ?? correlationIdFrom(request.headers[correlationHttpHeader])
    const received = Option.getOrUndefined(decodeTraceparent(request.headers["traceparent"]))
    const traceparent = Option.getOrUndefined(decodeTraceparent(yield* currentTraceparent(received)))
    return { actor: `api_key:${apiKeyId}`, correlationId, ...(traceparent === undefined ? {} : { traceparent }) }
  })

/** HTTP → operation: the create body, decoded and validated before anything is executed. */
const createOperation = (body: Schema.Json | undefined) =>
  decodeBody(CreatePaymentBody, bodyOrEmpty(body)).pipe(
    Effect.map(({ amount, description, ...requested }): PaymentOperation => ({
      _tag: "create",
      amount_minor: AmountMinor.make(BigInt(amount)),
      // null is "none", as absent (CreatePaymentBody).
      ...(description === null || description === undefined ? {} : { description }),
      ...requested
    }))
  )

const noBody = "this endpoint takes no body (send none, or {})"

/**
 * authorize and cancel take no body (none, or `{}`), and a path id that is not a payment id names
 * no payment: refused before the key is taken (a NUL or a lone surrogate never reaches the database).
 * A member of `{}` is an unknown field, named like any other body's (`field`).
 */
const transitionOperation = (_tag: "authorize" | "cancel", paymentId: string) => (body: Schema.Json | undefined) => {
  if (typeof body === "object" && body !== null && !Array.isArray(body)) {
    const member = Object.keys(body)[0]
    if (member !== undefined) {
      const unknown = fieldPath([member.slice(0, 100)])
      return Effect.fail(new InvalidRequest({ detail: `${unknown}: unknown field: ${noBody}`, field: unknown }))
    }
  } else if (body !== undefined) {
    return Effect.fail(new InvalidRequest({ detail: noBody }))
  }
  return Option.isNone(decodePaymentId(paymentId))
    ? Effect.fail(new PaymentNotFound({ paymentId: paymentId.slice(0, 100) }))
    : Effect.succeed<PaymentOperation>({ _tag, payment_id: paymentId })
}

/**
 * settle takes no body, `{}`, or `{ "amount": n }` (a partial capture); the amount's bounds are the
 * create's (1..AMOUNT_MINOR_MAX), "at most the authorized amount" is the use case's (a stored 422).
 */
const settleOperation = (paymentId: string) => (body: Schema.Json | undefined) =>
  decodeBody(SettlePaymentBody, bodyOrEmpty(body)).pipe(
    Effect.flatMap(({ amount }) =>
      Option.isNone(decodePaymentId(paymentId))
        ? Effect.fail(new PaymentNotFound({ paymentId: paymentId.slice(0, 100) }))
        : Effect.succeed<PaymentOperation>({
          _tag: "settle",
          payment_id: paymentId,
          ...(amount === undefined ? {} : { amount_minor: AmountMinor.make(BigInt(amount)) })
        })
    )
  )

/**
 * What the key's fingerprint covers besides method and path: the create's and the refund's body
 * (`{}` the same as none: bodyToFingerprint); a partial capture's amount; nothing for the others
 * (no body and `{}` are the same request, and keys stored before partial capture existed keep
 * their fingerprint).
 */
const fingerprintBody = (operation: PaymentOperation, body: Schema.Json | undefined): Schema.Json | undefined => {
  if (operation._tag === "create" || operation._tag === "refund") return bodyToFingerprint(body)
  if (operation._tag === "settle" && operation.amount_minor !== undefined) return { amount: Number(operation.amount_minor) }
  return undefined
}

const makeIdempotentPost = Effect.gen(function* () {
  const idempotency = yield* IdempotencyKeys
  const useCases = yield* PaymentUseCases
  /**
   * The idempotent POST pipeline: key → body → operation (all before execution: a refusal here is
   * answered, never stored) → `run` (replay, conflict, or execute the use case and store its
   * rendered outcome).
   */
  return (
    request: HttpServerRequest.HttpServerRequest,
    path: string,
    toOperation: (body: Schema.Json | undefined) => Effect.Effect<PaymentOperation, ApiError>
  ) =>
    Effect.gen(function* () {
      const merchant = yield* CurrentMerchant
      const key = yield* Effect.fromResult(parseIdempotencyKeyResult(request.headers["idempotency-key"]))
      const body = yield* readJsonBody(request)
      const operation = yield* toOperation(body)
      const context = yield* changeContext(request, merchant.apiKeyId)
      const idempotentRequest = {
        merchantId: merchant.merchantId,
        key,
        method: "POST",
        path,
        body: fingerprintBody(operation, body),
        operation: encodePaymentOperation(operation),
        render: renderOutcome,
        // Kept with the key: a run the completer finishes carries the client's id (not a new one)
        // and joins the request's trace.
        correlationId: context.correlationId,
        ...(context.traceparent === undefined ? {} : { traceparent: context.traceparent })
      }
      const work = (execution: Execution<PaymentOutcome>) => useCases.execute(merchant.merchantId, operation, context, execution)
      // A create is one statement with its key (one round trip, one commit). Authorize, settle and
      // cancel write their key leased at the recovery point in the statement that reads the payment
      // (one commit before the acquirer is called between it and the last transaction); a refund
      // takes the key's lease first.
      const outcome = yield* finishEvenIfClientLeaves((() => {
        switch (operation._tag) {
          case "create":
            return idempotency.runAtOnce(idempotentRequest, (atOnce) => useCases.createAtOnce(merchant.merchantId, operation, context, atOnce), work)
          case "authorize":
          case "settle":
          case "cancel":
            return idempotency.runGated(
              idempotentRequest,
              useCases.gatedStart(merchant.merchantId, operation),
              (execution, read) => useCases.gatedContinue(merchant.merchantId, operation, context, execution, read),
              work
            )
          case "refund":
            return idempotency.run(idempotentRequest, work)
        }
      })())
      return toCreatedHttpResponse(outcome.response, outcome._tag === "Replayed", path)
    }).pipe(answerErrors)
}).pipe(Effect.map((idempotentPost) => ({ idempotentPost })))

const makeReads = Effect.gen(function* () {
  const payments = yield* PaymentRepository
  const balances = yield* MerchantBalances

  const retrieve = (rawId: string) =>
    Effect.gen(function* () {
      const merchant = yield* CurrentMerchant
      const paymentId = decodePaymentId(rawId)
      if (Option.isNone(paymentId)) return yield* new PaymentNotFound({ paymentId: rawId.slice(0, 100) })
      const payment = yield* payments.findById(merchant.merchantId, paymentId.value)
      return toHttpResponse(json(200, toPaymentJson(payment)), false)
    }).pipe(answerErrors)

  const list = (query: { readonly limit?: string; readonly starting_after?: string }) =>
    Effect.gen(function* () {
      const merchant = yield* CurrentMerchant
      const limit = yield* pageLimitParam(query.limit)
      const startingAfter = query.starting_after === undefined ? Option.none() : decodePaymentId(query.starting_after)
      if (query.starting_after !== undefined && Option.isNone(startingAfter)) {
        return yield* new InvalidCursor({ startingAfter: query.starting_after.slice(0, 100), of: "payments" })
      }
      const page = yield* payments.list(merchant.merchantId, {
        limit,
        startingAfter: Option.getOrUndefined(startingAfter)
      })
      return toHttpResponse(json(200, { object: "list", data: page.data.map(toPaymentJson), has_more: page.hasMore }), false)
    }).pipe(answerErrors)

  const balance = Effect.gen(function* () {
    const merchant = yield* CurrentMerchant
    const available = yield* balances.payable(merchant.merchantId)
    return toHttpResponse({ status: 200, contentType: "application/json", body: balanceBody(available) }, false)
  }).pipe(answerErrors)

  return { retrieve, list, balance }
})

/**
 * The authenticated merchant on its handler's log lines (Authorization.ts put it on the request's
 * access line and span).
 */
const withMerchant = <A, E, R>(handler: Effect.Effect<A, E, R>) =>
  Effect.flatMap(CurrentMerchant, (merchant) => handler.pipe(Effect.annotateLogs("merchant_id", merchant.merchantId)))

/** The payment a request names, on its access line and its log lines (bounded like any path segment). */
const withPaymentId = <A, E, R>(rawId: string, handler: Effect.Effect<A, E, R>) => {
  // Not a payment id: whatever was pasted there (an API key, once; a card number), redacted.
  const loggable = withoutCardNumbers(withoutApiKeys(rawId)).slice(0, 64)
  return annotateRequest({ payment_id: loggable }).pipe(Effect.andThen(handler), Effect.annotateLogs("payment_id", loggable))
}

export const PaymentsHandlers = HttpApiBuilder.group(
  PaymentsApi,
  "payments",
  Effect.fn(function* (handlers) {
    const { idempotentPost } = yield* makeIdempotentPost
    const reads = yield* makeReads
    const refunds = yield* makeRefundReads
    return handlers
      .handleRaw("create", ({ request }) => withMerchant(idempotentPost(request, "/v1/payments", createOperation)))
      .handleRaw("authorize", ({ request, params }) =>
        withMerchant(withPaymentId(params.id, idempotentPost(request, `/v1/payments/${params.id}/authorize`, transitionOperation("authorize", params.id)))))
      .handleRaw("settle", ({ request, params }) =>
        withMerchant(withPaymentId(params.id, idempotentPost(request, `/v1/payments/${params.id}/settle`, settleOperation(params.id)))))
      .handleRaw("cancel", ({ request, params }) =>
        withMerchant(withPaymentId(params.id, idempotentPost(request, `/v1/payments/${params.id}/cancel`, transitionOperation("cancel", params.id)))))
      .handleRaw("refund", ({ request, params }) =>
        withMerchant(withPaymentId(params.id, idempotentPost(request, `/v1/payments/${params.id}/refunds`, refundOperation(params.id)))))
      .handleRaw("listRefunds", ({ params, query }) => withMerchant(withPaymentId(params.id, refunds.list(params.id, query))))
      .handleRaw("retrieveRefund", ({ params }) => withMerchant(withPaymentId(params.id, refunds.retrieve(params.id, params.refund_id))))
      .handleRaw("retrieve", ({ params }) => withMerchant(withPaymentId(params.id, reads.retrieve(params.id))))
      .handleRaw("list", ({ query }) => withMerchant(reads.list(query)))
      .handleRaw("balance", () => withMerchant(reads.balance))
  })
)
