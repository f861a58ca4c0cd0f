import { cardNumberFound, displayableTextProblem, InvalidCursor, looksLikeCardNumber, type MerchantId } from "@pay/domain"
import { decodeRow, decodeRows } from "@pay/infra"
import { Context, Effect, Layer, Schema } from "effect"
import { SqlClient } from "effect/sql"
import type { SqlError } from "effect/sql/SqlError"
import type * as Statement from "effect/sql/Statement"
import { randomUUID } from "node:crypto"
import { wakeSenders } from "./DeliveryQueue.ts"
import { WebhookEndpointLimitReached, WebhookEndpointNotFound, WebhookEndpointRefused } from "./Errors.ts"
import {
  AllowLoopbackHttpConfig,
  DESCRIPTION_LENGTH_MAX,
  ENDPOINTS_PER_MERCHANT_MAX,
  EVENT_TYPES_MAX,
  generateWebhookEndpointId,
  SECRET_OVERLAP_MS_MAX,
  URL_LENGTH_MAX,
  WebhookEndpointId,
  webhookEndpointIdPattern,
  webhookEventTypes,
  type WebhookEventType
} from "./Model.ts"
import { type SecretBox, WebhookSecretBox, WebhookSecretBoxLive } from "./SecretSealing.ts"
import { generateSecret } from "./Signing.ts"
import { checkTargetUrl, registeredUrlProblem } from "./TargetUrl.ts"

/** An endpoint as stored (never its secret). */
export const EndpointRow = Schema.Struct({
  id: WebhookEndpointId,
  merchant_id: Schema.String,
  url: Schema.String,
  description: Schema.NullOr(Schema.String),
  event_types: Schema.Array(Schema.Literals(webhookEventTypes)),
  status: Schema.Literals(["enabled", "disabled"]),
  disabled_reason: Schema.NullOr(Schema.Literals(["merchant", "gone", "failing"])),
  disabled_at: Schema.NullOr(Schema.Date),
  failing_since: Schema.NullOr(Schema.Date),
  created_at: Schema.Date,
  updated_at: Schema.Date
})
export type WebhookEndpoint = typeof EndpointRow.Type

const endpointColumns = "id, merchant_id, url, description, event_types, status, disabled_reason, disabled_at, failing_since, created_at, updated_at"
const endpointRows = decodeRows(EndpointRow)
const countRow = decodeRow(Schema.Struct({ count: Schema.Int }))

export interface EndpointFields {
  readonly url: string
  readonly event_types: ReadonlyArray<string>
  readonly description?: string | null | undefined
}

/** The endpoint and its secret: the only time the secret is shown (creation and rotation). */
export interface EndpointWithSecret {
  readonly endpoint: WebhookEndpoint
  readonly secret: string
}

export interface EndpointPage {
  readonly data: ReadonlyArray<WebhookEndpoint>
  readonly hasMore: boolean
}

type Refusal = WebhookEndpointRefused
type Missing = WebhookEndpointNotFound

/**
 * Webhook endpoints of a merchant: register, list, read, update, disable / enable, delete (soft:
 * deliveries keep their history), rotate the signing secret. Every query is scoped by the merchant.
 * The checks here (URL rule, event types, sizes, the per-merchant limit) are repeated by the
 * table's constraints (migrations/0030_webhooks.sql), except the URL's mode-dependent rule.
 */
