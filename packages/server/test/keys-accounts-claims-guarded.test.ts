// API keys, accounts and consumer claims hold what the application wrote
// (migrations/0105_keys_accounts_claims_guarded.sql; outside database review, F9, F11, F12).
// Each finding reproduced with raw SQL as the role that made it (`pay_app`, `pay_consumer`), each
// refused by its guard (SQLSTATE, constraint or message); beside them the application's own code on
// the same rows, as its own role (key creation and revocation, a merchant's payable opened by the
// ledger, a claim marked stale by the consumer store), still works. Every test here fails on the
// migrations without 0105.
import { assert, it } from "@effect/vitest"
import { generateMerchantId, generatePaymentId, type MerchantId } from "@pay/domain"
import { makeConsumerStore } from "@pay/consumers"
import { decodeRows, type KafkaRecord, postgresLayer } from "@pay/infra"
import { Ledger } from "@pay/ledger"
import { ApiKeys } from "@pay/merchants"
import { merchantPayable } from "@pay/settlement"
import { acquireTestDatabase, expectSqlRefusal, type TestDatabaseInfo, testDatabaseAsRole } from "@pay/testkit"
import { Effect, Layer, Redacted, Schema } from "effect"
import { SqlClient } from "effect/sql"
import { randomUUID } from "node:crypto"

const refusedByGuard = (message: RegExp) => expectSqlRefusal({ code: "23000", message })
const permissionDenied = expectSqlRefusal({ code: "42501", message: /^permission denied for table api_keys$/ })
const asOwner = (info: TestDatabaseInfo) => postgresLayer({ url: Redacted.make(info.url), maxConnections: 2, applicationName: "pay-test-0105-owner" })

/** The API's authentication of `secret`, as pay_app (its role), no cache. */
const authenticateAsApp = (info: TestDatabaseInfo, secret: string) =>
  Effect.flatMap(ApiKeys, (keys) => keys.authenticate(secret)).pipe(
    Effect.provide(ApiKeys.layerWith({ ttl_ms: 0, entries_max: 100 }).pipe(Layer.provideMerge(testDatabaseAsRole(info, "pay_app", 1))))
  )

/** Merchants as the operator creates them (the owner: the test's setup, not under attack). */
const merchants = (info: TestDatabaseInfo, count: number) =>
  Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    const ids: Array<MerchantId> = []
    for (let n = 0; n < count; n++) {
      const id = yield* generateMerchantId
      yield* sql`INSERT INTO merchants (id, name) VALUES (${id}, ${`0105 merchant ${n}`})`
      ids.push(id)
    }
    return ids
  }).pipe(Effect.provide(asOwner(info)))

