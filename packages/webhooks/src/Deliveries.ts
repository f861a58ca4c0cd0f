import { InvalidCursor, type MerchantId, uuidPattern } from "@pay/domain"
import { decodeRow, decodeRows } from "@pay/infra"
import { Context, Effect, Layer, Schema } from "effect"
import { SqlClient } from "effect/sql"
import type { SqlError } from "effect/sql/SqlError"
import { wakeSenders } from "./DeliveryQueue.ts"
import { WebhookDeliveryNotFound, WebhookEndpointNotFound } from "./Errors.ts"
import { webhookEndpointIdPattern } from "./Model.ts"

export const DeliveryRow = Schema.Struct({
  id: Schema.String,
  endpoint_id: Schema.String,
  event_id: Schema.String,
  event_type: Schema.String,
  payment_id: Schema.String,
  /** The refund a `refund_*` event is about (a payment may have several); null for a payment's events. */
  refund_id: Schema.NullOr(Schema.String),
  payment_version: Schema.Int,
  status: Schema.Literals(["pending", "delivered", "failed"]),
  failed_reason: Schema.NullOr(Schema.Literals(["exhausted", "gone"])),
  attempt_count: Schema.Int,
  next_attempt_at: Schema.Date,
  last_response_status: Schema.NullOr(Schema.Int),
  last_error: Schema.NullOr(Schema.String),
  created_at: Schema.Date,
  finished_at: Schema.NullOr(Schema.Date)
})
export type WebhookDelivery = typeof DeliveryRow.Type

export const AttemptRow = Schema.Struct({
  attempt_number: Schema.Int,
  started_at: Schema.Date,
  outcome: Schema.NullOr(Schema.Literals(["delivered", "retry", "failed", "gone"])),
  response_status: Schema.NullOr(Schema.Int),
  latency_ms: Schema.NullOr(Schema.Int),
  response_body_excerpt: Schema.NullOr(Schema.String),
  error: Schema.NullOr(Schema.String),
  finished_at: Schema.NullOr(Schema.Date)
})
export type WebhookAttempt = typeof AttemptRow.Type

const deliveryColumns = `d.id::text AS id, d.endpoint_id, d.event_id::text AS event_id, d.event_type, d.payment_id, d.refund_id, d.payment_version, d.status,
  d.failed_reason, d.attempt_count, d.next_attempt_at, d.last_response_status, d.last_error, d.created_at, d.finished_at`
const deliveryRows = decodeRows(DeliveryRow)
const attemptRows = decodeRows(AttemptRow)
const failedRows = decodeRows(Schema.Struct({ ...DeliveryRow.fields, merchant_id: Schema.String }))
const countRow = decodeRow(Schema.Struct({ count: Schema.Int }))
const idRows = decodeRows(Schema.Struct({ id: Schema.String }))

/** The endpoint exists, is the merchant's and is not deleted (else not found: no oracle). */
const ownEndpointOf = (sql: SqlClient.SqlClient) => (merchantId: MerchantId, endpointId: string) =>
  (webhookEndpointIdPattern.test(endpointId) ? idRows(sql`SELECT id FROM webhook_endpoints WHERE id = ${endpointId} AND merchant_id = ${merchantId} AND deleted_at IS NULL`) : Effect.succeed([])).pipe(
    Effect.flatMap((rows) => (rows.length === 0 ? Effect.fail(new WebhookEndpointNotFound({ endpointId: endpointId.slice(0, 100) })) : Effect.void))
  )

const oneDelivery = (deliveryId: string) => (rows: ReadonlyArray<WebhookDelivery>) => {
  const [row] = rows
  return row === undefined ? Effect.fail(new WebhookDeliveryNotFound({ deliveryId })) : Effect.succeed(row)
}

/** Operators: the most recently given-up deliveries, every merchant's. */
const failedDeliveries = (sql: SqlClient.SqlClient) => (limit: number) =>
  failedRows(sql`
    SELECT ${sql.literal(deliveryColumns)}, d.merchant_id FROM webhook_deliveries d
    WHERE d.status = 'failed' ORDER BY d.finished_at DESC LIMIT ${Math.min(Math.max(limit, 1), RECOVER_LIMIT_MAX)}`).pipe(
    Effect.withSpan("WebhookDeliveries.failed")
  )

