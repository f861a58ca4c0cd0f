import { boundedInt } from "@pay/infra"
import { Clock, Config, Context, Deferred, Effect, Exit, Layer, Option } from "effect"

/**
 * Two limits, counted in fixed windows in this process (each server process counts its own: with
 * N processes behind a balancer a merchant gets up to N times the limit):
 *
 * - per merchant: at most `merchantRequests_max` authenticated requests per `merchantWindow_ms`,
 *   checked right after authentication, before any idempotency work (429 `rate_limited`);
 * - per source address (the client's, ClientAddress.ts): at most `authenticationFailures_max`
 *   failed authentications per `authenticationWindow_ms`; past it, every request from that
 *   address is refused before its key is looked up until the window ends (429
 *   `authentication_rate_limited`), valid keys included: a guesser learns nothing more.
 *
 * The second holds under any concurrency: an attempt is counted when its lookup starts, not when
 * it has failed (checking first and counting after let every request already in flight through:
 * 239-300 of 300-800 concurrent guesses were looked up). Failures in the window plus lookups in
 * flight never exceed the limit; a lookup that does not fail (a valid key, a database error, a
 * client gone) gives its place back. A request finding every place taken by lookups in flight
 * waits for one to end (at most `authenticationWait_ms_max`), so concurrent valid keys from one
 * address are delayed by a lookup, never refused.
 *
 * The counters are bounded maps (`keys_max`): when full, expired windows are dropped first, then
 * the oldest. Effect's in-memory `RateLimiter` store does not bound its key count, and the
 * source-address counters are keyed by whoever connects.
 */
export interface RateLimitSettings {
  readonly merchantRequests_max: number
  readonly merchantWindow_ms: number
  readonly authenticationFailures_max: number
  readonly authenticationWindow_ms: number
  readonly keys_max: number
}

export const rateLimitBounds = {
  merchantRequests_max: { min: 1, max: 1_000_000 },
  merchantWindow_ms: { min: 100, max: 3_600_000 },
  authenticationFailures_max: { min: 1, max: 100_000 },
  authenticationWindow_ms: { min: 1_000, max: 3_600_000 },
  keys_max: { min: 100, max: 1_000_000 }
} as const

export const rateLimitDefaults: RateLimitSettings = {
  merchantRequests_max: 1_000,
  merchantWindow_ms: 1_000,
  authenticationFailures_max: 20,
  authenticationWindow_ms: 60_000,
  keys_max: 100_000
}

export const RateLimitConfig: Config.Config<RateLimitSettings> = Config.all({
  merchantRequests_max: boundedInt("RATE_LIMIT_MERCHANT_REQUESTS_MAX", rateLimitBounds.merchantRequests_max, rateLimitDefaults.merchantRequests_max),
  merchantWindow_ms: boundedInt("RATE_LIMIT_MERCHANT_WINDOW_MS", rateLimitBounds.merchantWindow_ms, rateLimitDefaults.merchantWindow_ms),
  authenticationFailures_max: boundedInt(
    "RATE_LIMIT_AUTH_FAILURES_MAX",
    rateLimitBounds.authenticationFailures_max,
    rateLimitDefaults.authenticationFailures_max
  ),
  authenticationWindow_ms: boundedInt(
    "RATE_LIMIT_AUTH_FAILURES_WINDOW_MS",
    rateLimitBounds.authenticationWindow_ms,
    rateLimitDefaults.authenticationWindow_ms
  ),
  keys_max: boundedInt("RATE_LIMIT_KEYS_MAX", rateLimitBounds.keys_max, rateLimitDefaults.keys_max)
})

/** The verdict of one count: allowed, or refused with the seconds until the window ends (at least 1). */
export type Verdict = { readonly allowed: true } | { readonly allowed: false; readonly retryAfter_s: number }

interface Window {
  count: number
  readonly ends_ms: number
}

/** Fixed-window counters over a bounded map of keys. */
/**
 * Makes room for one more key in a bounded map of counters: when it holds `keys_max`, the entries
 * `expired` says may go are dropped first, then the oldest (a Map iterates in insertion order).
 */
const makeRoomIn = <V>(entries: Map<string, V>, keys_max: number, expired: (entry: V) => boolean): void => {
  if (entries.size < keys_max) return
  for (const [key, entry] of entries) if (expired(entry)) entries.delete(key)
  for (const key of entries.keys()) {
    if (entries.size < keys_max) break
    entries.delete(key)
  }
}

export const fixedWindows = (limit: number, window_ms: number, keys_max: number) => {
  const windows = new Map<string, Window>()
  const current = (key: string, now_ms: number): Window | undefined => {
    const window = windows.get(key)
    if (window !== undefined && window.ends_ms <= now_ms) {
      windows.delete(key)
      return undefined
    }
    return window
  }
  const makeRoom = (now_ms: number) => makeRoomIn(windows, keys_max, (window) => window.ends_ms <= now_ms)
  const retryAfter = (window: Window, now_ms: number) => Math.max(1, Math.ceil((window.ends_ms - now_ms) / 1_000))
  return {
    /** Counts one event for `key`; refused when the window already holds `limit`. */
    hit: (key: string, now_ms: number): Verdict => {
      const window = current(key, now_ms)
      if (window === undefined) {
        makeRoom(now_ms)
        windows.set(key, { count: 1, ends_ms: now_ms + window_ms })
        return { allowed: true }
      }
      if (window.count >= limit) return { allowed: false, retryAfter_s: retryAfter(window, now_ms) }
      window.count += 1
      return { allowed: true }
    },
    size: () => windows.size
  }
}

