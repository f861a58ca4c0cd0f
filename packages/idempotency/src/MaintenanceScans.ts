import { decodeRows } from "@pay/infra"
import { Effect, Schema } from "effect"
import { SqlClient } from "effect/sql"
import type { SqlError } from "effect/sql/SqlError"

/**
 * The reaper's and the completer's scans over `idempotency_keys`, ordered by an indexed instant
 * and bounded by LIMIT. Their cut-offs compare with `statement_timestamp()`, a STABLE function,
 * never `clock_timestamp()` (VOLATILE): a volatile comparison cannot be an index condition, so the
 * scan filtered every entry of the index, finished or not, on every pass (75 ms at 48,000 keys
 * in the long chaos run, growing with the table). With a stable cut-off the index range starts
 * and stops at the cut-off: the cost follows the rows due, not the table. Within one statement
 * the two clocks differ by that statement's own run time, far below any retention or age here.
 * packages/idempotency/test/maintenance-plan.test.ts checks the plans.
 */
const cutoff = (sql: SqlClient.SqlClient, age_ms: number) =>
  sql`statement_timestamp() - ${age_ms}::double precision * interval '1 millisecond'`

/** Finished keys past the retention, oldest first (index idempotency_keys_finished_at). */
export const finishedPastRetention = (sql: SqlClient.SqlClient, retention_ms: number, batch: number) =>
  sql`
    SELECT id FROM idempotency_keys
    WHERE finished_at IS NOT NULL AND finished_at < ${cutoff(sql, retention_ms)}
    ORDER BY finished_at
    LIMIT ${batch}`

/** Keys whose run never did anything durable, nobody holds, idle past the retention (index idempotency_keys_unfinished). */
export const neverStartedPastRetention = (sql: SqlClient.SqlClient, retention_ms: number, batch: number) =>
  sql`
    SELECT id FROM idempotency_keys
    WHERE finished_at IS NULL AND recovery_point = 'started'
      AND (lock_expires_at IS NULL OR lock_expires_at < statement_timestamp())
      AND last_run_at < ${cutoff(sql, retention_ms)}
    ORDER BY last_run_at
    LIMIT ${batch}`

/**
 * Unfinished keys nobody holds, idle for `olderThan_ms`, neither parked (they wait for an
 * operator) nor backing off (they wait for their next attempt): the completer's work, oldest
 * first (index idempotency_keys_unfinished). `columns`: the caller's select list.
 */
export const abandonedKeys = (sql: SqlClient.SqlClient, columns: string, olderThan_ms: number, limit: number) =>
  sql`
    SELECT ${sql.literal(columns)} FROM idempotency_keys
    WHERE finished_at IS NULL
      AND (lock_expires_at IS NULL OR lock_expires_at <= statement_timestamp())
      AND last_run_at < ${cutoff(sql, olderThan_ms)}
      AND parked_at IS NULL
      AND (completer_next_at IS NULL OR completer_next_at <= statement_timestamp())
    ORDER BY last_run_at
    LIMIT ${limit}`

const planLines = decodeRows(Schema.Struct({ "QUERY PLAN": Schema.String }))

/** The three scans' plans (EXPLAIN, nothing run), for the plan test. */
export const explainMaintenanceScans = (age_ms: number, batch: number): Effect.Effect<
  { readonly finished: string; readonly neverStarted: string; readonly abandoned: string },
  SqlError,
  SqlClient.SqlClient
> =>
  Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    const explain = (statement: ReturnType<typeof finishedPastRetention>) =>
      planLines(sql`EXPLAIN ${statement}`).pipe(Effect.map((rows) => rows.map((row) => row["QUERY PLAN"]).join("\n")))
    return {
      finished: yield* explain(finishedPastRetention(sql, age_ms, batch)),
      neverStarted: yield* explain(neverStartedPastRetention(sql, age_ms, batch)),
      abandoned: yield* explain(abandonedKeys(sql, "id", age_ms, batch))
    }
  })
