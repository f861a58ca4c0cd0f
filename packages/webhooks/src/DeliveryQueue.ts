import { type DomainEvent, encodeDomainEvent, isRefundEvent } from "@pay/domain"
import { decodeRows } from "@pay/infra"
import { Effect, Option, Schema } from "effect"
import { SqlClient, type Statement } from "effect/sql"
import type { SqlError } from "effect/sql/SqlError"
import { FAILING_ENDPOINT_QUEUE_DAYS, WEBHOOK_BODY_BYTES_MAX } from "./Model.ts"
import type { Decision } from "./RetryPolicy.ts"
import type { SendResult } from "./Sender.ts"

/** The channel migrations/0030_webhooks.sql NOTIFYs after a commit that queued deliveries; the senders LISTEN on it. */
export const WEBHOOK_NOTIFY_CHANNEL = "webhook_deliveries"

/**
 * Wakes the senders at commit, as a queued delivery's INSERT does (0030's trigger fires on INSERT
 * only): for what makes deliveries due otherwise (a redelivery, a recovery, an endpoint enabled
 * again), so they go out at once, not at the next poll. Inside the change's transaction when it has
 * one (a rolled-back change wakes nobody), else right after the change's own commit.
 */
export const wakeSenders = (sql: SqlClient.SqlClient) => sql`SELECT pg_notify(${WEBHOOK_NOTIFY_CHANNEL}, '')`

/** An event to deliver: its id (the outbox row's, `ce_id` on Kafka) and the decoded event. */
export interface DeliverableEvent {
  readonly eventId: string
  readonly event: DomainEvent
}

/**
 * The body a merchant receives, as exact bytes: `{"id","type","timestamp","data"}` where `data` is
 * the event as published (money as integer minor units). Built once per event and stored with
 * each delivery: every attempt signs and sends these bytes, never a re-serialisation.
 */
export const webhookBody = ({ eventId, event }: DeliverableEvent): string => {
  const data = encodeDomainEvent(event)
  return JSON.stringify({ id: eventId, type: event.type, timestamp: data.occurred_at, data })
}

const idRows = decodeRows(Schema.Struct({ id: Schema.String }))

/**
 * One delivery row per endpoint of the event's merchant that subscribes to its type (or to `*`)
 * and is enabled, or was disabled for failing less than `FAILING_ENDPOINT_QUEUE_DAYS` ago (its
 * rows wait, pending, until it is enabled again), in the CALLER's transaction (the consumer's per-record transaction: the rows commit
 * with its processed_events row and offset, or not at all). A redelivered or replayed event
 * creates nothing new (`UNIQUE (endpoint_id, event_id)`). Returns how many rows were created.
 * A refund event's row names its refund (`refund_id`) and carries the REFUND's version in
 * `payment_version` (its ordering key is the refund, migrations/0060_refund_events.sql).
 */
export const enqueueDeliveries = (input: DeliverableEvent, firstDelay_ms = 0): Effect.Effect<number, SqlError, SqlClient.SqlClient> =>
  Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    // Outside a transaction a crash between the consumer's effect and its bookkeeping could lose
    // or double rows: always a bug in the caller.
    if (Option.isNone(yield* Effect.serviceOption(sql.transactionService))) {
      return yield* Effect.die(new Error("enqueueDeliveries must run inside the consumer's transaction"))
    }
    const body = webhookBody(input)
    if (Buffer.byteLength(body, "utf8") > WEBHOOK_BODY_BYTES_MAX) {
      return yield* Effect.die(new Error(`webhook body of event ${input.eventId} is over ${WEBHOOK_BODY_BYTES_MAX} bytes`))
    }
    const { event } = input
    const refundId = isRefundEvent(event) ? event.refund_id : null
    const created = yield* idRows(sql`
      INSERT INTO webhook_deliveries (id, endpoint_id, merchant_id, event_id, event_type, payment_id, refund_id, payment_version, body, next_attempt_at)
      SELECT gen_random_uuid(), e.id, e.merchant_id, ${input.eventId}::uuid, ${event.type}, ${event.payment_id}, ${refundId},
             ${event.version}, ${body},
             clock_timestamp() + ${firstDelay_ms}::double precision * interval '1 millisecond'
      FROM webhook_endpoints e
      WHERE e.merchant_id = ${event.merchant_id} AND e.deleted_at IS NULL
        AND (e.status = 'enabled'
             OR (e.disabled_reason = 'failing' AND e.disabled_at > clock_timestamp() - ${FAILING_ENDPOINT_QUEUE_DAYS}::int * interval '1 day'))
        AND e.event_types && ARRAY['*', ${event.type}]::text[]
      ON CONFLICT (endpoint_id, event_id) DO NOTHING
      RETURNING id`)
    return created.length
  }).pipe(Effect.withSpan("webhooks.enqueueDeliveries", { attributes: { event_id: input.eventId } }))

