import { MerchantId } from "@pay/domain"
import { Redis, type RedisError } from "@pay/infra"
import { Config, Context, Effect, Exit, Layer, Option, Schema } from "effect"
import { SqlClient } from "effect/sql"
import type { SqlError } from "effect/sql/SqlError"
import { randomUUID } from "node:crypto"
import { canonicalBody, type CanonicalJsonValue, fingerprint } from "./Fingerprint.ts"
import { IdempotencyKey } from "./IdempotencyKey.ts"

// ---------------------------------------------------------------------------------------------
// Errors (the HTTP status and the stable `code` are what API users see; docs/idempotency.md)
// ---------------------------------------------------------------------------------------------

/** Which store gave the answer: Redis (the fast path) or Postgres (the authority). */
export const DecidedBy = Schema.Literals(["redis", "postgres"])
export type DecidedBy = typeof DecidedBy.Type

/**
 * 422, code `idempotency_key_reused`: the key was first used for a different request (method,
 * path or canonical body). Nothing was executed and nothing was written.
 */
export class IdempotencyKeyReused extends Schema.TaggedError<IdempotencyKeyReused>()(
  "IdempotencyKeyReused",
  { key: Schema.String, decidedBy: DecidedBy },
  { httpApiStatus: 422 }
) {
  static readonly code = "idempotency_key_reused"
  get code(): typeof IdempotencyKeyReused.code {
    return IdempotencyKeyReused.code
  }
  override get message(): string {
    return "this Idempotency-Key was already used for a different request (method, path or body); use a new key for a new request"
  }
}

/**
 * 409, code `idempotency_key_in_use`: a request with this key is still being processed. Nothing
 * was executed. Retry later with the same key: the retry gets the stored response, or resumes the
 * work if the first run died (its lease expires after the lock timeout).
 */
export class IdempotencyKeyInUse extends Schema.TaggedError<IdempotencyKeyInUse>()(
  "IdempotencyKeyInUse",
  { key: Schema.String, decidedBy: DecidedBy },
  { httpApiStatus: 409 }
) {
  static readonly code = "idempotency_key_in_use"
  get code(): typeof IdempotencyKeyInUse.code {
    return IdempotencyKeyInUse.code
  }
  override get message(): string {
    return "a request with this Idempotency-Key is still in progress; retry later with the same key"
  }
}

/**
 * 409, code `idempotency_key_in_use`: this run's lease expired and another run (a client retry or
 * the completer) took the key over. The write that noticed it matched no row, so the transaction
 * it was part of rolls back: the other run does the work, exactly once. Seen by API users as the
 * same `idempotency_key_in_use`; a distinct tag so operators can count lost leases.
 */
export class IdempotencyLockLost extends Schema.TaggedError<IdempotencyLockLost>()(
  "IdempotencyLockLost",
  { key: Schema.String, recordId: Schema.String },
  { httpApiStatus: 409 }
) {
  static readonly code = "idempotency_key_in_use"
  get code(): typeof IdempotencyLockLost.code {
    return IdempotencyLockLost.code
  }
  override get message(): string {
    return "this run's lease on the Idempotency-Key expired and another run took over; retry later with the same key"
  }
}

// ---------------------------------------------------------------------------------------------
// Values
// ---------------------------------------------------------------------------------------------

/** A response as stored and replayed: status, exact body text (UTF-8), content type. */
export interface StoredResponse {
  readonly status: number
  readonly body: string
  readonly contentType: string
}

/** The recovery point of a key nobody has done durable work for yet. */
export const RECOVERY_POINT_STARTED = "started"
/** The recovery point of a key whose response is stored. Set by `finish` only. */
export const RECOVERY_POINT_FINISHED = "finished"
const recoveryPointPattern = /^[a-z][a-z0-9_]{0,63}$/

/** A key this run holds the lease of: where to continue from, and the token that proves the lease. */
export interface IdempotencyRecord {
  readonly id: string
  readonly merchantId: MerchantId
  readonly key: IdempotencyKey
  readonly method: string
  readonly path: string
  readonly fingerprint: string
  /** The canonical request body stored at the first run (for the completer); null when none. */
  readonly requestBody: Schema.Json | null
  /** `started` (nothing durable done yet), or the last point recorded with `advance`. */
  readonly recoveryPoint: string
  readonly recoveryData: Schema.JsonObject
  /** Fences this run: every later write of this run requires it (see IdempotencyLockLost). */
  readonly lockToken: string
  readonly lockExpiresAt: Date
  /** The lease this run asked for; `advance` renews it by as much. */
  readonly lockTimeout_ms: number
  /** 1 for the first run, more when resumed. */
  readonly runCount: number
  readonly createdAt: Date
}

/**
 * What `begin` found:
 * - `Fresh`: a new key; this run holds the lease, the recovery point is `started`.
 * - `Resume`: an earlier run was interrupted (it released the key after an unknown outcome, or it
 *   died and its lease expired); this run holds the lease and continues from `recoveryPoint`.
 * - `Replay`: the key is finished; answer the stored response (with `Idempotent-Replayed: true`).
 */
