import { assertWithin, cteName, Redis } from "@pay/infra"
import { Config, Context, Effect, Exit, Layer, Option, type Redacted, type Schema } from "effect"
import { SqlClient } from "effect/sql"
import type { SqlError } from "effect/sql/SqlError"
import { randomUUID } from "node:crypto"
import { IdempotencyCacheSecretConfig, makeCacheMac, randomCacheSecret } from "./CacheAuthentication.ts"
import { countRefusal, countRun, initializeIdempotencyMetrics } from "./IdempotencyMetrics.ts"
import { IdempotencyKeyInUse, type IdempotencyKeyReused, type IdempotencyLockLost } from "./Errors.ts"
import { toBeginRequest } from "./BeginRequest.ts"
import { type KeyStore, makeKeyStore } from "./KeyStore.ts"
import {
  type AtOnceWork,
  type AbandonedKey,
  type Began,
  type CompleterFailureRecorded,
  type BeginRequest,
  defaultIdempotencyOptions,
  type Execution,
  type Finished,
  type FinishFrom,
  type GatedStart,
  type GatedWork,
  FinishedTypeId,
  type IdempotencyOptions,
  idempotencyOptionBounds,
  IdempotencyOptionsConfig,
  type IdempotencyRecord,
  type IdempotentRequest,
  RECOVERY_POINT_FINISHED,
  RECOVERY_POINT_STARTED,
  recoveryPointPattern,
  type Released,
  type Render,
  type RunOutcome,
  type StoredResponse
} from "./Model.ts"
import type { CompleterRetryPolicy } from "./Parking.ts"
import { assertBounded, makeMaintenance } from "./Maintenance.ts"
import { makeRedisFastPath, type RedisFastPath } from "./RedisFastPath.ts"
import { makeRunGated } from "./RunGated.ts"

type Work<A, E, R> = (execution: Execution<A>) => Effect.Effect<Finished<A>, E, R>

