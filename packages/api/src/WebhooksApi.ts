import { DisplayableText, type ErrorCode, domainEventTypes, StorableText } from "@pay/domain"
import { Schema } from "effect"
import { HttpApiEndpoint, HttpApiGroup, OpenApi } from "effect/http-api"
import { Authorization } from "./Authorization.ts"
import { boundedIntJson, IdempotencyKeyHeader } from "./PaymentsApi.ts"
import { commonProblemCodes, postProblemCodes, problems } from "./Problems.ts"

/** What an endpoint may subscribe to: the payment and refund events, or `*` for all of them. */
export const WebhookEventTypeJson = Schema.Literals(["*", ...domainEventTypes])

const EventTypes = Schema.Array(WebhookEventTypeJson).check(
  Schema.isMinLength(1, { message: "at least one event type" }),
  Schema.isMaxLength(16, { message: "at most 16 event types" })
).annotate({ description: "The event types to receive; stored once each, in the catalog's order, and `*` (every type) alone when it is given" })
const Url = StorableText("url", { min: 1, max: 2_048 }).annotate({
  description: "https URL of the merchant's receiver (http to loopback only in local and test mode), with no space (of any kind: a no-break space too), tab, line break, control, bidirectional, private-use, unassigned or other invisible character (percent-encode it; a host that needs U+200C/U+200D in its xn-- form) and a port from 1 to 65535, whose host is not a private, loopback or link-local address (refused as written, and again when it is called: a name that resolves to one is not sent to); stored and shown in its parsed form (scheme and host in lower case, as it is called)"
})
/**
 * Counted in characters (code points: 500 emoji fit), without NUL, lone surrogates or hidden
 * characters (controls other than tab and line breaks, bidirectional overrides), as a payment's.
 */
const Description = Schema.NullOr(DisplayableText("description", { min: 0, max: 500 }))

/**
 * The proleptic Gregorian calendar's (RFC 3339's) days in `month` (1-12) of `year` (0-9999). Not
 * `Date.UTC`, which reads years 0-99 as 1900-1999: 0000-02-29 (year 0 is a leap year) was refused
 * (outside contract fuzz).
 */
const daysInMonth = (year: number, month: number): number => {
  if (month !== 2) return [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31][month - 1] ?? 0
  return (year % 4 === 0 && year % 100 !== 0) || year % 400 === 0 ? 29 : 28
}

/**
 * An instant in RFC 3339's form of ISO 8601 (`2026-12-01T10:00:00Z`, `…T10:00:00.123+01:00`): a
 * date that exists, a time, and an offset (`Z` or ±hh:mm), so it names one instant. A bare date, a
 * time without an offset or `Date.parse`'s other guesses (`"1"`) are refused.
 */
