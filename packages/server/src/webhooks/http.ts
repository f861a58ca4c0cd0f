import {
  CreateWebhookEndpointBody,
  CurrentMerchant,
  InvalidRequest,
  PaymentsApi,
  RecoverWebhookDeliveriesBody,
  RotateWebhookSecretBody,
  UpdateWebhookEndpointBody
} from "@pay/api"
import { PAGE_LIMIT_DEFAULT, uuidPattern } from "@pay/domain"
import { IdempotencyKeys, parseIdempotencyKeyResult, storedAsIs } from "@pay/idempotency"
import { openAnswerSecret, WebhookDeliveries, WebhookDeliveryNotFound, WebhookEndpointNotFound, webhookEndpointIdPattern, WebhookEndpoints } from "@pay/webhooks"
import { Effect, Option, Schema } from "effect"
import type { HttpServerRequest } from "effect/http"
import { HttpApiBuilder } from "effect/http-api"
import type { ApiError } from "../http/ApiErrors.ts"
import { pageLimitParam } from "../http/Paging.ts"
import { json } from "../http/Problem.ts"
import { bodyOrEmpty, bodyToFingerprint, decodeBody, fieldPath, readJsonBody } from "../http/RequestBody.ts"
import { answerErrors, finishEvenIfClientLeaves } from "../http/Respond.ts"
import { toCreatedHttpResponse, toHttpResponse } from "../http/StoredResponse.ts"
import { encodeWebhookOperation, makeWebhookOperations, type WebhookOperation } from "./Operations.ts"
import { toWebhookDeliveryJson, toWebhookEndpointJson } from "./WebhookJson.ts"

const decodeStatus = Schema.decodeUnknownOption(Schema.Literals(["pending", "delivered", "failed"]))

type ToOperation = (body: Schema.Json | undefined) => Effect.Effect<WebhookOperation, ApiError>

const noBodyDetail = "this endpoint takes no body (send none, or {})"

/** POSTs without a body (none, or `{}`); a member of `{}` is an unknown field, named (`field`) as the payments' are. */
const noBody = (operation: WebhookOperation): ToOperation => (body) => {
  if (body === undefined) return Effect.succeed(operation)
  if (typeof body !== "object" || body === null || Array.isArray(body)) return Effect.fail(new InvalidRequest({ detail: noBodyDetail }))
  const member = Object.keys(body)[0]
  if (member === undefined) return Effect.succeed(operation)
  // Named as any body's field: an empty or dotted name in brackets (fieldPath).
  const unknown = fieldPath([member.slice(0, 100)])
  return Effect.fail(new InvalidRequest({ detail: `${unknown}: unknown field: ${noBodyDetail}`, field: unknown }))
}

const withBody = <S extends Schema.Top & { readonly DecodingServices: never }>(schema: S, toOperation: (decoded: S["Type"]) => WebhookOperation): ToOperation =>
(body) => decodeBody(schema, bodyOrEmpty(body)).pipe(Effect.map(toOperation))

/**
 * A path id not of its kind's shape names nothing: after the body's checks, refused before the
 * key is taken (a NUL or a lone surrogate never reaches the database), as the payments' POSTs do.
 */
const onEndpoint = (ids: { readonly endpoint: string; readonly delivery?: string }, toOperation: ToOperation): ToOperation => (body) =>
  toOperation(body).pipe(Effect.flatMap((operation): Effect.Effect<WebhookOperation, ApiError> => {
    if (!webhookEndpointIdPattern.test(ids.endpoint)) return Effect.fail(new WebhookEndpointNotFound({ endpointId: ids.endpoint.slice(0, 100) }))
    if (ids.delivery !== undefined && !uuidPattern.test(ids.delivery)) return Effect.fail(new WebhookDeliveryNotFound({ deliveryId: ids.delivery.slice(0, 100) }))
    return Effect.succeed(operation)
  }))