/** A delivery a sender holds the lease of, with everything it needs to send. */
export const ClaimedDelivery = Schema.Struct({
  id: Schema.String,
  endpoint_id: Schema.String,
  merchant_id: Schema.String,
  url: Schema.String,
  event_id: Schema.String,
  body: Schema.String,
  attempt_count: Schema.Int,
  round_attempt_count: Schema.Int,
  lease_token: Schema.String,
  webhook_timestamp: Schema.BigInt,
  secrets: Schema.Array(Schema.String)
})
export type ClaimedDelivery = typeof ClaimedDelivery.Type
const claimedRows = decodeRows(ClaimedDelivery)

/**
 * What one sender has in flight, and its caps (`WEBHOOK_ENDPOINT_IN_FLIGHT_MAX`,
 * `WEBHOOK_MERCHANT_IN_FLIGHT_MAX`): a claim takes nothing of an endpoint or merchant at its cap,
 * and of the others at most what is left of their share. The counts are the sender's own (its
 * slots are what one merchant must not fill): a sender's claims run one after another, so per
 * sender the caps hold exactly; N senders together may have up to N times each cap in flight to
 * one endpoint or merchant.
 */
export interface ClaimSlots {
  /** Deliveries this sender has in flight, by endpoint id; an endpoint not in it has none. */
  readonly endpointInFlight: ReadonlyMap<string, number>
  /** Deliveries this sender has in flight, by merchant id; a merchant not in it has none. */
  readonly merchantInFlight: ReadonlyMap<string, number>
  readonly endpointInFlight_max: number
  readonly merchantInFlight_max: number
  /**
   * Only endpoints that answer: no failure streak, or one younger than this (`failing_since`). The
   * slots a merchant keeps for its endpoints that answer go to those, not to a dead one that
   * happens to be idle; a healthy endpoint's one failure keeps it among them for this long, so its
   * next attempts still get a kept slot (outside re-test: with the streak alone, one 500 left it
   * behind its dead neighbours' backlog for good).
   */
  readonly answeringStreak_ms_max?: number
}

/** Nothing in flight, and no cap below `limit` (a tool's claim, the plan test: the same statement). */
const noSlotsTaken = (limit: number): ClaimSlots => ({
  endpointInFlight: new Map(),
  merchantInFlight: new Map(),
  endpointInFlight_max: limit,
  merchantInFlight_max: limit
})

/**
 * The sender's in-flight count of the endpoint or merchant in `column` (0 when absent), looked up
 * in a JSON object of its counts. The object is parsed once per statement (an InitPlan): a bare
 * parameter cast would be parsed again for every row the scan reads once the prepared claim runs
 * on a generic plan.
 */
const inFlightOf = (sql: SqlClient.SqlClient, counts: ReadonlyMap<string, number>, column: Statement.Fragment) =>
  sql`COALESCE(((SELECT ${JSON.stringify(Object.fromEntries(counts))}::jsonb) ->> ${column})::int, 0)`