export class WebhookEndpoints extends Context.Service<WebhookEndpoints, {
  /**
   * The fields' checks alone (URL rule in this deployment's mode, event types, text), with no
   * database: what the API asks before it takes the request's idempotency key, so that a refused
   * field is a 400 that stores nothing (create and update check again).
   */
  readonly check: (fields: Partial<EndpointFields>) => Effect.Effect<void, Refusal>
  /** An endpoint beyond the merchant's `ENDPOINTS_PER_MERCHANT_MAX` (deleted ones do not count) is WebhookEndpointLimitReached. */
  readonly create: (merchantId: MerchantId, fields: EndpointFields) => Effect.Effect<EndpointWithSecret, Refusal | WebhookEndpointLimitReached | SqlError>
  /** A `startingAfter` that is not one of the merchant's endpoints is InvalidCursor. */
  readonly list: (merchantId: MerchantId, page: { readonly limit: number; readonly startingAfter?: string | undefined }) => Effect.Effect<EndpointPage, InvalidCursor | SqlError>
  readonly get: (merchantId: MerchantId, id: string) => Effect.Effect<WebhookEndpoint, Missing | SqlError>
  readonly update: (merchantId: MerchantId, id: string, fields: Partial<EndpointFields>) => Effect.Effect<WebhookEndpoint, Missing | Refusal | SqlError>
  readonly disable: (merchantId: MerchantId, id: string) => Effect.Effect<WebhookEndpoint, Missing | SqlError>
  readonly enable: (merchantId: MerchantId, id: string) => Effect.Effect<WebhookEndpoint, Missing | SqlError>
  readonly remove: (merchantId: MerchantId, id: string) => Effect.Effect<WebhookEndpoint, Missing | SqlError>
  /** A new current secret; the old one keeps signing for `overlap_ms` (both signatures are sent). */
  readonly rotateSecret: (merchantId: MerchantId, id: string, overlap_ms: number) => Effect.Effect<EndpointWithSecret, Missing | Refusal | SqlError>
  /**
   * The box the secrets are stored with (SecretSealing.ts): the answer of a create or rotate,
   * which carries the secret and is kept for replays, stores it sealed the same way.
   */
  readonly secretBox: SecretBox
}>()("webhooks/WebhookEndpoints") {
  /** `allowLoopbackHttp`: local and test mode only (see TargetUrl.ts). Needs `SqlClient`. */
  static readonly layerWith = (options: { readonly allowLoopbackHttp: boolean }) =>
    Layer.effect(WebhookEndpoints, makeEndpoints(options.allowLoopbackHttp))

  /** Configured from `WEBHOOK_ALLOW_LOOPBACK_HTTP` and `WEBHOOK_SECRETS_KEY` (SecretSealing.ts). Needs `SqlClient`. */
  static readonly layer = Layer.unwrap(Effect.map(AllowLoopbackHttpConfig, (allowLoopbackHttp) => WebhookEndpoints.layerWith({ allowLoopbackHttp }))).pipe(
    Layer.provide(WebhookSecretBoxLive)
  )
}

/**
 * The code's checks of the fields (the table repeats them). Succeeds with the URL to store when one
 * was sent: the parser's own form (`href`: scheme and host in lower case, a host name's IDN in
 * punycode, characters outside URLs percent-encoded), which is exactly what the sender calls.
 * Stored as sent, `HTTPS://…` failed the table's `^https?://` (a 500) and a URL with a line break
 * or U+202E showed what it would not call (outside attack review).
 */
