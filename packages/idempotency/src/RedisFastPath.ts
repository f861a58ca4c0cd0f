import type { Redis, RedisError } from "@pay/infra"
import { Effect, Metric, Option, Schema } from "effect"
import { type CacheMac, idempotencyCacheRejected } from "./CacheAuthentication.ts"
import { IdempotencyKeyReused } from "./Errors.ts"
import { countRedisFallback, type RedisFastPathOperation } from "./IdempotencyMetrics.ts"
import type { Began, BeginRequest, IdempotencyOptions, StoredResponse } from "./Model.ts"

/**
 * The Redis fast path in front of the Postgres key store: a copy of each finished response (so a
 * replay costs one GET) and an in-flight marker per running key (so a concurrent duplicate gets its
 * 409 without touching Postgres). Redis never decides that a request is new: every miss, error or
 * timeout sends the request to Postgres, and every call is bounded in time.
 */

/**
 * Redis value of a completed response; carries the fingerprint so a mismatch is still a 422, and
 * an HMAC over it and the Redis key (CacheAuthentication.ts): a value without a valid one is never
 * replayed. Version 1 values (no MAC) no longer decode: Postgres answers and re-caches them.
 */
const CachedResponse = Schema.Struct({
  v: Schema.Literal(2),
  fingerprint: Schema.String,
  status: Schema.Int,
  contentType: Schema.String,
  body: Schema.String,
  mac: Schema.String,
  /** The signing secret's id (CacheMac.secretId): a refusal names another secret or a forgery. Absent before 2026-12-05. */
  kid: Schema.optionalKey(Schema.String)
})
const CachedResponseJson = Schema.fromJsonString(CachedResponse)
const encodeCachedResponse = Schema.encodeSync(CachedResponseJson)

const decodeCachedResponse = Schema.decodeUnknownOption(CachedResponseJson)

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

/** What the fast path decided: an answer, or "ask Postgres" (and whether this run set the marker). */
export interface FastPathDecision {
  readonly answer: Option.Option<Began>
  /** This run created the in-flight marker and must delete it unless it goes on to hold the lease. */
  readonly markerSet: boolean
  /**
   * Another request with the same fingerprint holds the marker. That is a 409 only once Postgres
   * says the key is not finished: the marker is set before Postgres is asked, so its holder may
   * be a replay of a finished key whose cached copy is gone (flush, eviction, another server).
   */
  readonly markerHeldBySameRequest: boolean
}

const askPostgres = (markerSet: boolean, markerHeldBySameRequest = false): FastPathDecision =>
  ({ answer: Option.none(), markerSet, markerHeldBySameRequest })

/** With Redis down, every request would log the same warning: one per interval, the rest at debug. */
const redisWarningInterval_ms = 5_000

/** Redis calls bounded in time; a failure or timeout is logged (throttled) and answers None. */
const makeBoundedCalls = (options: IdempotencyOptions) => {
  let lastRedisWarning_ms = 0
  const logRedisFailure = (message: string, annotations: Record<string, unknown>) => {
    const now = Date.now()
    const log = now - lastRedisWarning_ms >= redisWarningInterval_ms ? Effect.logWarning : Effect.logDebug
    if (log === Effect.logWarning) lastRedisWarning_ms = now
    return log(message).pipe(Effect.annotateLogs(annotations))
  }

  /** A failed call, logged (rate-limited) and counted by its reason; Postgres decides instead. */
  const fallBack = (operation: RedisFastPathOperation, reason: "error" | "timeout", annotations: Record<string, unknown>) =>
    logRedisFailure(reason === "timeout" ? "idempotency: redis timed out; Postgres decides" : "idempotency: redis failed; Postgres decides", {
      redis_operation: operation,
      ...annotations
    }).pipe(Effect.andThen(countRedisFallback(operation, reason)))

  /** One bounded Redis call: None when it failed or timed out (logged), never an error. */
  return <A>(operation: RedisFastPathOperation, effect: Effect.Effect<A, RedisError>): Effect.Effect<Option.Option<A>> =>
    effect.pipe(
      Effect.timeout(options.redisTimeout_ms),
      Effect.map(Option.some),
      Effect.catchTags({
        // The client's own command timeout (shorter than ours) is a hang too: counted as a timeout.
        RedisError: (error) => Effect.as(fallBack(operation, error.timedOut ? "timeout" : "error", { error: error.message }), Option.none<A>()),
        TimeoutError: () => Effect.as(fallBack(operation, "timeout", { timeout_ms: options.redisTimeout_ms }), Option.none<A>())
      }),
      Effect.tap((result) => Effect.annotateCurrentSpan({ [`redis.${operation}`]: Option.isSome(result) ? "ok" : "failed" }))
    )
}

/**
 * One WARN per interval for refused cached values, the rest at DEBUG (the counter counts them
 * all): servers sharing a Redis without a shared secret would otherwise log one per replay.
 */
const makeRejectionLog = () => {
  let lastWarning_ms = 0
  return (annotations: Record<string, unknown>) => {
    const now = Date.now()
    const log = now - lastWarning_ms >= redisWarningInterval_ms ? Effect.logWarning : Effect.logDebug
    if (log === Effect.logWarning) lastWarning_ms = now
    return log("idempotency: cached response failed its HMAC check under this secret (forged or moved); ignored, Postgres decides").pipe(
      Effect.annotateLogs(annotations)
    )
  }
}

