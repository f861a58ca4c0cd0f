// The outside database adversary's findings F3, F4, F5 and F8 (.scratch/sqladv/report.md), closed by
// migrations/0104_keys_marks_secrets_narrowed.sql: each reproduced here with raw SQL as the role the
// review used (`pay_app`, `pay_consumer`) and refused by its guard (SQLSTATE 23000 and its message);
// the application's own statements on the same rows (a create's key, the reaper under its bounds,
// the publisher's claim and mark, the sender's reseal) still pass. Every test here fails without 0104.
import { assert, it } from "@effect/vitest"
import { CreatePaymentInput, generateMerchantId, type MerchantId } from "@pay/domain"
import { IdempotencyKey } from "@pay/idempotency"
import { makeKeyStore } from "@pay/idempotency/KeyStore"
import { decodeRows, postgresLayer } from "@pay/infra"
import { Ledger } from "@pay/ledger"
import { MerchantRepository } from "@pay/merchants"
import { OutboxStore, OutboxWriter } from "@pay/outbox"
import { type ChangeContext, PaymentOutcome, PaymentRepository } from "@pay/payments"
import { FeeSchedules, SettlementPosting } from "@pay/settlement"
import { acquireTestDatabase, expectSqlRefusal, testDatabaseAsRole } from "@pay/testkit"
import { WebhookEndpoints } from "@pay/webhooks"
import { makeSecretBox, resealSecrets, WebhookSecretBoxPlaintext } from "@pay/webhooks/SecretSealing"
import { Effect, Layer, Redacted, Schema } from "effect"
import { SqlClient } from "effect/sql"
import { randomBytes, randomUUID } from "node:crypto"
import { renderOutcome } from "../src/payments/Render.ts"

const refusedByGuard = (message: RegExp) => expectSqlRefusal({ code: "23000", message })
const decodeKey = Schema.decodeUnknownSync(IdempotencyKey)
const context: ChangeContext = { actor: "test:0104", correlationId: "corr-0104" }
const fingerprint = "c".repeat(64)

/** The payments' services (and the outbox's store) on `database`. */
const servicesOn = <E>(database: Layer.Layer<SqlClient.SqlClient, E>) =>
  Layer.mergeAll(PaymentRepository.layer, MerchantRepository.layer, SettlementPosting.layer, OutboxStore.layer).pipe(
    Layer.provideMerge(Layer.mergeAll(Ledger.layer, FeeSchedules.layer, OutboxWriter.layer)),
    Layer.provideMerge(database)
  )

/** This test's database as the owner and as the application's role, with the payments' services on pay_app. */
const databases = Effect.gen(function* () {
  const info = yield* acquireTestDatabase
  const owner = postgresLayer({ url: Redacted.make(info.url), maxConnections: 1, applicationName: "pay-test-0104-owner" })
  const app = servicesOn(testDatabaseAsRole(info, "pay_app"))
  return { info, owner, app }
})

const paymentInput = (merchantId: MerchantId, amount_minor: number) =>
  Schema.decodeUnknownSync(CreatePaymentInput)({ merchant_id: merchantId, amount_minor, currency: "USD", payment_method: "pm_card_visa" })

/** A create as the API writes it at once: the key finished with the rendered answer, the payment, its history and event, one statement. */
const createAtOnce = (merchantId: MerchantId, key: string, amount_minor: number, answerOf?: (body: string) => string) =>
  Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    const payments = yield* PaymentRepository
    const created = yield* payments.prepareCreate(paymentInput(merchantId, amount_minor))
    const response = renderOutcome(PaymentOutcome.Created({ payment: created.payment }))
    const answer = { ...response, body: answerOf === undefined ? response.body : answerOf(response.body) }
    const request = { merchantId, key: decodeKey(key), method: "POST", path: "/v1/payments", fingerprint, canonicalBody: "{}" }
    const written = yield* payments.createGated(makeKeyStore(sql).insertFinished(randomUUID(), request, answer), created, context)
    assert.isTrue(written)
    return { payment: created.payment, body: response.body }
  })

const KeyRow = Schema.Struct({ idempotency_key: Schema.String, response_body: Schema.NullOr(Schema.String) })
const keysOf = (merchantId: MerchantId) =>
  Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    return yield* decodeRows(KeyRow)(sql`
      SELECT idempotency_key, response_body FROM idempotency_keys WHERE merchant_id = ${merchantId} ORDER BY idempotency_key`)
  })

