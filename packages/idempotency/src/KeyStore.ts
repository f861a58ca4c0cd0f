import { MerchantId } from "@pay/domain"
import { Effect, Option, Schema } from "effect"
import type { SqlClient } from "effect/sql"
import type { SqlError } from "effect/sql/SqlError"
import type { Fragment } from "effect/sql/Statement"
import { randomUUID } from "node:crypto"
import { IdempotencyKeyInUse, IdempotencyKeyReused, IdempotencyLockLost } from "./Errors.ts"
import { IdempotencyKey } from "./IdempotencyKey.ts"
import { abandonedKeys, finishedPastRetention, neverStartedPastRetention } from "./MaintenanceScans.ts"
import type { AbandonedKey, Began, BeginRequest, IdempotencyRecord, KeyState, Released, StoredResponse } from "./Model.ts"

/**
 * The Postgres key store: the authority on every key (`idempotency_keys`,
 * migrations/0005_idempotency.sql and 0008). Every statement decides with the database's clock,
 * and every write of a run requires its lease token, so a run whose lease passed to another run
 * changes nothing (its transaction rolls back with IdempotencyLockLost).
 */

const KeyRow = Schema.Struct({
  id: Schema.String,
  merchant_id: MerchantId,
  idempotency_key: IdempotencyKey,
  request_method: Schema.String,
  request_path: Schema.String,
  request_fingerprint: Schema.String,
  request_body: Schema.NullOr(Schema.Json),
  operation: Schema.NullOr(Schema.Json),
  recovery_point: Schema.String,
  recovery_data: Schema.JsonObject,
  locked_at: Schema.NullOr(Schema.Date),
  lock_expires_at: Schema.NullOr(Schema.Date),
  lock_token: Schema.NullOr(Schema.String),
  response_status: Schema.NullOr(Schema.Int),
  response_body: Schema.NullOr(Schema.String),
  response_content_type: Schema.NullOr(Schema.String),
  created_at: Schema.Date,
  last_run_at: Schema.Date,
  finished_at: Schema.NullOr(Schema.Date),
  run_count: Schema.Int,
  completer_attempts: Schema.Int,
  correlation_id: Schema.NullOr(Schema.String),
  traceparent: Schema.NullOr(Schema.String),
  // Computed by the database with its own clock (never the application's).
  lock_live: Schema.Boolean
})
type KeyRow = typeof KeyRow.Type
const decodeKeyRows = Schema.decodeUnknownEffect(Schema.Array(KeyRow))

/** The columns every query returns, `lock_live` included. */
const keyColumns = `id, merchant_id, idempotency_key, request_method, request_path, request_fingerprint,
  request_body, operation, recovery_point, recovery_data, locked_at, lock_expires_at, lock_token, response_status,
  response_body, response_content_type, created_at, last_run_at, finished_at, run_count, completer_attempts, correlation_id, traceparent,
  (lock_expires_at IS NOT NULL AND lock_expires_at > clock_timestamp()) AS lock_live`

const toKeyState = (row: KeyRow): KeyState => ({
  id: row.id,
  merchantId: row.merchant_id,
  key: row.idempotency_key,
  method: row.request_method,
  path: row.request_path,
  fingerprint: row.request_fingerprint,
  requestBody: row.request_body,
  operation: row.operation,
  recoveryPoint: row.recovery_point,
  recoveryData: row.recovery_data,
  runCount: row.run_count
})

const toRecord = (row: KeyRow, lockTimeout_ms: number): IdempotencyRecord | undefined =>
  row.lock_token === null || row.lock_expires_at === null
    ? undefined
    : { ...toKeyState(row), lockToken: row.lock_token, lockExpiresAt: row.lock_expires_at, lockTimeout_ms, createdAt: row.created_at }

const toAbandoned = (row: KeyRow): AbandonedKey => ({
  ...toKeyState(row),
  lastRunAt: row.last_run_at,
  completerAttempts: row.completer_attempts,
  correlationId: row.correlation_id ?? undefined,
  traceparent: row.traceparent ?? undefined
})