/** A cached response for this key: a replay, or a 422 when it answered another request. */
const makeCachedAnswer = (mac: CacheMac, logRejection: ReturnType<typeof makeRejectionLog>) => (request: BeginRequest, cached: string) =>
  Effect.gen(function* () {
    const hit = decodeCachedResponse(cached)
    if (Option.isNone(hit)) {
      yield* Effect.logWarning("idempotency: unreadable cached response ignored; Postgres decides")
      return Option.none<Began>()
    }
    const { fingerprint, status, contentType, body } = hit.value
    const redisKey = redisResponseKey(request.merchantId, request.key)
    if (!mac.verify({ redisKey, fingerprint, status, contentType, body }, hit.value.mac)) {
      // Not written by a server holding the secret (or moved from another key): never replayed,
      // and not even trusted for a 422. Postgres decides, and its answer overwrites the entry.
      // Under another secret (a restart without IDEMPOTENCY_CACHE_SECRET) is expected: DEBUG; an
      // entry naming this secret whose MAC fails was forged or moved: WARN (every restart looked
      // like a forgery to operators: outside review).
      const reason = hit.value.kid === mac.secretId ? "mac" : "other_secret"
      yield* Metric.update(Metric.withAttributes(idempotencyCacheRejected, { reason }), 1)
      const annotations = { merchant_id: request.merchantId, idempotency_key: request.key, reason }
      yield* reason === "mac"
        ? logRejection(annotations)
        : Effect.logDebug("idempotency: cached response signed under another secret (a restart without IDEMPOTENCY_CACHE_SECRET, a rotation); ignored, Postgres decides").pipe(Effect.annotateLogs(annotations))
      return Option.none<Began>()
    }
    if (hit.value.fingerprint !== request.fingerprint) {
      return yield* new IdempotencyKeyReused({ key: request.key, decidedBy: "redis" })
    }
    const response = { status: hit.value.status, body: hit.value.body, contentType: hit.value.contentType }
    return Option.some<Began>({ _tag: "Replay", response, decidedBy: "redis" })
  })


export const makeRedisFastPath = (redis: Redis["Service"], options: IdempotencyOptions, mac: CacheMac) => {
  const logRejection = makeRejectionLog()
  // A cached response must not outlive the row it copies by more than a moment.
  const cacheTtl_ms = Math.min(options.responseCacheTtl_ms, options.retention_ms)
  const call = makeBoundedCalls(options)

  const cacheResponse = (merchantId: string, key: string, fingerprint: string, response: StoredResponse) => {
    const redisKey = redisResponseKey(merchantId, key)
    const fields = { redisKey, fingerprint, status: response.status, contentType: response.contentType, body: response.body }
    return call("set_response", redis.set(
      redisKey,
      encodeCachedResponse({ v: 2, fingerprint, status: response.status, contentType: response.contentType, body: response.body, mac: mac.sign(fields), kid: mac.secretId }),
      cacheTtl_ms
    )).pipe(Effect.asVoid)
  }

  const deleteMarker = (merchantId: string, key: string) =>
    call("del_marker", redis.del(redisInFlightKey(merchantId, key))).pipe(Effect.asVoid)

  const deleteResponse = (merchantId: string, key: string) =>
    call("del_response", redis.del(redisResponseKey(merchantId, key))).pipe(Effect.asVoid)

  const cachedAnswer = makeCachedAnswer(mac, logRejection)

  /**
   * Someone else's marker: does it name the same request? Then the caller may answer 409 once
   * Postgres says the key is not finished (a 409 changes nothing and asks the client to retry; the
   * marker is at most one lease old, PX). A different request, or a marker gone meanwhile, goes to
   * Postgres (which answers 422, or decides).
   */
  const sameRequestHoldsMarker = (request: BeginRequest) =>
    Effect.gen(function* () {
      const holder = yield* call("get_marker", redis.get(redisInFlightKey(request.merchantId, request.key)))
      const marker = Option.isSome(holder) && holder.value !== null ? decodeInFlightMarker(holder.value) : Option.none()
      return Option.isSome(marker) && marker.value.fingerprint === request.fingerprint
    })

  /** Some(answer) when Redis can answer safely; None when Postgres must decide. */
  const decide = (request: BeginRequest, token: string, lease_ms: number) =>
    Effect.gen(function* () {
      const cached = yield* call("get_response", redis.get(redisResponseKey(request.merchantId, request.key)))
      // Redis is failing: do not spend a second timeout on the marker.
      if (Option.isNone(cached)) return askPostgres(false)
      if (cached.value !== null) {
        const answer = yield* cachedAnswer(request, cached.value)
        if (Option.isSome(answer)) return { answer, markerSet: false, markerHeldBySameRequest: false } satisfies FastPathDecision
      }
      const marker = encodeInFlightMarker({ token, fingerprint: request.fingerprint })
      const set = yield* call("set_marker", redis.setIfAbsent(redisInFlightKey(request.merchantId, request.key), marker, lease_ms))
      if (Option.isSome(set) && set.value) return askPostgres(true)
      if (Option.isSome(set)) return askPostgres(false, yield* sameRequestHoldsMarker(request))
      return askPostgres(false)
    })

  /**
   * Only the cached response (no marker): for `runAtOnce`, whose single statement needs no
   * in-flight marker (a concurrent duplicate waits on the key's unique index, then replays).
   * None on a miss or a Redis failure; a response of another request is a 422.
   */
  const lookup = (request: BeginRequest) =>
    Effect.gen(function* () {
      const cached = yield* call("get_response", redis.get(redisResponseKey(request.merchantId, request.key)))
      if (Option.isNone(cached) || cached.value === null) return Option.none<Began>()
      return yield* cachedAnswer(request, cached.value)
    })

  return { decide, lookup, cacheResponse, deleteMarker, deleteResponse }
}

export type RedisFastPath = ReturnType<typeof makeRedisFastPath>
