import { Context, Effect, Layer, Schema } from "effect"
import { SqlClient } from "effect/sql"
import type { SqlError } from "effect/sql/SqlError"
import { decodeRow, decodeRows } from "@pay/infra"
import { OutboxRow } from "./CloudEvents.ts"

/** A claim candidate: the row, and whether an earlier unpublished row of its aggregate is held by another claim. */
const ClaimCandidate = Schema.Struct({ ...OutboxRow.fields, held_back: Schema.Boolean })
const decodeCandidates = Schema.decodeUnknownEffect(Schema.Array(ClaimCandidate))

/**
 * The per-aggregate guard, applied to candidates in position order: a row may go out in this
 * batch only if every earlier unpublished row of its aggregate is in this batch too, ahead of it
 * (then the batch's produce calls send them in order to the same partition). `held_back` says an
 * earlier row of its aggregate is held by another claim (the claim statement computes it): that row
 * and every later one of the aggregate stay behind. Exported for the tests.
 */
export const claimableInOrder = <A extends { readonly position: bigint; readonly held_back: boolean }>(
  candidates: ReadonlyArray<A>
): ReadonlyArray<A> =>
  candidates.filter((candidate) => !candidate.held_back).sort((a, b) => (a.position < b.position ? -1 : a.position > b.position ? 1 : 0))

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
 * Per-aggregate order with several publishers: a row is claimable only when every earlier
 * unpublished row of the same aggregate is claimed in the same batch. Otherwise publisher A could
 * hold a payment's `payment_created` (and then fail to send it) while publisher B sends its
 * `payment_authorized` first. A batch may carry several consecutive events of one payment (they
 * go out in one produce call, in order); the rest wait until the earlier ones are published.
 */
export class OutboxStore extends Context.Service<OutboxStore, {
  /**
   * Claims in the caller's transaction, and sets it up for the publisher (`enable_sort` and
   * `synchronous_commit` off, for that transaction only): use it in a transaction that does
   * nothing but claim, send, and mark.
   */
  readonly claim: (limit: number) => Effect.Effect<ReadonlyArray<OutboxRow>, SqlError>
  /**
   * The claim's query plan as the publisher gets it (for operators, and tests). `analyze`: run it
   * too (EXPLAIN ANALYZE, with buffers; the rows it locks are released at once, nothing marked).
   */
  readonly explainClaim: (limit: number, options?: { readonly analyze?: boolean }) => Effect.Effect<string, SqlError>
  /** Only for rows this transaction claimed: every id must be updated, or it is a defect. */
  readonly markPublished: (ids: ReadonlyArray<string>) => Effect.Effect<void, SqlError>
  readonly recordFailure: (ids: ReadonlyArray<string>, error: string) => Effect.Effect<void, SqlError>
  readonly backlog: Effect.Effect<OutboxBacklog, SqlError>
  /** Whether any row is unpublished: one autocommitted read of the partial index (an idle publisher's poll). */
  readonly anyUnpublished: Effect.Effect<boolean, SqlError>
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
      return OutboxStore.of({ ...makeClaims(sql), ...makeBookkeeping(sql) })
    })
  )
}

const idRows = decodeRows(Schema.Struct({ id: Schema.String }))
const existsRows = decodeRows(Schema.Struct({ found: Schema.Boolean }))
const positions = decodeRows(Schema.Struct({ position: Schema.BigInt }))
const planLines = decodeRows(Schema.Struct({ "QUERY PLAN": Schema.String }))
const backlogRow = decodeRow(Schema.Struct({ unpublished_count: Schema.BigInt, oldest_unpublished_age_ms: Schema.NullOr(Schema.Number) }))

/**
 * Candidates: the first `limit` unpublished rows in position order that nobody else holds,
 * locked. For each, whether an unpublished row of its aggregate before it is held by another
 * claim (any unpublished row below the last candidate that is not a candidate is);
 * `claimableInOrder` keeps those whose earlier rows are all in the batch. Candidates held back
 * stay locked until this transaction ends, which is harmless: nobody may send them before their
 * predecessors anyway.
 *
 * The scan must walk the `outbox_events_unpublished` index in order and stop after `limit`
 * rows, whatever the table's statistics say. They are stale exactly when it matters: after
 * an outage the backlog grows faster than autovacuum re-analyzes, the planner still
 * believes that a handful of rows are unpublished, and it picks "bitmap scan every
 * unpublished row, then sort" — a cost that grows with the backlog, paid on every claim,
 * so draining n rows costs O(n²). `enable_sort = off` (for this transaction only) leaves
 * the ordered index scan as the only sane plan. Nothing else in the claiming transaction
 * sorts. `explainClaim` shows the plan as the publisher gets it.
 */