const makeIdempotentPost = Effect.gen(function* () {
  const idempotency = yield* IdempotencyKeys
  const operations = yield* makeWebhookOperations
  const endpoints = yield* WebhookEndpoints
  const { secretBox } = endpoints
  /**
   * The fields' own rules (the URL's, in this deployment's mode) before the key is taken: a
   * refused field is a 400 that stores nothing, so the corrected request may reuse the key.
   */
  const checked = (operation: WebhookOperation): Effect.Effect<WebhookOperation, ApiError> => {
    if (operation._tag !== "webhook_endpoint_create" && operation._tag !== "webhook_endpoint_update") return Effect.succeed(operation)
    // The fields to check (an update's endpoint id is not one of them, and is ignored).
    const { _tag, ...fields } = operation
    return endpoints.check(fields).pipe(
      Effect.mapError((refused) => new InvalidRequest({ detail: refused.message, field: refused.field })),
      Effect.as(operation)
    )
  }
  /** The payments' pipeline (key → body → operation → run), with the webhook operations. */
  return (request: HttpServerRequest.HttpServerRequest, path: string, toOperation: ToOperation) =>
    Effect.gen(function* () {
      const merchant = yield* CurrentMerchant
      const key = yield* Effect.fromResult(parseIdempotencyKeyResult(request.headers["idempotency-key"]))
      const body = yield* readJsonBody(request)
      const operation = yield* Effect.flatMap(toOperation(body), checked)
      const outcome = yield* finishEvenIfClientLeaves(idempotency.run(
        { merchantId: merchant.merchantId, key, method: "POST", path, body: bodyToFingerprint(body), operation: encodeWebhookOperation(operation), render: storedAsIs },
        (execution) => operations.execute(merchant.merchantId, operation, execution)
      ))
      // A stored answer holds the secret sealed (Operations.ts); the client gets it opened. A key
      // missing here is the deployment's fault, not the client's: a defect, 500.
      const answer = yield* Effect.orDie(Effect.fromResult(openAnswerSecret(secretBox, outcome.response.body)))
      return toCreatedHttpResponse({ ...outcome.response, body: answer }, outcome._tag === "Replayed", path)
    }).pipe(answerErrors)
})

const pageOf = (limit: string | undefined) => Effect.map(pageLimitParam(limit), (value) => value ?? PAGE_LIMIT_DEFAULT)

const makeReads = Effect.gen(function* () {
  const endpoints = yield* WebhookEndpoints
  const deliveries = yield* WebhookDeliveries
  const ok = (value: unknown) => toHttpResponse(json(200, value), false)

  const list = (query: { readonly limit?: string; readonly starting_after?: string }) =>
    Effect.gen(function* () {
      const merchant = yield* CurrentMerchant
      const limit = yield* pageOf(query.limit)
      const page = yield* endpoints.list(merchant.merchantId, { limit, startingAfter: query.starting_after })
      return ok({ object: "list", data: page.data.map(toWebhookEndpointJson), has_more: page.hasMore })
    }).pipe(answerErrors)

  const retrieve = (id: string) =>
    Effect.gen(function* () {
      const merchant = yield* CurrentMerchant
      return ok(toWebhookEndpointJson(yield* endpoints.get(merchant.merchantId, id)))
    }).pipe(answerErrors)

  /** DELETE is idempotent by nature: a second delete answers 404 (the endpoint is gone). */
  const remove = (id: string) =>
    Effect.gen(function* () {
      const merchant = yield* CurrentMerchant
      return ok({ ...toWebhookEndpointJson(yield* endpoints.remove(merchant.merchantId, id)), deleted: true as const })
    }).pipe(answerErrors)

  const listDeliveries = (id: string, query: { readonly limit?: string; readonly starting_after?: string; readonly event_id?: string; readonly status?: string }) =>
    Effect.gen(function* () {
      const merchant = yield* CurrentMerchant
      const limit = yield* pageOf(query.limit)
      if (query.event_id !== undefined && !uuidPattern.test(query.event_id)) {
        return yield* new InvalidRequest({ detail: "event_id: must be an event id (a uuid)", field: "event_id" })
      }
      const status = query.status === undefined ? Option.none() : decodeStatus(query.status)
      if (query.status !== undefined && Option.isNone(status)) {
        return yield* new InvalidRequest({ detail: "status: one of pending, delivered, failed", field: "status" })
      }
      const page = yield* deliveries.list(merchant.merchantId, id, {
        limit,
        startingAfter: query.starting_after,
        eventId: query.event_id,
        status: Option.getOrUndefined(status)
      })
      return ok({ object: "list", data: page.data.map((delivery) => toWebhookDeliveryJson(delivery)), has_more: page.hasMore })
    }).pipe(answerErrors)

  const retrieveDelivery = (id: string, deliveryId: string) =>
    Effect.gen(function* () {
      const merchant = yield* CurrentMerchant
      const { delivery, attempts } = yield* deliveries.get(merchant.merchantId, id, deliveryId)
      return ok(toWebhookDeliveryJson(delivery, attempts))
    }).pipe(answerErrors)

  return { list, retrieve, remove, listDeliveries, retrieveDelivery }
})

