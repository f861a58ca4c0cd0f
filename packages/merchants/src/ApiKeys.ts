import { CodedError, MerchantId, uuidPattern } from "@pay/domain"
import { Context, Deferred, Effect, Layer, Option, Redacted, Schema } from "effect"
import { SqlClient, SqlSchema } from "effect/sql"
import type { SqlError } from "effect/sql/SqlError"
import { createHash, randomBytes, randomUUID } from "node:crypto"
import { type ApiKeyCache, ApiKeyCacheConfig, type ApiKeyCacheOptions, defaultApiKeyCacheOptions, makeApiKeyCache } from "./ApiKeyCache.ts"

/**
 * Merchant API keys. A secret is `sk_test_` followed by 32 base62 characters (32 × log2(62) ≈ 190
 * random bits). It is shown once, by `create`; the database keeps only its SHA-256.
 *
 * Why a plain SHA-256 and no salt or slow hash: those defend low-entropy secrets (passwords)
 * against dictionary attacks. A 190-bit random secret has no dictionary; a fast hash lets every
 * request authenticate with one indexed lookup.
 *
 * Why no constant-time comparison: the secret is never compared. We hash what the client sent and
 * look the hash up through a unique index. What a timing attacker could learn is how far a B-tree
 * search on SHA-256 values got, i.e. something about the hashes of guesses they chose, which
 * says nothing about any real secret (SHA-256 is preimage resistant).
 */
export const API_KEY_SECRET_PREFIX = "sk_test_"
const secretBodyLength = 32
const displayedBodyLength = 4
const base62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
export const apiKeySecretPattern = /^sk_test_[0-9A-Za-z]{32}$/

/**
 * Whether `secret` can be a key at all. `authenticate` refuses anything else before hashing, the
 * cache or the database; the server's failed-authentication limit counts only what passes (one
 * definition for both, so a key form widened here is limited there too).
 */
export const isWellFormedApiKey = (secret: string): boolean => apiKeySecretPattern.test(secret)

/** The same answer (401, `unauthorized`) for unknown, revoked and malformed keys. */
export class Unauthorized extends CodedError<Unauthorized>()(
  "unauthorized",
  "Unauthorized",
  { reason: Schema.Literals(["missing", "malformed", "unknown_or_revoked"]) },
  (e) => (e.reason === "missing" ? "no API key: send `Authorization: Bearer sk_test_...`" : "invalid API key")
) {}

/**
 * `revoke` of an id that names no API key (a typo, a key of another environment, or not a UUID at
 * all). Not an API answer: the operator's CLI says so and exits non-zero (issue 11: it used to
 * print "revoked" and exit 0 whatever the id).
 */
export class ApiKeyNotFound extends Schema.TaggedError<ApiKeyNotFound>()("ApiKeyNotFound", { apiKeyId: Schema.String }) {
  override get message() {
    return `no API key ${this.apiKeyId}`
  }
}

/** What `revoke` did: revoked it now, or it already was (idempotent; `revokedAt` says since when). */
export type Revoked =
  | { readonly _tag: "Revoked"; readonly merchantId: MerchantId; readonly revokedAt: Date }
  | { readonly _tag: "AlreadyRevoked"; readonly merchantId: MerchantId; readonly revokedAt: Date }

export interface CreatedApiKey {
  readonly id: string
  readonly merchantId: MerchantId
  /** The whole secret, shown once. Redacted so that it never lands in a log by accident. */
  readonly secret: Redacted.Redacted<string>
  /** For display: `sk_test_` + the first 4 characters. */
  readonly prefix: string
}

export interface Authenticated {
  readonly merchantId: MerchantId
  readonly apiKeyId: string
}

/** Unbiased base62: bytes above the largest multiple of 62 are drawn again. */
const randomBase62 = (length: number): string => {
  const limit = 256 - (256 % 62) // 248
  let out = ""
  while (out.length < length) {
    for (const byte of randomBytes(length * 2)) {
      if (byte < limit && out.length < length) out += base62.charAt(byte % 62)
    }
  }
  return out
}

export const hashApiKeySecret = (secret: string): Uint8Array => createHash("sha256").update(secret, "utf8").digest()

/**
 * One lookup in flight per key: requests with a key the cache does not hold share the lookup
 * already running for it instead of each sending its own (a burst of new connections with one
 * key, 250 at once in the outside review, was 250 queries on the pool before the merchant was
 * even known). The lookup runs uninterruptibly to its end (one indexed query, bounded by the
 * database timeouts), so a leader whose client hangs up never leaves the others waiting; the
 * entry goes when its lookup ends, so the map holds at most the keys being looked up now. A key
 * found is cached (`cache`); one not found is not (refusals are never remembered).
 */
