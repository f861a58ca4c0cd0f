import { DomainEvent, type DomainEventType, domainEventTypes, PAGE_LIMIT_DEFAULT, PAGE_LIMIT_MAX, PAGE_LIMIT_MIN, paymentIdPattern, refundIdPattern } from "@pay/domain"
import { Schema } from "effect"

/**
 * What the generated OpenAPI document cannot say from the endpoint schemas alone, added once to
 * the whole document (HttpApi's `transform` annotation), so that a client generated from
 * `/openapi.json` can trust it:
 *
 * - the response headers the server sends: `Request-Id` and `X-Request-Id` (one id) on every answer, `Retry-After` on every
 *   429 and 503 and on a POST's 409 `idempotency_key_in_use` (optional on 409: its other codes have none), `Allow` on 405,
 *   `WWW-Authenticate` on 401, `Location` on 201, `Idempotent-Replayed` on the answers of idempotent POSTs;
 * - a request body whose members are all optional as not required (none is read as `{}`);
 * - `Idempotency-Key` required on every POST (the handler answers its absence with the documented
 *   `idempotency_key_missing` problem, so the schema itself keeps it optional);
 * - `limit` as the integer it is; payment ids in the path and `starting_after` with their pattern
 *   (a refund id on a payment's refunds; the handlers take any string, so that another id answers
 *   `payment_not_found` or `invalid_cursor`);
 * - `title` and `status` of every problem as required integers and strings (always sent);
 * - the webhooks (OpenAPI 3.1 `webhooks`): one per event type, the body a merchant's receiver gets
 *   (`{id, type, timestamp, data}`, `data` from the domain's event schema, as `webhookBody`
 *   writes it) and the Standard Webhooks headers, so that a generated client types them too
 *   (docs/webhooks.md, docs/events.md).
 */

type Json = { [key: string]: unknown }

const isJson = (value: unknown): value is Json => typeof value === "object" && value !== null && !Array.isArray(value)

export const REQUEST_ID_HEADER = "Request-Id"

const stringHeader = (description: string, required: boolean, schema: Json = { type: "string" }): Json => ({
  description,
  required,
  schema
})

const requestIdSchema: Json = { type: "string", minLength: 1, maxLength: 200, pattern: "^[\\x21-\\x7e]+$" }
const requestIdHeader = stringHeader(
  "This request's id: the client's `X-Request-Id` when it sent a usable one (1-200 visible ASCII characters), else a new UUID. Quote it to support.",
  true,
  requestIdSchema
)
/** The same id under the name tracing tools, proxies and the request header use (docs/observability.md). */
export const CORRELATION_ID_HEADER = "X-Request-Id"

const correlationIdHeader = stringHeader(
  "The same id as `Request-Id`, under the name of the request header that can set it.",
  true,
  requestIdSchema
)
const retryAfterHeader = stringHeader("Seconds to wait before retrying (same Idempotency-Key).", true, {
  type: "string",
  pattern: "^[0-9]{1,6}$"
})
/** A POST's 409 is several codes; only `idempotency_key_in_use` asks for a retry of the same request. */
const keyInUseRetryAfterHeader = stringHeader(
  "On `idempotency_key_in_use` only: seconds to wait before retrying with the same Idempotency-Key.",
  false,
  { type: "string", pattern: "^[0-9]{1,6}$" }
)
const allowHeader = stringHeader("The methods this path takes, e.g. `GET, POST, HEAD`.", true, {
  type: "string",
  pattern: "^[A-Z]+(, [A-Z]+)*$"
})
const wwwAuthenticateHeader = stringHeader("The scheme to authenticate with: `Bearer realm=\"payments-api\"`.", true, {
  type: "string",
  enum: ["Bearer realm=\"payments-api\""]
})
const replayedHeader = stringHeader("`true` when this answer is the stored answer of an earlier request with the same key.", false, {
  type: "string",
  enum: ["true"]
})

const locationHeader = stringHeader("The created resource: this request's path and the new `id` (e.g. `/v1/payments/pay_…`).", true, {
  type: "string",
  pattern: "^/v1/[a-z_/0-9]+$"
})

/**
 * On every answer (OWASP's REST security headers): no cache or proxy keeps one (a webhook secret,
 * a merchant's payments), a browser never sniffs a JSON answer into something it runs, and no
 * page frames ours (the /docs page included; `frame-ancestors` alone leaves its inline script be).
 * The server sets them (Edge.ts) and the document declares them, from this one list.
 */