const base = "/v1/webhook_endpoints"

export const WebhooksHandlers = HttpApiBuilder.group(
  PaymentsApi,
  "webhooks",
  Effect.fn(function* (handlers) {
    const post = yield* makeIdempotentPost
    const reads = yield* makeReads
    return handlers
      .handleRaw("create", ({ request }) =>
        post(request, base, withBody(CreateWebhookEndpointBody, (body) => ({ _tag: "webhook_endpoint_create", ...body }))))
      .handleRaw("list", ({ query }) => reads.list(query))
      .handleRaw("retrieve", ({ params }) => reads.retrieve(params.id))
      .handleRaw("update", ({ request, params }) =>
        post(request, `${base}/${params.id}`, onEndpoint({ endpoint: params.id }, withBody(UpdateWebhookEndpointBody, (body) => ({ _tag: "webhook_endpoint_update", endpoint_id: params.id, ...body })))))
      .handleRaw("disable", ({ request, params }) =>
        post(request, `${base}/${params.id}/disable`, onEndpoint({ endpoint: params.id }, noBody({ _tag: "webhook_endpoint_disable", endpoint_id: params.id }))))
      .handleRaw("enable", ({ request, params }) =>
        post(request, `${base}/${params.id}/enable`, onEndpoint({ endpoint: params.id }, noBody({ _tag: "webhook_endpoint_enable", endpoint_id: params.id }))))
      .handleRaw("remove", ({ params }) => reads.remove(params.id))
      .handleRaw("rotateSecret", ({ request, params }) =>
        post(request, `${base}/${params.id}/rotate_secret`, onEndpoint({ endpoint: params.id }, withBody(RotateWebhookSecretBody, (body) => ({ _tag: "webhook_endpoint_rotate_secret", endpoint_id: params.id, ...body })))))
      .handleRaw("listDeliveries", ({ params, query }) => reads.listDeliveries(params.id, query))
      .handleRaw("retrieveDelivery", ({ params }) => reads.retrieveDelivery(params.id, params.delivery_id))
      .handleRaw("redeliver", ({ request, params }) =>
        post(request, `${base}/${params.id}/deliveries/${params.delivery_id}/redeliver`, onEndpoint({ endpoint: params.id, delivery: params.delivery_id }, noBody({ _tag: "webhook_delivery_redeliver", endpoint_id: params.id, delivery_id: params.delivery_id }))))
      .handleRaw("recover", ({ request, params }) =>
        post(request, `${base}/${params.id}/recover`, onEndpoint({ endpoint: params.id }, withBody(RecoverWebhookDeliveriesBody, (body) => ({ _tag: "webhook_deliveries_recover", endpoint_id: params.id, since: body.since })))))
  })
)
