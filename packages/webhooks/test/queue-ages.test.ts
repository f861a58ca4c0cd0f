// What an operator reads to tell "the senders are down or behind" from "a merchant's endpoint is
// failing": webhook_oldest_pending_age_seconds counts from a delivery's creation, so one endpoint
// retrying over its ~27.6 h schedule kept it (and WebhookDeliveriesLate) high on its own;
// webhook_oldest_overdue_seconds (queueAges) counts only what the claim would take now, from its
// next_attempt_at. Real Postgres, deliveries queued as the consumer queues them, times set by SQL.
import { assert, layer } from "@effect/vitest"
import { makeTestDatabase } from "@pay/testkit"
import { Effect, Layer } from "effect"
import { WebhookSecretBoxPlaintext } from "../src/SecretSealing.ts"
import { SqlClient } from "effect/sql"
import { queueAges } from "../src/QueueAges.ts"
import { WebhookEndpoints } from "../src/Endpoints.ts"
import { createMerchant, enqueue, newPaymentId, paymentEvent } from "./support/Fixtures.ts"

const TestLayer = WebhookEndpoints.layerWith({ allowLoopbackHttp: true }).pipe(Layer.provideMerge(makeTestDatabase({ maxConnections: 4 })))

layer(TestLayer.pipe(Layer.provide(WebhookSecretBoxPlaintext)), { excludeTestServices: true })("webhook queue ages (real Postgres)", (it) => {
  it.effect("overdue counts only what the claim would send now: not a retry waiting for its time, a leased one, one behind its payment's earlier event, or a disabled endpoint's", () =>
    Effect.gen(function* () {
      const sql = yield* SqlClient.SqlClient
      const endpoints = yield* WebhookEndpoints
      const merchantId = yield* createMerchant
      const { endpoint } = yield* endpoints.create(merchantId, { url: "https://merchant.example/hooks", event_types: ["*"] })
      const ages = Effect.map(queueAges(sql), ({ oldestPending_s, oldestOverdue_s }) => [Math.round(oldestPending_s), Math.round(oldestOverdue_s)])
      assert.deepStrictEqual(yield* ages, [0, 0], "an empty queue")

      // A merchant's failing endpoint: created two hours ago, its next retry in ten minutes.
      const failing = paymentEvent(merchantId, yield* newPaymentId, 1)
      yield* enqueue(failing)
      yield* sql`UPDATE webhook_deliveries SET created_at = now() - interval '2 hours', next_attempt_at = now() + interval '10 minutes',
                 attempt_count = 5, round_attempt_count = 5 WHERE event_id = ${failing.eventId}::uuid`
      assert.deepStrictEqual(yield* ages, [7200, 0], "old, but not overdue: its retry waits for its time")

      // The next event of the same payment, due five minutes ago: it waits behind the earlier one.
      const behind = paymentEvent(merchantId, failing.event.payment_id, 2)
      yield* enqueue(behind)
      yield* sql`UPDATE webhook_deliveries SET next_attempt_at = now() - interval '5 minutes' WHERE event_id = ${behind.eventId}::uuid`
      assert.deepStrictEqual(yield* ages, [7200, 0], "behind its payment's earlier event, as the claim keeps it")

      // Another payment's event, due 90 s ago and not taken: the senders are behind.
      const late = paymentEvent(merchantId, yield* newPaymentId, 1)
      yield* enqueue(late)
      yield* sql`UPDATE webhook_deliveries SET next_attempt_at = now() - interval '90 seconds' WHERE event_id = ${late.eventId}::uuid`
      assert.deepStrictEqual(yield* ages, [7200, 90])

      // Being sent (its lease live): not overdue.
      yield* sql`UPDATE webhook_deliveries SET lease_token = gen_random_uuid(), lease_expires_at = now() + interval '1 minute',
                 attempt_count = attempt_count + 1, round_attempt_count = round_attempt_count + 1 WHERE event_id = ${late.eventId}::uuid`
      assert.deepStrictEqual(yield* ages, [7200, 0], "leased")
      yield* sql`UPDATE webhook_deliveries SET lease_token = NULL, lease_expires_at = NULL WHERE event_id = ${late.eventId}::uuid`

      // A disabled endpoint's deliveries wait by design: neither age counts them.
      yield* endpoints.disable(merchantId, endpoint.id)
      assert.deepStrictEqual(yield* ages, [0, 0], "disabled")
      yield* endpoints.enable(merchantId, endpoint.id)
      assert.deepStrictEqual(yield* ages, [7200, 90])
    }))
})