const toStoredResponse = (row: KeyRow): StoredResponse | undefined =>
  row.response_status === null || row.response_body === null || row.response_content_type === null
    ? undefined
    : { status: row.response_status, body: row.response_body, contentType: row.response_content_type }

const leaseOrDie = (row: KeyRow | undefined, lease_ms: number, what: string) => {
  const record = row === undefined ? undefined : toRecord(row, lease_ms)
  return record === undefined ? Effect.die(new Error(`${what} returned no lease`)) : Effect.succeed(record)
}

/** `now + ms` in the database's clock. */
const later = (sql: SqlClient.SqlClient, ms: number) => sql`clock_timestamp() + ${ms}::double precision * interval '1 millisecond'`

/** Taking the lease: inserting a new key, or deciding an existing one under its row lock. */
const makeLeases = (sql: SqlClient.SqlClient) => {
  const rows = (effect: Effect.Effect<ReadonlyArray<unknown>, SqlError>) =>
    // The table's constraints guarantee the shape; a mismatch is a bug, not a request error.
    effect.pipe(Effect.flatMap(decodeKeyRows), Effect.catchTag("SchemaError", Effect.die))

  const insertFresh = (request: BeginRequest, token: string, lease_ms: number) => {
    const body = request.canonicalBody === undefined || request.canonicalBody === "" ? null : request.canonicalBody
    const operation = request.operation === undefined ? null : JSON.stringify(request.operation)
    return rows(sql`
      INSERT INTO idempotency_keys (id, merchant_id, idempotency_key, request_method, request_path,
                                    request_fingerprint, request_body, operation, locked_at, lock_expires_at, lock_token, correlation_id,
                                    traceparent)
      VALUES (${randomUUID()}, ${request.merchantId}, ${request.key}, ${request.method}, ${request.path},
              ${request.fingerprint}, ${body}::jsonb, ${operation}::jsonb, clock_timestamp(), ${later(sql, lease_ms)}, ${token},
              ${request.correlationId ?? null}, ${request.traceparent ?? null})
      ON CONFLICT (merchant_id, idempotency_key) DO NOTHING
      RETURNING ${sql.literal(keyColumns)}`)
  }

  /** The key exists: lock its row and decide. None when it vanished (released meanwhile). */
  const decideExisting = (request: BeginRequest, token: string, lease_ms: number) =>
    sql.withTransaction(Effect.gen(function* () {
      const [row] = yield* rows(sql`
        SELECT ${sql.literal(keyColumns)} FROM idempotency_keys
        WHERE merchant_id = ${request.merchantId} AND idempotency_key = ${request.key}
        FOR UPDATE`)
      if (row === undefined) return Option.none<Began>()
      if (row.request_fingerprint !== request.fingerprint) {
        return yield* new IdempotencyKeyReused({ key: request.key, decidedBy: "postgres" })
      }
      const stored = toStoredResponse(row)
      if (stored !== undefined) return Option.some<Began>({ _tag: "Replay", response: stored, decidedBy: "postgres" })
      if (row.lock_live) return yield* new IdempotencyKeyInUse({ key: request.key, decidedBy: "postgres" })
      // Not finished and no live lease: the previous run released it (unknown outcome) or died.
      // Take the lease and resume from its recovery point.
      const [locked] = yield* rows(sql`
        UPDATE idempotency_keys
        SET locked_at = clock_timestamp(), lock_expires_at = ${later(sql, lease_ms)},
            lock_token = ${token}, last_run_at = clock_timestamp(), run_count = run_count + 1
        WHERE id = ${row.id}
        RETURNING ${sql.literal(keyColumns)}`)
      return Option.some<Began>({ _tag: "Resume", record: yield* leaseOrDie(locked, lease_ms, `UPDATE of locked row ${row.id}`) })
    }))

  /**
   * Postgres decides. Bounded: the row can only vanish between our INSERT and our SELECT if a run
   * that never started released it; three such races in a row mean the key is busy.
   */
  const decide = (request: BeginRequest, token: string, lease_ms: number) =>
    Effect.gen(function* () {
      for (let attempt = 1; attempt <= 3; attempt++) {
        const [inserted] = yield* insertFresh(request, token, lease_ms)
        if (inserted !== undefined) return { _tag: "Fresh", record: yield* leaseOrDie(inserted, lease_ms, "INSERT … RETURNING") } satisfies Began
        const decided = yield* decideExisting(request, token, lease_ms)
        if (Option.isSome(decided)) return decided.value
      }
      return yield* new IdempotencyKeyInUse({ key: request.key, decidedBy: "postgres" })
    })

  /**
   * One autocommitted read, no lock: is the key finished, or held by a live lease? None when there
   * is no such key. Asked only when another request with the same fingerprint holds the Redis
   * marker, before answering 409 from it.
   */
  const peek = (request: BeginRequest) =>
    peekRows(sql`
      SELECT request_fingerprint, finished_at IS NOT NULL AS finished,
             (lock_expires_at IS NOT NULL AND lock_expires_at > clock_timestamp()) AS lock_live
      FROM idempotency_keys
      WHERE merchant_id = ${request.merchantId} AND idempotency_key = ${request.key}`).pipe(
      Effect.map((found) => Option.fromUndefinedOr(found[0]))
    )

  return { rows, decide, peek }
}

