import { InvalidRequest } from "@pay/api"
import type { MerchantId } from "@pay/domain"
import type { Execution, Finished, IdempotencyLockLost, StoredResponse } from "@pay/idempotency"
import {
  SECRET_OVERLAP_MS_DEFAULT,
  WebhookDeliveries,
  type WebhookDeliveryNotFound,
  type WebhookEndpointLimitReached,
  type WebhookEndpointNotFound,
  type WebhookEndpointRefused,
  WebhookEndpoints
} from "@pay/webhooks"
import { Effect, Schema } from "effect"
import { SqlClient } from "effect/sql"
import type { SqlError } from "effect/sql/SqlError"
import { json, problemResponse } from "../http/Problem.ts"
import { toWebhookDeliveryJson, toWebhookEndpointJson } from "./WebhookJson.ts"

/**
 * What an idempotent webhook POST asks for, stored with its key like a payment operation (column
 * `operation`), so that the completer can finish a key whose server died mid-request.
 */
const EndpointTarget = { endpoint_id: Schema.String }
const Description = Schema.optionalKey(Schema.NullOr(Schema.String))
export const WebhookOperation = Schema.Union([
  Schema.TaggedStruct("webhook_endpoint_create", { url: Schema.String, event_types: Schema.Array(Schema.String), description: Description }),
  Schema.TaggedStruct("webhook_endpoint_update", {
    ...EndpointTarget,
    url: Schema.optionalKey(Schema.String),
    event_types: Schema.optionalKey(Schema.Array(Schema.String)),
    description: Description
  }),
  Schema.TaggedStruct("webhook_endpoint_disable", EndpointTarget),
  Schema.TaggedStruct("webhook_endpoint_enable", EndpointTarget),
  Schema.TaggedStruct("webhook_endpoint_rotate_secret", { ...EndpointTarget, expires_in_ms: Schema.optionalKey(Schema.Int) }),
  Schema.TaggedStruct("webhook_delivery_redeliver", { ...EndpointTarget, delivery_id: Schema.String }),
  Schema.TaggedStruct("webhook_deliveries_recover", { ...EndpointTarget, since: Schema.String })
])
export type WebhookOperation = typeof WebhookOperation.Type
export const encodeWebhookOperation = Schema.encodeSync(WebhookOperation)
export const decodeWebhookOperation = Schema.decodeUnknownResult(WebhookOperation)

const refusedAsInvalid = (error: WebhookEndpointRefused) => problemResponse(new InvalidRequest({ detail: error.message, field: error.field }))

/**
 * Runs the operation and stores its rendered answer with the key, in one transaction (the
 * service's own transactions nest as savepoints): a crash commits both or neither. A refusal
 * (not found, invalid) is a decided answer: stored and replayed like a success.
 */
export const makeWebhookOperations = Effect.gen(function* () {
  const sql = yield* SqlClient.SqlClient
  const endpoints = yield* WebhookEndpoints
  const deliveries = yield* WebhookDeliveries
  // The answer is kept for replays (idempotency_keys, the Redis cache): its secret is stored
  // sealed like the endpoint's own row, and opened when the answer is sent (http.ts).
  const sealed = (secret: string, endpointId: string) => endpoints.secretBox.seal(secret, endpointId)

  const answer = (
    merchantId: MerchantId,
    operation: WebhookOperation
  ): Effect.Effect<
    StoredResponse,
    WebhookEndpointRefused | WebhookEndpointLimitReached | WebhookEndpointNotFound | WebhookDeliveryNotFound | SqlError
  > => {
    switch (operation._tag) {
      case "webhook_endpoint_create":
        return endpoints.create(merchantId, operation).pipe(
          Effect.map(({ endpoint, secret }) => json(201, { ...toWebhookEndpointJson(endpoint), secret: sealed(secret, endpoint.id) }))
        )
      case "webhook_endpoint_update": {
        const { endpoint_id, _tag, ...fields } = operation
        return endpoints.update(merchantId, endpoint_id, fields).pipe(Effect.map((endpoint) => json(200, toWebhookEndpointJson(endpoint))))
      }
      case "webhook_endpoint_disable":
        return endpoints.disable(merchantId, operation.endpoint_id).pipe(Effect.map((endpoint) => json(200, toWebhookEndpointJson(endpoint))))
      case "webhook_endpoint_enable":
        return endpoints.enable(merchantId, operation.endpoint_id).pipe(Effect.map((endpoint) => json(200, toWebhookEndpointJson(endpoint))))
      case "webhook_endpoint_rotate_secret":
        return endpoints.rotateSecret(merchantId, operation.endpoint_id, operation.expires_in_ms ?? SECRET_OVERLAP_MS_DEFAULT).pipe(
          Effect.map(({ endpoint, secret }) => json(200, { ...toWebhookEndpointJson(endpoint), secret: sealed(secret, endpoint.id) }))
        )
      case "webhook_delivery_redeliver":
        return deliveries.redeliver(merchantId, operation.endpoint_id, operation.delivery_id).pipe(
          Effect.map((delivery) => json(200, toWebhookDeliveryJson(delivery)))
        )
      case "webhook_deliveries_recover": {
        const since = new Date(operation.since)
        if (Number.isNaN(since.getTime())) {
          return Effect.succeed(problemResponse(new InvalidRequest({ detail: "since: must be an ISO-8601 instant", field: "since" })))
        }
        return deliveries.recoverFailedSince(merchantId, operation.endpoint_id, since).pipe(
          Effect.map((requeued) => json(200, { object: "webhook_recovery", requeued }))
        )
      }
    }
  }

  const execute = (
    merchantId: MerchantId,
    operation: WebhookOperation,
    execution: Execution<StoredResponse>
  ): Effect.Effect<Finished<StoredResponse>, IdempotencyLockLost | SqlError> =>
    sql.withTransaction(
      answer(merchantId, operation).pipe(
        Effect.catchTags({
          WebhookEndpointRefused: (error) => Effect.succeed(refusedAsInvalid(error)),
          WebhookEndpointLimitReached: (error) => Effect.succeed(problemResponse(error)),
          WebhookEndpointNotFound: (error) => Effect.succeed(problemResponse(error)),
          WebhookDeliveryNotFound: (error) => Effect.succeed(problemResponse(error))
        }),
        Effect.flatMap((response) => execution.finish(response))
      )
    )

  return { execute }
})