/**
 * Idempotency keys, Stripe-style, with Postgres as the authority (KeyStore.ts) and Redis as the
 * fast path (RedisFastPath.ts). docs/idempotency.md explains the protocol; in short:
 *
 * 1. `begin` (outside any transaction: it commits its own): Redis may answer a replay (cached
 *    completed response) or an in-flight 409 (a live marker for the same request). Otherwise, or
 *    when Redis fails, Postgres decides: insert the key (Fresh), or lock the existing row and
 *    answer Reused (422) / Replay / InUse (409) / Resume (its lease expired or it was released).
 * 2. The work does its steps; each step's transaction also calls `advance` to record its recovery
 *    point, and the last one calls `finish(outcome)`, which stores the caller's rendering of the
 *    outcome. The lease token fences a run whose lease passed to another run.
 * 3. After commit, the response is copied to Redis and the in-flight marker deleted.
 * 4. A failure before any durable step, or an unknown outcome, calls `release`: nothing is
 *    stored; the recovery point (if any) is kept so a retry resumes.
 *
 * `run` packages 1-4 for HTTP handlers; `resume` is `run` for the completer.
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
  /** begin → work → finish/release, for HTTP handlers. See docs/idempotency.md. */
  readonly run: <A, E, R>(
    request: IdempotentRequest<A>,
    work: Work<A, E, R>
  ) => Effect.Effect<RunOutcome, E | IdempotencyKeyReused | IdempotencyKeyInUse | SqlError, R>
  /** `run` for the completer: takes the lease of an abandoned key and re-runs it from its recovery point. */
  readonly resume: <A, E, R>(
    abandoned: AbandonedKey,
    render: Render<A>,
    work: Work<A, E, R>
  ) => Effect.Effect<RunOutcome, E | IdempotencyKeyReused | IdempotencyKeyInUse | SqlError, R>
  /**
   * `run` for work that can be ONE autocommitted statement (a create): a replay cached in Redis
   * answers first; otherwise `once` writes the key, finished with its rendered outcome, and the
   * work in one statement (one round trip, one durable commit, no lease, no in-flight marker). When
   * the key exists already, nothing is written and `run(request, work)` decides it (replay, 409,
   * 422, or resume an interrupted run). `once` must not run inside a transaction.
   */
  readonly runAtOnce: <A, E, R>(
    request: IdempotentRequest<A>,
    once: AtOnceWork<A, E, R>,
    work: Work<A, E, R>
  ) => Effect.Effect<RunOutcome, E | IdempotencyKeyReused | IdempotencyKeyInUse | SqlError, R>
  /**
   * `run` for work whose first durable step is its key's recovery point (authorize, settle,
   * cancel: the point before the acquirer is asked): a replay cached in Redis answers first;
   * otherwise `start` writes the key, leased and already at its recovery point, in the same
   * statement that reads what decides that the step may go ahead (RunGated.ts). None from `start`
   * (the key exists, or the step may not go ahead): nothing was written and `run(request, work)`
   * decides as usual. Some: `continueWork` goes on from the recovery point with the lease.
   */
  readonly runGated: <A, P, E, R, ES, RS>(
    request: IdempotentRequest<A>,
    start: GatedStart<P, ES, RS>,
    continueWork: GatedWork<A, P, E, R>,
    work: Work<A, E, R>
  ) => Effect.Effect<RunOutcome, E | ES | IdempotencyKeyReused | IdempotencyKeyInUse | SqlError, R | RS>
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
  /**
   * The completer could not finish `key`: count the attempt, and either back off (exponential, with
   * jitter) or, at the policy's last attempt or when `parkNow` (the key cannot ever be finished by
   * the completer), park it for an operator (Parking.ts).
   */
  readonly recordCompleterFailure: (
    key: AbandonedKey,
    failure: { readonly reason: string; readonly policy: CompleterRetryPolicy; readonly parkNow?: boolean }
  ) => Effect.Effect<CompleterFailureRecorded, SqlError>
  readonly options: IdempotencyOptions
}>()("idempotency/IdempotencyKeys") {
  /** `cacheSecret` authenticates the responses cached in Redis (CacheAuthentication.ts). */
  static readonly make = (options: IdempotencyOptions, cacheSecret: Redacted.Redacted<string>) =>
    Effect.gen(function* () {
      assertWithin("idempotency keys", options, idempotencyOptionBounds)
      const sql = yield* SqlClient.SqlClient
      const store = makeKeyStore(sql)
      const fast = makeRedisFastPath(yield* Redis, options, makeCacheMac(cacheSecret))
      yield* initializeIdempotencyMetrics
      const begin = makeBegin(sql, store, fast, options)
      const writes = makeWrites(sql, store, fast)
      const { run, resume, releaseAfterFailure } = makeRuns(begin, writes)
      const runAtOnce = makeRunAtOnce(sql, store, fast, run)
      const runGated = makeRunGated({ sql, store, fast, writes, run, releaseAfterFailure, options })
      return IdempotencyKeys.of({ begin, ...writes, run, resume, runAtOnce, runGated, ...makeMaintenance(store, fast, options), options })
    })

  /**
   * With explicit options (tests use a short lease) and cache secret (a random one per layer when
   * none is given). Needs `SqlClient` and `Redis`.
   */
  static readonly layerWith = (options: Partial<IdempotencyOptions> = {}, cacheSecret?: Redacted.Redacted<string>) =>
    Layer.effect(IdempotencyKeys, IdempotencyKeys.make({ ...defaultIdempotencyOptions, ...options }, cacheSecret ?? randomCacheSecret()))

  /**
   * Configured from the environment ({@link IdempotencyOptionsConfig}, `IDEMPOTENCY_CACHE_SECRET`).
   * Needs `SqlClient` and `Redis`.
   */
  static readonly layer = Layer.unwrap(
    Effect.gen(function* () {
      const { options, cacheSecret } = yield* Config.all({ options: IdempotencyOptionsConfig, cacheSecret: IdempotencyCacheSecretConfig })
      if (cacheSecret === undefined) {
        yield* Effect.logInfo("idempotency: IDEMPOTENCY_CACHE_SECRET unset; cached responses are authenticated with a random secret of this process only")
      }
      return IdempotencyKeys.layerWith(options, cacheSecret)
    })
  )
}

const fingerprintPattern = /^[0-9a-f]{64}$/

/**
 * Another request with this fingerprint holds the Redis marker: 409 only if Postgres says the key
 * is not finished (no row yet: its holder is about to insert it; or a live lease). A finished key
 * (the holder may be a replay whose cached copy was gone), another fingerprint, or a key nobody
 * holds any more goes on to Postgres' decision: replay, 422, or resume.
 */
const inUseUnlessFinished = (store: KeyStore, request: BeginRequest) =>
  store.peek(request).pipe(
    Effect.map((row) => Option.isNone(row) || (row.value.request_fingerprint === request.fingerprint && !row.value.finished && row.value.lock_live))
  )