it.effect("F9: an API key never moves to another merchant or changes its secret, and a revocation is final (revoked_at only from NULL to a value); create and revoke work as pay_keys, authenticate as pay_app, which writes no key (0109)", () =>
  Effect.gen(function* () {
    const info = yield* acquireTestDatabase
    const [alice, bob] = yield* merchants(info, 2)
    if (alice === undefined || bob === undefined) return yield* Effect.die(new Error("no merchants"))
    const fixed = refusedByGuard(/: its id, merchant, secret hash, prefix and creation never change \(only revoked_at, once\)$/)
    const forGood = refusedByGuard(/: revoked at .*, for good$/)
    const Row = Schema.Struct({ merchant_id: Schema.String, revoked: Schema.Boolean })
    yield* Effect.gen(function* () {
      const sql = yield* SqlClient.SqlClient
      const keys = yield* ApiKeys
      const created = yield* keys.create(alice)
      const secret = Redacted.value(created.secret)
      const rowOf = (id: string) => decodeRows(Row)(sql`SELECT merchant_id, revoked_at IS NOT NULL AS revoked FROM api_keys WHERE id = ${id}::uuid`)
      // pay_keys writes a key's identity only (0112): a key "created" at infinity could not be revoked.
      yield* permissionDenied(sql`
        INSERT INTO api_keys (id, merchant_id, key_hash, prefix, created_at)
        VALUES (gen_random_uuid(), ${alice}, sha256('sk_test_infinity'::bytea), 'sk_test_infi', 'infinity')`)
      yield* permissionDenied(sql`
        INSERT INTO api_keys (id, merchant_id, key_hash, prefix, revoked_at)
        VALUES (gen_random_uuid(), ${alice}, sha256('sk_test_revoked'::bytea), 'sk_test_revo', clock_timestamp())`)
      // The review's reproduction, alice's key moved to bob (its secret would authenticate as bob):
      // pay_keys may change revoked_at alone (0109); the guard below holds for a role that may more.
      yield* permissionDenied(sql`UPDATE api_keys SET merchant_id = ${bob} WHERE id = ${created.id}::uuid`)
      yield* Effect.gen(function* () {
        const owner = yield* SqlClient.SqlClient
        yield* fixed(owner`UPDATE api_keys SET merchant_id = ${bob} WHERE id = ${created.id}::uuid`)
        yield* fixed(owner`UPDATE api_keys SET key_hash = sha256('sk_test_another'::bytea) WHERE id = ${created.id}::uuid`)
        yield* fixed(owner`UPDATE api_keys SET prefix = 'sk_test_zzzz' WHERE id = ${created.id}::uuid`)
        yield* fixed(owner`UPDATE api_keys SET created_at = created_at - interval '1 day' WHERE id = ${created.id}::uuid`)
        yield* fixed(owner`UPDATE api_keys SET id = gen_random_uuid() WHERE id = ${created.id}::uuid`)
      }).pipe(Effect.provide(asOwner(info)))
      assert.deepStrictEqual(yield* authenticateAsApp(info, secret), { merchantId: alice, apiKeyId: created.id })

      // The application's revocation: once, then "already"; the key refused from then on.
      const revoked = yield* keys.revoke(created.id)
      assert.strictEqual(revoked._tag, "Revoked")
      const again = yield* keys.revoke(created.id)
      assert.deepStrictEqual([again._tag, again.revokedAt.getTime()], ["AlreadyRevoked", revoked.revokedAt.getTime()])
      const refused = yield* Effect.flip(authenticateAsApp(info, secret))
      assert.strictEqual(refused._tag === "Unauthorized" ? refused.reason : refused._tag, "unknown_or_revoked")
      // The review's other reproduction: the revoked key brought back; nor is its instant moved.
      yield* forGood(sql`UPDATE api_keys SET revoked_at = NULL WHERE id = ${created.id}::uuid`)
      yield* forGood(sql`UPDATE api_keys SET revoked_at = revoked_at + interval '1 day' WHERE id = ${created.id}::uuid`)
      assert.deepStrictEqual(yield* rowOf(created.id), [{ merchant_id: alice, revoked: true }])

      // A revocation by SQL (an operator's, docs/idempotency.md) is still NULL to a value.
      const other = yield* keys.create(bob)
      yield* sql`UPDATE api_keys SET revoked_at = clock_timestamp() WHERE id = ${other.id}::uuid`
      assert.deepStrictEqual(yield* rowOf(other.id), [{ merchant_id: bob, revoked: true }])
      assert.strictEqual((yield* keys.revoke(other.id))._tag, "AlreadyRevoked")
    }).pipe(Effect.provide(ApiKeys.layerWith({ ttl_ms: 0, entries_max: 100 }).pipe(Layer.provideMerge(testDatabaseAsRole(info, "pay_keys")))))

    // The API's role reads keys and writes none (0109): the re-test of 0104/0105 inserted a key with a
    // hash of its choice as pay_app and refunded the merchant's payment through the API with it.
    yield* Effect.gen(function* () {
      const sql = yield* SqlClient.SqlClient
      yield* permissionDenied(sql`
        INSERT INTO api_keys (id, merchant_id, key_hash, prefix) VALUES (gen_random_uuid(), ${bob}, sha256('sk_test_planted'::bytea), 'sk_test_plan')`)
      yield* permissionDenied(sql`UPDATE api_keys SET revoked_at = clock_timestamp() WHERE merchant_id = ${bob}`)
      yield* permissionDenied(sql`DELETE FROM api_keys WHERE merchant_id = ${bob}`)
      yield* Effect.flip(Effect.flatMap(ApiKeys, (keys) => keys.create(bob))).pipe(Effect.tap((error) =>
        Effect.sync(() => assert.include(JSON.stringify(error), `"code":"42501"`))))
    }).pipe(Effect.provide(ApiKeys.layerWith({ ttl_ms: 0, entries_max: 100 }).pipe(Layer.provideMerge(testDatabaseAsRole(info, "pay_app")))))

    // The owner is held too: a revoked key stays revoked whoever asks.
    yield* Effect.gen(function* () {
      const sql = yield* SqlClient.SqlClient
      yield* forGood(sql`UPDATE api_keys SET revoked_at = NULL WHERE merchant_id = ${alice}`)
    }).pipe(Effect.provide(asOwner(info)))
  }).pipe(Effect.scoped), { timeout: 60_000 })