const PeekRow = Schema.Struct({ request_fingerprint: Schema.String, finished: Schema.Boolean, lock_live: Schema.Boolean })
const decodePeekRows = Schema.decodeUnknownEffect(Schema.Array(PeekRow))
// The statement fixes the shape; a mismatch is a bug, not a request error.
const peekRows = (effect: Effect.Effect<ReadonlyArray<unknown>, SqlError>) =>
  effect.pipe(Effect.flatMap(decodePeekRows), Effect.catchTag("SchemaError", Effect.die))

/** The new keys a single statement writes with its work (runAtOnce, runGated): CTE bodies. */
const makeInserts = (sql: SqlClient.SqlClient) => {
  /**
   * A new key, finished at once with its response (runAtOnce): for the caller's single statement,
   * returning its id when inserted and nothing when the key exists. No lease: the key, the work
   * and the response commit together or not at all.
   */
  const insertFinished = (id: string, request: BeginRequest, response: StoredResponse) => {
    const body = request.canonicalBody === undefined || request.canonicalBody === "" ? null : request.canonicalBody
    const operation = request.operation === undefined ? null : JSON.stringify(request.operation)
    return sql`
      INSERT INTO idempotency_keys (id, merchant_id, idempotency_key, request_method, request_path, request_fingerprint,
                                    request_body, operation, recovery_point, response_status, response_body,
                                    response_content_type, finished_at)
      VALUES (${id}, ${request.merchantId}, ${request.key}, ${request.method}, ${request.path}, ${request.fingerprint},
              ${body}::jsonb, ${operation}::jsonb, 'finished', ${response.status}, ${response.body},
              ${response.contentType}, clock_timestamp())
      ON CONFLICT (merchant_id, idempotency_key) DO NOTHING
      RETURNING id`
  }

  /**
   * A new key with this run's lease, already at `recoveryPoint` (runGated), written once per row
   * of the caller's CTE `source`: a CTE body for the caller's statement. No row back when the key
   * exists (or `source` is empty).
   */
  const insertLeasedFrom = (id: string, request: BeginRequest, token: string, lease_ms: number, leased: LeasedPoint) => {
    const body = request.canonicalBody === undefined || request.canonicalBody === "" ? null : request.canonicalBody
    const operation = request.operation === undefined ? null : JSON.stringify(request.operation)
    return sql`
      INSERT INTO idempotency_keys (id, merchant_id, idempotency_key, request_method, request_path, request_fingerprint,
                                    request_body, operation, recovery_point, recovery_data, locked_at, lock_expires_at, lock_token,
                                    correlation_id, traceparent)
      SELECT ${id}, ${request.merchantId}, ${request.key}, ${request.method}, ${request.path}, ${request.fingerprint},
             ${body}::jsonb, ${operation}::jsonb, ${leased.recoveryPoint}, ${JSON.stringify(leased.data)}::jsonb,
             clock_timestamp(), ${later(sql, lease_ms)}, ${token}, ${request.correlationId ?? null}, ${request.traceparent ?? null}
      FROM ${sql.literal(leased.source)}
      ON CONFLICT (merchant_id, idempotency_key) DO NOTHING
      RETURNING id, lock_expires_at, created_at`
  }

  return { insertFinished, insertLeasedFrom }
}

