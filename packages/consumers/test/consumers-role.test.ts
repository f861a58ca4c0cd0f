// The consumers' own role (migrations/0096_consumers_role.sql; docs/security.md, "Database"): only
// `pay_consumer` writes what the consumers keep. With the API's role (`pay_app`) an outside re-test
// had inserted a webhook delivery by hand (signed and sent like a real one), raised a payment's
// consumer version ahead of its real settle (the real event then dropped as stale) and edited the
// projection; each is now refused for want of the privilege, on the table it attacks. The
// consumers' role does the consumers' work and nothing of the API's.
import { assert, it } from "@effect/vitest"
import { generateMerchantId, generatePaymentId, PaymentEvent } from "@pay/domain"
import { decodeRows, postgresLayer } from "@pay/infra"
import { makeReconciliation } from "../src/Reconciliation.ts"
import { acquireTestDatabase, expectSqlRefusal, testDatabaseAsRole } from "@pay/testkit"
import { enqueueDeliveries, WebhookEndpoints } from "@pay/webhooks"
import { makeSecretBox, resealSecrets, WebhookSecretBoxPlaintext } from "@pay/webhooks/SecretSealing"
import { Effect, Layer, Redacted, Schema } from "effect"
import { SqlClient } from "effect/sql"
import { randomBytes, randomUUID } from "node:crypto"

const refusedByGuard = (message: RegExp) => expectSqlRefusal({ code: "23000", message })
const denied = (table: string) => expectSqlRefusal({ code: "42501", message: new RegExp(`^permission denied for table ${table}$`) })

const Who = Schema.Struct({ user: Schema.String })
const whoAmI = Effect.gen(function* () {
  const sql = yield* SqlClient.SqlClient
  const [me] = yield* decodeRows(Who)(sql`SELECT current_user AS user`)
  return me?.user
})