const securityHeaderList = [
  ["Cache-Control", "no-store"],
  ["X-Content-Type-Options", "nosniff"],
  ["X-Frame-Options", "DENY"],
  ["Content-Security-Policy", "frame-ancestors 'none'"]
] as const

export const securityHeaders: Readonly<Record<string, string>> = Object.fromEntries(
  securityHeaderList.map(([name, value]) => [name.toLowerCase(), value])
)

const declaredSecurityHeaders: Json = Object.fromEntries(securityHeaderList.map(([name, value]) => [
  name,
  stringHeader("Set on every answer (docs/security.md).", true, { type: "string", enum: [value] })
]))

const withHeaders = (status: string, response: Json, isPost: boolean): Json => {
  const headers: Json = {
    ...(isJson(response["headers"]) ? response["headers"] : {}),
    [REQUEST_ID_HEADER]: requestIdHeader,
    [CORRELATION_ID_HEADER]: correlationIdHeader,
    ...declaredSecurityHeaders
  }
  if (status === "429" || status === "503") headers["Retry-After"] = retryAfterHeader
  if (status === "409" && isPost) headers["Retry-After"] = keyInUseRetryAfterHeader
  if (status === "405") headers["Allow"] = allowHeader
  if (status === "401") headers["WWW-Authenticate"] = wwwAuthenticateHeader
  if (status === "201") headers["Location"] = locationHeader
  if (isPost) headers["Idempotent-Replayed"] = replayedHeader
  return { ...response, headers }
}

/**
 * The header as the server parses it (`@pay/idempotency` IdempotencyKey.ts), optional whitespace
 * around it: a token of 1-255 printable ASCII characters that does not start with `"`, or an RFC 8941
 * string of 1-255 characters inside quotes (escapes `\"` and `\\` count one each).
 */
const idempotencyKeySchema: Json = {
  type: "string",
  pattern: '^[ \\t]*(?:[\\x21\\x23-\\x7e](?:[\\x20-\\x7e]{0,253}[\\x21-\\x7e])?|"(?:[\\x20\\x21\\x23-\\x5b\\x5d-\\x7e]|\\\\["\\\\]){1,255}")[ \\t]*$',
  description: "Required on every POST: 1-255 printable ASCII characters; a token or a quoted string. A retry with the same key and request replays the first answer."
}

const limitSchemaWith = (limit_default: number): Json => ({
  type: "integer",
  minimum: PAGE_LIMIT_MIN,
  maximum: PAGE_LIMIT_MAX,
  default: limit_default,
  description: `Page size, ${PAGE_LIMIT_MIN}-${PAGE_LIMIT_MAX} (decimal digits only), default ${limit_default}`
})
const limitSchema = limitSchemaWith(PAGE_LIMIT_DEFAULT)

/**
 * A payment's refunds: `starting_after` is a refund id, and a page without `limit` is 100 long
 * (the one page the list answered before it had paging; server RefundHttp.ts).
 */
const fixRefundParameter = (path: string, parameter: Json): Json | undefined => {
  if (parameter["in"] === "path" && parameter["name"] === "refund_id") {
    const described = isJson(parameter["schema"]) ? parameter["schema"] : {}
    return { ...parameter, schema: { ...described, type: "string", pattern: refundIdPattern.source } }
  }
  if (!path.endsWith("/refunds") || parameter["in"] !== "query") return undefined
  if (parameter["name"] === "limit") return { ...parameter, schema: limitSchemaWith(PAGE_LIMIT_MAX) }
  if (parameter["name"] !== "starting_after") return undefined
  const described = isJson(parameter["schema"]) ? parameter["schema"] : {}
  return { ...parameter, schema: { ...described, type: "string", pattern: refundIdPattern.source } }
}

const webhookEndpointIdPattern = "^we_[0-9a-hjkmnp-tv-z]{24}$"
/** A uuid in either case, as the server reads it (`@pay/domain` uuidPattern; RFC 9562 §4: case-insensitive on input). */
const uuidPattern = "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"