export type Began =
  | { readonly _tag: "Fresh"; readonly record: IdempotencyRecord }
  | { readonly _tag: "Resume"; readonly record: IdempotencyRecord }
  | { readonly _tag: "Replay"; readonly response: StoredResponse; readonly decidedBy: DecidedBy }

export interface BeginRequest {
  readonly merchantId: MerchantId
  readonly key: IdempotencyKey
  /** Upper-case HTTP method. */
  readonly method: string
  /** The routed path, without the query string. */
  readonly path: string
  /** From `Fingerprint.fingerprint` / `fingerprintRequest`. */
  readonly fingerprint: string
  /** The canonical JSON body text (Fingerprint.canonicalBody), stored for the completer; "" or omitted when none. */
  readonly canonicalBody?: string
  /** The lease of this run; defaults to the layer's `lockTimeout_ms`. */
  readonly lockTimeout_ms?: number
}

/** Proof that `finish` stored the response (only `finish` makes one). */
const FinishedTypeId: unique symbol = Symbol.for("@pay/idempotency/Finished")
export interface Finished {
  readonly [FinishedTypeId]: typeof FinishedTypeId
  readonly recordId: string
  readonly response: StoredResponse
}

/** What `release` did. */
export type Released =
  | { readonly _tag: "Deleted" } // nothing had started: the key is free for a new request
  | { readonly _tag: "Unlocked"; readonly recoveryPoint: string } // a retry resumes from here
  | { readonly _tag: "NotOwner" } // the lease had already passed to another run; nothing changed

/** An unfinished key nobody holds a live lease on, for the background completer. */
export interface AbandonedKey {
  readonly id: string
  readonly merchantId: MerchantId
  readonly key: IdempotencyKey
  readonly method: string
  readonly path: string
  readonly fingerprint: string
  readonly requestBody: Schema.Json | null
  readonly recoveryPoint: string
  readonly recoveryData: Schema.JsonObject
  readonly lastRunAt: Date
  readonly runCount: number
}

/** The handle `run` gives the operation: the record, and `advance`/`finish` bound to it. */
export interface Execution {
  /** Where to continue from: `started` for a fresh key, or the recorded point of an interrupted run. */
  readonly record: IdempotencyRecord
  readonly resumed: boolean
  /** Records a recovery point; call it inside the transaction that does the step's work. */
  readonly advance: (recoveryPoint: string, data: Schema.JsonObject) => Effect.Effect<IdempotencyRecord, IdempotencyLockLost | SqlError>
  /** Stores the response; call it inside the transaction that does the last piece of work. */
  readonly finish: (response: StoredResponse) => Effect.Effect<Finished, IdempotencyLockLost | SqlError>
}

/** The request `run` protects. */
export interface IdempotentRequest {
  readonly merchantId: MerchantId
  readonly key: IdempotencyKey
  readonly method: string
  readonly path: string
  /** The parsed JSON body, or undefined when there is none. */
  readonly body: CanonicalJsonValue | undefined
  readonly lockTimeout_ms?: number
}

export type RunOutcome =
  | { readonly _tag: "Replayed"; readonly response: StoredResponse; readonly decidedBy: DecidedBy }
  | { readonly _tag: "Executed"; readonly response: StoredResponse; readonly resumed: boolean }

export interface IdempotencyOptions {
  /** Lease of a run on its key: a crashed run blocks its key at most this long. */
  readonly lockTimeout_ms: number
  /** Finished keys are kept at least this long after they finish (the reaper's default). */
  readonly retention_ms: number
  /** How long Redis keeps a completed response; clamped to `retention_ms`. */
  readonly responseCacheTtl_ms: number
  /** Upper bound on any one Redis command, on top of the client's own timeout. */
  readonly redisTimeout_ms: number
}

export const defaultIdempotencyOptions: IdempotencyOptions = {
  lockTimeout_ms: 30_000,
  retention_ms: 24 * 60 * 60 * 1_000,
  responseCacheTtl_ms: 60 * 60 * 1_000,
  redisTimeout_ms: 500
}

/** `IDEMPOTENCY_LOCK_TIMEOUT_MS`, `IDEMPOTENCY_RETENTION_MS`, `IDEMPOTENCY_CACHE_TTL_MS`. */
export const IdempotencyOptionsConfig: Config.Config<IdempotencyOptions> = Config.all({
  lockTimeout_ms: Config.Int("IDEMPOTENCY_LOCK_TIMEOUT_MS").pipe(Config.withDefault(defaultIdempotencyOptions.lockTimeout_ms)),
  retention_ms: Config.Int("IDEMPOTENCY_RETENTION_MS").pipe(Config.withDefault(defaultIdempotencyOptions.retention_ms)),
  responseCacheTtl_ms: Config.Int("IDEMPOTENCY_CACHE_TTL_MS").pipe(
    Config.withDefault(defaultIdempotencyOptions.responseCacheTtl_ms)
  ),
  redisTimeout_ms: Config.succeed(defaultIdempotencyOptions.redisTimeout_ms)
})