const singleFlightLookups = (
  findLiveKey: (keyHash: Uint8Array) => Effect.Effect<Option.Option<{ readonly id: string; readonly merchant_id: MerchantId }>, SqlError | Schema.SchemaError>,
  cache: ApiKeyCache<Authenticated>
) => {
  const lookupsInFlight = new Map<string, Deferred.Deferred<Option.Option<Authenticated>, SqlError>>()
  return (cacheKey: string, keyHash: Uint8Array): Effect.Effect<Option.Option<Authenticated>, SqlError> => {
    const running = lookupsInFlight.get(cacheKey)
    if (running !== undefined) return Deferred.await(running)
    const done = Deferred.makeUnsafe<Option.Option<Authenticated>, SqlError>()
    lookupsInFlight.set(cacheKey, done)
    const lookup = findLiveKey(keyHash).pipe(
      Effect.catchTag("SchemaError", Effect.die),
      Effect.map(Option.map(({ id, merchant_id: merchantId }): Authenticated => ({ merchantId, apiKeyId: id }))),
      Effect.tap((found) => Effect.sync(() => {
        if (Option.isSome(found)) cache.set(cacheKey, found.value)
      })),
      Effect.onExit((exit) =>
        Effect.sync(() => {
          lookupsInFlight.delete(cacheKey)
          Deferred.doneUnsafe(done, exit)
        })
      )
    )
    return Effect.uninterruptible(lookup).pipe(Effect.flatMap(() => Deferred.await(done)))
  }
}

/**
 * The secret in an `Authorization` header: `Bearer <secret>`, or HTTP Basic with the secret as the
 * user name and an empty password (what Stripe's `curl -u sk_test_...:` sends).
 */
export const secretFromAuthorizationHeader = (header: string | undefined): string | Unauthorized => {
  if (header === undefined || header.trim() === "") return new Unauthorized({ reason: "missing" })
  const match = /^([A-Za-z]+)[ \t]+(\S+)[ \t]*$/.exec(header.trim())
  if (match === null || match[1] === undefined || match[2] === undefined) return new Unauthorized({ reason: "malformed" })
  const scheme = match[1].toLowerCase()
  if (scheme === "bearer") return match[2]
  if (scheme === "basic") {
    const decoded = Buffer.from(match[2], "base64").toString("utf8")
    const colon = decoded.indexOf(":")
    return colon === -1 ? new Unauthorized({ reason: "malformed" }) : decoded.slice(0, colon)
  }
  return new Unauthorized({ reason: "malformed" })
}

