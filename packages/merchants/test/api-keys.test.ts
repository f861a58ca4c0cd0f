import { decodeRows } from "@pay/infra"
import { assert, layer } from "@effect/vitest"
import { expectSqlRefusal, TestDatabase } from "@pay/testkit"
import { Deferred, Effect, Fiber, Layer, Redacted, Schema } from "effect"
import { SqlClient } from "effect/sql"
import { createHash } from "node:crypto"
import { ApiKeyNotFound, apiKeySecretPattern, ApiKeys, MerchantRepository, secretFromAuthorizationHeader, Unauthorized } from "../src/index.ts"

const Live = Layer.mergeAll(ApiKeys.layer, MerchantRepository.layer).pipe(Layer.provideMerge(TestDatabase))

const newMerchant = Effect.gen(function* () {
  const merchants = yield* MerchantRepository
  const merchant = yield* merchants.create("Test merchant")
  return merchant.id
})

layer(Live)("ApiKeys (real Postgres)", (it) => {
  it.effect("create shows the secret once and stores only its SHA-256; authenticate finds the merchant", () =>
    Effect.gen(function* () {
      const apiKeys = yield* ApiKeys
      const sql = yield* SqlClient.SqlClient
      const merchantId = yield* newMerchant
      const created = yield* apiKeys.create(merchantId)
      const secret = Redacted.value(created.secret)
      assert.match(secret, apiKeySecretPattern)
      assert.strictEqual(created.prefix, secret.slice(0, 12))
      assert.notInclude(String(created.secret), secret) // redacted when printed

      const rows = yield* decodeRows(Schema.Struct({ key_hash: Schema.Uint8Array, prefix: Schema.String }))(sql`SELECT key_hash, prefix FROM api_keys WHERE id = ${created.id}`)
      const expectedHash = createHash("sha256").update(secret).digest()
      assert.isTrue(Buffer.from(rows[0]?.key_hash ?? new Uint8Array()).equals(expectedHash))
      // The secret is nowhere in the table.
      const leaked = yield* decodeRows(Schema.Struct({ n: Schema.BigInt }))(sql`
        SELECT count(*)::bigint AS n FROM api_keys WHERE position(${secret} IN (api_keys::text)) > 0`)
      assert.strictEqual(leaked[0]?.n, 0n)

      const authenticated = yield* apiKeys.authenticate(secret)
      assert.deepStrictEqual(authenticated, { merchantId, apiKeyId: created.id })
      assert.deepStrictEqual(yield* apiKeys.authenticateHeader(`Bearer ${secret}`), authenticated)
      const basic = `Basic ${Buffer.from(`${secret}:`).toString("base64")}`
      assert.deepStrictEqual(yield* apiKeys.authenticateHeader(basic), authenticated)
    }))

  it.effect("unknown, malformed, missing and revoked keys are 401 unauthorized", () =>
    Effect.gen(function* () {
      const apiKeys = yield* ApiKeys
      const merchantId = yield* newMerchant
      const created = yield* apiKeys.create(merchantId)
      const secret = Redacted.value(created.secret)
      const other = yield* apiKeys.create(merchantId)
      assert.notStrictEqual(Redacted.value(other.secret), secret)

      const refusal = <E extends { readonly _tag: string }>(error: E) => {
        if (!(error instanceof Unauthorized)) throw new Error(`expected Unauthorized, got ${error._tag}`)
        return error
      }
      const unknown = refusal(yield* Effect.flip(apiKeys.authenticate(`sk_test_${"A".repeat(32)}`)))
      assert.deepStrictEqual([unknown.reason, unknown.code], ["unknown_or_revoked", "unauthorized"])
      assert.strictEqual(refusal(yield* Effect.flip(apiKeys.authenticate("sk_live_nope"))).reason, "malformed")
      assert.strictEqual(refusal(yield* Effect.flip(apiKeys.authenticateHeader(undefined))).reason, "missing")
      assert.strictEqual(refusal(yield* Effect.flip(apiKeys.authenticateHeader(`Token ${secret}`))).reason, "malformed")

      const revoked = yield* apiKeys.revoke(created.id)
      assert.deepStrictEqual([revoked._tag, revoked.merchantId], ["Revoked", merchantId])
      const again = yield* apiKeys.revoke(created.id) // idempotent
      assert.deepStrictEqual([again._tag, again.revokedAt.getTime()], ["AlreadyRevoked", revoked.revokedAt.getTime()])
      assert.strictEqual(refusal(yield* Effect.flip(apiKeys.authenticate(secret))).reason, "unknown_or_revoked")
      // Revoking one key leaves the merchant's other keys working.
      const stillWorks = yield* apiKeys.authenticate(Redacted.value(other.secret))
      assert.strictEqual(stillWorks.merchantId, merchantId)
    }))

  it.effect("revoking an id that names no key (unknown UUID, not a UUID) is ApiKeyNotFound and changes nothing", () =>
    Effect.gen(function* () {
      const apiKeys = yield* ApiKeys
      const sql = yield* SqlClient.SqlClient
      const before = yield* decodeRows(Schema.Struct({ n: Schema.BigInt }))(sql`SELECT count(*) AS n FROM api_keys WHERE revoked_at IS NOT NULL`)
      for (const id of [crypto.randomUUID(), "not-a-uuid", "", "00000000-0000-0000-0000-00000000000g"]) {
        const error = yield* Effect.flip(apiKeys.revoke(id))
        assert.instanceOf(error, ApiKeyNotFound, `${JSON.stringify(id)}: ${error._tag}`)
      }
      const after = yield* decodeRows(Schema.Struct({ n: Schema.BigInt }))(sql`SELECT count(*) AS n FROM api_keys WHERE revoked_at IS NOT NULL`)
      assert.deepStrictEqual(after, before)
    }))

  it.effect("the database refuses a duplicate hash and a key of a missing merchant", () =>
    Effect.gen(function* () {
      const sql = yield* SqlClient.SqlClient
      const merchantId = yield* newMerchant
      const hash = createHash("sha256").update("x").digest()
      yield* sql`INSERT INTO api_keys (id, merchant_id, key_hash, prefix) VALUES (gen_random_uuid(), ${merchantId}, ${hash}, 'sk_test_abcd')`
      yield* expectSqlRefusal(
        sql`INSERT INTO api_keys (id, merchant_id, key_hash, prefix) VALUES (gen_random_uuid(), ${merchantId}, ${hash}, 'sk_test_abcd')`,
        { code: "23505", constraint: "api_keys_key_hash_key" }
      )
      yield* expectSqlRefusal(
        sql`INSERT INTO api_keys (id, merchant_id, key_hash, prefix)
            VALUES (gen_random_uuid(), 'mer_0000000000000000000000zz', ${createHash("sha256").update("y").digest()}, 'sk_test_abcd')`,
        { code: "23503", constraint: "api_keys_merchant_id_fkey" }
      )
    }))
})