/**
 * A manual redelivery: due now, at the start of a new round of the retry schedule, whatever its
 * state. A delivered or failed one goes back to pending; a pending one waiting for its next retry
 * is brought forward. attempt_count and the attempts stay (webhook_deliveries_guard refuses
 * fewer). What the claim keeps still holds: it waits while an earlier event of its payment is
 * pending, and while its endpoint is disabled (it goes out on enable, like every delivery of a
 * disabled endpoint). One being sent right now (its lease live) is left as it is: that attempt is
 * the redelivery, and the sender's record of it would overwrite this one. Returns the ids changed.
 */
const requeueOne = (sql: SqlClient.SqlClient, endpointId: string, deliveryId: string) =>
  idRows(sql`
    UPDATE webhook_deliveries SET status = 'pending', failed_reason = NULL, finished_at = NULL,
           next_attempt_at = clock_timestamp(), round_attempt_count = 0
    WHERE id = ${deliveryId}::uuid AND endpoint_id = ${endpointId}
      AND (lease_expires_at IS NULL OR lease_expires_at <= clock_timestamp())
    RETURNING id::text AS id`)

export interface DeliveryQuery {
  readonly limit: number
  readonly startingAfter?: string | undefined
  readonly eventId?: string | undefined
  readonly status?: WebhookDelivery["status"] | undefined
}

/** The most deliveries one recovery requeues (TIGER_STYLE: bounded; call again for more). */
export const RECOVER_LIMIT_MAX = 1_000

/**
 * What the merchant (and operators) see of deliveries, and manual redelivery: one delivery again
 * (due now, pending, a new round of the retry schedule, the same webhook-id and bytes), or every
 * delivery of an endpoint that failed since a time (bounded per call). Scoped by the merchant.
 */