export const checkFields = (fields: Partial<EndpointFields>, allowLoopbackHttp: boolean): Effect.Effect<string | undefined, Refusal> => {
  let url: string | undefined
  if (fields.url !== undefined) {
    // A NUL, a lone surrogate, a control or a bidirectional override is refused before the URL
    // parser sees it (it may keep or drop them).
    const unstorable = displayableTextProblem("url", { min: 1, max: URL_LENGTH_MAX }, fields.url) ?? registeredUrlProblem(fields.url)
    if (unstorable !== undefined) return Effect.fail(new WebhookEndpointRefused({ field: "url", reason: unstorable.replace(/^url /u, "") }))
    const verdict = checkTargetUrl(fields.url, allowLoopbackHttp)
    if (verdict._tag === "Refused") return Effect.fail(new WebhookEndpointRefused({ field: "url", reason: verdict.reason }))
    url = verdict.url.href
    // The parsed form percent-encodes what URLs do not hold (up to 12 characters for one): the
    // stored length is checked too, or the table's CHECK would answer 500 (outside review of the diff).
    if (url.length > URL_LENGTH_MAX) {
      return Effect.fail(new WebhookEndpointRefused({ field: "url", reason: `must be at most ${URL_LENGTH_MAX} characters once percent-encoded (${url.length})` }))
    }
  }
  if (fields.event_types !== undefined) {
    const types = fields.event_types
    if (types.length === 0 || types.length > EVENT_TYPES_MAX) {
      return Effect.fail(new WebhookEndpointRefused({ field: "event_types", reason: `between 1 and ${EVENT_TYPES_MAX} event types` }))
    }
    // Widened by annotation (no assertion): `includes` on the literal tuple takes only its members.
    const known: ReadonlyArray<string> = webhookEventTypes
    const unknown = types.find((type) => !known.includes(type))
    if (unknown !== undefined) {
      return Effect.fail(new WebhookEndpointRefused({ field: "event_types", reason: `unknown event type ${JSON.stringify(unknown)}; one of ${webhookEventTypes.join(", ")}` }))
    }
  }
  if (fields.description !== undefined && fields.description !== null) {
    // Characters are code points, as the table's length() counts them (500 emoji fit); no hidden
    // character (migration 0083), as a payment's description.
    const problem = displayableTextProblem("description", { min: 0, max: DESCRIPTION_LENGTH_MAX }, fields.description)
    if (problem !== undefined) return Effect.fail(new WebhookEndpointRefused({ field: "description", reason: problem.replace(/^description /u, "") }))
    // As a payment's description: no card data, and the text is never echoed (migration 0081).
    if (looksLikeCardNumber(fields.description)) {
      return Effect.fail(new WebhookEndpointRefused({ field: "description", reason: `${cardNumberFound("the description")}; card data must not be sent` }))
    }
  }
  return Effect.succeed(url)
}

/** Stored canonical: each type once, in the catalog's order, and `*` alone (it already names every other). */
const uniqueTypes = (types: ReadonlyArray<string>): ReadonlyArray<WebhookEventType> =>
  types.includes("*") ? ["*"] : webhookEventTypes.filter((type) => types.includes(type))

const helpers = (sql: SqlClient.SqlClient, box: SecretBox) => {
  /** An id not of an endpoint id's shape names none: not found before the statement runs (a NUL would be a 500 from the database). */
  const one = (merchantId: MerchantId, id: string) => (statement: Effect.Effect<ReadonlyArray<unknown>, SqlError>) =>
    (webhookEndpointIdPattern.test(id) ? endpointRows(statement) : Effect.succeed([])).pipe(
      Effect.flatMap(([row]) => (row === undefined ? Effect.fail(new WebhookEndpointNotFound({ endpointId: id })) : Effect.succeed(row))),
      Effect.annotateLogs({ merchant_id: merchantId, webhook_endpoint_id: id })
    )
  const insertSecret = (endpointId: string) =>
    Effect.gen(function* () {
      const secret = yield* generateSecret
      // Stored sealed when WEBHOOK_SECRETS_KEY is set (SecretSealing.ts); shown to the merchant as it is, once.
      const stored = box.seal(secret, endpointId)
      yield* sql`INSERT INTO webhook_endpoint_secrets (id, endpoint_id, secret) VALUES (${randomUUID()}, ${endpointId}, ${stored})`
      return secret
    })
  return { one, insertSecret }
}