const makeBegin = (sql: SqlClient.SqlClient, store: KeyStore, fast: RedisFastPath, options: IdempotencyOptions) =>
  Effect.fn("IdempotencyKeys.begin")(function* (request: BeginRequest) {
    if (!fingerprintPattern.test(request.fingerprint)) {
      return yield* Effect.die(new Error("begin: the fingerprint must be 64 lowercase hex characters (Fingerprint.fingerprint)"))
    }
    // Inside a caller's transaction the lease would stay invisible to other requests until
    // that transaction commits, and a rollback would erase it with the work: always a bug.
    if (Option.isSome(yield* Effect.serviceOption(sql.transactionService))) {
      return yield* Effect.die(new Error("IdempotencyKeys.begin must not run inside a transaction: it commits its own"))
    }
    const lease_ms = request.lockTimeout_ms ?? options.lockTimeout_ms
    assertBounded("lockTimeout_ms", lease_ms, idempotencyOptionBounds.lockTimeout_ms.max)
    yield* Effect.annotateCurrentSpan({ merchant_id: request.merchantId, idempotency_key: request.key })
    const token = randomUUID()
    const quick = yield* fast.decide(request, token, lease_ms)
    if (Option.isSome(quick.answer)) return quick.answer.value
    if (quick.markerHeldBySameRequest && (yield* inUseUnlessFinished(store, request))) {
      return yield* new IdempotencyKeyInUse({ key: request.key, decidedBy: "redis" })
    }
    const began = yield* store.decide(request, token, lease_ms).pipe(
      // Our marker stands for our lease: drop it unless we now hold the key.
      Effect.onExit((exit) =>
        quick.markerSet && !(Exit.isSuccess(exit) && exit.value._tag !== "Replay")
          ? fast.deleteMarker(request.merchantId, request.key)
          : Effect.void
      )
    )
    // Redis lost the response (flush, eviction, restart): put it back for the next retry.
    if (began._tag === "Replay") yield* fast.cacheResponse(request.merchantId, request.key, request.fingerprint, began.response)
    return began
  })

const makeWrites = (sql: SqlClient.SqlClient, store: KeyStore, fast: RedisFastPath) => {
  const advance = Effect.fn("IdempotencyKeys.advance")(function* (
    record: IdempotencyRecord,
    recoveryPoint: string,
    data: Schema.JsonObject
  ) {
    if (!recoveryPointPattern.test(recoveryPoint) || recoveryPoint === RECOVERY_POINT_STARTED || recoveryPoint === RECOVERY_POINT_FINISHED) {
      return yield* Effect.die(new Error(`advance: ${JSON.stringify(recoveryPoint)} is not an operation recovery point`))
    }
    return yield* store.advance(record, recoveryPoint, data)
  })

  const statusProblem = (response: StoredResponse) =>
    !Number.isInteger(response.status) || response.status < 100 || response.status > 599
      ? new Error(`finish: ${response.status} is not an HTTP status`)
      : undefined

  /** Once the response is stored: the Redis work after COMMIT (a rollback discards it), and the proof. */
  const finished = <A>(record: IdempotencyRecord, outcome: A, response: StoredResponse, marker: boolean) =>
    Effect.gen(function* () {
      // Only once the response is durable may Redis repeat it; a rollback discards this.
      const cache = fast.cacheResponse(record.merchantId, record.key, record.fingerprint, response)
      yield* sql.afterCommit(marker ? cache.pipe(Effect.andThen(fast.deleteMarker(record.merchantId, record.key))) : cache)
      const proof: Finished<A> = { [FinishedTypeId]: FinishedTypeId, recordId: record.id, outcome, response }
      return proof
    })

  /** `marker`: whether this run set the in-flight marker in Redis (runGated's runs do not). */
  const finishWith = <A>(record: IdempotencyRecord, outcome: A, response: StoredResponse, marker = true) =>
    Effect.gen(function* () {
      const problem = statusProblem(response)
      if (problem !== undefined) return yield* Effect.die(problem)
      yield* store.storeResponse(record, response)
      return yield* finished(record, outcome, response, marker)
    }).pipe(Effect.withSpan("IdempotencyKeys.finish"))

  /** `finishWith` as a CTE of the caller's statement (Execution.finishFrom). */
  const finishFrom = <A>(record: IdempotencyRecord, outcome: A, response: StoredResponse, marker = true): FinishFrom<A> => ({
    // Checked before the statement is built, as `finishWith` checks before it writes (a defect:
    // thrown inside the caller's Effect).
    statement: (source) => {
      if (!cteName.test(source)) throw new Error(`finishFrom: ${JSON.stringify(source)} is not a CTE name`)
      const problem = statusProblem(response)
      if (problem !== undefined) throw problem
      return store.storeResponseFrom(record, response, source)
    },
    confirm: (rows) => store.stored(record, rows).pipe(Effect.andThen(finished(record, outcome, response, marker)))
  })

  const finish = (record: IdempotencyRecord, response: StoredResponse) => finishWith(record, response, response)

  const release = Effect.fn("IdempotencyKeys.release")(function* (record: IdempotencyRecord) {
    const released = yield* store.release(record)
    // The marker is ours only while we hold the lease.
    if (released._tag !== "NotOwner") yield* fast.deleteMarker(record.merchantId, record.key)
    return released
  })

  return { advance, finish, finishWith, finishFrom, release }
}