it.effect("F11: an account's currency is a supported ISO 4217 code (the list of payments_currency_check), and pay_app opens a merchant:<id>:… account only for a merchant that exists; the ledger still opens a merchant's payable", () =>
  Effect.gen(function* () {
    const info = yield* acquireTestDatabase
    const [alice, bob] = yield* merchants(info, 2)
    if (alice === undefined || bob === undefined) return yield* Effect.die(new Error("no merchants"))
    const unsupported = expectSqlRefusal({ code: "23514", constraint: "accounts_currency_supported" })
    const noMerchant = (merchantId: string) =>
      expectSqlRefusal({ code: "23503", message: new RegExp(`^account merchant:${merchantId}:payable:USD: merchant ${merchantId}, which does not exist$`) })
    yield* Effect.gen(function* () {
      const sql = yield* SqlClient.SqlClient
      const insert = (code: string, type: string, currency: string, allowNegative: boolean) => sql`
        INSERT INTO accounts (code, type, currency, allow_negative) VALUES (${code}, ${type}::ledger_account_type, ${currency}, ${allowNegative})`
      // The application's way: the settlement's payable of an existing merchant, create-or-get.
      const payable = yield* (yield* Ledger).ensureAccount(merchantPayable(alice, "USD"))
      assert.strictEqual(payable.code, `merchant:${alice}:payable:USD`)
      assert.strictEqual((yield* (yield* Ledger).ensureAccount(merchantPayable(alice, "USD"))).id, payable.id)
      // The review's reproductions: a ZZZ payable of a real merchant; a payable of no merchant.
      yield* unsupported(insert(`merchant:${alice}:payable:ZZZ`, "liability", "ZZZ", false))
      yield* unsupported(insert("platform:cash:XTS", "asset", "XTS", true))
      yield* noMerchant("mer_nonexistentmerchant00000")(insert("merchant:mer_nonexistentmerchant00000:payable:USD", "liability", "USD", false))
      const never = yield* generateMerchantId
      yield* noMerchant(never)(insert(`merchant:${never}:payable:USD`, "liability", "USD", false))
      yield* noMerchant("42")(insert("merchant:42:payable:USD", "liability", "USD", false))
      // An existing merchant's account, in a supported currency: accepted.
      yield* insert(`merchant:${bob}:payable:JPY`, "liability", "JPY", false)
    }).pipe(Effect.provide(Ledger.layer.pipe(Layer.provideMerge(testDatabaseAsRole(info, "pay_app")))))

    yield* Effect.gen(function* () {
      const sql = yield* SqlClient.SqlClient
      // The owner (the ledger's own tests, operators) may name accounts of no merchant row; not ZZZ.
      yield* sql`INSERT INTO accounts (code, type, currency, allow_negative) VALUES ('merchant:42:payable:USD', 'liability', 'USD', false)`
      yield* unsupported(sql`INSERT INTO accounts (code, type, currency, allow_negative) VALUES ('platform:cash:ZZZ', 'asset', 'ZZZ', true)`)
      // One list: the accounts', the payments' and the fee schedules' are the same.
      const definitions = yield* decodeRows(Schema.Struct({ name: Schema.String, definition: Schema.String }))(sql`
        SELECT conname AS name, pg_get_constraintdef(oid) AS definition FROM pg_constraint
        WHERE conname IN ('payments_currency_check', 'merchant_fee_schedules_currency_supported', 'accounts_currency_supported')`)
      const listOf = (name: string) =>
        [...(definitions.find((row) => row.name === name)?.definition ?? "").matchAll(/'([A-Z]{3})'/g)].map((match) => match[1]).sort()
      const payments = listOf("payments_currency_check")
      assert.isAbove(payments.length, 50)
      assert.deepStrictEqual(listOf("accounts_currency_supported"), payments)
      assert.deepStrictEqual(listOf("merchant_fee_schedules_currency_supported"), payments)
    }).pipe(Effect.provide(asOwner(info)))
  }).pipe(Effect.scoped), { timeout: 60_000 })