/**
 * The claim statement. The `due` scan must walk the `webhook_deliveries_due` index in
 * `next_attempt_at` order and stop once `limit` deliveries pass the ordering guard, whatever the
 * table's statistics say. They are stale exactly when it matters: with a backlog that grew faster
 * than (auto)analyze runs, the planner believes a handful of rows are pending and picks "bitmap
 * scan every pending row, anti-join each, then sort", a cost that grows with the backlog and is
 * paid on every claim, so draining n deliveries costs O(n²). Found by the long chaos run: with
 * 57,000 pending (autovacuum off on that Postgres) one claim took 1.07 s and the sender fell to
 * ~2 deliveries/s. `enable_sort = off` for the claiming transaction only (as the outbox
 * publisher's claim does) leaves the ordered index scan as the only sane plan; nothing else in
 * that transaction sorts (the secrets' ORDER BY reads at most a few rows per delivery).
 */
const claimStatement = (sql: SqlClient.SqlClient, limit: number, lease_ms: number, slots: ClaimSlots) =>
  sql`
    WITH due AS (
      SELECT d.id, d.endpoint_id, d.merchant_id, d.next_attempt_at FROM webhook_deliveries d
    JOIN webhook_endpoints e ON e.id = d.endpoint_id
    -- attempt_count is bounded (1000): a delivery whose outcome could never be recorded stops
    -- there, visible as pending, instead of failing every claim.
    -- statement_timestamp() (STABLE), not clock_timestamp() (VOLATILE): only a stable bound can be
    -- the due index's range condition, so deliveries waiting for a later retry are never read.
    WHERE d.status = 'pending' AND d.next_attempt_at <= statement_timestamp() AND d.attempt_count < 1000
      AND (d.lease_expires_at IS NULL OR d.lease_expires_at <= clock_timestamp())
      AND e.status = 'enabled' AND e.deleted_at IS NULL
      ${slots.answeringStreak_ms_max === undefined ? sql`` : sql`AND ${answeringEndpoint(sql, slots.answeringStreak_ms_max)}`}
      -- Tenant isolation: nothing of an endpoint or a merchant that already has its share of this
      -- sender's slots. Plain comparisons on the row (no subquery): the scan skips such rows without
      -- counting them against the limit, so the next merchants' deliveries are taken instead.
      AND ${inFlightOf(sql, slots.endpointInFlight, sql`d.endpoint_id`)} < ${slots.endpointInFlight_max}
      AND ${inFlightOf(sql, slots.merchantInFlight, sql`d.merchant_id`)} < ${slots.merchantInFlight_max}
      AND NOT ${earlierPending(sql)}
    ORDER BY d.next_attempt_at
    LIMIT ${limit}
    FOR UPDATE OF d SKIP LOCKED
  ),
  -- The same caps within this claim: of the rows in due of one endpoint, only the earliest that
  -- fit its share, then of one merchant's, the earliest that fit the merchant's. Counted over due
  -- (at most limit rows, so at most limit² comparisons) rather than with row_number(), which
  -- would sort. Rows of due left out stay pending and unleased (their row locks end with the claim).
  within_endpoint AS (
    SELECT due.id, due.merchant_id, due.next_attempt_at FROM due
    WHERE ${inFlightOf(sql, slots.endpointInFlight, sql`due.endpoint_id`)}
          + (SELECT count(*) FROM due p WHERE p.endpoint_id = due.endpoint_id AND (p.next_attempt_at, p.id) < (due.next_attempt_at, due.id))
          < ${slots.endpointInFlight_max}
  ), picked AS (
    SELECT w.id FROM within_endpoint w
    WHERE ${inFlightOf(sql, slots.merchantInFlight, sql`w.merchant_id`)}
          + (SELECT count(*) FROM within_endpoint p WHERE p.merchant_id = w.merchant_id AND (p.next_attempt_at, p.id) < (w.next_attempt_at, w.id))
          < ${slots.merchantInFlight_max}
  ), leased AS (
    UPDATE webhook_deliveries d
    SET lease_token = gen_random_uuid(),
        lease_expires_at = clock_timestamp() + ${lease_ms}::double precision * interval '1 millisecond',
        attempt_count = d.attempt_count + 1, round_attempt_count = d.round_attempt_count + 1
    FROM picked WHERE d.id = picked.id
    RETURNING d.id, d.endpoint_id, d.merchant_id, d.event_id, d.body, d.attempt_count, d.round_attempt_count, d.lease_token
  ), started AS (
    INSERT INTO webhook_attempts (delivery_id, attempt_number, webhook_timestamp)
    SELECT id, attempt_count, floor(extract(epoch FROM clock_timestamp()))::bigint FROM leased
    RETURNING delivery_id, webhook_timestamp
  )
  SELECT l.id, l.endpoint_id, l.merchant_id, e.url, l.event_id::text AS event_id, l.body, l.attempt_count, l.round_attempt_count,
         l.lease_token::text AS lease_token, s.webhook_timestamp,
         ARRAY(SELECT k.secret FROM webhook_endpoint_secrets k
               WHERE k.endpoint_id = l.endpoint_id AND (k.expires_at IS NULL OR k.expires_at > clock_timestamp())
               ORDER BY k.created_at DESC) AS secrets
  FROM leased l JOIN started s ON s.delivery_id = l.id JOIN webhook_endpoints e ON e.id = l.endpoint_id`