const claimStatementOf = (sql: SqlClient.SqlClient, limit: number) => sql`
  WITH candidates AS (
    SELECT id, position, aggregate_type, aggregate_id, event_type, event_version,
           payload, headers, created_at, attempt_count
    FROM outbox_events
    WHERE published_at IS NULL
    ORDER BY position
    LIMIT ${limit}
    FOR UPDATE SKIP LOCKED),
  -- Every unpublished row up to the last candidate, in the order of the unpublished index: the
  -- candidates and the rows other claims hold between them (at most their batches), whatever one
  -- aggregate's history holds. Counting each candidate's earlier rows in the table instead let the
  -- planner, on stale statistics, walk every row the aggregate kept, published ones included: 1.7 s
  -- a claim beside 12,000 published rows of one payment, whose 20,000-row flood drained at 10-15
  -- rows a second (outside re-test of 001ea54). Each step below is linear (hash anti-join, hash
  -- aggregate, hash join): comparing each candidate with every earlier row of its aggregate cost
  -- batch × rows held elsewhere, seconds a claim with 8 workers of 1,000 rows on one payment's flood
  -- (outside re-test of db15b83).
  earlier AS MATERIALIZED (
    SELECT e.id, e.aggregate_type, e.aggregate_id, e.position
    FROM outbox_events e
    WHERE e.published_at IS NULL AND e.position < (SELECT max(position) FROM candidates)
    ORDER BY e.position),
  -- Per aggregate, its first unpublished row that another claim holds (not among the candidates).
  held AS (
    SELECT e.aggregate_type, e.aggregate_id, min(e.position) AS first_held
    FROM earlier e
    WHERE NOT EXISTS (SELECT 1 FROM candidates c WHERE c.id = e.id)
    GROUP BY e.aggregate_type, e.aggregate_id)
  SELECT c.*, coalesce(h.first_held < c.position, false) AS held_back
  FROM candidates c LEFT JOIN held h ON h.aggregate_type = c.aggregate_type AND h.aggregate_id = c.aggregate_id`

/** Claiming: the candidates in position order, kept when the per-aggregate guard allows. */
const makeClaims = (sql: SqlClient.SqlClient) => {
  const claimStatement = (limit: number) => claimStatementOf(sql, limit)

  /**
   * Settings of the claiming transaction (one round trip, local to it):
   * - `enable_sort = off`: see `claimStatement`.
   * - `synchronous_commit = off`: its COMMIT does not wait for the WAL flush. What it commits
   *   is only delivery bookkeeping (published_at, attempt_count, last_error) for rows the
   *   broker already acknowledged; if a database crash loses it, the rows are unpublished
   *   again and are re-sent with the same ids, which at-least-once delivery allows anyway.
   */
  const claimTransactionSettings = sql`SELECT set_config('enable_sort', 'off', true), set_config('synchronous_commit', 'off', true)`

  const claim = (limit: number) =>
    Effect.gen(function* () {
      yield* claimTransactionSettings
      const rows = yield* claimStatement(limit)
      const candidates = yield* decodeCandidates(rows).pipe(
        Effect.catch((error) => Effect.die(new Error(`outbox_events row violates OutboxRow: ${error.message}`)))
      )
      return claimableInOrder(candidates).map(({ held_back: _, ...row }): OutboxRow => row)
    }).pipe(Effect.withSpan("OutboxStore.claim"))

  const explainClaim = (limit: number, options: { readonly analyze?: boolean } = {}) =>
    sql.withTransaction(
      Effect.gen(function* () {
        yield* claimTransactionSettings
        // EXPLAIN alone does not run the statement; with ANALYZE the rows it locks are released
        // when this transaction ends, nothing marked.
        const explain = options.analyze === true ? sql`EXPLAIN (ANALYZE, BUFFERS, COSTS OFF, TIMING OFF)` : sql`EXPLAIN`
        const explained = yield* planLines(sql`${explain} ${claimStatement(limit)}`)
        return explained.map((row) => row["QUERY PLAN"]).join("\n")
      })
    )

  return { claim, explainClaim }
}

/** Delivery bookkeeping, the backlog figures, retention and re-publishing. */
const makeBookkeeping = (sql: SqlClient.SqlClient) => {
  const markPublished = (ids: ReadonlyArray<string>) =>
    ids.length === 0
      ? Effect.void
      : idRows(sql`
          UPDATE outbox_events
          SET published_at = clock_timestamp(), attempt_count = attempt_count + 1, last_error = NULL
          WHERE id = ANY(${ids}::uuid[]) AND published_at IS NULL
          RETURNING id`).pipe(
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
    backlogRow(sql`
      SELECT count(*)::bigint AS unpublished_count,
             (extract(epoch FROM clock_timestamp() - min(created_at)) * 1000)::float8 AS oldest_unpublished_age_ms
      FROM outbox_events WHERE published_at IS NULL`),
    (row): OutboxBacklog => ({
      unpublished_count: row.unpublished_count,
      oldest_unpublished_age_ms: row.oldest_unpublished_age_ms ?? 0
    })
  )

  const anyUnpublished = Effect.map(
    existsRows(sql`SELECT EXISTS (SELECT 1 FROM outbox_events WHERE published_at IS NULL) AS found`),
    (rows) => rows[0]?.found === true
  )

  // Through migrations/0113's function: the publisher's role holds no DELETE (a table-level grant
  // would let it lock the whole table, stalling every payment write).
  const deletePublishedBefore = (cutoff: Date, batch: number) =>
    Effect.map(
      idRows(sql`SELECT id FROM outbox_delete_published_before(${cutoff}, ${batch}) AS id`),
      (rows) => rows.length
    )

  const requeue = (fromPosition: bigint, limit: number) =>
    Effect.map(
      positions(sql`
        UPDATE outbox_events SET published_at = NULL
        WHERE id IN (
          SELECT id FROM outbox_events
          WHERE position >= ${fromPosition} AND published_at IS NOT NULL
          ORDER BY position LIMIT ${limit})
        RETURNING position`),
      (rows): RequeueResult => ({
        requeued: rows.length,
        nextPosition: rows.reduce((next, row) => (row.position >= next ? row.position + 1n : next), fromPosition)
      })
    )

  return { markPublished, recordFailure, backlog, anyUnpublished, deletePublishedBefore, requeue }
}
