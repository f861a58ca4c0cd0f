import { Context, Effect, Layer, Schema } from "effect"
import { SqlClient } from "effect/sql"
import type { SqlError } from "effect/sql/SqlError"
import { OutboxRow } from "./CloudEvents.ts"

const decodeOutboxRows = Schema.decodeUnknownEffect(Schema.Array(OutboxRow))

/** Kept on the row for operators (`last_error`); longer messages are cut. */
const lastErrorLength_max = 2_000

export interface OutboxBacklog {
  readonly unpublished_count: bigint
  /** Age of the oldest unpublished row in ms; 0 when there is none. */
  readonly oldest_unpublished_age_ms: number
}

export interface RequeueResult {
  readonly requeued: number
  /** Where the next call starts (one past the last requeued row; `fromPosition` when none). */
  readonly nextPosition: bigint
}

/**
 * The publisher's view of `outbox_events`. `claim` must run inside a transaction: the claimed rows
 * stay locked (FOR UPDATE) until that transaction ends, so other publishers skip them
 * (SKIP LOCKED) and a crash releases them.
 *
 * Per-aggregate order with several publishers: a row is claimable only when no earlier row of the
 * same aggregate is still unpublished. Otherwise publisher A could hold a payment's
 * `payment_created` while publisher B sends its `payment_authorized` first. So a batch carries
 * at most the next event of each aggregate; the following one becomes claimable once the
 * earlier is marked published.
 */
export class OutboxStore extends Context.Service<OutboxStore, {
  readonly claim: (limit: number) => Effect.Effect<ReadonlyArray<OutboxRow>, SqlError>
  /** Only for rows this transaction claimed: every id must be updated, or it is a defect. */
  readonly markPublished: (ids: ReadonlyArray<string>) => Effect.Effect<void, SqlError>
  readonly recordFailure: (ids: ReadonlyArray<string>, error: string) => Effect.Effect<void, SqlError>
  readonly backlog: Effect.Effect<OutboxBacklog, SqlError>
  /** Deletes published rows older than the retention, at most `batch` per call. */
  readonly deletePublishedBefore: (cutoff: Date, batch: number) => Effect.Effect<number, SqlError>
  /**
   * Re-publishing history: marks up to `limit` published rows from `fromPosition` on (in position
   * order) as unpublished again, so the publisher sends them once more with their original ids.
   * Walk forward with `nextPosition` until `requeued` is 0; ascending ranges keep each payment's
   * events in order on the replay.
   */
  readonly requeue: (fromPosition: bigint, limit: number) => Effect.Effect<RequeueResult, SqlError>
}>()("outbox/OutboxStore") {
  static readonly layer = Layer.effect(
    OutboxStore,
    Effect.gen(function* () {
      const sql = yield* SqlClient.SqlClient

      const claim = (limit: number) =>
        sql`
          SELECT o.id, o.position, o.aggregate_type, o.aggregate_id, o.event_type, o.event_version,
                 o.payload, o.headers, o.created_at, o.attempt_count
          FROM outbox_events o
          WHERE o.published_at IS NULL
            AND NOT EXISTS (
              SELECT 1 FROM outbox_events e
              WHERE e.published_at IS NULL
                AND e.aggregate_type = o.aggregate_type
                AND e.aggregate_id = o.aggregate_id
                AND e.position < o.position)
          ORDER BY o.position
          LIMIT ${limit}
          FOR UPDATE OF o SKIP LOCKED`.pipe(
          Effect.flatMap((rows) =>
            decodeOutboxRows(rows).pipe(
              Effect.catch((error) => Effect.die(new Error(`outbox_events row violates OutboxRow: ${error.message}`)))
            )
          ),
          Effect.withSpan("OutboxStore.claim")
        )

      const markPublished = (ids: ReadonlyArray<string>) =>
        ids.length === 0
          ? Effect.void
          : sql<{ id: string }>`
              UPDATE outbox_events
              SET published_at = clock_timestamp(), attempt_count = attempt_count + 1, last_error = NULL
              WHERE id = ANY(${ids}::uuid[]) AND published_at IS NULL
              RETURNING id`.pipe(
              // The rows are locked by this transaction since the claim: nobody else can have
              // marked or deleted them. Fewer updates means the caller broke that contract.
              Effect.flatMap((rows) =>
                rows.length === ids.length
                  ? Effect.void
                  : Effect.die(new Error(`markPublished updated ${rows.length} of ${ids.length} claimed rows`))
              )
            )

      const recordFailure = (ids: ReadonlyArray<string>, error: string) =>
        ids.length === 0
          ? Effect.void
          : sql`
              UPDATE outbox_events
              SET attempt_count = attempt_count + 1, last_error = ${error.slice(0, lastErrorLength_max)}
              WHERE id = ANY(${ids}::uuid[]) AND published_at IS NULL`.pipe(Effect.asVoid)

      const backlog = Effect.map(
        sql<{ unpublished_count: bigint; oldest_unpublished_age_ms: number | null }>`
          SELECT count(*)::bigint AS unpublished_count,
                 (extract(epoch FROM clock_timestamp() - min(created_at)) * 1000)::float8 AS oldest_unpublished_age_ms
          FROM outbox_events WHERE published_at IS NULL`,
        (rows): OutboxBacklog => ({
          unpublished_count: rows[0]?.unpublished_count ?? 0n,
          oldest_unpublished_age_ms: rows[0]?.oldest_unpublished_age_ms ?? 0
        })
      )

      const deletePublishedBefore = (cutoff: Date, batch: number) =>
        Effect.map(
          sql<{ id: string }>`
            DELETE FROM outbox_events WHERE id IN (
              SELECT id FROM outbox_events
              WHERE published_at IS NOT NULL AND published_at < ${cutoff}
              ORDER BY published_at LIMIT ${batch})
            RETURNING id`,
          (rows) => rows.length
        )

      const requeue = (fromPosition: bigint, limit: number) =>
        Effect.map(
          sql<{ position: bigint }>`
            UPDATE outbox_events SET published_at = NULL
            WHERE id IN (
              SELECT id FROM outbox_events
              WHERE position >= ${fromPosition} AND published_at IS NOT NULL
              ORDER BY position LIMIT ${limit})
            RETURNING position`,
          (rows): RequeueResult => ({
            requeued: rows.length,
            nextPosition: rows.reduce((next, row) => (row.position >= next ? row.position + 1n : next), fromPosition)
          })
        )

      return OutboxStore.of({ claim, markPublished, recordFailure, backlog, deletePublishedBefore, requeue })
    })
  )
}
