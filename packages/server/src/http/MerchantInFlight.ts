import { boundedInt, DatabasePoolSize, type IntBounds, optionalBoundedInt } from "@pay/infra"
import { Config, Context, Deferred, Effect, Exit, Layer, Metric, Option } from "effect"
import { rateLimitBounds, rateLimitDefaults } from "./RateLimits.ts"

/**
 * Each merchant's share of this process: at most `inFlight_max` of its authenticated requests are
 * served at once; past it a request waits in the merchant's FIFO queue (at most `queued_max`
 * requests, each at most `queueWait_ms_max`), and past the queue's length or wait it is refused
 * (429 `rate_limited`, `ConcurrencyLimited`) before any idempotency work.
 *
 * Why: the per-second rate counts requests, not what they cost. An outside review sent 3,000
 * creates from one merchant, 250 at a time, under its 1,000/s rate: the server serves ~270 creates
 * a second with a 20-connection pool, the 250 queued for the pool ahead of everyone else, and
 * another merchant's `GET /v1/balance` went from 5 ms to 765 ms (p50). With the default of half the
 * pool, one merchant's requests hold at most half the connections, and another merchant's request
 * waits behind at most that many of them, never behind its whole backlog, which waits here,
 * outside the pool.
 *
 * A request holds its place until it ends, whatever ends it (an answer, a failure, the client
 * gone), and work that outlives its request (`finishEvenIfClientLeaves`, Respond.ts: a write runs
 * to its end after a hang-up) holds it until that work ends too (`RequestPlace`), or hanging up
 * would free the place and let a merchant pile detached work on the pool.
 *
 * The map holds an entry only for a merchant with requests in flight or queued, dropped when its
 * last one ends, and at most `merchants_max` of them (`RATE_LIMIT_KEYS_MAX`): past that, a request
 * of a merchant not in it is refused (each entry is an authenticated merchant with a request open,
 * so this is a bound that should never be reached, asserted rather than assumed).
 */
export interface InFlightSettings {
  readonly inFlight_max: number
  readonly queued_max: number
  readonly queueWait_ms_max: number
  readonly merchants_max: number
}

export const inFlightBounds = {
  inFlight_max: { min: 1, max: 1_000 },
  queued_max: { min: 0, max: 10_000 },
  queueWait_ms_max: { min: 1, max: 60_000 },
  merchants_max: rateLimitBounds.keys_max
} as const satisfies Record<keyof InFlightSettings, IntBounds>

/** Half the pool: one merchant leaves the other half of the connections to everyone else. */
export const inFlightDefault = (poolSize: number): number => Math.max(1, Math.floor(poolSize / 2))

/**
 * 500 waiting, at most 2 s each: about what one process drains in that wait (~270 creates a second
 * on the 2-core machine of the review), so a merchant's burst is served at its share
 * rather than refused. A waiting request costs a client connection and a few hundred bytes here,
 * none of the pool. A short queue is worse: a client that resends at once on each 429 (the outside
 * review's, 250 at a time, against a queue of 100) turned into ~500 refusals a second, every one
 * authenticated and answered, and the process's CPU went to refusing it.
 */
export const inFlightDefaults = { queued_max: 500, queueWait_ms_max: 2_000 } as const

/** A refusal's `Retry-After`: places free as requests end (milliseconds), there is no window to wait out. */
export const concurrencyRetryAfter_s = 1

/** `RATE_LIMIT_MERCHANT_IN_FLIGHT_MAX` when set (within its bounds); unset, half of `DATABASE_POOL_SIZE`. */
const InFlightMaxConfig = optionalBoundedInt("RATE_LIMIT_MERCHANT_IN_FLIGHT_MAX", inFlightBounds.inFlight_max)

export const InFlightConfig: Config.Config<InFlightSettings> = Config.all({
  inFlight: InFlightMaxConfig,
  poolSize: DatabasePoolSize,
  queued_max: boundedInt("RATE_LIMIT_MERCHANT_QUEUE_MAX", inFlightBounds.queued_max, inFlightDefaults.queued_max),
  queueWait_ms_max: boundedInt("RATE_LIMIT_MERCHANT_QUEUE_WAIT_MS", inFlightBounds.queueWait_ms_max, inFlightDefaults.queueWait_ms_max),
  merchants_max: boundedInt("RATE_LIMIT_KEYS_MAX", rateLimitBounds.keys_max, rateLimitDefaults.keys_max)
}).pipe(Config.map(({ inFlight, poolSize, ...rest }) => ({
  inFlight_max: Option.getOrElse(inFlight, () => inFlightDefault(poolSize)),
  ...rest
})))

