// The sender's claim under a backlog the planner has never seen (issue 17: found by the long chaos
// run, where 57,000 pending deliveries on a never-analyzed table made each claim scan and sort all
// of them, 1.07 s a claim). The claim must walk the due index in order and stop at its limit.
import { assert, layer } from "@effect/vitest"
import { decodeRows } from "@pay/infra"
import { makeTestDatabase } from "@pay/testkit"
import { Effect, Layer, Schema } from "effect"
import { WebhookSecretBoxPlaintext } from "../src/SecretSealing.ts"
import { SqlClient } from "effect/sql"
import { claimDeliveries, explainClaimDeliveries } from "../src/DeliveryQueue.ts"
import { WebhookEndpoints } from "../src/Endpoints.ts"
import { createMerchant } from "./support/Fixtures.ts"

const TestLayer = WebhookEndpoints.layerWith({ allowLoopbackHttp: true }).pipe(Layer.provideMerge(makeTestDatabase({ maxConnections: 4 })))

const payments_count = 2_500

layer(TestLayer.pipe(Layer.provide(WebhookSecretBoxPlaintext)))("the webhook sender's claim with a large backlog", (it) => {
  it.effect("walks the due index in order and stops at the limit on a table never analyzed, and still claims only the first pending version of each payment", () =>
    Effect.gen(function* () {
      const sql = yield* SqlClient.SqlClient
      const endpoints = yield* WebhookEndpoints
      const merchantId = yield* createMerchant
      const { endpoint } = yield* endpoints.create(merchantId, { url: "http://127.0.0.1:9/hooks", event_types: ["*"] })
      // Two pending versions per payment (the second waits for the first), oldest first; no ANALYZE.
      yield* sql`
        INSERT INTO webhook_deliveries (id, endpoint_id, merchant_id, event_id, event_type, payment_id, payment_version, body, next_attempt_at)
        SELECT gen_random_uuid(), ${endpoint.id}, ${merchantId}, e.id, 'payment_created', e.payment_id, e.v,
               -- The envelope of the row's own event (0102 refuses any other body).
               jsonb_build_object('id', e.id, 'type', 'payment_created', 'timestamp', '2026-12-05T00:00:00.000Z',
                 'data', jsonb_build_object('merchant_id', ${merchantId}::text, 'payment_id', e.payment_id, 'version', e.v, 'occurred_at', '2026-12-05T00:00:00.000Z'))::text,
               clock_timestamp() - interval '1 hour' + (e.p * 2 + e.v) * interval '1 millisecond'
        FROM (SELECT gen_random_uuid() AS id, 'pay_' || lpad(p::text, 24, '0') AS payment_id, p, v
              FROM generate_series(1, ${payments_count}) AS p, generate_series(1, 2) AS v) AS e`
      const plan = yield* explainClaimDeliveries(32, 30_000)
      assert.include(plan, "Index Scan using webhook_deliveries_due", plan)
      assert.include(plan, "Index Cond: (next_attempt_at <= statement_timestamp())", plan)
      assert.notInclude(plan, "Sort", plan)
      assert.notInclude(plan, "Bitmap Heap Scan on webhook_deliveries", plan)
      assert.notInclude(plan, "Seq Scan on webhook_deliveries", plan)

      const claimed = yield* claimDeliveries(32, 30_000)
      assert.strictEqual(claimed.length, 32)
      const versions = yield* decodeRows(Schema.Struct({ payment_version: Schema.Int, payment_id: Schema.String }))(sql`
        SELECT payment_version, payment_id FROM webhook_deliveries WHERE id IN ${sql.in(claimed.map((delivery) => delivery.id))}
        ORDER BY payment_id`)
      assert.deepStrictEqual(new Set(versions.map((row) => row.payment_version)), new Set([1]), "a version 2 never overtakes its version 1")
      assert.deepStrictEqual(versions.map((row) => row.payment_id), Array.from({ length: 32 }, (_, i) => `pay_${String(i + 1).padStart(24, "0")}`), "the oldest due first")
    }))
})