export class ApiKeys extends Context.Service<ApiKeys, {
  /** A new secret for the merchant. The secret is returned once and never stored. */
  readonly create: (merchantId: MerchantId) => Effect.Effect<CreatedApiKey, SqlError>
  /** The merchant a secret belongs to, or 401 when it is malformed, unknown or revoked. */
  readonly authenticate: (secret: string) => Effect.Effect<Authenticated, Unauthorized | SqlError>
  /** {@link authenticate} on an `Authorization` header (Bearer or Basic). */
  readonly authenticateHeader: (authorization: string | undefined) => Effect.Effect<Authenticated, Unauthorized | SqlError>
  /**
   * Revokes a key: it stops authenticating at once. Idempotent (`AlreadyRevoked` the second time);
   * an id that names no key (or is not a UUID) is `ApiKeyNotFound`, never a silent success.
   */
  readonly revoke: (apiKeyId: string) => Effect.Effect<Revoked, ApiKeyNotFound | SqlError>
}>()("merchants/ApiKeys") {
  /** With an explicit cache (tests); `{ ttl_ms: 0 }` turns it off. */
  static readonly layerWith = (cacheOptions: ApiKeyCacheOptions = defaultApiKeyCacheOptions) => Layer.effect(
    ApiKeys,
    Effect.gen(function* () {
      const sql = yield* SqlClient.SqlClient
      const cache = makeApiKeyCache<Authenticated>(cacheOptions)
      // The merchants table's CHECK guarantees the id's pattern; a mismatch is a bug (a defect).
      const findLiveKey = SqlSchema.findOneOption({
        Request: Schema.Uint8Array,
        Result: Schema.Struct({ id: Schema.String, merchant_id: MerchantId }),
        execute: (keyHash) => sql`SELECT id, merchant_id FROM api_keys WHERE key_hash = ${keyHash} AND revoked_at IS NULL`
      })

      const create = Effect.fn("ApiKeys.create")(function* (merchantId: MerchantId) {
        const body = randomBase62(secretBodyLength)
        const secret = `${API_KEY_SECRET_PREFIX}${body}`
        const prefix = `${API_KEY_SECRET_PREFIX}${body.slice(0, displayedBodyLength)}`
        const id = randomUUID()
        yield* sql`
          INSERT INTO api_keys (id, merchant_id, key_hash, prefix)
          VALUES (${id}, ${merchantId}, ${hashApiKeySecret(secret)}, ${prefix})`
        const created: CreatedApiKey = { id, merchantId, secret: Redacted.make(secret), prefix }
        return created
      })

      const lookUp = singleFlightLookups(findLiveKey, cache)

      const authenticate = Effect.fn("ApiKeys.authenticate")(function* (secret: string) {
        // Cheap refusal of anything that cannot be a key, before touching the database.
        if (!isWellFormedApiKey(secret)) return yield* new Unauthorized({ reason: "malformed" })
        const keyHash = hashApiKeySecret(secret)
        const cacheKey = Buffer.from(keyHash).toString("base64")
        const cached = cache.get(cacheKey)
        if (cached !== undefined) return cached
        const found = yield* lookUp(cacheKey, keyHash)
        if (Option.isNone(found)) return yield* new Unauthorized({ reason: "unknown_or_revoked" })
        return found.value
      })

      const authenticateHeader = (authorization: string | undefined) => {
        const secret = secretFromAuthorizationHeader(authorization)
        return typeof secret === "string" ? authenticate(secret) : Effect.fail(secret)
      }

      const RevokeRow = Schema.Struct({ merchant_id: MerchantId, revoked_at: Schema.Date, revoked_now: Schema.Boolean })
      const decodeRevokeRows = Schema.decodeUnknownEffect(Schema.Array(RevokeRow))
      const revoke = Effect.fn("ApiKeys.revoke")(function* (apiKeyId: string) {
        // Not a UUID: no key can have it (and the uuid column would refuse the text as an SQL error).
        if (!uuidPattern.test(apiKeyId)) return yield* new ApiKeyNotFound({ apiKeyId })
        // One statement: the row as it was (locked by the UPDATE) tells "now" from "already".
        const rows = yield* sql`
          WITH before AS (SELECT id, revoked_at FROM api_keys WHERE id = ${apiKeyId}::uuid FOR UPDATE),
               changed AS (
                 UPDATE api_keys k SET revoked_at = clock_timestamp()
                 FROM before WHERE k.id = before.id AND before.revoked_at IS NULL
                 RETURNING k.id, k.revoked_at)
          SELECT k.merchant_id, coalesce(changed.revoked_at, before.revoked_at) AS revoked_at,
                 changed.id IS NOT NULL AS revoked_now
          FROM before JOIN api_keys k ON k.id = before.id LEFT JOIN changed ON changed.id = before.id`.pipe(
          Effect.flatMap(decodeRevokeRows),
          // The statement's columns fix the shape; a mismatch is a bug.
          Effect.catchTag("SchemaError", Effect.die)
        )
        const [row] = rows
        if (row === undefined) return yield* new ApiKeyNotFound({ apiKeyId })
        const revoked: Revoked = { _tag: row.revoked_now ? "Revoked" : "AlreadyRevoked", merchantId: row.merchant_id, revokedAt: row.revoked_at }
        return revoked
      })

      return ApiKeys.of({
        create,
        authenticate,
        authenticateHeader,
        // Revoked through this process: forgotten at once. Other processes (other instances, the
        // CLI, SQL) stop accepting it within the cache's TTL (<= 1 s, ApiKeyCache.ts).
        revoke: (apiKeyId) => revoke(apiKeyId).pipe(Effect.tap(() => Effect.sync(() => cache.drop((entry) => entry.apiKeyId === apiKeyId))))
      })
    })
  )

  /** The cache configured from `API_KEY_CACHE_TTL_MS` (0..1000, default 1000) and `API_KEY_CACHE_ENTRIES_MAX`. */
  static readonly layer = Layer.unwrap(Effect.map(ApiKeyCacheConfig, (options) => ApiKeys.layerWith(options)))
}
