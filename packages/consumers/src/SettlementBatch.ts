import type { KafkaRecord } from "@pay/infra"
import type { DecodedPaymentEvent } from "@pay/outbox/CloudEvents"
import { Array as Arr, Effect, Result } from "effect"
import type { SqlClient, Statement } from "effect/sql"
import { HandlerFailed } from "./ConsumerModel.ts"

type Event = DecodedPaymentEvent["event"]

interface Split {
  readonly gross_minor: bigint
  readonly fee_minor: bigint
  readonly net_minor: bigint
}

interface Refunded {
  readonly refunded_minor: bigint
  readonly fee_returned_minor: bigint
}

/** A payment_settled event's gross (the captured amount), fee and net, refused (HandlerFailed) when absent or not summing to the amount. */
export const settledSplitResult = (event: Event): Result.Result<Split | null, HandlerFailed> => {
  if (event.type !== "payment_settled") return Result.succeed(null)
  const { fee_minor, net_minor } = event
  if (fee_minor === undefined || net_minor === undefined) {
    return Result.fail(new HandlerFailed({ message: `payment_settled ${event.payment_id} carries no fee_minor/net_minor` }))
  }
  // What moved is the captured amount (partial capture); events written before it existed
  // captured the whole amount.
  const gross_minor = event.captured_amount_minor ?? event.amount_minor
  if (fee_minor + net_minor !== gross_minor) {
    return Result.fail(new HandlerFailed({
      message: `payment_settled ${event.payment_id}: fee ${fee_minor} + net ${net_minor} is not the captured amount ${gross_minor}`
    }))
  }
  return Result.succeed({ gross_minor, fee_minor, net_minor })
}

export const settledSplit = (event: Event) => Effect.suspend(() => Effect.fromResult(settledSplitResult(event)))

/**
 * A refund_succeeded event's money: the refund and the part of the fee given back with it (0 when
 * the fee is kept), refused (HandlerFailed) when the fee returned exceeds the refund. Only
 * refund_succeeded moves money: refund_created and refund_failed are counted, nothing else.
 */
export const refundedSplitResult = (event: Event): Result.Result<Refunded | null, HandlerFailed> => {
  if (event.type !== "refund_succeeded") return Result.succeed(null)
  const fee_returned_minor = event.fee_returned_minor ?? 0n
  if (fee_returned_minor > event.amount_minor) {
    return Result.fail(new HandlerFailed({
      message: `refund_succeeded ${event.refund_id}: fee returned ${fee_returned_minor} exceeds the refund ${event.amount_minor}`
    }))
  }
  return Result.succeed({ refunded_minor: BigInt(event.amount_minor), fee_returned_minor })
}

export const refundedSplit = (event: Event) => Effect.suspend(() => Effect.fromResult(refundedSplitResult(event)))

/** The projection's upserts add to what is there (sums, counts; the last instant is a maximum): one text for every writer of a batch. */
const countsOnConflict = `ON CONFLICT (generation, event_type, partition) DO UPDATE SET
  event_count = settlement_projection_event_counts.event_count + EXCLUDED.event_count`
const sumsOnConflict = `ON CONFLICT (generation, merchant_id, currency) DO UPDATE SET
  settled_gross_minor = settlement_projection.settled_gross_minor + EXCLUDED.settled_gross_minor,
  fees_minor = settlement_projection.fees_minor + EXCLUDED.fees_minor,
  net_minor = settlement_projection.net_minor + EXCLUDED.net_minor,
  payment_count = settlement_projection.payment_count + EXCLUDED.payment_count,
  refunded_minor = settlement_projection.refunded_minor + EXCLUDED.refunded_minor,
  fee_returned_minor = settlement_projection.fee_returned_minor + EXCLUDED.fee_returned_minor,
  refund_count = settlement_projection.refund_count + EXCLUDED.refund_count,
  last_event_at = greatest(settlement_projection.last_event_at, EXCLUDED.last_event_at)`

interface Sum {
  generation: number
  merchant_id: string
  currency: string
  settled_gross_minor: bigint
  fees_minor: bigint
  net_minor: bigint
  payment_count: number
  refunded_minor: bigint
  fee_returned_minor: bigint
  refund_count: number
  last_event_at: Date
}