/** Bounds on the maintenance queries (TIGER_STYLE: a limit on everything). */
export const REAP_BATCH_MAX = 10_000
export const ABANDONED_LIMIT_MAX = 1_000

// ---------------------------------------------------------------------------------------------
// Rows and Redis values
// ---------------------------------------------------------------------------------------------

const KeyRow = Schema.Struct({
  id: Schema.String,
  merchant_id: MerchantId,
  idempotency_key: IdempotencyKey,
  request_method: Schema.String,
  request_path: Schema.String,
  request_fingerprint: Schema.String,
  request_body: Schema.NullOr(Schema.Json),
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
  // Computed by the database with its own clock (never the application's).
  lock_live: Schema.Boolean
})
type KeyRow = typeof KeyRow.Type
const decodeKeyRows = Schema.decodeUnknownEffect(Schema.Array(KeyRow))

/** The columns every query returns, `lock_live` included. */
const keyColumns = `id, merchant_id, idempotency_key, request_method, request_path, request_fingerprint,
  request_body, recovery_point, recovery_data, locked_at, lock_expires_at, lock_token, response_status,
  response_body, response_content_type, created_at, last_run_at, finished_at, run_count,
  (lock_expires_at IS NOT NULL AND lock_expires_at > clock_timestamp()) AS lock_live`

/** Redis value of a completed response; carries the fingerprint so a mismatch is still a 422. */
const CachedResponse = Schema.Struct({
  v: Schema.Literal(1),
  fingerprint: Schema.String,
  status: Schema.Int,
  contentType: Schema.String,
  body: Schema.String
})
const CachedResponseJson = Schema.fromJsonString(CachedResponse)
const decodeCachedResponse = Schema.decodeUnknownOption(CachedResponseJson)
const encodeCachedResponse = Schema.encodeSync(CachedResponseJson)

/** Redis value of the in-flight marker: whose run, for which request. */
const InFlightMarker = Schema.Struct({ token: Schema.String, fingerprint: Schema.String })
const InFlightMarkerJson = Schema.fromJsonString(InFlightMarker)
const decodeInFlightMarker = Schema.decodeUnknownOption(InFlightMarkerJson)
const encodeInFlightMarker = Schema.encodeSync(InFlightMarkerJson)

/**
 * Redis key names (the client adds the deployment prefix). A merchant id never contains `:`, so
 * `<merchant>:<key>` is unambiguous whatever the key contains.
 */
export const redisResponseKey = (merchantId: string, key: string): string => `idem:resp:${merchantId}:${key}`
export const redisInFlightKey = (merchantId: string, key: string): string => `idem:lock:${merchantId}:${key}`

const fingerprintPattern = /^[0-9a-f]{64}$/

const toRecord = (row: KeyRow, lockTimeout_ms: number): IdempotencyRecord | undefined =>
  row.lock_token === null || row.lock_expires_at === null
    ? undefined
    : {
      id: row.id,
      merchantId: row.merchant_id,
      key: row.idempotency_key,
      method: row.request_method,
      path: row.request_path,
      fingerprint: row.request_fingerprint,
      requestBody: row.request_body,
      recoveryPoint: row.recovery_point,
      recoveryData: row.recovery_data,
      lockToken: row.lock_token,
      lockExpiresAt: row.lock_expires_at,
      lockTimeout_ms,
      runCount: row.run_count,
      createdAt: row.created_at
    }

const toStoredResponse = (row: KeyRow): StoredResponse | undefined =>
  row.response_status === null || row.response_body === null || row.response_content_type === null
    ? undefined
    : { status: row.response_status, body: row.response_body, contentType: row.response_content_type }

// ---------------------------------------------------------------------------------------------
// The service
// ---------------------------------------------------------------------------------------------

/**
 * Idempotency keys, Stripe-style, with Postgres as the authority and Redis as the fast path.
 * docs/idempotency.md explains the protocol; in short:
 *
 * 1. `begin` (outside any transaction: it commits its own): Redis may answer a replay (cached
 *    completed response) or an in-flight 409 (a live marker for the same request). Otherwise, or
 *    when Redis fails, Postgres decides: insert the key (Fresh), or lock the existing row and
 *    answer Reused (422) / Replay / InUse (409) / Resume (its lease expired or it was released).
 * 2. The operation does its work in steps; each step's transaction also calls `advance` to record
 *    its recovery point, and the last one calls `finish` to store the response. The lease token
 *    fences a run whose lease passed to another run.
 * 3. After commit, the response is copied to Redis and the in-flight marker deleted.
 * 4. A failure before any durable step, or an unknown outcome, calls `release`: nothing is
 *    stored; the recovery point (if any) is kept so a retry resumes.
 *
 * `run` packages 1-4 for HTTP handlers.
 */