type Writes = ReturnType<typeof makeWrites>

const makeRuns = (begin: ReturnType<typeof makeBegin>, writes: Writes) => {
  /** Release after a failed or interrupted execution; a failure here is logged (the lease bounds it). */
  const releaseAfterFailure = (record: IdempotencyRecord) =>
    writes.release(record).pipe(
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

  const execute = <A, E, R>(began: Began, render: Render<A>, work: Work<A, E, R>): Effect.Effect<RunOutcome, E, R> => {
    if (began._tag === "Replay") return Effect.succeed({ _tag: "Replayed", response: began.response, decidedBy: began.decidedBy })
    const record = began.record
    const resumed = began._tag === "Resume"
    const execution: Execution<A> = {
      record,
      resumed,
      advance: (recoveryPoint, data) => writes.advance(record, recoveryPoint, data),
      finish: (outcome) => writes.finishWith(record, outcome, render(outcome)),
      finishFrom: (outcome) => writes.finishFrom(record, outcome, render(outcome))
    }
    return work(execution).pipe(
      Effect.onExit((exit) => (Exit.isSuccess(exit) ? Effect.void : releaseAfterFailure(record))),
      Effect.flatMap((finished) =>
        finished.recordId === record.id
          ? Effect.succeed({ _tag: "Executed", response: finished.response, resumed } satisfies RunOutcome)
          : Effect.die(new Error("run: the work returned the Finished of another key"))
      )
    )
  }

  const run = <A, E, R>(request: IdempotentRequest<A>, work: Work<A, E, R>) =>
    begin(toBeginRequest(request)).pipe(
      Effect.flatMap((began) => execute(began, request.render, work)),
      countRun,
      Effect.withSpan("IdempotencyKeys.run")
    )

  const resume = <A, E, R>(abandoned: AbandonedKey, render: Render<A>, work: Work<A, E, R>) =>
    begin({
      merchantId: abandoned.merchantId,
      key: abandoned.key,
      method: abandoned.method,
      path: abandoned.path,
      fingerprint: abandoned.fingerprint
    }).pipe(Effect.flatMap((began) => execute(began, render, work)), Effect.withSpan("IdempotencyKeys.resume"))

  return { run, resume, releaseAfterFailure }
}

type Run = ReturnType<typeof makeRuns>["run"]

const makeRunAtOnce = (sql: SqlClient.SqlClient, store: KeyStore, fast: RedisFastPath, run: Run) =>
  <A, E, R>(request: IdempotentRequest<A>, once: AtOnceWork<A, E, R>, work: Work<A, E, R>) =>
    Effect.gen(function* () {
      // Inside a caller's transaction the statement would not be the one durable commit it claims.
      if (Option.isSome(yield* Effect.serviceOption(sql.transactionService))) {
        return yield* Effect.die(new Error("IdempotencyKeys.runAtOnce must not run inside a transaction: its statement commits on its own"))
      }
      const beginRequest = toBeginRequest(request)
      yield* Effect.annotateCurrentSpan({ merchant_id: request.merchantId, idempotency_key: request.key })
      // A cached answer of another request is a 422 decided here, before any run: counted like one.
      const cached = yield* countRefusal(fast.lookup(beginRequest))
      if (Option.isSome(cached) && cached.value._tag === "Replay") {
        return yield* countRun(Effect.succeed({ _tag: "Replayed", response: cached.value.response, decidedBy: cached.value.decidedBy } satisfies RunOutcome))
      }
      const id = randomUUID()
      const written = yield* once({
        insertFinished: (outcome) => {
          const response = request.render(outcome)
          if (!Number.isInteger(response.status) || response.status < 100 || response.status > 599) {
            throw new Error(`runAtOnce: ${response.status} is not an HTTP status`)
          }
          const finished: Finished<A> = { [FinishedTypeId]: FinishedTypeId, recordId: id, outcome, response }
          return { statement: store.insertFinished(id, beginRequest, response), finished }
        }
      })
      // The key existed: nothing was written; decide it as any other request with this key.
      if (Option.isNone(written)) return yield* run(request, work)
      if (written.value.recordId !== id) return yield* Effect.die(new Error("runAtOnce: the work returned the Finished of another key"))
      // Committed: Redis may now repeat it (a failure here only costs the next retry a Postgres read).
      yield* fast.cacheResponse(request.merchantId, request.key, beginRequest.fingerprint, written.value.response)
      // Counted like a run's answer (a fallback to `run` above counts itself).
      return yield* countRun(Effect.succeed({ _tag: "Executed", response: written.value.response, resumed: false } satisfies RunOutcome))
    }).pipe(Effect.withSpan("IdempotencyKeys.runAtOnce"))