const byKey = <A>(map: Map<string, A>): Array<A> => [...map.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([, row]) => row)

/**
 * The effects of several new events at once, equal to the per-event handler applied to each in
 * order (sums are commutative; the last instant is a maximum): the counts and the settled sums
 * aggregated in memory, then one upsert each, rows in key order (two partitions' batches lock
 * shared rows in the same order). Any refused event fails the whole batch (rolled back).
 */
export const applySettlementBatch = (sql: SqlClient.SqlClient, generation: number) =>
(events: ReadonlyArray<{ readonly decoded: DecodedPaymentEvent; readonly record: KafkaRecord }>) =>
  Effect.gen(function* () {
    const counts = new Map<string, { generation: number; event_type: string; partition: number; event_count: number }>()
    const sums = new Map<string, Sum>()
    for (const { decoded: { event }, record } of events) {
      const countKey = `${event.type}\u0000${String(record.partition).padStart(10, "0")}`
      const count = counts.get(countKey) ?? { generation, event_type: event.type, partition: record.partition, event_count: 0 }
      count.event_count += 1
      counts.set(countKey, count)
      const splitResult = settledSplitResult(event)
      if (Result.isFailure(splitResult)) return yield* splitResult.failure
      const refundedResult = refundedSplitResult(event)
      if (Result.isFailure(refundedResult)) return yield* refundedResult.failure
      const split = splitResult.success
      const refunded = refundedResult.success
      if (split === null && refunded === null) continue
      const sumKey = `${event.merchant_id}\u0000${event.currency}`
      const occurredAt = new Date(event.occurred_at.epochMilliseconds)
      const sum = sums.get(sumKey) ?? {
        generation, merchant_id: event.merchant_id, currency: event.currency,
        settled_gross_minor: 0n, fees_minor: 0n, net_minor: 0n, payment_count: 0,
        refunded_minor: 0n, fee_returned_minor: 0n, refund_count: 0, last_event_at: occurredAt
      }
      if (split !== null) {
        sum.settled_gross_minor += split.gross_minor
        sum.fees_minor += split.fee_minor
        sum.net_minor += split.net_minor
        sum.payment_count += 1
      }
      if (refunded !== null) {
        sum.refunded_minor += refunded.refunded_minor
        sum.fee_returned_minor += refunded.fee_returned_minor
        sum.refund_count += 1
      }
      if (occurredAt > sum.last_event_at) sum.last_event_at = occurredAt
      sums.set(sumKey, sum)
    }
    const countRows = byKey(counts).map((row): Record<string, unknown> => ({ ...row }))
    if (!Arr.isReadonlyArrayNonEmpty(countRows)) return
    const countsUpsert = sql`
      INSERT INTO settlement_projection_event_counts ${sql.insert(countRows)}
      ${sql.literal(countsOnConflict)}`
    const sumRows = byKey(sums).map((row): Record<string, unknown> => ({ ...row }))
    if (!Arr.isReadonlyArrayNonEmpty(sumRows)) return yield* countsUpsert
    // Both upserts in ONE statement (one round trip, not two), each a data-modifying CTE. The
    // outer SELECT reads `counted` to its end before `summed` (its target list is evaluated left
    // to right, each scalar subquery once, in full: count(*)), so the rows are locked as before
    // and as the per-record handler and a re-drive lock them: counts first, then sums, each in
    // key order (a re-drive runs beside the lanes and must not deadlock with them).
    yield* sql`
      WITH counted AS (
        INSERT INTO settlement_projection_event_counts ${sql.insert(countRows)}
        ${sql.literal(countsOnConflict)}
        RETURNING 1
      ), summed AS (
        INSERT INTO settlement_projection ${sql.insert(sumRows)}
        ${sql.literal(sumsOnConflict)}
        RETURNING 1
      )
      SELECT (SELECT count(*) FROM counted) AS counted, (SELECT count(*) FROM summed) AS summed`
  })

