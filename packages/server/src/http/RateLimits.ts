import { boundedInt } from "@pay/infra"
import { Config, Context, Effect, Layer } from "effect"

/**
 * Two limits, counted in fixed windows in this process (each server process counts its own: with
 * N processes behind a balancer a merchant gets up to N times the limit):
 *
 * - per merchant: at most `merchantRequests_max` authenticated requests per `merchantWindow_ms`,
 *   checked right after authentication, before any idempotency work (429 `rate_limited`);
 * - per source address: at most `authenticationFailures_max` failed authentications per
 *   `authenticationWindow_ms`; past it, every request from that address is refused before its key
 *   is looked up until the window ends (429 `authentication_rate_limited`), valid keys included:
 *   a guesser learns nothing more.
 *
 * The counters are a bounded map (`keys_max`): when full, expired windows are dropped first, then
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
  const makeRoom = (now_ms: number) => {
    if (windows.size < keys_max) return
    for (const [key, window] of windows) if (window.ends_ms <= now_ms) windows.delete(key)
    // Still full: the oldest entries go (a Map iterates in insertion order).
    for (const key of windows.keys()) {
      if (windows.size < keys_max) break
      windows.delete(key)
    }
  }
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
    /** Whether `key` is over the limit now, without counting. */
    check: (key: string, now_ms: number): Verdict => {
      const window = current(key, now_ms)
      return window === undefined || window.count < limit ? { allowed: true } : { allowed: false, retryAfter_s: retryAfter(window, now_ms) }
    },
    size: () => windows.size
  }
}

export class RateLimits extends Context.Service<RateLimits, {
  readonly settings: RateLimitSettings
  /** Counts an authenticated request of the merchant. */
  readonly merchantRequest: (merchantId: string) => Effect.Effect<Verdict>
  /** Whether the source may try to authenticate now. */
  readonly authenticationAllowed: (source: string) => Effect.Effect<Verdict>
  /** Counts a failed authentication of the source. */
  readonly authenticationFailed: (source: string) => Effect.Effect<void>
}>()("server/RateLimits") {
  static readonly layerWith = (settings: RateLimitSettings) =>
    Layer.sync(RateLimits, () => {
      const merchants = fixedWindows(settings.merchantRequests_max, settings.merchantWindow_ms, settings.keys_max)
      const failures = fixedWindows(settings.authenticationFailures_max, settings.authenticationWindow_ms, settings.keys_max)
      return RateLimits.of({
        settings,
        merchantRequest: (merchantId) => Effect.sync(() => merchants.hit(merchantId, Date.now())),
        authenticationAllowed: (source) => Effect.sync(() => failures.check(source, Date.now())),
        authenticationFailed: (source) => Effect.sync(() => void failures.hit(source, Date.now()))
      })
    })

  static readonly layer = Layer.unwrap(
    Effect.gen(function* () {
      return RateLimits.layerWith(yield* RateLimitConfig)
    })
  )
}