/** The writes that make a secret: creation and rotation. */
const makeSecretWrites = (sql: SqlClient.SqlClient, box: SecretBox, allowLoopbackHttp: boolean) => {
  const { one, insertSecret } = helpers(sql, box)
  const create = Effect.fn("WebhookEndpoints.create")(function* (merchantId: MerchantId, fields: EndpointFields) {
    const url = (yield* checkFields(fields, allowLoopbackHttp)) ?? fields.url
    return yield* sql.withTransaction(Effect.gen(function* () {
      // Serializes this merchant's creations, so the limit below holds under concurrency. A
      // transaction-scoped advisory lock on the merchant's key, not `SELECT … FROM merchants FOR
      // UPDATE`: a row lock needs the UPDATE privilege, which the application role (pay_app) does
      // not have on merchants (append-only, migrations/0012); the chaos run found every creation
      // refused with 42501 (503 database_unavailable) under that role.
      yield* sql`SELECT pg_advisory_xact_lock(hashtextextended(${`webhook_endpoints:${merchantId}`}, 0))`
      const { count } = yield* countRow(sql`SELECT count(*)::int AS count FROM webhook_endpoints WHERE merchant_id = ${merchantId} AND deleted_at IS NULL`)
      if (count >= ENDPOINTS_PER_MERCHANT_MAX) {
        return yield* new WebhookEndpointLimitReached({ endpointCount_max: ENDPOINTS_PER_MERCHANT_MAX })
      }
      const id = yield* generateWebhookEndpointId
      const [endpoint] = yield* endpointRows(sql`
        INSERT INTO webhook_endpoints (id, merchant_id, url, description, event_types)
        VALUES (${id}, ${merchantId}, ${url}, ${fields.description ?? null}, ${uniqueTypes(fields.event_types)}::text[])
        RETURNING ${sql.literal(endpointColumns)}`)
      if (endpoint === undefined) return yield* Effect.die(new Error("INSERT … RETURNING returned no row"))
      const secret = yield* insertSecret(id)
      return { endpoint, secret }
    }))
  })

  const rotateSecret = Effect.fn("WebhookEndpoints.rotateSecret")(function* (merchantId: MerchantId, id: string, overlap_ms: number) {
    if (!Number.isInteger(overlap_ms) || overlap_ms < 0 || overlap_ms > SECRET_OVERLAP_MS_MAX) {
      return yield* new WebhookEndpointRefused({ field: "expires_in_ms", reason: `an integer between 0 and ${SECRET_OVERLAP_MS_MAX}` })
    }
    return yield* sql.withTransaction(Effect.gen(function* () {
      // The endpoint's row locked (one rotation at a time) and marked changed: a rotation is a
      // change of the endpoint, which its `updated_at` shows.
      const endpoint = yield* one(merchantId, id)(sql`
        UPDATE webhook_endpoints SET updated_at = clock_timestamp()
        WHERE id = ${id} AND merchant_id = ${merchantId} AND deleted_at IS NULL
        RETURNING ${sql.literal(endpointColumns)}`)
      // At most two secrets sign (the header carries at most two signatures): the new one, and
      // the one it replaces for `overlap_ms` (0: not at all). One still signing from an earlier
      // rotation stops now, so repeated rotations cannot pile up secrets (400 rotations once made a
      // 19 KB signature header), and `expires_in_ms: 0` really retires everything older.
      yield* sql`
        UPDATE webhook_endpoint_secrets
        SET expires_at = CASE WHEN expires_at IS NULL
                              THEN clock_timestamp() + ${overlap_ms}::double precision * interval '1 millisecond'
                              ELSE clock_timestamp() END
        WHERE endpoint_id = ${id} AND (expires_at IS NULL OR expires_at > clock_timestamp())`
      const secret = yield* insertSecret(id)
      return { endpoint, secret }
    }))
  })
  return { create, rotateSecret }
}