export class WebhookDeliveries extends Context.Service<WebhookDeliveries, {
  /** A `startingAfter` that is not one of the endpoint's deliveries is InvalidCursor. */
  readonly list: (merchantId: MerchantId, endpointId: string, query: DeliveryQuery) => Effect.Effect<{ readonly data: ReadonlyArray<WebhookDelivery>; readonly hasMore: boolean }, InvalidCursor | WebhookEndpointNotFound | SqlError>
  readonly get: (merchantId: MerchantId, endpointId: string, deliveryId: string) => Effect.Effect<{ readonly delivery: WebhookDelivery; readonly attempts: ReadonlyArray<WebhookAttempt> }, WebhookDeliveryNotFound | WebhookEndpointNotFound | SqlError>
  readonly redeliver: (merchantId: MerchantId, endpointId: string, deliveryId: string) => Effect.Effect<WebhookDelivery, WebhookDeliveryNotFound | WebhookEndpointNotFound | SqlError>
  readonly recoverFailedSince: (merchantId: MerchantId, endpointId: string, since: Date) => Effect.Effect<number, WebhookEndpointNotFound | SqlError>
  /** Operators: the most recently given-up deliveries of every merchant (`pnpm cli webhooks failed`). */
  readonly failed: (limit: number) => Effect.Effect<ReadonlyArray<WebhookDelivery & { readonly merchant_id: string }>, SqlError>
}>()("webhooks/WebhookDeliveries") {
  static readonly layer = Layer.effect(WebhookDeliveries, Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    const ownEndpoint = ownEndpointOf(sql)

    const list = Effect.fn("WebhookDeliveries.list")(function* (merchantId: MerchantId, endpointId: string, query: DeliveryQuery) {
      yield* ownEndpoint(merchantId, endpointId)
      if (query.eventId !== undefined && !uuidPattern.test(query.eventId)) return { data: [], hasMore: false }
      // The cursor must be one of this endpoint's deliveries; anything else is a 400, never a silently empty page.
      const { startingAfter } = query
      if (startingAfter !== undefined) {
        const cursor = uuidPattern.test(startingAfter)
          ? yield* sql`SELECT 1 AS found FROM webhook_deliveries WHERE id = ${startingAfter}::uuid AND endpoint_id = ${endpointId}`
          : []
        if (cursor.length === 0) return yield* new InvalidCursor({ startingAfter: startingAfter.slice(0, 100), of: "deliveries" })
      }
      const byEvent = query.eventId === undefined ? sql`` : sql`AND d.event_id = ${query.eventId}::uuid`
      const byStatus = query.status === undefined ? sql`` : sql`AND d.status = ${query.status}`
      const after = startingAfter === undefined
        ? sql``
        : sql`AND (d.created_at, d.id) < (SELECT created_at, id FROM webhook_deliveries WHERE id = ${startingAfter}::uuid AND endpoint_id = ${endpointId})`
      const rows = yield* deliveryRows(sql`
        SELECT ${sql.literal(deliveryColumns)} FROM webhook_deliveries d
        WHERE d.endpoint_id = ${endpointId} ${byEvent} ${byStatus} ${after}
        ORDER BY d.created_at DESC, d.id DESC LIMIT ${query.limit + 1}`)
      return { data: rows.slice(0, query.limit), hasMore: rows.length > query.limit }
    })

    const get = Effect.fn("WebhookDeliveries.get")(function* (merchantId: MerchantId, endpointId: string, deliveryId: string) {
      yield* ownEndpoint(merchantId, endpointId)
      if (!uuidPattern.test(deliveryId)) return yield* new WebhookDeliveryNotFound({ deliveryId })
      const delivery = yield* deliveryRows(sql`
        SELECT ${sql.literal(deliveryColumns)} FROM webhook_deliveries d WHERE d.id = ${deliveryId}::uuid AND d.endpoint_id = ${endpointId}`).pipe(
        Effect.flatMap(oneDelivery(deliveryId))
      )
      const attempts = yield* attemptRows(sql`
        SELECT attempt_number, started_at, outcome, response_status, latency_ms, response_body_excerpt, error, finished_at
        FROM webhook_attempts WHERE delivery_id = ${deliveryId}::uuid ORDER BY attempt_number`)
      return { delivery, attempts }
    })

    const redeliver = Effect.fn("WebhookDeliveries.redeliver")(function* (merchantId: MerchantId, endpointId: string, deliveryId: string) {
      yield* ownEndpoint(merchantId, endpointId)
      if (!uuidPattern.test(deliveryId)) return yield* new WebhookDeliveryNotFound({ deliveryId })
      // One transaction (a savepoint inside the caller's): the answer is the state this request
      // left, not one a sender woken by the commit has already moved on.
      return yield* sql.withTransaction(Effect.gen(function* () {
        const requeued = yield* requeueOne(sql, endpointId, deliveryId)
        if (requeued.length > 0) yield* wakeSenders(sql)
        const { delivery } = yield* get(merchantId, endpointId, deliveryId)
        return delivery
      }))
    })

    const recoverFailedSince = Effect.fn("WebhookDeliveries.recoverFailedSince")(function* (merchantId: MerchantId, endpointId: string, since: Date) {
      yield* ownEndpoint(merchantId, endpointId)
      const { count } = yield* countRow(sql`
        WITH requeued AS (
          UPDATE webhook_deliveries SET status = 'pending', failed_reason = NULL, finished_at = NULL,
                 next_attempt_at = clock_timestamp(), round_attempt_count = 0
          WHERE id IN (
            SELECT id FROM webhook_deliveries
            WHERE endpoint_id = ${endpointId} AND status = 'failed' AND finished_at >= ${since}
            ORDER BY finished_at LIMIT ${RECOVER_LIMIT_MAX}
            FOR UPDATE SKIP LOCKED)
          RETURNING id
        )
        SELECT count(*)::int AS count FROM requeued`)
      if (count > 0) yield* wakeSenders(sql)
      return count
    })

    return WebhookDeliveries.of({ list, get, redeliver, recoverFailedSince, failed: failedDeliveries(sql) })
  }))
}