// The live clock: the test sleeps while the lookups wait.
layer(Live, { excludeTestServices: true, timeout: "60 seconds" })("ApiKeys lookups in flight (real Postgres)", (it) => {
  it.effect("a burst with one key the cache does not hold sends one lookup, shared by all, even when the request that started it goes away", () =>
    Effect.gen(function* () {
      const apiKeys = yield* ApiKeys
      const sql = yield* SqlClient.SqlClient
      const merchantId = yield* newMerchant
      const created = yield* apiKeys.create(merchantId)
      const secret = Redacted.value(created.secret)
      const other = Redacted.value((yield* apiKeys.create(merchantId)).secret)
      // Every lookup waits on the table until `release`: the lookups sent are the backends waiting.
      const release = yield* Deferred.make<void>()
      const locked = yield* Deferred.make<void>()
      const holder = yield* Effect.forkChild(sql.withTransaction(Effect.gen(function* () {
        yield* sql`LOCK TABLE api_keys IN ACCESS EXCLUSIVE MODE`
        yield* Deferred.succeed(locked, undefined)
        yield* Deferred.await(release).pipe(Effect.timeout(30_000))
      })))
      yield* Deferred.await(locked).pipe(Effect.timeout(10_000))
      const lookupsWaiting = decodeRows(Schema.Struct({ waiting: Schema.BigInt }))(sql`
        SELECT count(*) AS waiting FROM pg_stat_activity
        WHERE datname = current_database() AND wait_event_type = 'Lock' AND query LIKE '%FROM api_keys WHERE key_hash%'`).pipe(
        Effect.map(([row]) => Number(row?.waiting ?? -1))
      )
      const leader = yield* Effect.forkChild(apiKeys.authenticate(secret))
      yield* Effect.sleep(100)
      const followers = yield* Effect.forEach(Array.from({ length: 30 }), () => Effect.forkChild(apiKeys.authenticate(secret)))
      const otherKey = yield* Effect.forkChild(apiKeys.authenticate(other))
      for (let waited_ms = 0; waited_ms < 5_000 && (yield* lookupsWaiting) < 2; waited_ms += 50) yield* Effect.sleep(50)
      yield* Effect.sleep(200)
      assert.strictEqual(yield* lookupsWaiting, 2, "31 requests with one key and 1 with another: two lookups")
      // The request that started the lookup goes away (its client hung up): the others still get the answer.
      yield* Effect.forkChild(Fiber.interrupt(leader))
      yield* Deferred.succeed(release, undefined)
      yield* Fiber.join(holder)
      for (const follower of followers) assert.deepStrictEqual(yield* Fiber.join(follower), { merchantId, apiKeyId: created.id })
      assert.strictEqual((yield* Fiber.join(otherKey)).merchantId, merchantId)
    }))
})

layer(Layer.empty)("Authorization header", (it) => {
  it.effect("Bearer and Basic (secret as user name) both carry the secret", () =>
    Effect.sync(() => {
      assert.strictEqual(secretFromAuthorizationHeader("Bearer sk_test_x"), "sk_test_x")
      assert.strictEqual(secretFromAuthorizationHeader("bearer   sk_test_x  "), "sk_test_x")
      assert.strictEqual(secretFromAuthorizationHeader(`Basic ${Buffer.from("sk_test_y:").toString("base64")}`), "sk_test_y")
      const noColon = secretFromAuthorizationHeader(`Basic ${Buffer.from("sk_test_y").toString("base64")}`)
      assert.isTrue(typeof noColon !== "string" && noColon.reason === "malformed")
    }))
})
