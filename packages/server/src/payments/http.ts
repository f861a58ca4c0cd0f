import { CreatePaymentBody, CurrentMerchant, PaymentsApi } from "@pay/api"
import { InvalidCursor, PageLimit, PaymentId } from "@pay/domain"
import { IdempotencyKeys, parseIdempotencyKeyResult, type StoredResponse } from "@pay/idempotency"
import { type ChangeContext, PaymentRepository, Traceparent } from "@pay/payments"
import { Effect, Option, Result, Schema } from "effect"
import type { HttpServerRequest } from "effect/http"
import { HttpApiBuilder } from "effect/http-api"
import { randomUUID } from "node:crypto"
import { json, problem } from "../http/Problem.ts"
import { decodeBody, readJsonBody } from "../http/RequestBody.ts"
import { BalanceReader } from "./BalanceReader.ts"
import { type Operation, PaymentOperations } from "./Operations.ts"
import { toPaymentJson } from "./PaymentJson.ts"
import { answerDefects, respondToError, toHttpResponse } from "./responses.ts"

const decodeTraceparent = Schema.decodeUnknownOption(Traceparent)
const decodePaymentId = Schema.decodeUnknownOption(PaymentId)
const decodeLimit = Schema.decodeUnknownOption(Schema.NumberFromString.pipe(Schema.decodeTo(PageLimit)))

/** Who and why, for the history row and the event headers: the API key and the request's ids. */
const changeContext = (request: HttpServerRequest.HttpServerRequest, apiKeyId: string): ChangeContext => {
  const requestId = request.headers["x-request-id"]
  const traceparent = Option.getOrUndefined(decodeTraceparent(request.headers["traceparent"]))
  return {
    actor: `api_key:${apiKeyId}`,
    correlationId: requestId !== undefined && requestId.length > 0 && requestId.length <= 200 ? requestId : randomUUID(),
    ...(traceparent === undefined ? {} : { traceparent })
  }
}

export const PaymentsHandlers = HttpApiBuilder.group(
  PaymentsApi,
  "payments",
  Effect.fn(function* (handlers) {
    const idempotency = yield* IdempotencyKeys
    const operations = yield* PaymentOperations
    const payments = yield* PaymentRepository
    const balances = yield* BalanceReader

    /**
     * The idempotent POST pipeline: key → body → validation (all before execution: a failure
     * here is answered, never stored) → `run` (replay, conflict, or execute and store).
     */
    const idempotentPost = (
      request: HttpServerRequest.HttpServerRequest,
      path: string,
      toOperation: (body: Schema.Json | undefined) => Effect.Effect<Operation, StoredResponse>
    ) =>
      Effect.gen(function* () {
        const merchant = yield* CurrentMerchant
        const key = parseIdempotencyKeyResult(request.headers["idempotency-key"])
        if (Result.isFailure(key)) {
          const error = key.failure
          const code = error._tag === "IdempotencyKeyMissing" ? "idempotency_key_missing" : "idempotency_key_invalid"
          return toHttpResponse(problem(400, code, error.message, "Idempotency-Key"), false)
        }
        const body = yield* readJsonBody(request)
        const operation = yield* toOperation(body)
        const context = changeContext(request, merchant.apiKeyId)
        return yield* idempotency.run(
          { merchantId: merchant.merchantId, key: key.success, method: "POST", path, body },
          (execution) => operations.execute(merchant.merchantId, operation, context, execution)
        ).pipe(
          Effect.map((outcome) => toHttpResponse(outcome.response, outcome._tag === "Replayed")),
          Effect.catch(respondToError)
        )
      }).pipe(
        Effect.catch((response: StoredResponse) => Effect.succeed(toHttpResponse(response, false))),
        answerDefects
      )

    const noBody = (body: Schema.Json | undefined) =>
      body === undefined || (typeof body === "object" && body !== null && !Array.isArray(body) && Object.keys(body).length === 0)
        ? Effect.void
        : Effect.fail(problem(400, "invalid_request", "this endpoint takes no body (send none, or {})"))

    return handlers
      .handleRaw("create", ({ request }) =>
        idempotentPost(request, "/v1/payments", (body) =>
          decodeBody(CreatePaymentBody, body ?? {}).pipe(Effect.map((decoded): Operation => ({ _tag: "create", body: decoded })))
        ))
      .handleRaw("authorize", ({ request, params }) =>
        idempotentPost(request, `/v1/payments/${params.id}/authorize`, (body) =>
          noBody(body).pipe(Effect.as<Operation>({ _tag: "authorize", paymentId: params.id }))
        ))
      .handleRaw("settle", ({ request, params }) =>
        idempotentPost(request, `/v1/payments/${params.id}/settle`, (body) =>
          noBody(body).pipe(Effect.as<Operation>({ _tag: "settle", paymentId: params.id }))
        ))
      .handleRaw("retrieve", ({ params }) =>
        Effect.gen(function* () {
          const merchant = yield* CurrentMerchant
          const paymentId = decodePaymentId(params.id)
          if (Option.isNone(paymentId)) return toHttpResponse(problem(404, "payment_not_found", `no payment ${params.id}`), false)
          const payment = yield* payments.findById(merchant.merchantId, paymentId.value)
          return toHttpResponse(json(200, toPaymentJson(payment)), false)
        }).pipe(
          Effect.catchTag("PaymentNotFound", (error) => Effect.succeed(toHttpResponse(problem(404, "payment_not_found", error.message), false))),
          Effect.catch(respondToError),
          answerDefects
        ))
      .handleRaw("list", ({ query }) =>
        Effect.gen(function* () {
          const merchant = yield* CurrentMerchant
          const limit = query.limit === undefined ? Option.none() : decodeLimit(query.limit)
          if (query.limit !== undefined && Option.isNone(limit)) {
            return toHttpResponse(problem(400, "invalid_request", "limit: must be an integer between 1 and 100", "limit"), false)
          }
          const startingAfter = query.starting_after === undefined ? Option.none() : decodePaymentId(query.starting_after)
          if (query.starting_after !== undefined && Option.isNone(startingAfter)) {
            return yield* new InvalidCursor({ startingAfter: query.starting_after })
          }
          const page = yield* payments.list(merchant.merchantId, {
            limit: Option.getOrUndefined(limit),
            startingAfter: Option.getOrUndefined(startingAfter)
          })
          return toHttpResponse(json(200, { object: "list", data: page.data.map(toPaymentJson), has_more: page.hasMore }), false)
        }).pipe(
          Effect.catchTag("InvalidCursor", (error) =>
            Effect.succeed(toHttpResponse(problem(400, "invalid_cursor", error.message, "starting_after"), false))),
          Effect.catch(respondToError),
          answerDefects
        ))
      .handleRaw("balance", () =>
        Effect.gen(function* () {
          const merchant = yield* CurrentMerchant
          const available = yield* balances.payable(merchant.merchantId)
          return toHttpResponse(json(200, { object: "balance", available }), false)
        }).pipe(Effect.catch(respondToError), answerDefects))
  })
)