/** Refusals by the concurrency limit, by reason: what `http_server_requests_total`'s 429s do not say. */
export const concurrencyRefusals = Metric.counter("http_merchant_concurrency_refusals_total", {
  description: "Requests refused by a merchant's limit on requests in flight (429 rate_limited), by reason: queue_full, queue_wait, merchants_max",
  incremental: true
})

const countRefusal = (reason: Refusal) => Metric.update(Metric.withAttributes(concurrencyRefusals, { reason }), 1)

/** A request waiting for a place; `admitted` once a place was handed to it. */
export interface Waiter {
  readonly merchantId: string
  admitted: boolean
  readonly wake: () => void
}

export type Refusal = "queue_full" | "queue_wait" | "merchants_max"

export type Entry =
  | { readonly _tag: "Admitted" }
  | { readonly _tag: "Queued"; readonly waiter: Waiter }
  | { readonly _tag: "Refused"; readonly reason: Exclude<Refusal, "queue_wait"> }

interface MerchantLoad {
  inFlight: number
  /** First in, first admitted. At most `queued_max`; a waiter that gives up is taken out. */
  readonly waiting: Array<Waiter>
}

/**
 * The places of each merchant, synchronous (single-threaded JavaScript makes each call atomic):
 * `0 <= inFlight <= inFlight_max` per merchant, a waiter only while every place is taken, and an
 * entry only while the merchant has a request in flight or waiting.
 */
export const merchantPlaces = (settings: InFlightSettings) => {
  const loads = new Map<string, MerchantLoad>()
  const dropIfIdle = (merchantId: string, load: MerchantLoad) => {
    if (load.inFlight === 0 && load.waiting.length === 0) loads.delete(merchantId)
  }
  /** A place given back: the first waiter takes it, or the merchant has one place fewer in flight. */
  const release = (merchantId: string): void => {
    const load = loads.get(merchantId)
    if (load === undefined || load.inFlight < 1) throw new Error(`merchantPlaces: releasing a place of ${merchantId} that none holds`)
    const next = load.waiting.shift()
    if (next === undefined) {
      load.inFlight -= 1
      dropIfIdle(merchantId, load)
      return
    }
    next.admitted = true
    next.wake()
  }
  return {
    /** A place for one request of the merchant, or a place in its queue, or a refusal. */
    enter: (merchantId: string, wake: () => void): Entry => {
      const known = loads.get(merchantId)
      if (known === undefined && loads.size >= settings.merchants_max) return { _tag: "Refused", reason: "merchants_max" }
      const load = known ?? { inFlight: 0, waiting: [] }
      if (known === undefined) loads.set(merchantId, load)
      if (load.inFlight < settings.inFlight_max) {
        if (load.waiting.length > 0) throw new Error(`merchantPlaces: ${merchantId} has a free place and requests waiting`)
        load.inFlight += 1
        return { _tag: "Admitted" }
      }
      if (load.waiting.length >= settings.queued_max) return { _tag: "Refused", reason: "queue_full" }
      const waiter: Waiter = { merchantId, admitted: false, wake }
      load.waiting.push(waiter)
      return { _tag: "Queued", waiter }
    },
    release,
    /** A waiter gives up (its wait ran out, its client left): out of the queue, or the place it was just handed goes on. */
    leave: (waiter: Waiter): void => {
      if (waiter.admitted) return release(waiter.merchantId)
      const load = loads.get(waiter.merchantId)
      const at = load === undefined ? -1 : load.waiting.indexOf(waiter)
      if (load === undefined || at < 0) throw new Error(`merchantPlaces: ${waiter.merchantId}'s waiter is not in its queue`)
      load.waiting.splice(at, 1)
      dropIfIdle(waiter.merchantId, load)
    },
    load: (merchantId: string) => {
      const load = loads.get(merchantId)
      return { inFlight: load?.inFlight ?? 0, queued: load?.waiting.length ?? 0 }
    },
    merchants: () => loads.size
  }
}

/**
 * The place of the request being served, for work that outlives the request: `hold` keeps the
 * place taken until the release it returns has run (once). Outside an authenticated request
 * (tests, workers) there is no place and holding is free.
 */