/**
 * How long a request waits for a place among its address's lookups in flight. A lookup takes
 * milliseconds; lookups still in flight after this are stuck in the database, and the request is
 * answered like one whose own lookup did not answer (503 `database_unavailable`).
 */
export const authenticationWait_ms_max = 5_000

/** An attempt admitted: what `settle` needs to find its counter again. */
export interface AttemptTicket {
  readonly key: string
  /** The counter's identity: a counter dropped and made again for the key is another one. */
  readonly serial: number
}

export type Admission =
  | { readonly _tag: "Admitted"; readonly ticket: AttemptTicket }
  /** Over the limit of failures: refused until the window ends. */
  | { readonly _tag: "Refused"; readonly retryAfter_s: number }
  /** The failures and the attempts in flight already fill the limit: wait for one to settle. */
  | { readonly _tag: "Busy" }

interface AttemptCounter {
  readonly serial: number
  /** Failed attempts settled in the current window. */
  failures: number
  /** Attempts admitted and not settled yet; they carry over into the next window. */
  inFlight: number
  ends_ms: number
}

/**
 * Fixed-window counters of attempts over a bounded map of keys, where an attempt counts from its
 * admission: `failures + inFlight <= limit` at all times (admission needs room; a settled failure
 * moves one from `inFlight` to `failures`; a new window only lowers `failures`). So at most
 * `limit` attempts settle as failures in any window, however many arrive at once. Single-threaded
 * JavaScript makes each call atomic.
 */
export const attemptWindows = (limit: number, window_ms: number, keys_max: number) => {
  const counters = new Map<string, AttemptCounter>()
  let serials = 0
  // A new window for the key; moved to the end of the map (the oldest windows come first).
  const startWindow = (key: string, counter: AttemptCounter, now_ms: number) => {
    counter.failures = 0
    counter.ends_ms = now_ms + window_ms
    counters.delete(key)
    counters.set(key, counter)
  }
  const current = (key: string, now_ms: number): AttemptCounter | undefined => {
    const counter = counters.get(key)
    if (counter === undefined || counter.ends_ms > now_ms) return counter
    if (counter.inFlight === 0) {
      counters.delete(key)
      return undefined
    }
    startWindow(key, counter, now_ms)
    return counter
  }
  // Still full after the expired windows: the oldest go (their attempts in flight then settle into nothing).
  const makeRoom = (now_ms: number) => makeRoomIn(counters, keys_max, (counter) => counter.ends_ms <= now_ms && counter.inFlight === 0)
  return {
    /** Admits one attempt of `key` when the limit has room for it. */
    begin: (key: string, now_ms: number): Admission => {
      const counter = current(key, now_ms)
      if (counter === undefined) {
        makeRoom(now_ms)
        serials += 1
        counters.set(key, { serial: serials, failures: 0, inFlight: 1, ends_ms: now_ms + window_ms })
        return { _tag: "Admitted", ticket: { key, serial: serials } }
      }
      if (counter.failures >= limit) {
        return { _tag: "Refused", retryAfter_s: Math.max(1, Math.ceil((counter.ends_ms - now_ms) / 1_000)) }
      }
      if (counter.failures + counter.inFlight >= limit) return { _tag: "Busy" }
      counter.inFlight += 1
      return { _tag: "Admitted", ticket: { key, serial: counter.serial } }
    },
    /** Ends an admitted attempt: a failure is counted in the current window, anything else gives its place back. */
    settle: (ticket: AttemptTicket, failed: boolean, now_ms: number): void => {
      const counter = counters.get(ticket.key)
      // Dropped to make room while in flight: nothing left to count it in.
      if (counter === undefined || counter.serial !== ticket.serial) return
      if (counter.inFlight < 1) throw new Error(`attemptWindows: settling ${ticket.key} with no attempt in flight`)
      if (failed) {
        if (counter.ends_ms <= now_ms) startWindow(ticket.key, counter, now_ms)
        counter.failures += 1
      }
      counter.inFlight -= 1
    },
    size: () => counters.size
  }
}

/**
 * The windows' time: the monotonic clock in ms (an outside clock review stepped the wall clock back
 * an hour: windows measured on it lasted an hour, `Retry-After: 3593` for a merchant under its rate).
 */
const monotonic_ms = Effect.map(Clock.monotonicTimeNanos, (nanos) => Number(nanos / 1_000_000n))