const makeEndpoints = (allowLoopbackHttp: boolean) =>
  Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    const box = yield* WebhookSecretBox
    const { one } = helpers(sql, box)
    const { create, rotateSecret } = makeSecretWrites(sql, box, allowLoopbackHttp)
    const list = Effect.fn("WebhookEndpoints.list")(function* (merchantId: MerchantId, page: { readonly limit: number; readonly startingAfter?: string | undefined }) {
      // The cursor must be one of the merchant's endpoints (a deleted one too: its page goes on after
      // it); anything else is a 400, as on the payments' list, never a silently empty page.
      const { startingAfter } = page
      if (startingAfter !== undefined) {
        const cursor = webhookEndpointIdPattern.test(startingAfter)
          ? yield* sql`SELECT 1 AS found FROM webhook_endpoints WHERE id = ${startingAfter} AND merchant_id = ${merchantId}`
          : []
        if (cursor.length === 0) return yield* new InvalidCursor({ startingAfter: startingAfter.slice(0, 100), of: "webhook endpoints" })
      }
      const after = startingAfter === undefined ? sql`` : sql`AND (created_at, id) > (SELECT created_at, id FROM webhook_endpoints WHERE id = ${startingAfter} AND merchant_id = ${merchantId})`
      const rows = yield* endpointRows(sql`
        SELECT ${sql.literal(endpointColumns)} FROM webhook_endpoints
        WHERE merchant_id = ${merchantId} AND deleted_at IS NULL ${after}
        ORDER BY created_at, id LIMIT ${page.limit + 1}`)
      return { data: rows.slice(0, page.limit), hasMore: rows.length > page.limit }
    })

    const get = (merchantId: MerchantId, id: string) =>
      one(merchantId, id)(sql`
        SELECT ${sql.literal(endpointColumns)} FROM webhook_endpoints
        WHERE id = ${id} AND merchant_id = ${merchantId} AND deleted_at IS NULL`)

    const set = (merchantId: MerchantId, id: string, assignments: Statement.Fragment) =>
      one(merchantId, id)(sql`
        UPDATE webhook_endpoints SET ${assignments}, updated_at = clock_timestamp()
        WHERE id = ${id} AND merchant_id = ${merchantId} AND deleted_at IS NULL
        RETURNING ${sql.literal(endpointColumns)}`)

    /**
     * A new URL is a new receiver: its failure streak starts afresh (`failing_since` NULL), or an
     * endpoint fixed after days of failures would be disabled by its new URL's first failure.
     * `description` is written only when sent: the column's triggers (0081, 0083) check what is
     * written, and a description stored before their rules, written back unchanged, made every
     * change of the URL or the event types a 500 (outside review of 0083).
     */
    const update = Effect.fn("WebhookEndpoints.update")(function* (merchantId: MerchantId, id: string, fields: Partial<EndpointFields>) {
      const sentUrl = yield* checkFields(fields, allowLoopbackHttp)
      const current = yield* get(merchantId, id)
      const url = sentUrl ?? current.url
      return yield* set(merchantId, id, sql`
        failing_since = CASE WHEN url = ${url} THEN failing_since END,
        url = ${url},
        event_types = ${fields.event_types === undefined ? current.event_types : uniqueTypes(fields.event_types)}::text[]
        ${fields.description === undefined ? sql.literal("") : sql`, description = ${fields.description}`}`)
    })

    const disable = (merchantId: MerchantId, id: string) =>
      set(merchantId, id, sql`status = 'disabled', disabled_reason = 'merchant', disabled_at = COALESCE(disabled_at, clock_timestamp())`).pipe(
        Effect.withSpan("WebhookEndpoints.disable")
      )

    /**
     * Enabling forgets the failure streak (the next failure starts a new one), and its waiting
     * deliveries become sendable: the senders are woken at commit, not left for their next poll.
     */
    const enable = (merchantId: MerchantId, id: string) =>
      sql.withTransaction(set(merchantId, id, sql`status = 'enabled', disabled_reason = NULL, disabled_at = NULL, failing_since = NULL`).pipe(
        Effect.tap(() => wakeSenders(sql))
      )).pipe(Effect.withSpan("WebhookEndpoints.enable"))

    /** Deleted endpoints keep their deliveries' history, not their secrets. */
    const remove = (merchantId: MerchantId, id: string) =>
      sql.withTransaction(set(merchantId, id, sql`deleted_at = clock_timestamp()`).pipe(
        Effect.tap(() => sql`DELETE FROM webhook_endpoint_secrets WHERE endpoint_id = ${id}`)
      )).pipe(Effect.withSpan("WebhookEndpoints.remove"))

    const check = (fields: Partial<EndpointFields>) => checkFields(fields, allowLoopbackHttp)
    return WebhookEndpoints.of({ check, create, list, get, update, disable, enable, remove, rotateSecret, secretBox: box })
  })