/**
 * The settlement handler's `applySlice` (ConsumerModel.ts): the claim and `applySettlementBatch`'s
 * two upserts as ONE statement, committed on its own. Each event goes as one row (its position in
 * the slice, type, partition, merchant, currency, and the money it moves, checked here as
 * `applySettlementBatch` checks it); the statement keeps the rows whose claimed outcome is
 * 'applied', aggregates them as `applySettlementBatch` does in memory, and upserts the counts then
 * the sums, each in key order (byte order, as `byKey` sorts in JavaScript): the same rows locked
 * in the same order as the transaction's path, a re-drive and the per-record handler.
 * A refused event refuses the slice even when its claim would have found it a duplicate: the
 * records then go one by one, where a duplicate is skipped before the handler sees it.
 */
export const applySettlementSlice = (sql: SqlClient.SqlClient, generation: number) =>
(claim: Statement.Fragment, events: ReadonlyArray<{ readonly decoded: DecodedPaymentEvent; readonly record: KafkaRecord }>) => {
  const rows: Array<Record<string, string | number | null>> = []
  for (const [index, { decoded: { event }, record }] of events.entries()) {
    const split = settledSplitResult(event)
    if (Result.isFailure(split)) return Result.fail(split.failure)
    const refunded = refundedSplitResult(event)
    if (Result.isFailure(refunded)) return Result.fail(refunded.failure)
    const moves = split.success !== null || refunded.success !== null
    rows.push({
      i: index + 1,
      t: event.type,
      p: record.partition,
      m: event.merchant_id,
      c: event.currency,
      g: split.success === null ? null : String(split.success.gross_minor),
      f: split.success === null ? null : String(split.success.fee_minor),
      n: split.success === null ? null : String(split.success.net_minor),
      r: refunded.success === null ? null : String(refunded.success.refunded_minor),
      fr: refunded.success === null ? null : String(refunded.success.fee_returned_minor),
      at: moves ? new Date(event.occurred_at.epochMilliseconds).toISOString() : null
    })
  }
  return Result.succeed(sql`
    WITH claim AS MATERIALIZED (
      SELECT ${claim} AS outcomes
    ), applied AS MATERIALIZED (
      -- Each event beside its outcome: ROWS FROM zips the two by position (the i-th event with the
      -- i-th outcome). Subscripting the text[] per row (claim.outcomes[e.i]) walked the array from
      -- its start each time: a cost growing with the square of the slice (eleventh round).
      SELECT e.* FROM claim, ROWS FROM (
        jsonb_to_recordset(${JSON.stringify(rows)}::jsonb)
          AS (i int, t text, p int, m text, c text, g bigint, f bigint, n bigint, r bigint, fr bigint, at timestamptz),
        unnest(claim.outcomes)
      ) AS e(i, t, p, m, c, g, f, n, r, fr, at, outcome)
      WHERE e.outcome = 'applied'
    ), counted AS (
      INSERT INTO settlement_projection_event_counts (generation, event_type, partition, event_count)
      SELECT ${generation}, a.t, a.p, count(*) FROM applied a
      GROUP BY a.t, a.p ORDER BY a.t COLLATE "C", a.p
      ${sql.literal(countsOnConflict)}
      RETURNING 1
    ), summed AS (
      INSERT INTO settlement_projection (generation, merchant_id, currency, settled_gross_minor, fees_minor, net_minor,
                                         payment_count, refunded_minor, fee_returned_minor, refund_count, last_event_at)
      SELECT ${generation}, a.m, a.c, coalesce(sum(a.g), 0), coalesce(sum(a.f), 0), coalesce(sum(a.n), 0), count(a.g),
             coalesce(sum(a.r), 0), coalesce(sum(a.fr), 0), count(a.r), max(a.at)
      FROM applied a WHERE a.g IS NOT NULL OR a.r IS NOT NULL
      GROUP BY a.m, a.c ORDER BY a.m COLLATE "C", a.c COLLATE "C"
      ${sql.literal(sumsOnConflict)}
      RETURNING 1
    )
    SELECT claim.outcomes, (SELECT count(*) FROM counted) AS counted, (SELECT count(*) FROM summed) AS summed FROM claim`)
}