/** Ids of the webhook paths: an endpoint is `we_…`, a delivery (and a deliveries page cursor) a uuid. */
const fixWebhookParameter = (path: string, parameter: Json): Json | undefined => {
  if (!path.startsWith("/v1/webhook_endpoints")) return undefined
  const described = isJson(parameter["schema"]) ? parameter["schema"] : {}
  const withPattern = (pattern: string) => ({ ...parameter, schema: { ...described, type: "string", pattern } })
  if (parameter["in"] === "path" && parameter["name"] === "id") return withPattern(webhookEndpointIdPattern)
  if (parameter["in"] === "path" && parameter["name"] === "delivery_id") return withPattern(uuidPattern)
  if (parameter["in"] === "query" && parameter["name"] === "starting_after") {
    return withPattern(path.endsWith("/deliveries") ? uuidPattern : webhookEndpointIdPattern)
  }
  if (parameter["in"] === "query" && parameter["name"] === "event_id") return withPattern(uuidPattern)
  if (parameter["in"] === "query" && parameter["name"] === "status") {
    return { ...parameter, schema: { ...described, type: "string", enum: ["pending", "delivered", "failed"] } }
  }
  return undefined
}

const fixParameter = (path: string) => (parameter: Json): Json => {
  const fixed = fixWebhookParameter(path, parameter) ?? fixRefundParameter(path, parameter)
  if (fixed !== undefined) return fixed
  if (parameter["in"] === "header" && parameter["name"] === "idempotency-key") {
    return { ...parameter, name: "Idempotency-Key", required: true, schema: idempotencyKeySchema }
  }
  if (parameter["in"] === "query" && parameter["name"] === "limit") return { ...parameter, schema: limitSchema }
  if ((parameter["in"] === "path" && parameter["name"] === "id") || (parameter["in"] === "query" && parameter["name"] === "starting_after")) {
    const described = isJson(parameter["schema"]) ? parameter["schema"] : {}
    return { ...parameter, schema: { ...described, type: "string", pattern: paymentIdPattern.source } }
  }
  return parameter
}

/**
 * A body whose members are all optional may be left out (the handlers read none as `{}`): its
 * `requestBody` is not required, or a generated client would always send one.
 */
const fixRequestBody = (operation: Json, schemas: Json): Json | undefined => {
  const body = operation["requestBody"]
  if (!isJson(body)) return undefined
  const content = isJson(body["content"]) ? body["content"] : {}
  const json = isJson(content["application/json"]) ? content["application/json"] : {}
  const described = isJson(json["schema"]) ? json["schema"] : {}
  const reference = typeof described["$ref"] === "string" ? described["$ref"].replace("#/components/schemas/", "") : undefined
  const schema = reference === undefined ? described : isJson(schemas[reference]) ? schemas[reference] : {}
  const required = Array.isArray(schema["required"]) ? schema["required"] : []
  return schema["type"] === "object" && required.length === 0 ? { ...body, required: false } : undefined
}

const fixOperation = (path: string, method: string, operation: Json, schemas: Json): Json => {
  const isPost = method === "post"
  const requestBody = fixRequestBody(operation, schemas)
  const responses = isJson(operation["responses"]) ? operation["responses"] : {}
  const parameters = Array.isArray(operation["parameters"]) ? operation["parameters"].filter(isJson).map(fixParameter(path)) : undefined
  return {
    ...operation,
    ...(parameters === undefined ? {} : { parameters }),
    ...(requestBody === undefined ? {} : { requestBody }),
    responses: Object.fromEntries(
      Object.entries(responses).map(([status, response]) => [status, isJson(response) ? withHeaders(status, response, isPost) : response])
    )
  }
}

/** Problem schemas: `title` and `status` are always sent; `status` is an integer. */
const fixProblemSchema = (schema: Json): Json => {
  const properties = isJson(schema["properties"]) ? schema["properties"] : {}
  const required = Array.isArray(schema["required"]) ? schema["required"] : []
  if (!("code" in properties) || !("title" in properties) || !isJson(properties["status"])) return schema
  return {
    ...schema,
    properties: { ...properties, status: { ...properties["status"], type: "integer" } },
    required: [...new Set([...required, "type", "title", "status", "detail", "code"])]
  }
}

const webhookHeader = (name: string, description: string, schema: Json): Json => ({ name, in: "header", required: true, description, schema })