const instantPattern = /^(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(\.\d{1,9})?([Zz]|[+-](\d{2}):(\d{2}))$/u
export const isRfc3339Instant = (text: string): boolean => {
  const parts = instantPattern.exec(text)
  if (parts === null) return false
  const [year, month, day, hour, minute, second] = parts.slice(1, 7).map(Number)
  const offsetHours = parts[9] === undefined ? 0 : Number(parts[9])
  const offsetMinutes = parts[10] === undefined ? 0 : Number(parts[10])
  if (year === undefined || month === undefined || day === undefined || hour === undefined || minute === undefined || second === undefined) return false
  return month >= 1 && month <= 12 && day >= 1 && day <= daysInMonth(year, month) && hour <= 23 && minute <= 59 && second <= 59 &&
    offsetHours <= 23 && offsetMinutes <= 59 && !Number.isNaN(Date.parse(text))
}
const InstantText = Schema.String.check(
  Schema.makeFilter((text: string) => isRfc3339Instant(text) || "must be an RFC 3339 instant with an offset, e.g. 2026-12-01T10:00:00Z", {
    // date-time, without the leap second (:60) it would allow: the server refuses it.
    toJsonSchema: () => ({ format: "date-time", pattern: "^\\d{4}-\\d{2}-\\d{2}[Tt]\\d{2}:\\d{2}:[0-5]\\d(\\.\\d{1,9})?([Zz]|[+-]\\d{2}:\\d{2})$" })
  })
)

/** `POST /v1/webhook_endpoints` body. */
export const CreateWebhookEndpointBody = Schema.Struct({
  url: Url,
  event_types: EventTypes,
  description: Schema.optionalKey(Description)
})
export type CreateWebhookEndpointBody = typeof CreateWebhookEndpointBody.Type

/** `POST /v1/webhook_endpoints/{id}` body: the fields to change. */
export const UpdateWebhookEndpointBody = Schema.Struct({
  url: Schema.optionalKey(Url),
  event_types: Schema.optionalKey(EventTypes),
  description: Schema.optionalKey(Description)
})
export type UpdateWebhookEndpointBody = typeof UpdateWebhookEndpointBody.Type

/** `POST /v1/webhook_endpoints/{id}/rotate_secret` body: how long the old secret keeps signing (default 24 h, at most 7 days). */
export const RotateWebhookSecretBody = Schema.Struct({
  expires_in_ms: Schema.optionalKey(boundedIntJson(0, 7 * 24 * 60 * 60 * 1_000, "must be an integer between 0 and 604800000"))
})

/** `POST /v1/webhook_endpoints/{id}/recover` body: requeue what failed since this instant. */
export const RecoverWebhookDeliveriesBody = Schema.Struct({
  since: InstantText.annotate({ description: "An instant (RFC 3339: date, time and offset, e.g. `2026-12-01T10:00:00Z`)" })
})

export const WebhookEndpointJson = Schema.Struct({
  id: Schema.String,
  object: Schema.Literal("webhook_endpoint"),
  url: Schema.String,
  description: Schema.NullOr(Schema.String),
  event_types: Schema.Array(WebhookEventTypeJson),
  status: Schema.Literals(["enabled", "disabled"]),
  disabled_reason: Schema.NullOr(Schema.Literals(["merchant", "gone", "failing"])),
  disabled_at: Schema.NullOr(Schema.String),
  failing_since: Schema.NullOr(Schema.String),
  created_at: Schema.String,
  updated_at: Schema.String
})
export type WebhookEndpointJson = typeof WebhookEndpointJson.Type

/**
 * The DELETE's answer: the endpoint as it was, and `deleted: true` (its `status` is what it was
 * before: an outside integrator read `"status":"enabled"` in the answer as "not deleted").
 */
export const WebhookEndpointDeletedJson = Schema.Struct({
  ...WebhookEndpointJson.fields,
  deleted: Schema.Literal(true).annotate({ description: "Always true: the endpoint is deleted (every route under it answers 404 from now on)" })
})

/** On creation and rotation only: the signing secret, shown this once. */
export const WebhookEndpointWithSecretJson = Schema.Struct({ ...WebhookEndpointJson.fields, secret: Schema.String })

export const WebhookEndpointListJson = Schema.Struct({
  object: Schema.Literal("list"),
  data: Schema.Array(WebhookEndpointJson),
  has_more: Schema.Boolean
})

export const WebhookAttemptJson = Schema.Struct({
  attempt_number: Schema.Int,
  started_at: Schema.String,
  outcome: Schema.NullOr(Schema.String),
  response_status: Schema.NullOr(Schema.Int),
  latency_ms: Schema.NullOr(Schema.Int),
  response_body_excerpt: Schema.NullOr(Schema.String),
  error: Schema.NullOr(Schema.String),
  finished_at: Schema.NullOr(Schema.String)
})

export const WebhookDeliveryJson = Schema.Struct({
  id: Schema.String,
  object: Schema.Literal("webhook_delivery"),
  endpoint_id: Schema.String,
  event_id: Schema.String,
  event_type: Schema.Literals(domainEventTypes),
  payment_id: Schema.String,
  refund_id: Schema.NullOr(Schema.String).annotate({ description: "The refund a refund_* event is about (a payment may have several); null for a payment's own events" }),
  status: Schema.Literals(["pending", "delivered", "failed"]),
  failed_reason: Schema.NullOr(Schema.String),
  attempt_count: Schema.Int,
  next_attempt_at: Schema.NullOr(Schema.String),
  last_response_status: Schema.NullOr(Schema.Int),
  created_at: Schema.String,
  finished_at: Schema.NullOr(Schema.String),
  attempts: Schema.optionalKey(Schema.Array(WebhookAttemptJson))
})

export const WebhookDeliveryListJson = Schema.Struct({
  object: Schema.Literal("list"),
  data: Schema.Array(WebhookDeliveryJson),
  has_more: Schema.Boolean
})

export const WebhookRecoveryJson = Schema.Struct({ object: Schema.Literal("webhook_recovery"), requeued: Schema.Int })

const EndpointParam = { id: Schema.String.annotate({ description: "A webhook endpoint id, `we_…`" }) }
const DeliveryParams = { ...EndpointParam, delivery_id: Schema.String.annotate({ description: "A delivery id (uuid)" }) }

const postCodes = [...postProblemCodes, "invalid_request"] as const satisfies ReadonlyArray<ErrorCode>
// An operation with a path id may also answer route_not_found: a segment over 500 characters or
// badly percent-encoded is refused by the edge before routing (docs/api.md, limits), as on payments.
const onEndpoint = [...postCodes, "route_not_found", "webhook_endpoint_not_found"] as const satisfies ReadonlyArray<ErrorCode>
const onDelivery = [...onEndpoint, "webhook_delivery_not_found"] as const satisfies ReadonlyArray<ErrorCode>
const readCodes = [...commonProblemCodes, "route_not_found", "webhook_endpoint_not_found"] as const satisfies ReadonlyArray<ErrorCode>

/**
 * Webhook endpoints: where a merchant receives its payment events, signed per Standard Webhooks
 * (docs/webhooks.md). POSTs are idempotent like the rest of the API (`Idempotency-Key`).
 */
export class WebhooksGroup extends HttpApiGroup.make("webhooks")
  .add(
    HttpApiEndpoint.post("create", "/v1/webhook_endpoints", {
      headers: IdempotencyKeyHeader,
      payload: CreateWebhookEndpointBody,
      success: WebhookEndpointWithSecretJson.annotate({ httpApiStatus: 201 }),
      error: problems(...postCodes, "webhook_endpoint_limit_reached")
    }).annotate(OpenApi.Description, "Registers an endpoint for the merchant's payment events. The answer carries the signing secret (whsec_…), shown this once. At most 16 endpoints per merchant (disabled ones included): the 17th is 409 webhook_endpoint_limit_reached."),
    HttpApiEndpoint.get("list", "/v1/webhook_endpoints", {
      query: {
        limit: Schema.optionalKey(Schema.String.annotate({ description: "1-100, default 10" })),
        starting_after: Schema.optionalKey(Schema.String.annotate({ description: "An endpoint id: the page starts after it" }))
      },
      success: WebhookEndpointListJson,
      error: problems(...commonProblemCodes, "invalid_request", "invalid_cursor")
    }).annotate(OpenApi.Description, "Lists the merchant's endpoints, oldest first, `limit` at a time; never their secrets."),
    HttpApiEndpoint.get("retrieve", "/v1/webhook_endpoints/:id", { params: EndpointParam, success: WebhookEndpointJson, error: problems(...readCodes) }).annotate(OpenApi.Description, "Reads one endpoint: status, disabled_reason (merchant, gone, failing), failing_since."),
    HttpApiEndpoint.post("update", "/v1/webhook_endpoints/:id", {
      params: EndpointParam, headers: IdempotencyKeyHeader, payload: UpdateWebhookEndpointBody, success: WebhookEndpointJson, error: problems(...onEndpoint)
    }).annotate(OpenApi.Description, "Changes an endpoint's url, event_types or description."),
    HttpApiEndpoint.post("disable", "/v1/webhook_endpoints/:id/disable", {
      params: EndpointParam, headers: IdempotencyKeyHeader, success: WebhookEndpointJson, error: problems(...onEndpoint)
    }).annotate(OpenApi.Description, "Stops deliveries to the endpoint; pending ones wait until it is enabled."),
    HttpApiEndpoint.post("enable", "/v1/webhook_endpoints/:id/enable", {
      params: EndpointParam, headers: IdempotencyKeyHeader, success: WebhookEndpointJson, error: problems(...onEndpoint)
    }).annotate(OpenApi.Description, "Resumes deliveries to the endpoint and forgets its failure streak."),
    HttpApiEndpoint.delete("remove", "/v1/webhook_endpoints/:id", { params: EndpointParam, success: WebhookEndpointDeletedJson, error: problems(...readCodes) }).annotate(OpenApi.Description, "Deletes the endpoint and its secrets; the answer is the endpoint as it was, with `deleted: true`. Its deliveries and attempts are kept on the server (the record of what was sent) but are no longer visible through the API: every route under the endpoint answers 404 afterwards, and its pending deliveries are never sent."),
    HttpApiEndpoint.post("rotateSecret", "/v1/webhook_endpoints/:id/rotate_secret", {
      params: EndpointParam, headers: IdempotencyKeyHeader, payload: RotateWebhookSecretBody, success: WebhookEndpointWithSecretJson, error: problems(...onEndpoint)
    }).annotate(OpenApi.Description, "Makes a new signing secret (returned this once); the old one keeps signing for expires_in_ms (both signatures are sent)."),
    HttpApiEndpoint.get("listDeliveries", "/v1/webhook_endpoints/:id/deliveries", {
      params: EndpointParam,
      query: {
        limit: Schema.optionalKey(Schema.String.annotate({ description: "1-100, default 10" })),
        starting_after: Schema.optionalKey(Schema.String.annotate({ description: "A delivery id: the page starts after it (newest first)" })),
        event_id: Schema.optionalKey(Schema.String.annotate({ description: "Only the delivery of this event (its webhook-id)" })),
        status: Schema.optionalKey(Schema.String.annotate({ description: "pending, delivered or failed" }))
      },
      success: WebhookDeliveryListJson,
      error: problems(...readCodes, "invalid_request", "invalid_cursor")
    }).annotate(OpenApi.Description, "Lists the endpoint's deliveries, newest first, filtered by event_id or status."),
    HttpApiEndpoint.get("retrieveDelivery", "/v1/webhook_endpoints/:id/deliveries/:delivery_id", {
      params: DeliveryParams, success: WebhookDeliveryJson, error: problems(...readCodes, "webhook_delivery_not_found")
    }).annotate(OpenApi.Description, "Reads one delivery with every attempt (outcome, status, latency, 1 KiB of the answer, error)."),
    HttpApiEndpoint.post("redeliver", "/v1/webhook_endpoints/:id/deliveries/:delivery_id/redeliver", {
      params: DeliveryParams, headers: IdempotencyKeyHeader, success: WebhookDeliveryJson, error: problems(...onDelivery)
    }).annotate(OpenApi.Description, "Sends the delivery again: same webhook-id and bytes, a new round of retries. Whatever its status it becomes pending and due now (attempt_count and attempts kept); it still waits while an earlier event of the same payment is pending, and while the endpoint is disabled (answered 200 pending; sent once the endpoint is enabled). A delivery being sent at that moment is answered as it is."),
    HttpApiEndpoint.post("recover", "/v1/webhook_endpoints/:id/recover", {
      params: EndpointParam, headers: IdempotencyKeyHeader, payload: RecoverWebhookDeliveriesBody, success: WebhookRecoveryJson, error: problems(...onEndpoint)
    }).annotate(OpenApi.Description, "Requeues every delivery of the endpoint that failed since `since` (at most 1000 per call).")
  )
  .middleware(Authorization)
  .annotateMerge(OpenApi.annotations({
    title: "Webhook endpoints",
    description: "Register where payment events are sent, rotate signing secrets, inspect deliveries and attempts, redeliver."
  }))
{}
