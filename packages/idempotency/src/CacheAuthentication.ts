import { boundedString } from "@pay/infra"
import { Config, Metric, Redacted } from "effect"
import { createHmac, randomBytes, timingSafeEqual } from "node:crypto"

/**
 * Authenticates the responses the idempotency fast path copies into Redis. Redis is a cache that
 * anyone with network access to it can write (issue 11: a forged `pay:idem:resp:*` entry was
 * replayed to the client as is), so a cached response is trusted only if it carries an HMAC-SHA256,
 * under a secret only the servers know, over everything a replay sends and where it was stored:
 * the Redis key (merchant and Idempotency-Key), the request fingerprint, the status, the content
 * type and the body. A value that fails the check (forged, copied from another key or merchant,
 * written under another secret, or of an older format) is ignored: Postgres, the authority,
 * answers and its answer overwrites the entry.
 *
 * | variable                   | default                          | bounds                                  |
 * | -------------------------- | -------------------------------- | --------------------------------------- |
 * | `IDEMPOTENCY_CACHE_SECRET` | (empty: random, per process)     | empty, or 32..1024 non-space characters |
 *
 * Unset, each process draws its own random secret (a SERVER_INSTANCES primary draws one for all its
 * instances: server/src/Cluster.ts): correct, but one server cannot use another's
 * (or its own previous life's) cached entries; they fall back to Postgres. Servers behind one
 * Redis should share a secret. Rotating it costs a Postgres read per cached key until re-cached.
 */
export const cacheSecretBounds = {
  length_min: 32,
  length_max: 1_024
} as const

export const IdempotencyCacheSecretConfig: Config.Config<Redacted.Redacted<string> | undefined> = boundedString(
  "IDEMPOTENCY_CACHE_SECRET",
  {
    length_max: cacheSecretBounds.length_max,
    pattern: new RegExp(`^(?:\\S{${cacheSecretBounds.length_min},})?$`),
    expected: `empty (a random secret per process) or at least ${cacheSecretBounds.length_min} non-space characters`
  },
  ""
).pipe(Config.map((secret) => (secret === "" ? undefined : Redacted.make(secret))))

/** A fresh random secret (256 bits), for a process that was given none. */
export const randomCacheSecret = (): Redacted.Redacted<string> => Redacted.make(randomBytes(32).toString("base64url"))

/** What the MAC covers: a cached response and the Redis key it was stored under. */
export interface CachedFields {
  readonly redisKey: string
  readonly fingerprint: string
  readonly status: number
  readonly contentType: string
  readonly body: string
}

/**
 * Cached responses refused by the MAC check, by `reason`: `other_secret` (written under another
 * secret: after a restart without `IDEMPOTENCY_CACHE_SECRET`, a rotation, another deployment on
 * the same Redis: expected, at DEBUG), `mac` (the entry names this secret and its MAC does not
 * verify: forged or moved, at WARN). A forger can name another secret to look like the first:
 * either way the entry is never replayed.
 */
export const idempotencyCacheRejected = Metric.counter("idempotency_cache_rejected_total", {
  description: "Cached idempotent responses ignored because their HMAC did not verify (Postgres answered instead), by reason (other_secret, mac)"
})

const macDomain = "pay.idempotency.cached-response.v2"

export const makeCacheMac = (secret: Redacted.Redacted<string>) => {
  const key = Buffer.from(Redacted.value(secret), "utf8")
  if (key.length < cacheSecretBounds.length_min) {
    throw new RangeError(`the idempotency cache secret must be at least ${cacheSecretBounds.length_min} bytes`)
  }
  // A JSON array is an unambiguous encoding of the fields (no concatenation collisions).
  const digest = (fields: CachedFields): Buffer =>
    createHmac("sha256", key)
      .update(JSON.stringify([macDomain, fields.redisKey, fields.fingerprint, fields.status, fields.contentType, fields.body]))
      .digest()
  const sign = (fields: CachedFields): string => digest(fields).toString("hex")
  /** Which secret signed an entry: 16 hex digits of an HMAC under it (not the secret, not reversible). */
  const secretId = createHmac("sha256", key).update("pay.idempotency.cache-secret-id").digest("hex").slice(0, 16)
  // Every replay verifies: the raw digest, not its hex text decoded again.
  const verify = (fields: CachedFields, mac: string): boolean => {
    const expected = digest(fields)
    const given = Buffer.from(mac, "hex")
    return given.length === expected.length && timingSafeEqual(given, expected)
  }
  return { sign, verify, secretId }
}

export type CacheMac = ReturnType<typeof makeCacheMac>