/**
 * Whether the endpoint `e` answers: no failure streak, or one younger than `streak_ms_max`. The
 * kept slots' rule (ClaimSlots.answeringStreak_ms_max), also read by queueAges.
 */
export const answeringEndpoint = (sql: SqlClient.SqlClient, streak_ms_max: number) =>
  sql`(e.failing_since IS NULL OR e.failing_since > clock_timestamp() - ${streak_ms_max}::double precision * interval '1 millisecond')`

/**
 * Whether an earlier event of the same payment (and refund) waits at the same endpoint: the
 * claim's ordering rule, also read by queueAges. `d` is the delivery, `p` the earlier pending one.
 */
export const earlierPending = (sql: SqlClient.SqlClient) => sql`
  EXISTS (
    SELECT 1 FROM webhook_deliveries p
    WHERE p.endpoint_id = d.endpoint_id AND p.payment_id = d.payment_id AND p.status = 'pending'
      AND ((p.refund_id IS NULL AND d.refund_id IS NULL AND p.payment_version < d.payment_version)
        -- payment_expiring repeats the version it warns about: it waits for that version's own
        -- event (the authorization it warns of), not only for the lower ones (outside review: the
        -- warning arrived while payment_authorized was still being retried).
        OR (p.refund_id IS NULL AND d.refund_id IS NULL AND p.payment_version = d.payment_version
            AND d.event_type = 'payment_expiring' AND p.event_type <> 'payment_expiring')
        OR (p.refund_id IS NULL AND d.refund_id IS NOT NULL)
        OR (p.refund_id = d.refund_id AND p.payment_version < d.payment_version)))`

const claimTransactionSettings = (sql: SqlClient.SqlClient) => sql`SELECT set_config('enable_sort', 'off', true)`

/**
 * Takes up to `limit` due deliveries and a lease of `lease_ms` on each, and records the attempt
 * as started (committed before anything is sent: a crash mid-request leaves the attempt visible,
 * and the expired lease lets another sender resend the same bytes with the same webhook-id).
 *
 * Ordering: a delivery is due only when no delivery of a lower payment version for the same
 * endpoint and payment is still pending (being retried, or leased). So a payment's events reach
 * an endpoint in order; a delivery that is given up (failed) lets the next one go. A refund's
 * events (`refund_id` set) wait for the payment's pending deliveries and for their own refund's
 * lower versions; a payment's deliveries never wait for a refund's.
 */