it.effect("F12: a processed_events claim never changes but for the consumer store's own stale mark in the claiming transaction; its event_id or outcome rewritten later is refused, as pay_consumer and as the owner", () =>
  Effect.gen(function* () {
    const info = yield* acquireTestDatabase
    const consumer = "settlement.g1"
    const paymentId = yield* generatePaymentId
    const [later, earlier, fresh] = [randomUUID(), randomUUID(), randomUUID()]
    const record = (offset: bigint): KafkaRecord => ({
      topic: "payments.events", partition: 0, offset, key: paymentId, value: "{}", value_bytes: new Uint8Array(), headers: {}, timestamp_ms: 0
    })
    const never = refusedByGuard(/: a claim never changes \(only its outcome, applied to stale, in the transaction that made it\)$/)
    const final = (outcome: string) => refusedByGuard(new RegExp(`: outcome ${outcome} is final \\(only the claiming transaction marks its applied claim stale\\)$`))
    const Outcome = Schema.Struct({ event_id: Schema.String, outcome: Schema.String })
    yield* Effect.gen(function* () {
      const sql = yield* SqlClient.SqlClient
      const store = makeConsumerStore(sql)
      const claim = (eventId: string, version: number, offset: bigint) =>
        sql.withTransaction(store.claim(consumer, { eventId, paymentId, version }, record(offset)))
      // The application's way: version 2 applied, then version 1 under another id stale (the
      // store inserts it applied and marks it stale in the same transaction), then a duplicate.
      assert.deepStrictEqual([yield* claim(later, 2, 0n), yield* claim(earlier, 1, 1n), yield* claim(later, 2, 2n)], ["new", "stale", "duplicate"])
      const outcomes = () => decodeRows(Outcome)(sql`
        SELECT event_id::text, outcome FROM processed_events WHERE consumer = ${consumer} ORDER BY outcome, event_id`)
      assert.deepStrictEqual(yield* outcomes(), [{ event_id: later, outcome: "applied" }, { event_id: earlier, outcome: "stale" }])

      // The review's reproductions, in later transactions: the claim's event id, its outcome.
      yield* never(sql`UPDATE processed_events SET event_id = gen_random_uuid() WHERE event_id = ${later}::uuid`)
      yield* final("applied")(sql`UPDATE processed_events SET outcome = 'stale' WHERE event_id = ${later}::uuid`)
      yield* final("stale")(sql`UPDATE processed_events SET outcome = 'applied' WHERE event_id = ${earlier}::uuid`)
      yield* never(sql`UPDATE processed_events SET payment_version = 9 WHERE event_id = ${later}::uuid`)
      yield* never(sql`UPDATE processed_events SET "offset" = 99, processed_at = now() WHERE event_id = ${later}::uuid`)
      // Inside the claiming transaction: applied to stale only, never back.
      yield* sql.withTransaction(Effect.gen(function* () {
        yield* sql`INSERT INTO processed_events (consumer, event_id, payment_id, payment_version, outcome, topic, partition, "offset")
                   VALUES (${consumer}, ${fresh}::uuid, ${paymentId}, 1, 'applied', 'payments.events', 0, 3)`
        yield* sql`UPDATE processed_events SET outcome = 'stale' WHERE event_id = ${fresh}::uuid`
        // (Under a savepoint, so that the refusal leaves the transaction to commit.)
        yield* final("stale")(sql.withTransaction(sql`UPDATE processed_events SET outcome = 'applied' WHERE event_id = ${fresh}::uuid`))
      }))
      assert.deepStrictEqual((yield* outcomes()).filter((row) => row.event_id === fresh), [{ event_id: fresh, outcome: "stale" }])
      // The re-delivered event is still a duplicate.
      assert.strictEqual(yield* claim(later, 2, 4n), "duplicate")
    }).pipe(Effect.provide(testDatabaseAsRole(info, "pay_consumer")))

    yield* Effect.gen(function* () {
      const sql = yield* SqlClient.SqlClient
      yield* never(sql`UPDATE processed_events SET event_id = gen_random_uuid() WHERE event_id = ${later}::uuid`)
    }).pipe(Effect.provide(asOwner(info)))
  }).pipe(Effect.scoped), { timeout: 60_000 })
