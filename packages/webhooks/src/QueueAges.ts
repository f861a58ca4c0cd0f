import { decodeRows } from "@pay/infra"
import { Effect, Schema } from "effect"
import type { SqlClient } from "effect/sql"
import { answeringEndpoint, earlierPending } from "./DeliveryQueue.ts"
import { defaultSenderOptions, type SenderOptions } from "./Model.ts"

const QueueAgesRow = Schema.Struct({ pending_ms: Schema.Number, overdue_ms: Schema.Number })

/**
 * Slots a merchant keeps for its endpoints that answer (no failure streak) with nothing in flight:
 * a quarter of its cap (at least 1, none when its cap is 1). Its other deliveries fill the rest by
 * due time. Without it, two endpoints that never answer (4 + 4) held all of a merchant's 8, and
 * its endpoint that answers waited behind their timeouts, further each second (outside review:
 * 70 s behind within 45 s of one payment a second).
 */
export const merchantReservedSlotsOf = (merchantInFlight_max: number): number =>
  Math.min(merchantInFlight_max - 1, Math.max(1, Math.floor(merchantInFlight_max / 4)))

/**
 * How long a failure streak leaves an endpoint among those that answer (the kept slots'): two
 * request timeouts. A healthy endpoint's one failure is followed by its next attempts within that;
 * a dead one's streak is older after its second timeout.
 */
export const answeringStreakOf_ms = (timeout_ms: number): number => 2 * timeout_ms

/** The in-flight caps queueAges compares with (the sender's options). */
export type InFlightCaps = Pick<SenderOptions, "endpointInFlight_max" | "merchantInFlight_max" | "timeout_ms">

/**
 * The queue's two ages, in seconds, over the pending deliveries of enabled endpoints (a disabled
 * or deleted endpoint's wait by design): the oldest one's age since it was created, and how long
 * the most overdue one the claim would take now (due, not leased, nothing earlier of its payment
 * pending, its endpoint and merchant under their in-flight caps) has waited past its
 * `next_attempt_at`. A merchant's failing endpoint keeps the first high for its whole retry
 * schedule; only senders that are down or behind raise the second: a merchant's receivers that
 * answer slowly or never keep their deliveries waiting behind their own caps, which it leaves out.
 * The caps are per sender, the leases the database's: an endpoint or merchant counts as at its cap
 * once the live leases of all senders together reach it (exact with one sender; with several it
 * may leave out a delivery one of them could still take, which that sender then takes at once).
 */
export const queueAges = (sql: SqlClient.SqlClient, caps: InFlightCaps = defaultSenderOptions) =>
  decodeRows(QueueAgesRow)(sql`
    WITH live AS (
      SELECT l.endpoint_id, l.merchant_id FROM webhook_deliveries l
      WHERE l.status = 'pending' AND l.lease_expires_at > clock_timestamp()
    ), endpoints_at_cap AS (
      SELECT endpoint_id FROM live GROUP BY endpoint_id HAVING count(*) >= ${caps.endpointInFlight_max}
    ), merchants_at_cap AS (
      SELECT merchant_id FROM live GROUP BY merchant_id HAVING count(*) >= ${caps.merchantInFlight_max}
    ), merchants_at_reserve AS (
      SELECT merchant_id FROM live GROUP BY merchant_id
      HAVING count(*) >= ${caps.merchantInFlight_max - merchantReservedSlotsOf(caps.merchantInFlight_max)}
    )
    SELECT COALESCE(extract(epoch FROM clock_timestamp() - min(d.created_at)) * 1000, 0)::float8 AS pending_ms,
           COALESCE(extract(epoch FROM clock_timestamp() - min(d.next_attempt_at) FILTER (
             WHERE d.next_attempt_at <= clock_timestamp() AND d.attempt_count < 1000
               AND (d.lease_expires_at IS NULL OR d.lease_expires_at <= clock_timestamp())
               AND d.endpoint_id NOT IN (SELECT endpoint_id FROM endpoints_at_cap)
               -- What a round's claims would take (DeliveryWorker.ts claimRound): by due time while
               -- its merchant is under its cap less the reserve; past that, only a delivery of an
               -- endpoint that answers with nothing in flight, up to the whole cap. A merchant's
               -- dead endpoints held at the reserve counted as overdue before (outside review).
               AND (d.merchant_id NOT IN (SELECT merchant_id FROM merchants_at_reserve)
                 OR (${answeringEndpoint(sql, answeringStreakOf_ms(caps.timeout_ms))}
                     AND d.endpoint_id NOT IN (SELECT endpoint_id FROM live)
                     AND d.merchant_id NOT IN (SELECT merchant_id FROM merchants_at_cap)))
               AND NOT ${earlierPending(sql)})) * 1000, 0)::float8 AS overdue_ms
    FROM webhook_deliveries d JOIN webhook_endpoints e ON e.id = d.endpoint_id
    WHERE d.status = 'pending' AND e.status = 'enabled' AND e.deleted_at IS NULL`).pipe(
    Effect.map(([row]) => ({ oldestPending_s: (row?.pending_ms ?? 0) / 1_000, oldestOverdue_s: (row?.overdue_ms ?? 0) / 1_000 }))
  )