export const claimDeliveries = (
  limit: number,
  lease_ms: number,
  slots: ClaimSlots = noSlotsTaken(limit)
): Effect.Effect<ReadonlyArray<ClaimedDelivery>, SqlError, SqlClient.SqlClient> =>
  Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    return yield* sql.withTransaction(Effect.gen(function* () {
      yield* claimTransactionSettings(sql)
      const claimed = yield* claimedRows(claimStatement(sql, limit, lease_ms, slots))
      // The paired check: a claim over a cap is a bug of the statement; failing here rolls it back
      // (nothing leased, no attempt started), so nothing is sent over the cap.
      const over = overCaps(claimed, slots)
      if (over !== undefined) return yield* Effect.die(new Error(`webhook claim over its in-flight cap: ${over}`))
      return claimed
    }))
  }).pipe(Effect.withSpan("webhooks.claimDeliveries"))

/** What a claim would exceed, given what the sender already has in flight; undefined when within the caps. */
const overCaps = (claimed: ReadonlyArray<ClaimedDelivery>, slots: ClaimSlots): string | undefined => {
  const endpoints = new Map(slots.endpointInFlight)
  const merchants = new Map(slots.merchantInFlight)
  for (const delivery of claimed) {
    const endpoint = (endpoints.get(delivery.endpoint_id) ?? 0) + 1
    const merchant = (merchants.get(delivery.merchant_id) ?? 0) + 1
    if (endpoint > slots.endpointInFlight_max) return `endpoint ${delivery.endpoint_id} at ${endpoint} of ${slots.endpointInFlight_max}`
    if (merchant > slots.merchantInFlight_max) return `merchant ${delivery.merchant_id} at ${merchant} of ${slots.merchantInFlight_max}`
    endpoints.set(delivery.endpoint_id, endpoint)
    merchants.set(delivery.merchant_id, merchant)
  }
  return undefined
}

/** The claim's plan as the sender gets it (EXPLAIN only: nothing is claimed, nothing locked). */
export const explainClaimDeliveries = (
  limit: number,
  lease_ms: number,
  slots: ClaimSlots = noSlotsTaken(limit)
): Effect.Effect<string, SqlError, SqlClient.SqlClient> =>
  Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    return yield* sql.withTransaction(Effect.gen(function* () {
      yield* claimTransactionSettings(sql)
      const lines = yield* planLines(sql`EXPLAIN ${claimStatement(sql, limit, lease_ms, slots)}`)
      return lines.map((row) => row["QUERY PLAN"]).join("\n")
    }))
  })

const planLines = decodeRows(Schema.Struct({ "QUERY PLAN": Schema.String }))

const truncate = (text: string, length_max: number) => (text.length <= length_max ? text : text.slice(0, length_max))

const streakRows = decodeRows(Schema.Struct({ overdue: Schema.Boolean }))
const disabledRows = decodeRows(Schema.Struct({ id: Schema.String, merchant_id: Schema.String, disabled_reason: Schema.String }))

/** What completing an attempt changed about the endpoint (for the log and the metric). */
export type EndpointChange = { readonly _tag: "None" } | { readonly _tag: "Disabled"; readonly reason: "gone" | "failing" }

/**
 * Records the attempt's result and applies the decision, in one transaction. The delivery is
 * updated only while this sender still holds its lease (otherwise another sender took over: only
 * the attempt row is completed). The endpoint's failure streak starts at its first failed
 * attempt and ends at a success; a streak longer than `disableAfterFailing_ms` disables it.
 */