/** Where `insertLeasedFrom` puts the key, and from which CTE of the caller's statement. */
export interface LeasedPoint {
  readonly source: string
  readonly recoveryPoint: string
  readonly data: Schema.JsonObject
}

const IdRow = Schema.Struct({ id: Schema.String })
const RecoveryPointRow = Schema.Struct({ recovery_point: Schema.String })
const ReapedRow = Schema.Struct({ merchant_id: Schema.String, idempotency_key: Schema.String })
const decodeAs = <S extends Schema.Top & { readonly DecodingServices: never }>(row: S) => {
  const decode = Schema.decodeUnknownEffect(Schema.Array(row))
  // The statement's RETURNING list fixes the shape; a mismatch is a bug.
  return (effect: Effect.Effect<ReadonlyArray<unknown>, SqlError>) =>
    effect.pipe(Effect.flatMap(decode), Effect.catchTag("SchemaError", Effect.die))
}
const ids = decodeAs(IdRow)
const recoveryPoints = decodeAs(RecoveryPointRow)
const reapedRows = decodeAs(ReapedRow)

/** The writes of a run that holds the lease: a recovery point, the response, or the release. */
const makeRunWrites = (sql: SqlClient.SqlClient, rows: ReturnType<typeof makeLeases>["rows"]) => {
  const lockLost = (record: IdempotencyRecord) => new IdempotencyLockLost({ key: record.key, recordId: record.id })

  const advance = (record: IdempotencyRecord, recoveryPoint: string, data: Schema.JsonObject) =>
    Effect.gen(function* () {
      const [row] = yield* rows(sql`
        UPDATE idempotency_keys
        SET recovery_point = ${recoveryPoint}, recovery_data = ${JSON.stringify(data)}::jsonb,
            last_run_at = clock_timestamp(), lock_expires_at = ${later(sql, record.lockTimeout_ms)}
        WHERE id = ${record.id} AND lock_token = ${record.lockToken} AND finished_at IS NULL
        RETURNING ${sql.literal(keyColumns)}`)
      const next = row === undefined ? undefined : toRecord(row, record.lockTimeout_ms)
      if (next === undefined) return yield* lockLost(record)
      return next
    })

  /** The UPDATE that stores the response and ends the lease; `also`: a further condition. */
  const storeResponseStatement = (record: IdempotencyRecord, response: StoredResponse, also: Fragment) => sql`
    UPDATE idempotency_keys
    SET recovery_point = 'finished', response_status = ${response.status}, response_body = ${response.body},
        response_content_type = ${response.contentType}, finished_at = clock_timestamp(),
        last_run_at = clock_timestamp(), locked_at = NULL, lock_expires_at = NULL, lock_token = NULL,
        parked_at = NULL, completer_next_at = NULL
    WHERE id = ${record.id} AND lock_token = ${record.lockToken} AND finished_at IS NULL ${also}
    RETURNING id`

  /** The check of a stored response: exactly one row, else the lease was lost. */
  const stored = (record: IdempotencyRecord, rows: number) => (rows === 1 ? Effect.void : Effect.fail(lockLost(record)))

  /** Stores the response and ends the lease, in the caller's transaction. */
  const storeResponse = (record: IdempotencyRecord, response: StoredResponse) =>
    Effect.gen(function* () {
      const updated = yield* ids(storeResponseStatement(record, response, sql``))
      yield* stored(record, updated.length)
    })

  /**
   * `storeResponse` as a CTE body of the caller's own statement, written only when the CTE
   * `source` (a name the caller checked) has a row; `stored` is its check, with the number of rows
   * the CTE returned.
   */
  const storeResponseFrom = (record: IdempotencyRecord, response: StoredResponse, source: string) =>
    storeResponseStatement(record, response, sql`AND EXISTS (SELECT 1 FROM ${sql.literal(source)})`)

  const release = (record: IdempotencyRecord) =>
    sql.withTransaction(Effect.gen(function* () {
      // Nothing durable happened: free the key, as if the request had never arrived.
      const deleted = yield* ids(sql`
        DELETE FROM idempotency_keys
        WHERE id = ${record.id} AND lock_token = ${record.lockToken} AND recovery_point = 'started'
        RETURNING id`)
      if (deleted.length === 1) return { _tag: "Deleted" } satisfies Released
      // Work was done: keep the recovery point so a retry (or the completer) resumes it.
      const [row] = yield* recoveryPoints(sql`
        UPDATE idempotency_keys
        SET locked_at = NULL, lock_expires_at = NULL, lock_token = NULL, last_run_at = clock_timestamp()
        WHERE id = ${record.id} AND lock_token = ${record.lockToken} AND finished_at IS NULL
        RETURNING recovery_point`)
      return row === undefined
        ? ({ _tag: "NotOwner" } satisfies Released)
        : ({ _tag: "Unlocked", recoveryPoint: row.recovery_point } satisfies Released)
    }))

  return { advance, storeResponse, storeResponseFrom, stored, release }
}