/** How an authentication attempt ended. */
export type AttemptOutcome<A> =
  /** The lookup ran and succeeded (its failures are the effect's own). */
  | { readonly _tag: "LookedUp"; readonly value: A }
  /** The source is over its failures: nothing looked up. */
  | { readonly _tag: "Refused"; readonly retryAfter_s: number }
  /** The source's lookups in flight held every place for `authenticationWait_ms_max`: nothing looked up. */
  | { readonly _tag: "WaitedTooLong" }

export class RateLimits extends Context.Service<RateLimits, {
  readonly settings: RateLimitSettings
  /** Counts an authenticated request of the merchant. */
  readonly merchantRequest: (merchantId: string) => Effect.Effect<Verdict>
  /**
   * Runs `lookup` as one authentication attempt of `source`, when the source's limit has room for
   * it (waiting, bounded, for a place held by a lookup in flight). The attempt counts as a failed
   * authentication when `lookup` fails with an error `isFailure` accepts; otherwise (success,
   * another error, interruption) its place is given back.
   */
  readonly authenticationAttempt: <A, E, R>(
    source: string,
    lookup: Effect.Effect<A, E, R>,
    isFailure: (error: E) => boolean
  ) => Effect.Effect<AttemptOutcome<A>, E, R>
}>()("server/RateLimits") {
  static readonly layerWith = (settings: RateLimitSettings) =>
    Layer.sync(RateLimits, () => {
      const merchants = fixedWindows(settings.merchantRequests_max, settings.merchantWindow_ms, settings.keys_max)
      const attempts = attemptWindows(settings.authenticationFailures_max, settings.authenticationWindow_ms, settings.keys_max)
      // Per source with requests waiting for a place: completed and dropped when one of its
      // attempts settles, and they all look again. Taken in the same synchronous step as the
      // admission that found no room, so no settle is missed. There is a place to wait for only
      // while the source has attempts in flight, each of which settles once: the map holds at most
      // one entry per source with requests in flight (bounded by the open connections).
      const settleSignals = new Map<string, Deferred.Deferred<void>>()
      const signalOf = (source: string) => {
        const known = settleSignals.get(source)
        if (known !== undefined) return known
        const made = Deferred.makeUnsafe<void>()
        settleSignals.set(source, made)
        return made
      }
      const announceSettled = (source: string) => {
        const signal = settleSignals.get(source)
        if (signal === undefined) return
        settleSignals.delete(source)
        Deferred.doneUnsafe(signal, Exit.void)
      }

      type Busy = { readonly _tag: "Busy"; readonly signal: Deferred.Deferred<void> }
      type Step<A> = AttemptOutcome<A> | Busy

      // One admission, and when admitted the lookup with its settlement, which runs however the
      // lookup ends (the admission and the release are uninterruptible; the lookup is not).
      const step = <A, E, R>(source: string, lookup: Effect.Effect<A, E, R>, isFailure: (error: E) => boolean, now_ms: number) =>
        Effect.acquireUseRelease(
          Effect.sync((): Exclude<Admission, { readonly _tag: "Busy" }> | Busy => {
            const admission = attempts.begin(source, now_ms)
            return admission._tag === "Busy" ? { _tag: "Busy", signal: signalOf(source) } : admission
          }),
          (admission): Effect.Effect<Step<A>, E, R> => {
            switch (admission._tag) {
              case "Admitted":
                return Effect.map(lookup, (value) => ({ _tag: "LookedUp", value }))
              case "Refused":
                return Effect.succeed({ _tag: "Refused", retryAfter_s: admission.retryAfter_s })
              case "Busy":
                return Effect.succeed(admission)
            }
          },
          (admission, exit) =>
            admission._tag === "Admitted"
              ? Effect.flatMap(monotonic_ms, (settled_ms) =>
                Effect.sync(() => {
                  attempts.settle(admission.ticket, Option.exists(Exit.findErrorOption(exit), isFailure), settled_ms)
                  announceSettled(source)
                }))
              : Effect.void
        )

      const authenticationAttempt = <A, E, R>(
        source: string,
        lookup: Effect.Effect<A, E, R>,
        isFailure: (error: E) => boolean
      ): Effect.Effect<AttemptOutcome<A>, E, R> =>
        Effect.gen(function* () {
          const deadline_ms = (yield* monotonic_ms) + authenticationWait_ms_max
          // Bounded by the deadline: each round ends when an attempt settles or the deadline passes.
          while (true) {
            const now_ms = yield* monotonic_ms
            const outcome = yield* step(source, lookup, isFailure, now_ms)
            if (outcome._tag !== "Busy") return outcome
            const left_ms = deadline_ms - now_ms
            if (left_ms <= 0) return { _tag: "WaitedTooLong" as const }
            yield* Deferred.await(outcome.signal).pipe(Effect.timeoutOption(left_ms))
          }
        })

      return RateLimits.of({
        settings,
        merchantRequest: (merchantId) => Effect.map(monotonic_ms, (now_ms) => merchants.hit(merchantId, now_ms)),
        authenticationAttempt
      })
    })

  static readonly layer = Layer.unwrap(
    Effect.gen(function* () {
      return RateLimits.layerWith(yield* RateLimitConfig)
    })
  )
}
