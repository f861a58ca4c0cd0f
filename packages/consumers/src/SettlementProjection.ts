import { decodeRow, decodeRows } from "@pay/infra"
import { Effect, Schema } from "effect"
import type { SqlClient } from "effect/sql"
import type { ConsumerHandler } from "./ConsumerModel.ts"
import { applySettlementBatch, applySettlementSlice, refundedSplit, settledSplit } from "./SettlementBatch.ts"

/**
 * The settlement read model: per merchant and currency, settled gross, fees, net, payment count
 * and last event time, built from `payment_settled` events ONLY (never the ledger), and the
 * refunded money (refunded, fee returned, refund count) from `refund_succeeded` events only, so
 * that reconciling it with the ledger proves the events tell the truth. The other event types are
 * counted. Each generation is a full copy; `settlement_projection_live` names the one served.
 */
export const settlementConsumerName = (generation: number): string => `settlement.g${generation}`

export const LiveGeneration = Schema.Struct({ generation: Schema.Int, consumer: Schema.String })
export type LiveGeneration = typeof LiveGeneration.Type

export const ProjectionRow = Schema.Struct({
  merchant_id: Schema.String,
  currency: Schema.String,
  settled_gross_minor: Schema.BigInt,
  fees_minor: Schema.BigInt,
  net_minor: Schema.BigInt,
  payment_count: Schema.BigInt,
  refunded_minor: Schema.BigInt,
  fee_returned_minor: Schema.BigInt,
  refund_count: Schema.BigInt,
  last_event_at: Schema.NullOr(Schema.Date)
})
export type ProjectionRow = typeof ProjectionRow.Type

export const makeSettlementProjection = (sql: SqlClient.SqlClient) => {
  const live = decodeRow(LiveGeneration)(sql`SELECT generation, consumer FROM settlement_projection_live`)

  const rows = (generation: number) =>
    decodeRows(ProjectionRow)(sql`
      SELECT merchant_id, currency, settled_gross_minor, fees_minor, net_minor, payment_count,
             refunded_minor, fee_returned_minor, refund_count, last_event_at
      FROM settlement_projection WHERE generation = ${generation} ORDER BY merchant_id, currency`)

  const eventCounts = (generation: number) =>
    decodeRows(Schema.Struct({ event_type: Schema.String, event_count: Schema.BigInt }))(sql`
      SELECT event_type, sum(event_count)::bigint AS event_count FROM settlement_projection_event_counts
      WHERE generation = ${generation} GROUP BY event_type ORDER BY event_type`)

  /** The handler that maintains `generation`. */
  const handler = (generation: number): ConsumerHandler => ({
    name: settlementConsumerName(generation),
    apply: ({ event }, record) =>
      Effect.gen(function* () {
        yield* sql`
          INSERT INTO settlement_projection_event_counts (generation, event_type, partition, event_count)
          VALUES (${generation}, ${event.type}, ${record.partition}, 1)
          ON CONFLICT (generation, event_type, partition) DO UPDATE SET event_count = settlement_projection_event_counts.event_count + 1`
        const refunded = yield* refundedSplit(event)
        if (refunded !== null) {
          const at = new Date(event.occurred_at.epochMilliseconds)
          yield* sql`
            INSERT INTO settlement_projection (generation, merchant_id, currency, refunded_minor, fee_returned_minor, refund_count, last_event_at)
            VALUES (${generation}, ${event.merchant_id}, ${event.currency}, ${refunded.refunded_minor}, ${refunded.fee_returned_minor}, 1, ${at})
            ON CONFLICT (generation, merchant_id, currency) DO UPDATE SET
              refunded_minor = settlement_projection.refunded_minor + EXCLUDED.refunded_minor,
              fee_returned_minor = settlement_projection.fee_returned_minor + EXCLUDED.fee_returned_minor,
              refund_count = settlement_projection.refund_count + 1,
              last_event_at = greatest(settlement_projection.last_event_at, EXCLUDED.last_event_at)`
          return
        }
        const split = yield* settledSplit(event)
        if (split === null || event.type !== "payment_settled") return
        const occurredAt = new Date(event.occurred_at.epochMilliseconds)
        yield* sql`
          INSERT INTO settlement_projection
            (generation, merchant_id, currency, settled_gross_minor, fees_minor, net_minor, payment_count, last_event_at)
          VALUES (${generation}, ${event.merchant_id}, ${event.currency}, ${split.gross_minor}, ${split.fee_minor}, ${split.net_minor}, 1, ${occurredAt})
          ON CONFLICT (generation, merchant_id, currency) DO UPDATE SET
            settled_gross_minor = settlement_projection.settled_gross_minor + EXCLUDED.settled_gross_minor,
            fees_minor = settlement_projection.fees_minor + EXCLUDED.fees_minor,
            net_minor = settlement_projection.net_minor + EXCLUDED.net_minor,
            payment_count = settlement_projection.payment_count + 1,
            last_event_at = greatest(settlement_projection.last_event_at, EXCLUDED.last_event_at)`
      }),
    applyBatch: applySettlementBatch(sql, generation),
    applySlice: applySettlementSlice(sql, generation)
  })

  /** The next generation number: above every generation ever built or served. */
  const nextGeneration = decodeRow(Schema.Struct({ next: Schema.Int }))(sql`
    SELECT (greatest(
      (SELECT generation FROM settlement_projection_live),
      coalesce((SELECT max(generation) FROM settlement_projection), 0),
      coalesce((SELECT max(generation) FROM settlement_projection_event_counts), 0)) + 1)::int AS next`).pipe(
    Effect.map((row) => row.next)
  )

  return { live, rows, eventCounts, handler, nextGeneration, swapWhenCaughtUp: makeSwapWhenCaughtUp(sql) }
}

/**
 * The atomic swap: `generation` serves from this commit on. Only forward (a generation never
 * comes back), only if the live one is still `expected` (two rebuilds cannot both win), and only
 * once it is not behind the live generation on any partition of
 * `topic` (its stored offsets at least the live consumer's, in the same statement): the live
 * projection never moves backwards at the swap, even with events flowing while it rebuilt. The
 * answer is the generation live after the statement and whether it is behind (nothing swapped).
 */
const makeSwapWhenCaughtUp = (sql: SqlClient.SqlClient) => (expected: number, generation: number, topic: string) =>
  decodeRow(Schema.Struct({ live_generation: Schema.Int, behind: Schema.Boolean }))(sql`
    WITH live AS (SELECT generation, consumer FROM settlement_projection_live),
    behind AS (
      SELECT 1 FROM consumer_offsets l
      LEFT JOIN consumer_offsets n ON n.consumer = ${settlementConsumerName(generation)} AND n.topic = l.topic AND n.partition = l.partition
      WHERE l.consumer = (SELECT consumer FROM live) AND l.topic = ${topic} AND coalesce(n.next_offset, 0) < l.next_offset
      LIMIT 1),
    swapped AS (
      UPDATE settlement_projection_live SET generation = ${generation}, consumer = ${settlementConsumerName(generation)}, swapped_at = now()
      WHERE generation = ${expected} AND ${generation} > generation AND NOT EXISTS (SELECT 1 FROM behind)
      RETURNING generation)
    SELECT coalesce((SELECT generation FROM swapped), (SELECT generation FROM live)) AS live_generation,
           EXISTS (SELECT 1 FROM behind) AS behind`)

export type SettlementProjection = ReturnType<typeof makeSettlementProjection>