export class IdempotencyKeys extends Context.Service<IdempotencyKeys, {
  readonly begin: (request: BeginRequest) => Effect.Effect<Began, IdempotencyKeyReused | IdempotencyKeyInUse | SqlError>
  /** Records a recovery point and renews the lease. Runs in the caller's transaction, if any. */
  readonly advance: (
    record: IdempotencyRecord,
    recoveryPoint: string,
    data: Schema.JsonObject
  ) => Effect.Effect<IdempotencyRecord, IdempotencyLockLost | SqlError>
  /**
   * Stores the response and ends the lease, in the caller's transaction (the one doing the last
   * piece of work). Once that transaction commits, the response is cached in Redis and the
   * in-flight marker deleted (`SqlClient.afterCommit`); a rollback discards both.
   */
  readonly finish: (record: IdempotencyRecord, response: StoredResponse) => Effect.Effect<Finished, IdempotencyLockLost | SqlError>
  /** Ends the lease without storing a response (see {@link Released}). Not inside the work's transaction. */
  readonly release: (record: IdempotencyRecord) => Effect.Effect<Released, SqlError>
  /** begin → execute → finish/release, for HTTP handlers. See docs/idempotency.md. */
  readonly run: <E, R>(
    request: IdempotentRequest,
    execute: (execution: Execution) => Effect.Effect<Finished, E, R>
  ) => Effect.Effect<RunOutcome, E | IdempotencyKeyReused | IdempotencyKeyInUse | SqlError, R>
  /** `run` for the completer: takes the lease of an abandoned key and re-runs it from its recovery point. */
  readonly resume: <E, R>(
    abandoned: AbandonedKey,
    execute: (execution: Execution) => Effect.Effect<Finished, E, R>
  ) => Effect.Effect<RunOutcome, E | IdempotencyKeyReused | IdempotencyKeyInUse | SqlError, R>
  /** Deletes finished keys older than the retention (and never-started leftovers), at most `batch`. */
  readonly reap: (options?: { readonly retention_ms?: number; readonly batch?: number }) => Effect.Effect<
    { readonly finished: number; readonly neverStarted: number },
    SqlError
  >
  /** Unfinished keys with no live lease, idle for at least `olderThan_ms`, oldest first. */
  readonly abandoned: (options: { readonly olderThan_ms: number; readonly limit: number }) => Effect.Effect<
    ReadonlyArray<AbandonedKey>,
    SqlError
  >
  readonly options: IdempotencyOptions
}>()("idempotency/IdempotencyKeys") {
  static readonly make = (options: IdempotencyOptions) =>
    Effect.gen(function* () {
      const sql = yield* SqlClient.SqlClient
      const redis = yield* Redis
      assertPositiveInt("lockTimeout_ms", options.lockTimeout_ms)
      assertPositiveInt("retention_ms", options.retention_ms)
      assertPositiveInt("responseCacheTtl_ms", options.responseCacheTtl_ms)
      assertPositiveInt("redisTimeout_ms", options.redisTimeout_ms)
      // A cached response must not outlive the row it copies by more than a moment.
      const cacheTtl_ms = Math.min(options.responseCacheTtl_ms, options.retention_ms)

      const rows = (effect: Effect.Effect<ReadonlyArray<unknown>, SqlError>) =>
        effect.pipe(
          Effect.flatMap(decodeKeyRows),
          // The table's constraints guarantee the shape; a mismatch is a bug, not a request error.
          Effect.catchTag("SchemaError", (error) => Effect.die(error))
        )

      // --- Redis: every call bounded, every failure logged and turned into "ask Postgres" ----------

      // With Redis down, every request would log the same warning; one warning per interval is
      // enough to alert, the rest go to debug (still counted by the span annotations).
      let lastRedisWarning_ms = 0
      const redisWarningInterval_ms = 5_000
      const logRedisFailure = (message: string, annotations: Record<string, unknown>) => {
        const now = Date.now()
        const log = now - lastRedisWarning_ms >= redisWarningInterval_ms ? Effect.logWarning : Effect.logDebug
        if (log === Effect.logWarning) lastRedisWarning_ms = now
        return log(message).pipe(Effect.annotateLogs(annotations))
      }

      const redisCall = <A>(operation: string, effect: Effect.Effect<A, RedisError>): Effect.Effect<Option.Option<A>> =>
        effect.pipe(
          Effect.timeout(options.redisTimeout_ms),
          Effect.map(Option.some),
          Effect.catchTags({
            RedisError: (error) =>
              logRedisFailure("idempotency: redis failed; Postgres decides", {
                redis_operation: operation,
                error: error.message
              }).pipe(Effect.as(Option.none<A>())),
            TimeoutError: () =>
              logRedisFailure("idempotency: redis timed out; Postgres decides", {
                redis_operation: operation,
                timeout_ms: options.redisTimeout_ms
              }).pipe(Effect.as(Option.none<A>()))
          }),
          Effect.tap((result) => Effect.annotateCurrentSpan({ [`redis.${operation}`]: Option.isSome(result) ? "ok" : "failed" }))
        )

      const cacheResponse = (merchantId: string, key: string, fp: string, response: StoredResponse) =>
        redisCall(
          "set_response",
          redis.set(
            redisResponseKey(merchantId, key),
            encodeCachedResponse({ v: 1, fingerprint: fp, status: response.status, contentType: response.contentType, body: response.body }),
            cacheTtl_ms
          )
        ).pipe(Effect.asVoid)

      const deleteMarker = (merchantId: string, key: string) =>
        redisCall("del_marker", redis.del(redisInFlightKey(merchantId, key))).pipe(Effect.asVoid)

      /**
       * The fast path. Some(answer) when Redis can answer safely; None when Postgres must decide.
       * `markerSet` tells the caller whether this run created the in-flight marker (and must
       * delete it unless it goes on to hold the lease).
       */
      const fastPath = (request: BeginRequest, token: string, lease_ms: number) =>
        Effect.gen(function* () {
          const cached = yield* redisCall("get_response", redis.get(redisResponseKey(request.merchantId, request.key)))
          if (Option.isNone(cached)) {
            // Redis is failing: do not spend a second timeout on the marker.
            return { answer: Option.none<Began>(), markerSet: false }
          }
          if (cached.value !== null) {
            const hit = decodeCachedResponse(cached.value)
            if (Option.isSome(hit)) {
              if (hit.value.fingerprint !== request.fingerprint) {
                return yield* new IdempotencyKeyReused({ key: request.key, decidedBy: "redis" })
              }
              const response = { status: hit.value.status, body: hit.value.body, contentType: hit.value.contentType }
              return { answer: Option.some<Began>({ _tag: "Replay", response, decidedBy: "redis" }), markerSet: false }
            }
            yield* Effect.logWarning("idempotency: unreadable cached response ignored; Postgres decides")
          }
          const marker = encodeInFlightMarker({ token, fingerprint: request.fingerprint })
          const set = yield* redisCall(
            "set_marker",
            redis.setIfAbsent(redisInFlightKey(request.merchantId, request.key), marker, lease_ms)
          )
          if (Option.isSome(set) && set.value) return { answer: Option.none<Began>(), markerSet: true }
          if (Option.isSome(set)) {
            // Someone else's marker. It is safe to answer 409 from it when it names the same
            // request: it is at most one lease old (PX), and a 409 changes nothing and asks the
            // client to retry. A different request, or a marker gone meanwhile, goes to Postgres
            // (which answers 422, or decides).
            const holder = yield* redisCall("get_marker", redis.get(redisInFlightKey(request.merchantId, request.key)))
            const holderMarker = Option.isSome(holder) && holder.value !== null
              ? decodeInFlightMarker(holder.value)
              : Option.none()
            if (Option.isSome(holderMarker) && holderMarker.value.fingerprint === request.fingerprint) {
              return yield* new IdempotencyKeyInUse({ key: request.key, decidedBy: "redis" })
            }
          }
          return { answer: Option.none<Began>(), markerSet: false }
        })

      // --- Postgres: the authority ---------------------------------------------------------------

      const insertFresh = (request: BeginRequest, id: string, token: string, lease_ms: number) => {
        const body = request.canonicalBody === undefined || request.canonicalBody === "" ? null : request.canonicalBody
        return rows(sql`
          INSERT INTO idempotency_keys (id, merchant_id, idempotency_key, request_method, request_path,
                                        request_fingerprint, request_body, locked_at, lock_expires_at, lock_token)
          VALUES (${id}, ${request.merchantId}, ${request.key}, ${request.method}, ${request.path},
                  ${request.fingerprint}, ${body}::jsonb, clock_timestamp(),
                  clock_timestamp() + ${lease_ms}::double precision * interval '1 millisecond', ${token})
          ON CONFLICT (merchant_id, idempotency_key) DO NOTHING
          RETURNING ${sql.literal(keyColumns)}`)
      }

      /** The key exists: lock its row and decide. None when it vanished (released meanwhile). */
      const decideExisting = (request: BeginRequest, token: string, lease_ms: number) =>
        sql.withTransaction(
          Effect.gen(function* () {
            const [row] = yield* rows(sql`
              SELECT ${sql.literal(keyColumns)} FROM idempotency_keys
              WHERE merchant_id = ${request.merchantId} AND idempotency_key = ${request.key}
              FOR UPDATE`)
            if (row === undefined) return Option.none<Began>()
            if (row.request_fingerprint !== request.fingerprint) {
              return yield* new IdempotencyKeyReused({ key: request.key, decidedBy: "postgres" })
            }
            const stored = toStoredResponse(row)
            if (stored !== undefined) {
              return Option.some<Began>({ _tag: "Replay", response: stored, decidedBy: "postgres" })
            }
            if (row.lock_live) return yield* new IdempotencyKeyInUse({ key: request.key, decidedBy: "postgres" })
            // Not finished and no live lease: the previous run released it (unknown outcome) or
            // died. Take the lease and resume from its recovery point.
            const [locked] = yield* rows(sql`
              UPDATE idempotency_keys
              SET locked_at = clock_timestamp(),
                  lock_expires_at = clock_timestamp() + ${lease_ms}::double precision * interval '1 millisecond',
                  lock_token = ${token}, last_run_at = clock_timestamp(), run_count = run_count + 1
              WHERE id = ${row.id}
              RETURNING ${sql.literal(keyColumns)}`)
            const record = locked === undefined ? undefined : toRecord(locked, lease_ms)
            if (record === undefined) return yield* Effect.die(new Error(`UPDATE of locked row ${row.id} returned no lease`))
            return Option.some<Began>({ _tag: "Resume", record })
          })
        )

      const decideInPostgres = (request: BeginRequest, token: string, lease_ms: number) =>
        Effect.gen(function* () {
          // Bounded: the row can only vanish between our INSERT and our SELECT if a run that never
          // started released it; three such races in a row mean the key is busy.
          for (let attempt = 1; attempt <= 3; attempt++) {
            const [inserted] = yield* insertFresh(request, randomUUID(), token, lease_ms)
            if (inserted !== undefined) {
              const record = toRecord(inserted, lease_ms)
              if (record === undefined) return yield* Effect.die(new Error("INSERT … RETURNING returned no lease"))
              return { _tag: "Fresh", record } satisfies Began
            }
            const decided = yield* decideExisting(request, token, lease_ms)
            if (Option.isSome(decided)) return decided.value
          }
          return yield* new IdempotencyKeyInUse({ key: request.key, decidedBy: "postgres" })
        })

      const begin = Effect.fn("IdempotencyKeys.begin")(function* (request: BeginRequest) {
        if (!fingerprintPattern.test(request.fingerprint)) {
          return yield* Effect.die(new Error("begin: the fingerprint must be 64 lowercase hex characters (Fingerprint.fingerprint)"))
        }
        // Inside a caller's transaction the lease would stay invisible to other requests until
        // that transaction commits, and a rollback would erase it with the work: always a bug.
        if (Option.isSome(yield* Effect.serviceOption(sql.transactionService))) {
          return yield* Effect.die(new Error("IdempotencyKeys.begin must not run inside a transaction: it commits its own"))
        }
        const lease_ms = request.lockTimeout_ms ?? options.lockTimeout_ms
        assertPositiveInt("lockTimeout_ms", lease_ms)
        yield* Effect.annotateCurrentSpan({ merchant_id: request.merchantId, idempotency_key: request.key })
        const token = randomUUID()
        const fast = yield* fastPath(request, token, lease_ms)
        if (Option.isSome(fast.answer)) return fast.answer.value
        const began = yield* decideInPostgres(request, token, lease_ms).pipe(
          // Our marker stands for our lease: drop it unless we now hold the key.
          Effect.onExit((exit) =>
            fast.markerSet && !(Exit.isSuccess(exit) && exit.value._tag !== "Replay")
              ? deleteMarker(request.merchantId, request.key)
              : Effect.void
          )
        )
        // Redis lost the response (flush, eviction, restart): put it back for the next retry.
        if (began._tag === "Replay") {
          yield* cacheResponse(request.merchantId, request.key, request.fingerprint, began.response)
        }
        return began
      })

      const lockLost = (record: IdempotencyRecord) => new IdempotencyLockLost({ key: record.key, recordId: record.id })

      const advance = Effect.fn("IdempotencyKeys.advance")(function* (
        record: IdempotencyRecord,
        recoveryPoint: string,
        data: Schema.JsonObject
      ) {
        if (!recoveryPointPattern.test(recoveryPoint) || recoveryPoint === RECOVERY_POINT_STARTED || recoveryPoint === RECOVERY_POINT_FINISHED) {
          return yield* Effect.die(new Error(`advance: ${JSON.stringify(recoveryPoint)} is not an operation recovery point`))
        }
        const [row] = yield* rows(sql`
          UPDATE idempotency_keys
          SET recovery_point = ${recoveryPoint}, recovery_data = ${JSON.stringify(data)}::jsonb,
              last_run_at = clock_timestamp(),
              lock_expires_at = clock_timestamp() + ${record.lockTimeout_ms}::double precision * interval '1 millisecond'
          WHERE id = ${record.id} AND lock_token = ${record.lockToken} AND finished_at IS NULL
          RETURNING ${sql.literal(keyColumns)}`)
        const next = row === undefined ? undefined : toRecord(row, record.lockTimeout_ms)
        if (next === undefined) return yield* lockLost(record)
        return next
      })

      const finish = Effect.fn("IdempotencyKeys.finish")(function* (record: IdempotencyRecord, response: StoredResponse) {
        if (!Number.isInteger(response.status) || response.status < 100 || response.status > 599) {
          return yield* Effect.die(new Error(`finish: ${response.status} is not an HTTP status`))
        }
        const updated = yield* sql<{ id: string }>`
          UPDATE idempotency_keys
          SET recovery_point = 'finished', response_status = ${response.status}, response_body = ${response.body},
              response_content_type = ${response.contentType}, finished_at = clock_timestamp(),
              last_run_at = clock_timestamp(), locked_at = NULL, lock_expires_at = NULL, lock_token = NULL
          WHERE id = ${record.id} AND lock_token = ${record.lockToken} AND finished_at IS NULL
          RETURNING id`
        if (updated.length !== 1) return yield* lockLost(record)
        // Only once the response is durable may Redis repeat it; a rollback discards this.
        yield* sql.afterCommit(
          cacheResponse(record.merchantId, record.key, record.fingerprint, response).pipe(
            Effect.andThen(deleteMarker(record.merchantId, record.key))
          )
        )
        const finished: Finished = { [FinishedTypeId]: FinishedTypeId, recordId: record.id, response }
        return finished
      })

      const release = Effect.fn("IdempotencyKeys.release")(function* (record: IdempotencyRecord) {
        const released = yield* sql.withTransaction(
          Effect.gen(function* () {
            // Nothing durable happened: free the key, as if the request had never arrived.
            const deleted = yield* sql<{ id: string }>`
              DELETE FROM idempotency_keys
              WHERE id = ${record.id} AND lock_token = ${record.lockToken} AND recovery_point = 'started'
              RETURNING id`
            if (deleted.length === 1) return { _tag: "Deleted" } satisfies Released
            // Work was done: keep the recovery point so a retry (or the completer) resumes it.
            const unlocked = yield* sql<{ recovery_point: string }>`
              UPDATE idempotency_keys
              SET locked_at = NULL, lock_expires_at = NULL, lock_token = NULL, last_run_at = clock_timestamp()
              WHERE id = ${record.id} AND lock_token = ${record.lockToken} AND finished_at IS NULL
              RETURNING recovery_point`
            const [row] = unlocked
            return row === undefined
              ? ({ _tag: "NotOwner" } satisfies Released)
              : ({ _tag: "Unlocked", recoveryPoint: row.recovery_point } satisfies Released)
          })
        )
        // The marker is ours only while we hold the lease.
        if (released._tag !== "NotOwner") yield* deleteMarker(record.merchantId, record.key)
        return released
      })

      /** Release after a failed or interrupted execution; a failure here is logged (the lease bounds it). */
      const releaseAfterFailure = (record: IdempotencyRecord) =>
        release(record).pipe(
          Effect.timeout(5_000),
          Effect.tap((released) =>
            Effect.logInfo("idempotency: run did not finish; key released").pipe(
              Effect.annotateLogs({ idempotency_key: record.key, merchant_id: record.merchantId, released: released._tag })
            )
          ),
          Effect.catchCause((cause) =>
            Effect.logError("idempotency: release failed; the key unlocks when its lease expires", cause).pipe(
              Effect.annotateLogs({ idempotency_key: record.key, merchant_id: record.merchantId })
            )
          )
        )

      const execute = <E, R>(
        began: Began,
        work: (execution: Execution) => Effect.Effect<Finished, E, R>
      ): Effect.Effect<RunOutcome, E, R> => {
        if (began._tag === "Replay") {
          return Effect.succeed({ _tag: "Replayed", response: began.response, decidedBy: began.decidedBy })
        }
        const record = began.record
        const execution: Execution = {
          record,
          resumed: began._tag === "Resume",
          advance: (recoveryPoint, data) => advance(record, recoveryPoint, data),
          finish: (response) => finish(record, response)
        }
        return work(execution).pipe(
          Effect.onExit((exit) => (Exit.isSuccess(exit) ? Effect.void : releaseAfterFailure(record))),
          Effect.flatMap((finished) =>
            finished.recordId === record.id
              ? Effect.succeed({ _tag: "Executed", response: finished.response, resumed: began._tag === "Resume" } satisfies RunOutcome)
              : Effect.die(new Error("run: the operation returned the Finished of another key"))
          )
        )
      }

      const run = <E, R>(request: IdempotentRequest, work: (execution: Execution) => Effect.Effect<Finished, E, R>) => {
        const body = canonicalBody(request.body)
        const beginRequest: BeginRequest = {
          merchantId: request.merchantId,
          key: request.key,
          method: request.method.toUpperCase(),
          path: request.path,
          fingerprint: fingerprint({ method: request.method, path: request.path, canonicalBody: body }),
          canonicalBody: body,
          ...(request.lockTimeout_ms === undefined ? {} : { lockTimeout_ms: request.lockTimeout_ms })
        }
        return begin(beginRequest).pipe(Effect.flatMap((began) => execute(began, work)), Effect.withSpan("IdempotencyKeys.run"))
      }

      const resume = <E, R>(abandoned: AbandonedKey, work: (execution: Execution) => Effect.Effect<Finished, E, R>) =>
        begin({
          merchantId: abandoned.merchantId,
          key: abandoned.key,
          method: abandoned.method,
          path: abandoned.path,
          fingerprint: abandoned.fingerprint
        }).pipe(Effect.flatMap((began) => execute(began, work)), Effect.withSpan("IdempotencyKeys.resume"))

      const reap = Effect.fn("IdempotencyKeys.reap")(function* (
        reapOptions: { readonly retention_ms?: number; readonly batch?: number } = {}
      ) {
        const retention_ms = reapOptions.retention_ms ?? options.retention_ms
        const batch = reapOptions.batch ?? 1_000
        assertPositiveInt("retention_ms", retention_ms)
        assertBounded("batch", batch, REAP_BATCH_MAX)
        const finished = yield* sql<{ merchant_id: string; idempotency_key: string }>`
          DELETE FROM idempotency_keys
          WHERE id IN (
            SELECT id FROM idempotency_keys
            WHERE finished_at IS NOT NULL
              AND finished_at < clock_timestamp() - ${retention_ms}::double precision * interval '1 millisecond'
            ORDER BY finished_at
            LIMIT ${batch}
            FOR UPDATE SKIP LOCKED)
          RETURNING merchant_id, idempotency_key`
        // Keys whose run never did anything durable and nobody holds: nothing to finish or replay.
        const neverStarted = yield* sql<{ id: string }>`
          DELETE FROM idempotency_keys
          WHERE id IN (
            SELECT id FROM idempotency_keys
            WHERE finished_at IS NULL AND recovery_point = 'started'
              AND (lock_expires_at IS NULL OR lock_expires_at < clock_timestamp())
              AND last_run_at < clock_timestamp() - ${retention_ms}::double precision * interval '1 millisecond'
            ORDER BY last_run_at
            LIMIT ${batch}
            FOR UPDATE SKIP LOCKED)
          RETURNING id`
        // Their cached copies would expire on their own (TTL <= retention); deleting them now keeps
        // "reaped" meaning reaped.
        yield* Effect.forEach(
          finished,
          (row) => redisCall("del_response", redis.del(redisResponseKey(row.merchant_id, row.idempotency_key))),
          { concurrency: 16, discard: true }
        )
        return { finished: finished.length, neverStarted: neverStarted.length }
      })

      const abandoned = Effect.fn("IdempotencyKeys.abandoned")(function* (query: {
        readonly olderThan_ms: number
        readonly limit: number
      }) {
        assertBounded("olderThan_ms", query.olderThan_ms, Number.MAX_SAFE_INTEGER, 0)
        assertBounded("limit", query.limit, ABANDONED_LIMIT_MAX)
        const found = yield* rows(sql`
          SELECT ${sql.literal(keyColumns)} FROM idempotency_keys
          WHERE finished_at IS NULL
            AND (lock_expires_at IS NULL OR lock_expires_at <= clock_timestamp())
            AND last_run_at < clock_timestamp() - ${query.olderThan_ms}::double precision * interval '1 millisecond'
          ORDER BY last_run_at
          LIMIT ${query.limit}`)
        return found.map((row): AbandonedKey => ({
          id: row.id,
          merchantId: row.merchant_id,
          key: row.idempotency_key,
          method: row.request_method,
          path: row.request_path,
          fingerprint: row.request_fingerprint,
          requestBody: row.request_body,
          recoveryPoint: row.recovery_point,
          recoveryData: row.recovery_data,
          lastRunAt: row.last_run_at,
          runCount: row.run_count
        }))
      })

      return IdempotencyKeys.of({ begin, advance, finish, release, run, resume, reap, abandoned, options })
    })

  /** With explicit options (tests use a short lease). Needs `SqlClient` and `Redis`. */
  static readonly layerWith = (options: Partial<IdempotencyOptions> = {}) =>
    Layer.effect(IdempotencyKeys, IdempotencyKeys.make({ ...defaultIdempotencyOptions, ...options }))

  /** Configured from the environment ({@link IdempotencyOptionsConfig}). Needs `SqlClient` and `Redis`. */
  static readonly layer = Layer.unwrap(
    Effect.gen(function* () {
      const options = yield* IdempotencyOptionsConfig
      return IdempotencyKeys.layerWith(options)
    })
  )
}

const assertPositiveInt = (name: string, value: number): void => assertBounded(name, value, 2 ** 31 - 1)

/** Options are checked when used: a zero lease or an unbounded batch is a bug, not a request error. */
function assertBounded(name: string, value: number, max: number, min = 1): void {
  if (!Number.isInteger(value) || value < min || value > max) {
    throw new Error(`${name} must be an integer between ${min} and ${max}, got ${value}`)
  }
}