it.effect("F3: pay_app cannot insert a finished key but a create's own, nor delete a finished key in its first minute (the least retention); the reaper under its bounds still deletes", () =>
  Effect.gen(function* () {
    const { owner, app } = yield* databases
    yield* Effect.gen(function* () {
      const sql = yield* SqlClient.SqlClient
      const merchants = yield* MerchantRepository
      const alice = yield* merchants.create("0104 F3 Alice")
      const bob = yield* merchants.create("0104 F3 Bob")
      // The application's own path: the key inserted finished with its create's answer.
      const victim = yield* createAtOnce(alice.id, "idem-victim-1", 777)
      const bobs = yield* createAtOnce(bob.id, "bob-1", 5_000)
      const forged = victim.body.replace(victim.payment.id, bobs.payment.id).replace("\"status\":\"CREATED\"", "\"status\":\"SETTLED\"")
      assert.notStrictEqual(forged, victim.body)

      // The review's rewrite: the finished key deleted and put back with another answer, one statement.
      yield* refusedByGuard(/cannot be inserted finished: only a create's key is/)(sql`
        WITH old AS (DELETE FROM idempotency_keys WHERE merchant_id = ${alice.id} AND idempotency_key = 'idem-victim-1' RETURNING *)
        INSERT INTO idempotency_keys (id, merchant_id, idempotency_key, request_method, request_path, request_fingerprint, recovery_point,
                                      response_status, response_body, response_content_type, finished_at)
        SELECT gen_random_uuid(), merchant_id, idempotency_key, request_method, request_path, request_fingerprint, 'finished',
               201, ${forged}, response_content_type, clock_timestamp() FROM old`)
      // Deleted alone, to be written again unfinished then finished (the application's own two steps): refused at COMMIT.
      yield* refusedByGuard(/a finished key is kept at least 1 minute/)(sql`DELETE FROM idempotency_keys WHERE merchant_id = ${alice.id}`)
      yield* refusedByGuard(/a finished key is kept at least 1 minute/)(sql.withTransaction(Effect.andThen(
        sql`SET CONSTRAINTS ALL IMMEDIATE`, sql`DELETE FROM idempotency_keys WHERE merchant_id = ${alice.id}`)))
      // A planted key: a finished answer for a request never made (Bob's payment, or Alice's own under a second key).
      const cannotInsertFinished = refusedByGuard(/cannot be inserted finished: only a create's key is/)
      const plant = (key: string, body: string) => sql`
        INSERT INTO idempotency_keys (id, merchant_id, idempotency_key, request_method, request_path, request_fingerprint, recovery_point,
                                      response_status, response_body, response_content_type, finished_at)
        VALUES (gen_random_uuid(), ${alice.id}, ${key}, 'POST', '/v1/payments', ${fingerprint}, 'finished', 201, ${body}, 'application/json', clock_timestamp())`
      yield* cannotInsertFinished(plant("idem-prepoisoned", forged))
      yield* cannotInsertFinished(plant("idem-prepoisoned", victim.body))
      yield* cannotInsertFinished(plant("idem-prepoisoned", "not json"))
      // The create's own statement with another answer: Bob's payment, or its own payment SETTLED or for another amount.
      yield* cannotInsertFinished(createAtOnce(alice.id, "idem-create-2", 900, (body) => body.replace(/"id":"pay_\w+"/, `"id":"${bobs.payment.id}"`)))
      yield* cannotInsertFinished(createAtOnce(alice.id, "idem-create-3", 900, (body) => body.replace("\"status\":\"CREATED\"", "\"status\":\"SETTLED\"")))
      yield* cannotInsertFinished(createAtOnce(alice.id, "idem-create-4", 900, (body) => body.replace("\"amount\":900", "\"amount\":9000")))
      assert.deepStrictEqual((yield* keysOf(alice.id)).map((row) => [row.idempotency_key, row.response_body]), [["idem-victim-1", victim.body]])
    }).pipe(Effect.provide(app))

    // Keys finished 50 s, 61 s and 62 s ago (written by the owner: a finished row is never updated).
    const carol = yield* generateMerchantId
    yield* Effect.gen(function* () {
      const sql = yield* SqlClient.SqlClient
      yield* sql`INSERT INTO merchants (id, name) VALUES (${carol}, '0104 F3 Carol')`
      for (const [key, age_s] of [["aged-50", 50], ["aged-61", 61], ["aged-62", 62]] as const) {
        yield* sql`
          INSERT INTO idempotency_keys (id, merchant_id, idempotency_key, request_method, request_path, request_fingerprint, recovery_point,
                                        response_status, response_body, response_content_type, created_at, finished_at, last_run_at)
          VALUES (gen_random_uuid(), ${carol}, ${key}, 'POST', '/v1/payments', ${fingerprint}, 'finished', 201, '{}', 'application/json',
                  clock_timestamp() - interval '5 minutes', clock_timestamp() - ${age_s} * interval '1 second', clock_timestamp() - ${age_s} * interval '1 second')`
      }
    }).pipe(Effect.provide(owner))
    yield* Effect.gen(function* () {
      const sql = yield* SqlClient.SqlClient
      yield* refusedByGuard(/aged-50 of merchant .*: a finished key is kept at least 1 minute/)(sql`
        DELETE FROM idempotency_keys WHERE merchant_id = ${carol} AND idempotency_key = 'aged-50'`)
      // The reaper at the least retention it can be configured with deletes what is past it, and only that.
      const reaped = yield* makeKeyStore(sql).reap(60_000, 100)
      assert.deepStrictEqual(reaped.finished.map((row) => row.idempotency_key).sort(), ["aged-61", "aged-62"])
      assert.deepStrictEqual((yield* keysOf(carol)).map((row) => row.idempotency_key), ["aged-50"])
    }).pipe(Effect.provide(app))
  }).pipe(Effect.scoped), { timeout: 60_000 })

it.effect("F4: no role marks published an outbox row its own transaction wrote, savepoints included (pay_app marks nothing since 0108); the stamp is the writer's whatever the insert says; the publisher's claim and mark of a committed row pass", () =>
  Effect.gen(function* () {
    const { info, owner, app } = yield* databases
    // The guard, for a role that may both write and mark: pay_app may not mark at all since 0108
    // (publisher-role.test.ts) and pay_publisher may not write, so a login role that is a member of both.
    const member = `pay_app_publisher_${randomUUID().replaceAll("-", "").slice(0, 12)}`
    yield* Effect.acquireRelease(
      Effect.flatMap(SqlClient.SqlClient, (sql) => sql.unsafe(`CREATE ROLE ${member} LOGIN IN ROLE pay_app, pay_publisher`)).pipe(Effect.provide(owner)),
      () => Effect.flatMap(SqlClient.SqlClient, (sql) => sql.unsafe(`DROP ROLE IF EXISTS ${member}`)).pipe(Effect.provide(owner), Effect.orDie)
    )
    yield* Effect.gen(function* () {
      const sql = yield* SqlClient.SqlClient
      const payments = yield* PaymentRepository
      const merchant = yield* (yield* MerchantRepository).create("0104 F4")
      const writerMarks = refusedByGuard(/cannot be marked published by the transaction that wrote it: its event would never be sent/)
      const markNow = (paymentId: string) => sql`UPDATE outbox_events SET published_at = clock_timestamp() WHERE aggregate_id = ${paymentId}`
      // The review's hidden event: the change and its event, marked published by the transaction that
      // wrote them (the repository's own transaction is a savepoint inside this one).
      yield* writerMarks(sql.withTransaction(Effect.gen(function* () {
        const created = yield* payments.create(paymentInput(merchant.id, 1_234), context).pipe(Effect.catchTag("MerchantNotFound", Effect.die))
        yield* markNow(created.id)
      })))
      // The mark in a savepoint of its own.
      yield* writerMarks(sql.withTransaction(Effect.gen(function* () {
        const created = yield* payments.create(paymentInput(merchant.id, 1_234), context).pipe(Effect.catchTag("MerchantNotFound", Effect.die))
        yield* sql.withTransaction(markNow(created.id))
      })))
    }).pipe(Effect.provide(servicesOn(testDatabaseAsRole(info, member, 1))))
    const created = yield* Effect.gen(function* () {
      const sql = yield* SqlClient.SqlClient
      const merchant = yield* (yield* MerchantRepository).create("0104 F4 app")
      // pay_app alone: no mark at all (0108), of its own transaction's row or any other.
      yield* expectSqlRefusal({ code: "42501", message: /^permission denied for table outbox_events$/ })(sql.withTransaction(Effect.gen(function* () {
        const own = yield* (yield* PaymentRepository).create(paymentInput(merchant.id, 1_234), context).pipe(Effect.catchTag("MerchantNotFound", Effect.die))
        yield* sql`UPDATE outbox_events SET published_at = clock_timestamp() WHERE aggregate_id = ${own.id}`
      })))
      // The stamp is not the application's to rewrite.
      yield* expectSqlRefusal({ code: "42501", message: /^permission denied for table outbox_events$/ })(sql`UPDATE outbox_events SET created_xact_id = NULL`)
      return yield* (yield* PaymentRepository).create(paymentInput(merchant.id, 4_321), context)
    }).pipe(Effect.provide(app))
    // The publisher: a committed create's event, claimed and marked by a later transaction.
    yield* Effect.gen(function* () {
      const sql = yield* SqlClient.SqlClient
      const store = yield* OutboxStore
      const marked = yield* sql.withTransaction(Effect.gen(function* () {
        const claimed = yield* store.claim(100)
        yield* store.markPublished(claimed.map((row) => row.id))
        return claimed.map((row) => row.aggregate_id)
      }))
      assert.isTrue(marked.includes(created.id))
    }).pipe(Effect.provide(OutboxStore.layer.pipe(Layer.provideMerge(testDatabaseAsRole(info, "pay_publisher")))))
    // Whatever the insert writes, the stamp is the inserting transaction's; nobody changes it after.
    yield* Effect.gen(function* () {
      const sql = yield* SqlClient.SqlClient
      const stamped = yield* sql.withTransaction(decodeRows(Schema.Struct({ own: Schema.Boolean }))(sql`
        INSERT INTO outbox_events (id, aggregate_type, aggregate_id, event_type, payload, created_xact_id)
        VALUES (gen_random_uuid(), 'test_aggregate', 'pay_0104', 'test_event', '{}', '1')
        RETURNING created_xact_id = pg_current_xact_id() AS own`))
      assert.deepStrictEqual(stamped, [{ own: true }])
      yield* refusedByGuard(/is immutable: only delivery bookkeeping may change/)(sql`UPDATE outbox_events SET created_xact_id = '1' WHERE aggregate_id = 'pay_0104'`)
    }).pipe(Effect.provide(owner))
  }).pipe(Effect.scoped), { timeout: 60_000 })

it.effect("F8: pay_app writes outbox events of the payment aggregate only (the truth checks fire for it alone)", () =>
  Effect.gen(function* () {
    const { app } = yield* databases
    yield* Effect.gen(function* () {
      const sql = yield* SqlClient.SqlClient
      const merchant = yield* (yield* MerchantRepository).create("0104 F8")
      // The review's event: a settlement of 990,000.00 under the aggregate `paymentx`, counted in flight by reconcile.
      const payload = JSON.stringify({ type: "payment_settled", payment_id: "pay_abcdefghjkmnpqrstvwxyz01", merchant_id: merchant.id, amount_minor: 99_000_000, currency: "USD", version: 3 })
      yield* refusedByGuard(/of aggregate paymentx: the application writes events of the payment aggregate only/)(sql`
        INSERT INTO outbox_events (id, aggregate_type, aggregate_id, event_type, payload)
        VALUES (gen_random_uuid(), 'paymentx', 'pay_abcdefghjkmnpqrstvwxyz01', 'payment_settled', ${payload}::jsonb)`)
      // The application's own events (the payment aggregate) still go in.
      const created = yield* (yield* PaymentRepository).create(paymentInput(merchant.id, 2_000), context)
      const [events] = yield* decodeRows(Schema.Struct({ n: Schema.Number }))(sql`
        SELECT count(*)::int AS n FROM outbox_events WHERE aggregate_type = 'payment' AND aggregate_id = ${created.id}`)
      assert.strictEqual(events?.n, 1)
    }).pipe(Effect.provide(app))
  }).pipe(Effect.scoped), { timeout: 60_000 })

it.effect("F5: pay_consumer only seals a plain secret or re-seals one under another key: another endpoint's secret, a plain one, or a sealed one under the row's own key id are refused; the sender's reseal and a key rotation pass", () =>
  Effect.gen(function* () {
    const { info, owner } = yield* databases
    const [alice, bob] = [yield* generateMerchantId, yield* generateMerchantId]
    yield* Effect.gen(function* () {
      const sql = yield* SqlClient.SqlClient
      yield* sql`INSERT INTO merchants (id, name) VALUES (${alice}, '0104 F5 Alice'), (${bob}, '0104 F5 Bob')`
    }).pipe(Effect.provide(owner))
    // Each merchant's endpoint, as the API creates it (no WEBHOOK_SECRETS_KEY yet: stored plain).
    const [aliceEndpoint, bobEndpoint] = yield* Effect.gen(function* () {
      const endpoints = yield* WebhookEndpoints
      const fields = { url: "https://merchant.example/hooks", event_types: ["*"] }
      return [(yield* endpoints.create(alice, fields)).endpoint.id, (yield* endpoints.create(bob, fields)).endpoint.id]
    }).pipe(Effect.provide(WebhookEndpoints.layerWith({ allowLoopbackHttp: false }).pipe(
      Layer.provideMerge(testDatabaseAsRole(info, "pay_app")),
      Layer.provide(WebhookSecretBoxPlaintext)
    )))
    // 0107 (the re-test of 0104): the API's role rewrote a secret the same way; it may change a
    // secret's expiry (a rotation's grace period) and nothing else of it.
    yield* Effect.gen(function* () {
      const sql = yield* SqlClient.SqlClient
      yield* expectSqlRefusal({ code: "42501", message: /^permission denied for table webhook_endpoint_secrets$/ })(sql`
        UPDATE webhook_endpoint_secrets b SET secret = a.secret FROM webhook_endpoint_secrets a
        WHERE a.endpoint_id = ${aliceEndpoint} AND b.endpoint_id = ${bobEndpoint}`)
      yield* expectSqlRefusal({ code: "42501", message: /^permission denied for table webhook_endpoint_secrets$/ })(sql`
        UPDATE webhook_endpoint_secrets SET endpoint_id = ${aliceEndpoint} WHERE endpoint_id = ${bobEndpoint}`)
      yield* sql`UPDATE webhook_endpoint_secrets SET expires_at = clock_timestamp() + interval '1 day' WHERE endpoint_id = ${bobEndpoint}`
      yield* sql`UPDATE webhook_endpoint_secrets SET expires_at = NULL WHERE endpoint_id = ${bobEndpoint}`
    }).pipe(Effect.provide(testDatabaseAsRole(info, "pay_app")), Effect.scoped)
    yield* Effect.gen(function* () {
      const sql = yield* SqlClient.SqlClient
      const onlyReseal = refusedByGuard(/: the sender only seals a plain secret or re-seals one under another key/)
      const copyAliceToBob = sql`
        UPDATE webhook_endpoint_secrets b SET secret = a.secret FROM webhook_endpoint_secrets a
        WHERE a.endpoint_id = ${aliceEndpoint} AND b.endpoint_id = ${bobEndpoint}`
      const plain = `whsec_${"A".repeat(43)}=`
      // The review's: Bob's secret replaced by Alice's (Bob's webhooks then signed with Alice's secret), or by one of the attacker's.
      yield* onlyReseal(copyAliceToBob)
      yield* onlyReseal(sql`UPDATE webhook_endpoint_secrets SET secret = ${plain} WHERE endpoint_id = ${bobEndpoint}`)
      // The sender's reseal at start: both sealed under the key.
      const first = randomBytes(32)
      assert.strictEqual(yield* resealSecrets(makeSecretBox(first)), 2)
      // Alice's sealed form onto Bob's row (the same key id), or a plain secret back in: refused.
      yield* onlyReseal(copyAliceToBob)
      yield* onlyReseal(sql`UPDATE webhook_endpoint_secrets SET secret = ${plain} WHERE endpoint_id = ${bobEndpoint}`)
      // A key rotation: re-sealed under the new key, and each still opens for its own endpoint.
      const box = makeSecretBox(randomBytes(32), [first])
      assert.strictEqual(yield* resealSecrets(box), 2)
      const stored = yield* decodeRows(Schema.Struct({ endpoint_id: Schema.String, secret: Schema.String }))(sql`
        SELECT endpoint_id, secret FROM webhook_endpoint_secrets ORDER BY endpoint_id`)
      assert.lengthOf(stored, 2)
      for (const row of stored) {
        assert.isTrue(row.secret.startsWith(`sealed:v1:${box.keyId}:`))
        assert.strictEqual(box.open(row.secret, row.endpoint_id)._tag, "Success")
      }
    }).pipe(Effect.provide(testDatabaseAsRole(info, "pay_consumer")))
  }).pipe(Effect.scoped), { timeout: 60_000 })
