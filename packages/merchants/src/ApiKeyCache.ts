import { assertWithin, boundedInt, type IntBounds } from "@pay/infra"
import { Config } from "effect"

/**
 * A bounded, short-lived memory of authenticated API keys, so that a request does not cost a
 * Postgres round trip to look its key up (every `/v1` request did, replays included).
 *
 * Revocation stays prompt: an entry lives at most `ttl_ms` (≤ 1 000 ms, the bound the issue
 * names), after which the key is looked up again and a revoked key answers 401. A TTL, rather
 * than LISTEN/NOTIFY, because it needs no session state (it works behind pgbouncer in transaction
 * mode, where LISTEN does not) and no listener connection per instance, and it bounds staleness
 * even when a notification would be lost (docs/scaling.md). Revocation through this process's
 * `ApiKeys.revoke` also drops the entry at once.
 *
 * Only successes are kept: an unknown key is looked up every time (caching refusals would let a
 * stream of random keys evict the real ones). At most `entries_max` entries: when full, the
 * oldest entry goes (a Map keeps insertion order).
 */
export interface ApiKeyCacheOptions {
  /** 0 turns the cache off. */
  readonly ttl_ms: number
  readonly entries_max: number
}

export const apiKeyCacheBounds: { readonly ttl_ms: IntBounds; readonly entries_max: IntBounds } = {
  ttl_ms: { min: 0, max: 1_000 },
  entries_max: { min: 1, max: 100_000 }
}

export const defaultApiKeyCacheOptions: ApiKeyCacheOptions = { ttl_ms: 1_000, entries_max: 10_000 }

export const ApiKeyCacheConfig = Config.all({
  ttl_ms: boundedInt("API_KEY_CACHE_TTL_MS", apiKeyCacheBounds.ttl_ms, defaultApiKeyCacheOptions.ttl_ms),
  entries_max: boundedInt("API_KEY_CACHE_ENTRIES_MAX", apiKeyCacheBounds.entries_max, defaultApiKeyCacheOptions.entries_max)
})

interface Entry<A> {
  readonly value: A
  readonly expires_ms: number
}

export interface ApiKeyCache<A> {
  readonly get: (keyHash: string) => A | undefined
  readonly set: (keyHash: string, value: A) => void
  /** Drops every entry whose value matches (a revoked key's, by id). */
  readonly drop: (matches: (value: A) => boolean) => void
  readonly size: () => number
}

/** `now_ms` is a monotonic clock (tests pass their own). */
export const makeApiKeyCache = <A>(options: ApiKeyCacheOptions, now_ms: () => number = () => performance.now()): ApiKeyCache<A> => {
  assertWithin("api key cache", options, apiKeyCacheBounds)
  const entries = new Map<string, Entry<A>>()
  return {
    get: (keyHash) => {
      const entry = entries.get(keyHash)
      if (entry === undefined) return undefined
      if (entry.expires_ms <= now_ms()) {
        entries.delete(keyHash)
        return undefined
      }
      return entry.value
    },
    set: (keyHash, value) => {
      if (options.ttl_ms === 0) return
      entries.delete(keyHash)
      while (entries.size >= options.entries_max) {
        const oldest = entries.keys().next()
        if (oldest.done === true) break
        entries.delete(oldest.value)
      }
      entries.set(keyHash, { value, expires_ms: now_ms() + options.ttl_ms })
    },
    drop: (matches) => {
      for (const [keyHash, entry] of entries) if (matches(entry.value)) entries.delete(keyHash)
    },
    size: () => entries.size
  }
}
