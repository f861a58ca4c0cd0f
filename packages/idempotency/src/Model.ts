import type { MerchantId } from "@pay/domain"
import { boundedInt, type IntBounds } from "@pay/infra"
import { Config, type Effect, type Option, type Schema } from "effect"
import type { SqlError } from "effect/sql/SqlError"
import type { Fragment } from "effect/sql/Statement"
import type { DecidedBy, IdempotencyLockLost } from "./Errors.ts"
import type { CanonicalJsonValue } from "./Fingerprint.ts"
import type { IdempotencyKey } from "./IdempotencyKey.ts"

/** A response as stored and replayed: status, exact body text (UTF-8), content type. */
export interface StoredResponse {
  readonly status: number
  readonly body: string
  readonly contentType: string
}

/**
 * How the caller turns the outcome of its work into the response stored with the key. Pure and
 * given by the caller (the HTTP server), so the work itself never builds response bytes, while the
 * response still commits in the same transaction as the work (`Execution.finish`).
 */
export type Render<A> = (outcome: A) => StoredResponse

/** For callers whose outcome already is the response (tests, tools). */
export const storedAsIs: Render<StoredResponse> = (response) => response

/** The recovery point of a key nobody has done durable work for yet. */
export const RECOVERY_POINT_STARTED = "started"
/** The recovery point of a key whose response is stored. Set by `finish` only. */
export const RECOVERY_POINT_FINISHED = "finished"
export const recoveryPointPattern = /^[a-z][a-z0-9_]{0,63}$/

/** What a key says about the request it protects and how far its work got (stored at its first run). */
export interface KeyState {
  readonly id: string
  readonly merchantId: MerchantId
  readonly key: IdempotencyKey
  readonly method: string
  readonly path: string
  readonly fingerprint: string
  /** The canonical request body stored at the first run; null when none. */
  readonly requestBody: Schema.Json | null
  /** The operation and its arguments, as the caller stored them (null for keys older than migration 0008). */
  readonly operation: Schema.Json | null
  /** `started` (nothing durable done yet), or the last point recorded with `advance`. */
  readonly recoveryPoint: string
  readonly recoveryData: Schema.JsonObject
  /** 1 for the first run, more when resumed. */
  readonly runCount: number
}

/** A key this run holds the lease of: where to continue from, and the token that proves the lease. */
export interface IdempotencyRecord extends KeyState {
  /** Fences this run: every later write of this run requires it (see IdempotencyLockLost). */
  readonly lockToken: string
  readonly lockExpiresAt: Date
  /** The lease this run asked for; `advance` renews it by as much. */
  readonly lockTimeout_ms: number
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
  /** The canonical JSON body text (Fingerprint.canonicalBody); "" or omitted when none. */
  readonly canonicalBody?: string
  /** The operation and its arguments (the caller's own encoding), stored for the completer. */
  readonly operation?: Schema.Json
  /** The lease of this run; defaults to the layer's `lockTimeout_ms`. */
  readonly lockTimeout_ms?: number
  /** The request's correlation id (its `X-Request-Id`, or the server's), kept for the completer. */
  readonly correlationId?: string
  /** The request's span as a W3C traceparent, kept for the completer (migrations/0121). */
  readonly traceparent?: string
}

/** Proof that `finish` stored the rendered outcome (only `finish` makes one). */
export const FinishedTypeId: unique symbol = Symbol.for("@pay/idempotency/Finished")
export interface Finished<A = StoredResponse> {
  readonly [FinishedTypeId]: typeof FinishedTypeId
  readonly recordId: string
  readonly outcome: A
  readonly response: StoredResponse
}

/** What `release` did. */
export type Released =
  | { readonly _tag: "Deleted" } // nothing had started: the key is free for a new request
  | { readonly _tag: "Unlocked"; readonly recoveryPoint: string } // a retry resumes from here
  | { readonly _tag: "NotOwner" } // the lease had already passed to another run; nothing changed