export const completeAttempt = (
  claimed: ClaimedDelivery,
  result: SendResult,
  decision: Decision,
  disableAfterFailing_ms: number
): Effect.Effect<EndpointChange, SqlError, SqlClient.SqlClient> =>
  Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    const outcome = decision._tag === "Delivered" ? "delivered" : decision._tag === "Gone" ? "gone" : decision._tag === "Retry" ? "retry" : "failed"
    const status = result._tag === "Answered" ? result.status : null
    const error = result._tag === "Unanswered" ? truncate(result.error, 2_000) : null
    const excerpt = result._tag === "Answered" ? result.excerpt : null
    return yield* sql.withTransaction(Effect.gen(function* () {
      // Not waiting for the WAL flush: a crash can lose the last few hundred ms of outcomes, and
      // then those deliveries are sent again with the same webhook-id (at-least-once, which the
      // receiver deduplicates anyway). The attempt's start (the claim) is flushed.
      yield* sql`SET LOCAL synchronous_commit = off`
      yield* sql`
        UPDATE webhook_attempts SET outcome = ${outcome}, response_status = ${status}, latency_ms = ${result.latency_ms},
               response_body_excerpt = ${excerpt}, error = ${error}, finished_at = clock_timestamp()
        WHERE delivery_id = ${claimed.id} AND attempt_number = ${claimed.attempt_count}`
      const deliveryState = decision._tag === "Retry"
        ? sql`status = 'pending', next_attempt_at = clock_timestamp() + ${decision.delay_ms}::double precision * interval '1 millisecond'`
        : decision._tag === "Delivered"
        ? sql`status = 'delivered', finished_at = clock_timestamp()`
        : sql`status = 'failed', failed_reason = ${decision._tag === "Gone" ? "gone" : "exhausted"}, finished_at = clock_timestamp()`
      yield* sql`
        UPDATE webhook_deliveries SET ${deliveryState}, lease_token = NULL, lease_expires_at = NULL,
               last_response_status = ${status}, last_error = ${error}
        WHERE id = ${claimed.id} AND lease_token = ${claimed.lease_token}::uuid`
      return yield* endpointHealth(sql, claimed.endpoint_id, decision, disableAfterFailing_ms)
    }))
  }).pipe(Effect.withSpan("webhooks.completeAttempt"))

const endpointHealth = (sql: SqlClient.SqlClient, endpointId: string, decision: Decision, disableAfterFailing_ms: number) =>
  Effect.gen(function* () {
    if (decision._tag === "Delivered") {
      yield* sql`UPDATE webhook_endpoints SET failing_since = NULL WHERE id = ${endpointId} AND failing_since IS NOT NULL`
      return { _tag: "None" } satisfies EndpointChange
    }
    if (decision._tag === "Gone") {
      const disabled = yield* disabledRows(sql`
        UPDATE webhook_endpoints SET status = 'disabled', disabled_reason = 'gone', disabled_at = clock_timestamp(),
               failing_since = COALESCE(failing_since, clock_timestamp()), updated_at = clock_timestamp()
        WHERE id = ${endpointId} AND status = 'enabled'
        RETURNING id, merchant_id, disabled_reason`)
      return disabled.length === 0 ? ({ _tag: "None" } satisfies EndpointChange) : ({ _tag: "Disabled", reason: "gone" } satisfies EndpointChange)
    }
    const [streak] = yield* streakRows(sql`
      UPDATE webhook_endpoints SET failing_since = COALESCE(failing_since, clock_timestamp())
      WHERE id = ${endpointId}
      RETURNING failing_since <= clock_timestamp() - ${disableAfterFailing_ms}::double precision * interval '1 millisecond' AS overdue`)
    // Disabled only when a delivery is given up (its retries exhausted) with the streak overdue: a
    // streak's start alone counted the quiet days of an endpoint with nothing to send, and one
    // failure after them disabled it, its retry (which would have succeeded) never sent (outside
    // merchant's engineer). Giving a delivery up takes the whole retry schedule (~27.6 h) of failures.
    if (streak === undefined || !streak.overdue || decision._tag !== "Exhausted") return { _tag: "None" } satisfies EndpointChange
    const disabled = yield* disabledRows(sql`
      UPDATE webhook_endpoints SET status = 'disabled', disabled_reason = 'failing', disabled_at = clock_timestamp(), updated_at = clock_timestamp()
      WHERE id = ${endpointId} AND status = 'enabled'
      RETURNING id, merchant_id, disabled_reason`)
    return disabled.length === 0 ? ({ _tag: "None" } satisfies EndpointChange) : ({ _tag: "Disabled", reason: "failing" } satisfies EndpointChange)
  })