it.effect("pay_app writes none of the consumers' tables (a delivery, a version, a claim, the projection, the offsets: 42501), keeps reading them and may only re-queue a delivery (0098: not mark it delivered, failed or due at infinity); an endpoint keeps its merchant and stays deleted; pay_consumer does the consumers' work (reseals secrets, never enables an endpoint) and none of the API's", () =>
  Effect.gen(function* () {
    const info = yield* acquireTestDatabase
    const owner = postgresLayer({ url: Redacted.make(info.url), maxConnections: 2, applicationName: "pay-test-owner" })
    const app = testDatabaseAsRole(info, "pay_app")
    const consumer = testDatabaseAsRole(info, "pay_consumer")

    // The API's side, as the API does it: a merchant (set up by the owner) and its endpoint (pay_app).
    const merchantId = yield* generateMerchantId
    yield* Effect.gen(function* () {
      const sql = yield* SqlClient.SqlClient
      yield* sql`INSERT INTO merchants (id, name) VALUES (${merchantId}, 'consumers role')`
    }).pipe(Effect.provide(owner))
    yield* Effect.gen(function* () {
      assert.strictEqual(yield* whoAmI, "pay_app")
      yield* (yield* WebhookEndpoints).create(merchantId, { url: "https://merchant.example/hooks", event_types: ["*"] })
    }).pipe(Effect.provide(WebhookEndpoints.layerWith({ allowLoopbackHttp: false }).pipe(Layer.provideMerge(app), Layer.provide(WebhookSecretBoxPlaintext))))

    // The consumers' side, as the consumers do it: a delivery queued, a claim, a version, the projection, an offset.
    const paymentId = yield* generatePaymentId
    const event = Schema.decodeUnknownSync(PaymentEvent)({
      type: "payment_created", payment_id: paymentId, merchant_id: merchantId, amount_minor: 1_050, currency: "EUR",
      version: 1, occurred_at: "2026-12-02T09:00:00.000Z", status: "CREATED"
    })
    const queued = yield* Effect.gen(function* () {
      const sql = yield* SqlClient.SqlClient
      assert.strictEqual(yield* whoAmI, "pay_consumer")
      const count = yield* sql.withTransaction(enqueueDeliveries({ eventId: randomUUID(), event }))
      const [outcomes] = yield* decodeRows(Schema.Struct({ outcomes: Schema.Array(Schema.String) }))(sql`
        SELECT consumer_claim_slice('settlement-projection', 'payments.events', 0,
          ${JSON.stringify([{ o: "0", e: randomUUID(), p: paymentId, v: 1 }])}::jsonb) AS outcomes`)
      assert.deepStrictEqual(outcomes?.outcomes, ["applied"])
      yield* sql`INSERT INTO settlement_projection_event_counts (generation, event_type, partition, event_count) VALUES (1, 'payment_created', 0, 1)`
      // Nothing of the API's: no payment, no event, no ledger entry, no endpoint's address or secret.
      yield* denied("payments")(sql`UPDATE payments SET status = status WHERE false`)
      yield* denied("outbox_events")(sql`INSERT INTO outbox_events (id) SELECT id FROM outbox_events WHERE false`)
      yield* denied("ledger_entries")(sql`INSERT INTO ledger_entries (transaction_id) SELECT transaction_id FROM ledger_entries WHERE false`)
      yield* denied("webhook_endpoints")(sql`UPDATE webhook_endpoints SET url = 'https://attacker.example/' WHERE false`)
      yield* denied("webhook_endpoint_secrets")(sql`INSERT INTO webhook_endpoint_secrets SELECT * FROM webhook_endpoint_secrets WHERE false`)
      yield* denied("idempotency_keys")(sql`DELETE FROM idempotency_keys WHERE false`)
      // The reconciliation it runs reads the outbox for the events in flight (0101): without that
      // grant every run of the consumers process failed, and reconciliation_differences stood still.
      const report = yield* makeReconciliation(sql).reconcile()
      assert.deepStrictEqual([report.differences, report.in_flight_events], [[], 0])
      return count
    }).pipe(Effect.provide(consumer))
    assert.strictEqual(queued, 1)

    // The API's role: each forgery refused on the table it attacks, before any row is looked at.
    yield* Effect.gen(function* () {
      const sql = yield* SqlClient.SqlClient
      assert.strictEqual(yield* whoAmI, "pay_app")
      const attempts = [
        ["webhook_deliveries", sql`INSERT INTO webhook_deliveries SELECT * FROM webhook_deliveries WHERE false`],
        ["webhook_deliveries", sql`UPDATE webhook_deliveries SET body = '{"type":"payment_settled"}'`],
        ["webhook_deliveries", sql`UPDATE webhook_deliveries SET event_type = 'payment_settled'`],
        ["webhook_deliveries", sql`DELETE FROM webhook_deliveries`],
        ["webhook_attempts", sql`INSERT INTO webhook_attempts SELECT * FROM webhook_attempts WHERE false`],
        ["webhook_attempts", sql`UPDATE webhook_attempts SET outcome = outcome`],
        ["consumer_payment_versions", sql`UPDATE consumer_payment_versions SET version = version + 1`],
        ["consumer_payment_versions", sql`INSERT INTO consumer_payment_versions (consumer, payment_id, version) VALUES ('settlement-projection', ${paymentId}, 99)`],
        ["processed_events", sql`INSERT INTO processed_events SELECT * FROM processed_events WHERE false`],
        ["processed_events", sql`DELETE FROM processed_events`],
        ["settlement_projection", sql`UPDATE settlement_projection SET settled_gross_minor = settled_gross_minor + 1000000`],
        ["settlement_projection_event_counts", sql`UPDATE settlement_projection_event_counts SET event_count = 0`],
        ["settlement_projection_live", sql`UPDATE settlement_projection_live SET generation = generation`],
        ["consumer_offsets", sql`UPDATE consumer_offsets SET next_offset = next_offset + 1000`],
        ["consumer_topic_ids", sql`INSERT INTO consumer_topic_ids SELECT * FROM consumer_topic_ids WHERE false`],
        ["dead_letter_events", sql`INSERT INTO dead_letter_events (consumer) SELECT consumer FROM dead_letter_events WHERE false`],
        ["processed_events", sql`TRUNCATE processed_events`]
      ] as const
      for (const [table, attempt] of attempts) yield* denied(table)(attempt)
      // It still reads them (the API lists deliveries; operators read the consumers' tables), and
      // may re-queue a delivery (status and schedule), never change what is sent or to whom.
      const [seen] = yield* decodeRows(Schema.Struct({ deliveries: Schema.Int, claims: Schema.Int }))(sql`
        SELECT (SELECT count(*)::int FROM webhook_deliveries) AS deliveries, (SELECT count(*)::int FROM processed_events) AS claims`)
      assert.deepStrictEqual(seen, { deliveries: 1, claims: 1 })
      const [columns] = yield* decodeRows(Schema.Struct({ requeue: Schema.Boolean, body: Schema.Boolean, endpoint: Schema.Boolean }))(sql`
        SELECT has_column_privilege('webhook_deliveries', 'status', 'UPDATE')
               AND has_column_privilege('webhook_deliveries', 'next_attempt_at', 'UPDATE') AS requeue,
               has_column_privilege('webhook_deliveries', 'body', 'UPDATE') AS body,
               has_column_privilege('webhook_deliveries', 'endpoint_id', 'UPDATE') AS endpoint`)
      assert.deepStrictEqual(columns, { requeue: true, body: false, endpoint: false })
      const requeued = yield* sql`UPDATE webhook_deliveries SET next_attempt_at = clock_timestamp() WHERE status = 'pending' RETURNING id`
      assert.strictEqual(requeued.length, 1)
      // ... and only that (0098): a delivery marked delivered that was never sent, failed, or due
      // at infinity (the payment's later webhooks wait behind it) is refused.
      const requeueOnly = refusedByGuard(/the application may only send it again now/)
      yield* requeueOnly(sql`UPDATE webhook_deliveries SET status = 'delivered', finished_at = clock_timestamp()`)
      yield* requeueOnly(sql`UPDATE webhook_deliveries SET status = 'failed', failed_reason = 'gone', finished_at = clock_timestamp()`)
      yield* requeueOnly(sql`UPDATE webhook_deliveries SET next_attempt_at = 'infinity'`)
      // An endpoint stays its merchant's, and a deletion is final (0098), whoever asks.
      const otherMerchant = yield* generateMerchantId
      yield* Effect.gen(function* () {
        const owner = yield* SqlClient.SqlClient
        yield* owner`INSERT INTO merchants (id, name) VALUES (${otherMerchant}, 'consumers role, another')`
      }).pipe(Effect.provide(owner))
      yield* refusedByGuard(/its id and merchant never change/)(sql`UPDATE webhook_endpoints SET merchant_id = ${otherMerchant} WHERE merchant_id = ${merchantId}`)
      yield* sql`UPDATE webhook_endpoints SET status = 'disabled', disabled_reason = 'merchant', disabled_at = clock_timestamp() WHERE merchant_id = ${merchantId}`
    }).pipe(Effect.provide(app))

    // A login role that is a member of pay_app holds its grants, and its guards too (0100: they
    // compared current_user with the role's name; the re-test escaped them through such a role).
    const member = `pay_app_member_${randomUUID().replaceAll("-", "").slice(0, 12)}`
    yield* Effect.acquireRelease(
      Effect.gen(function* () {
        const sql = yield* SqlClient.SqlClient
        yield* sql.unsafe(`CREATE ROLE ${member} LOGIN IN ROLE pay_app`)
      }).pipe(Effect.provide(owner)),
      () => Effect.gen(function* () {
        const sql = yield* SqlClient.SqlClient
        yield* sql.unsafe(`DROP ROLE IF EXISTS ${member}`)
      }).pipe(Effect.provide(owner), Effect.orDie)
    )
    yield* Effect.gen(function* () {
      const sql = yield* SqlClient.SqlClient
      assert.strictEqual(yield* whoAmI, member)
      yield* refusedByGuard(/the application may only send it again now/)(sql`UPDATE webhook_deliveries SET status = 'delivered', finished_at = clock_timestamp()`)
    }).pipe(Effect.provide(testDatabaseAsRole(info, member, 1)), Effect.scoped)

    // The consumers' role: the sender disables, never enables; it reseals the stored secrets under
    // the current key at start (the column `secret` only).
    yield* Effect.gen(function* () {
      const sql = yield* SqlClient.SqlClient
      yield* refusedByGuard(/the sender disables an endpoint, it never enables one/)(sql`UPDATE webhook_endpoints SET status = 'enabled', disabled_reason = NULL, disabled_at = NULL`)
      // 0099: nor relabels one the merchant disabled as failing (its events would queue, then all go out when enabled).
      yield* refusedByGuard(/disabled \(merchant\); the sender changes nothing of it/)(sql`UPDATE webhook_endpoints SET disabled_reason = 'failing'`)
      assert.strictEqual(yield* resealSecrets(makeSecretBox(randomBytes(32))), 1, "the endpoint's secret, stored as it is, sealed")
      yield* denied("webhook_endpoint_secrets")(sql`UPDATE webhook_endpoint_secrets SET endpoint_id = endpoint_id`)
    }).pipe(Effect.provide(consumer))
    yield* Effect.gen(function* () {
      const sql = yield* SqlClient.SqlClient
      yield* sql`UPDATE webhook_endpoints SET deleted_at = clock_timestamp() WHERE merchant_id = ${merchantId}`
      yield* refusedByGuard(/deleted, for good/)(sql`UPDATE webhook_endpoints SET deleted_at = NULL WHERE merchant_id = ${merchantId}`)
    }).pipe(Effect.provide(app))
  }).pipe(Effect.scoped), { timeout: 60_000 })