/** An unfinished key nobody holds a live lease on, for the background completer. */
export interface AbandonedKey extends KeyState {
  readonly lastRunAt: Date
  /** Failed completer attempts so far (migrations/0020; see Parking.ts). */
  readonly completerAttempts: number
  /** The correlation id of the request that began the key (migrations/0118), when it was kept. */
  readonly correlationId: string | undefined
  /** The traceparent of the request that began the key (migrations/0121), when it had one. */
  readonly traceparent: string | undefined
}

/** What `recordCompleterFailure` did with a key the completer could not finish. */
export type CompleterFailureRecorded =
  | { readonly _tag: "BackedOff"; readonly attempt: number; readonly retryIn_ms: number }
  | { readonly _tag: "Parked"; readonly attempt: number }
  /** Finished, parked or counted by someone else meanwhile: nothing changed. */
  | { readonly _tag: "Unchanged" }

/** The handle `run` gives the work: the record, and `advance`/`finish` bound to it. */
export interface Execution<A = StoredResponse> {
  /** Where to continue from: `started` for a fresh key, or the recorded point of an interrupted run. */
  readonly record: IdempotencyRecord
  readonly resumed: boolean
  /** Records a recovery point; call it inside the transaction that does the step's work. */
  readonly advance: (recoveryPoint: string, data: Schema.JsonObject) => Effect.Effect<IdempotencyRecord, IdempotencyLockLost | SqlError>
  /** Stores the rendered outcome; call it inside the transaction that does the last piece of work. */
  readonly finish: (outcome: A) => Effect.Effect<Finished<A>, IdempotencyLockLost | SqlError>
  /** `finish` written by the caller's own statement, one round trip fewer (see {@link FinishFrom}). */
  readonly finishFrom: (outcome: A) => FinishFrom<A>
}

/**
 * A write that rides in another package's statement as a CTE: `statement(source)` is the CTE's
 * body, written only when the caller's CTE `source` has a row; `confirm(rows)`, with the number of
 * rows that CTE returned, checks it and gives the result.
 */
export interface CteWrite<F, E> {
  readonly statement: (source: string) => Fragment
  readonly confirm: (rows: number) => Effect.Effect<F, E>
}

/**
 * `Execution.finish` as a CTE of the caller's statement (the caller's change), inside the
 * transaction that does the last piece of work: `confirm` makes the check `finish` makes
 * (IdempotencyLockLost unless 1 row) and gives the proof.
 */
export type FinishFrom<A> = CteWrite<Finished<A>, IdempotencyLockLost>