export const RequestPlace = Context.Reference<{ readonly hold: Effect.Effect<Effect.Effect<void>> }>("server/RequestPlace", {
  defaultValue: () => ({ hold: Effect.succeed(Effect.void) })
})

export type Served<A> = { readonly _tag: "Served"; readonly value: A } | { readonly _tag: "Refused"; readonly reason: Refusal }

export class MerchantInFlight extends Context.Service<MerchantInFlight, {
  readonly settings: InFlightSettings
  /**
   * Runs `serve` in one of the merchant's places, waiting for one in its queue (bounded), or
   * answers the refusal. The place is given back however `serve` ends, and not before every
   * `RequestPlace.hold` taken inside it has been released.
   */
  readonly serve: <A, E, R>(merchantId: string, serve: Effect.Effect<A, E, R>) => Effect.Effect<Served<A>, E, R>
  /** The merchant's requests in flight and waiting now (tests, diagnostics). */
  readonly load: (merchantId: string) => Effect.Effect<{ readonly inFlight: number; readonly queued: number }>
  /** Merchants with requests in flight or waiting now. */
  readonly merchants: Effect.Effect<number>
}>()("server/MerchantInFlight") {
  static readonly layerWith = (settings: InFlightSettings) =>
    Layer.sync(MerchantInFlight, () => {
      const places = merchantPlaces(settings)

      // One place taken: counted holds, the request's own first; the place goes back with the last.
      const heldPlace = (merchantId: string) => {
        let holds = 1
        const releaseOne = () => {
          if (holds < 1) throw new Error(`MerchantInFlight: ${merchantId}'s place released more often than held`)
          holds -= 1
          if (holds === 0) places.release(merchantId)
        }
        const hold = Effect.sync(() => {
          if (holds < 1) throw new Error(`MerchantInFlight: holding ${merchantId}'s place after it was given back`)
          holds += 1
          let released = false
          return Effect.sync(() => {
            if (released) return
            released = true
            releaseOne()
          })
        })
        return { hold, release: Effect.sync(releaseOne) }
      }

      // Waits (interruptibly) for a place in the queue; on the way out without one, leaves the queue.
      const awaitPlace = (waiter: Waiter, woken: Deferred.Deferred<void>, restore: <A, E, R>(effect: Effect.Effect<A, E, R>) => Effect.Effect<A, E, R>) =>
        restore(Deferred.await(woken).pipe(Effect.timeoutOption(settings.queueWait_ms_max))).pipe(
          Effect.onInterrupt(() => Effect.sync(() => places.leave(waiter))),
          // Handed a place as the wait ran out: take it.
          Effect.map((outcome) => Option.isSome(outcome) || waiter.admitted),
          Effect.tap((admitted) => (admitted ? Effect.void : Effect.sync(() => places.leave(waiter))))
        )

      const serve = <A, E, R>(merchantId: string, effect: Effect.Effect<A, E, R>): Effect.Effect<Served<A>, E, R> =>
        Effect.uninterruptibleMask((restore) =>
          Effect.gen(function* () {
            const woken = Deferred.makeUnsafe<void>()
            const entry = places.enter(merchantId, () => Deferred.doneUnsafe(woken, Exit.void))
            if (entry._tag === "Refused") {
              yield* countRefusal(entry.reason)
              return entry
            }
            if (entry._tag === "Queued" && !(yield* awaitPlace(entry.waiter, woken, restore))) {
              yield* countRefusal("queue_wait")
              return { _tag: "Refused" as const, reason: "queue_wait" as const }
            }
            const place = heldPlace(merchantId)
            const value = yield* restore(Effect.provideService(effect, RequestPlace, { hold: place.hold })).pipe(Effect.ensuring(place.release))
            return { _tag: "Served" as const, value }
          })
        )

      return MerchantInFlight.of({
        settings,
        serve,
        load: (merchantId) => Effect.sync(() => places.load(merchantId)),
        merchants: Effect.sync(() => places.merchants())
      })
    })

  static readonly layer = Layer.unwrap(
    Effect.gen(function* () {
      const settings = yield* InFlightConfig
      const poolSize = yield* DatabasePoolSize
      if (settings.inFlight_max >= poolSize) {
        yield* Effect.logWarning("RATE_LIMIT_MERCHANT_IN_FLIGHT_MAX is not below DATABASE_POOL_SIZE: one merchant's requests can hold every connection of the pool and queue everyone else's behind them")
      }
      return MerchantInFlight.layerWith(settings)
    })
  )
}