/** Each event type's `data`: the member of the domain's event schema (its JSON form), by its `type`. */
const eventDataSchemas = (): ReadonlyMap<string, Json> => {
  const root: unknown = Schema.toJsonSchemaDocument(DomainEvent).schema
  const members = isJson(root) && Array.isArray(root["anyOf"]) ? root["anyOf"] : isJson(root) && Array.isArray(root["oneOf"]) ? root["oneOf"] : []
  const byType = new Map<string, Json>()
  for (const member of members) {
    if (!isJson(member) || !isJson(member["properties"])) continue
    const type = member["properties"]["type"]
    const name = isJson(type) && Array.isArray(type["enum"]) ? type["enum"][0] : undefined
    if (typeof name === "string") byType.set(name, member)
  }
  return byType
}

/** What a receiver answers: the sender reads the status only (docs/webhooks.md, "Delivery, retries, disabling"). */
const webhookResponses: Json = {
  "200": { description: "Any 2xx: delivered (the body is not read beyond 16 KiB)." },
  "410": { description: "Gone: the delivery fails and the endpoint is disabled (disabled_reason gone)." },
  "429": { description: "Slow down: retried after max(the schedule, Retry-After), Retry-After capped at 1 h (also 502, 503, 504)." },
  default: { description: "Anything else, no answer within 15 s, or a redirect (never followed): retried on the schedule." }
}

const webhookOperation = (type: DomainEventType, data: Json): Json => ({
  post: {
    operationId: `webhook_${type}`,
    tags: ["Webhook endpoints"],
    summary: `The ${type} event, sent to the merchant's endpoints that subscribe to it (or to *)`,
    description: "Signed per Standard Webhooks: verify `webhook-signature` over `{webhook-id}.{webhook-timestamp}.{raw body}` " +
      "with the endpoint's secret before parsing, and deduplicate on `webhook-id` (delivered at least once; a payment's events in order per endpoint).",
    parameters: [
      webhookHeader("webhook-id", "The event's id, the body's `id`: the same on every retry and redelivery.", { type: "string", format: "uuid" }),
      webhookHeader("webhook-timestamp", "Unix seconds of this attempt (a retry has a newer one): refuse one more than 5 minutes away.", { type: "string", pattern: "^[0-9]{1,12}$" }),
      webhookHeader("webhook-signature", "`v1,` + base64 HMAC-SHA256; during a secret's rotation two, separated by a space: accept when one verifies.", {
        type: "string",
        pattern: "^v1,[A-Za-z0-9+/]+=*( v1,[A-Za-z0-9+/]+=*)*$"
      })
    ],
    requestBody: {
      required: true,
      content: {
        "application/json": {
          schema: {
            type: "object",
            properties: {
              id: { type: "string", format: "uuid", description: "The event's id (also `webhook-id`)." },
              type: { type: "string", enum: [type] },
              timestamp: { type: "string", description: "When it happened: `data.occurred_at`." },
              data
            },
            required: ["id", "type", "timestamp", "data"],
            additionalProperties: false
          }
        }
      }
    },
    responses: webhookResponses
  }
})

/** The `webhooks` section: every event type the platform sends, with its body. */
const webhooks = (): Json => {
  const schemas = eventDataSchemas()
  return Object.fromEntries(domainEventTypes.map((type) => {
    const data = schemas.get(type)
    // An event type without a member in the domain's event schema is a bug of the domain, said at
    // start-up (the document is built then), not a document that says nothing about its body.
    if (data === undefined) throw new Error(`OpenAPI webhooks: no schema for the event type ${type} in DomainEvent`)
    return [type, webhookOperation(type, data)]
  }))
}

export const contractTransform = (spec: Record<string, unknown>): Record<string, unknown> => {
  const paths = isJson(spec["paths"]) ? spec["paths"] : {}
  const components = isJson(spec["components"]) ? spec["components"] : {}
  const schemas = isJson(components["schemas"]) ? components["schemas"] : {}
  const info = isJson(spec["info"]) ? spec["info"] : {}
  return {
    ...spec,
    info: { ...info, contact: { name: "Payments platform team", url: "https://docs.payments.local/" } },
    paths: Object.fromEntries(
      Object.entries(paths).map(([path, item]) => [
        path,
        isJson(item)
          ? Object.fromEntries(Object.entries(item).map(([method, operation]) => [method, isJson(operation) ? fixOperation(path, method, operation, schemas) : operation]))
          : item
      ])
    ),
    webhooks: webhooks(),
    components: {
      ...components,
      schemas: Object.fromEntries(Object.entries(schemas).map(([name, schema]) => [name, isJson(schema) ? fixProblemSchema(schema) : schema]))
    }
  }
}