/** The request `run` protects. */
export interface IdempotentRequest<A = StoredResponse> {
  readonly merchantId: MerchantId
  readonly key: IdempotencyKey
  readonly method: string
  readonly path: string
  /** The parsed JSON body, or undefined when there is none. */
  readonly body: CanonicalJsonValue | undefined
  /** The operation and its arguments, stored with the key so the completer can resume it. */
  readonly operation?: Schema.Json
  readonly render: Render<A>
  readonly lockTimeout_ms?: number
  /** The request's correlation id: a run the completer resumes carries it on its events and lines. */
  readonly correlationId?: string
  /** The request's trace context: a run the completer resumes writes it on its history rows and events. */
  readonly traceparent?: string
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

/** The largest interval the key store's arithmetic takes (an `int` of milliseconds, ~24.8 days). */
const interval_ms_max = 2 ** 31 - 1

/**
 * | variable                      | default   | bounds              |
 * | ----------------------------- | --------- | ------------------- |
 * | `IDEMPOTENCY_LOCK_TIMEOUT_MS` | 30000     | 1..600000           |
 * | `IDEMPOTENCY_RETENTION_MS`    | 24 h      | 1 min..~24.8 days   |
 * | `IDEMPOTENCY_CACHE_TTL_MS`    | 1 h       | 1 s..~24.8 days     |
 * | (Redis command bound)         | 500       | 1..10000            |
 */
export const idempotencyOptionBounds: Readonly<Record<keyof IdempotencyOptions, IntBounds>> = {
  lockTimeout_ms: { min: 1, max: 600_000 },
  retention_ms: { min: 60_000, max: interval_ms_max },
  responseCacheTtl_ms: { min: 1_000, max: interval_ms_max },
  redisTimeout_ms: { min: 1, max: 10_000 }
}

export const IdempotencyOptionsConfig: Config.Config<IdempotencyOptions> = Config.all({
  lockTimeout_ms: boundedInt("IDEMPOTENCY_LOCK_TIMEOUT_MS", idempotencyOptionBounds.lockTimeout_ms, defaultIdempotencyOptions.lockTimeout_ms),
  retention_ms: boundedInt("IDEMPOTENCY_RETENTION_MS", idempotencyOptionBounds.retention_ms, defaultIdempotencyOptions.retention_ms),
  responseCacheTtl_ms: boundedInt(
    "IDEMPOTENCY_CACHE_TTL_MS",
    idempotencyOptionBounds.responseCacheTtl_ms,
    defaultIdempotencyOptions.responseCacheTtl_ms
  ),
  redisTimeout_ms: Config.succeed(defaultIdempotencyOptions.redisTimeout_ms)
})

/** Bounds on the maintenance queries (TIGER_STYLE: a limit on everything). */
export const REAP_BATCH_MAX = 10_000
export const ABANDONED_LIMIT_MAX = 1_000
export const REAP_BATCH_DEFAULT = 1_000

/**
 * For work that is ONE autocommitted statement (`IdempotencyKeys.runAtOnce`, a create): the key's
 * INSERT, already finished with the rendered outcome, which the work runs as the first CTE of its
 * statement and gates every other write on (`… FROM <that CTE>`). The CTE yields one row when the
 * key is new and none when it exists already (`ON CONFLICT DO NOTHING`), in which case the
 * statement must write nothing else and the work answers None: `runAtOnce` then decides the key
 * the usual way (replay, 409, 422, resume). The key, the work and the response commit together, in
 * one round trip and one durable commit.
 */
export interface KeyAtOnce<A> {
  readonly insertFinished: (outcome: A) => { readonly statement: Fragment; readonly finished: Finished<A> }
}

/** Some(finished) when the statement wrote the key (and the work); None when the key existed. */
export type AtOnceWork<A, E, R> = (key: KeyAtOnce<A>) => Effect.Effect<Option.Option<Finished<A>>, E, R>

/**
 * For a step whose recovery point commits before an outside call (`IdempotencyKeys.runGated`:
 * authorize, settle, cancel). `insertLeasedFrom(source, point, data)` is the key's INSERT with this
 * run's lease, already at `point`, written once per row of the caller's CTE `source` (`… SELECT …
 * FROM source ON CONFLICT DO NOTHING RETURNING id, lock_expires_at, created_at`): the caller puts
 * it in the statement that reads what decides that the step may go ahead, as a CTE, and writes it
 * from a source that yields one row only then. No row back (the key exists, or the step may not go
 * ahead): nothing was written. `recordOf` makes the run's record from the returned row.
 */
export interface KeyGate {
  readonly insertLeasedFrom: (source: string, recoveryPoint: string, data: Schema.JsonObject) => Fragment
  readonly recordOf: (row: GateRow, recoveryPoint: string, data: Schema.JsonObject) => IdempotencyRecord
}

/** What the gate's INSERT returns. */
export interface GateRow {
  readonly id: string
  readonly lock_expires_at: Date
  readonly created_at: Date
}

/** Some(record and what the statement read) when the key was written; None when nothing was. */
export type GatedStart<P, E, R> = (gate: KeyGate) => Effect.Effect<
  Option.Option<{ readonly record: IdempotencyRecord; readonly payload: P }>,
  E,
  R
>

/** The rest of the work, from the recovery point the gate wrote, with what the statement read. */
export type GatedWork<A, P, E, R> = (execution: Execution<A>, payload: P) => Effect.Effect<Finished<A>, E, R>