/** The maintenance statements: what the reaper deletes and what the completer picks up. */
const makeMaintenance = (sql: SqlClient.SqlClient, rows: ReturnType<typeof makeLeases>["rows"]) => {
  /** Finished keys past the retention, then keys that never did anything durable; at most `batch` each. */
  const reap = (retention_ms: number, batch: number) =>
    Effect.gen(function* () {
      const finished = yield* reapedRows(sql`
        DELETE FROM idempotency_keys
        WHERE id IN (${finishedPastRetention(sql, retention_ms, batch)} FOR UPDATE SKIP LOCKED)
        RETURNING merchant_id, idempotency_key`)
      // Keys whose run never did anything durable and nobody holds: nothing to finish or replay.
      const neverStarted = yield* ids(sql`
        DELETE FROM idempotency_keys
        WHERE id IN (${neverStartedPastRetention(sql, retention_ms, batch)} FOR UPDATE SKIP LOCKED)
        RETURNING id`)
      return { finished, neverStarted: neverStarted.length }
    })

  const abandoned = (olderThan_ms: number, limit: number) =>
    rows(abandonedKeys(sql, keyColumns, olderThan_ms, limit)).pipe(Effect.map((found) => found.map(toAbandoned)))

  /**
   * Counts a failed completer attempt: the next one waits `retryIn_ms`, or the key is parked.
   * Fenced by the attempt count read with the key, so two completers cannot count one failure
   * twice; a key finished meanwhile (a client's retry) is left alone. False when nothing changed.
   */
  const recordCompleterFailure = (failure: {
    readonly id: string
    readonly previousAttempts: number
    readonly retryIn_ms: number
    readonly park: boolean
    readonly reason: string
  }) =>
    ids(sql`
      UPDATE idempotency_keys
      SET completer_attempts = completer_attempts + 1,
          completer_next_at = clock_timestamp() + ${failure.retryIn_ms}::double precision * interval '1 millisecond',
          completer_last_error = ${failure.reason},
          parked_at = CASE WHEN ${failure.park} THEN clock_timestamp() ELSE NULL END
      WHERE id = ${failure.id} AND completer_attempts = ${failure.previousAttempts}
        AND finished_at IS NULL AND parked_at IS NULL
      RETURNING id`).pipe(Effect.map((updated) => updated.length === 1))

  return { reap, abandoned, recordCompleterFailure }
}

export const makeKeyStore = (sql: SqlClient.SqlClient) => {
  const leases = makeLeases(sql)
  return { decide: leases.decide, peek: leases.peek, ...makeInserts(sql), ...makeRunWrites(sql, leases.rows), ...makeMaintenance(sql, leases.rows) }
}

export type KeyStore = ReturnType<typeof makeKeyStore>
