// Webhooks deliver refund events (issue 19): an endpoint subscribes to refund_created /
// refund_succeeded / refund_failed; a refund's delivery names its refund and is ordered per refund
// (its final event after its creation) and after its payment's pending deliveries, while another
// refund of the same payment and the payment's own deliveries are never held back by it. Real
// Postgres, real HTTP receiver; raw SQL cannot move a delivery to another refund.
import { assert, layer } from "@effect/vitest"
import { type MerchantId, type PaymentId, RefundEvent } from "@pay/domain"
import { decodeRows } from "@pay/infra"
import { makeTestDatabase } from "@pay/testkit"
import { Effect, Layer, Schema } from "effect"
import { WebhookSecretBoxPlaintext } from "../src/SecretSealing.ts"
import { SqlClient } from "effect/sql"
import { randomUUID } from "node:crypto"
import type { DeliverableEvent } from "../src/DeliveryQueue.ts"
import { WebhookSender } from "../src/DeliveryWorker.ts"
import { WebhookEndpoints } from "../src/Endpoints.ts"
import { defaultSenderOptions } from "../src/Model.ts"
import { createMerchant, enqueue, newPaymentId, paymentEvent } from "./support/Fixtures.ts"
import { startReceiver } from "./support/Receiver.ts"

const TestLayer = Layer.mergeAll(
  WebhookEndpoints.layerWith({ allowLoopbackHttp: true }),
  WebhookSender.layerWith({ ...defaultSenderOptions, timeout_ms: 1_000, retrySchedule_ms: [0, 0, 0, 0], allowLoopbackHttp: true, concurrency: 8 })
).pipe(Layer.provideMerge(makeTestDatabase({ maxConnections: 8 })))

let counter = 0
const refundId = () => `re_${String(++counter).padStart(24, "0")}`

/** A refund event of a settled payment, decoded by the domain's schema. */
const refundEvent = (merchantId: MerchantId, paymentId: PaymentId, refund: string, type: "refund_created" | "refund_succeeded"): DeliverableEvent => ({
  eventId: randomUUID(),
  event: Schema.decodeUnknownSync(RefundEvent)({
    type,
    refund_id: refund,
    payment_id: paymentId,
    merchant_id: merchantId,
    amount_minor: 400,
    currency: "EUR",
    occurred_at: new Date(Date.UTC(2026, 11, 2, 10, 0, counter)).toISOString(),
    reason: null,
    ...(type === "refund_created" ? { version: 1, status: "PENDING" } : { version: 2, status: "SUCCEEDED", fee_returned_minor: 0 })
  })
})

layer(TestLayer.pipe(Layer.provide(WebhookSecretBoxPlaintext)), { excludeTestServices: true })("webhooks deliver refund events (real Postgres, real HTTP receiver)", (it) => {
  it.effect("refund events reach a subscribed endpoint, per refund in order and after the payment's pending deliveries; another refund is not held back", () =>
    Effect.scoped(Effect.gen(function* () {
      // The payment's payment_settled fails twice before it is delivered.
      const receiver = yield* startReceiver((request) =>
        (JSON.parse(request.body) as { type: string }).type === "payment_settled" && request.seenBefore < 2 ? { status: 500 } : { status: 204 }
      )
      const merchantId = yield* createMerchant
      const endpoints = yield* WebhookEndpoints
      const { endpoint } = yield* endpoints.create(merchantId, {
        url: receiver.url,
        event_types: ["payment_settled", "refund_created", "refund_succeeded", "refund_failed"]
      })
      const p = yield* newPaymentId
      const settled = paymentEvent(merchantId, p, 3)
      const a = refundId()
      const b = refundId()
      const aCreated = refundEvent(merchantId, p, a, "refund_created")
      const aSucceeded = refundEvent(merchantId, p, a, "refund_succeeded")
      const bCreated = refundEvent(merchantId, p, b, "refund_created")
      for (const event of [settled, aCreated, aSucceeded, bCreated]) yield* enqueue(event)
      const sender = yield* WebhookSender
      yield* sender.drain(50)

      const order = receiver.received.map((request) => request.id)
      assert.deepStrictEqual(order.slice(0, 3), [settled.eventId, settled.eventId, settled.eventId], "the refunds waited for the payment's pending delivery")
      assert.isBelow(order.indexOf(aCreated.eventId), order.indexOf(aSucceeded.eventId), "a refund's events in order")
      assert.deepStrictEqual(new Set(order.slice(3)), new Set([aCreated.eventId, aSucceeded.eventId, bCreated.eventId]))
      const body = JSON.parse(receiver.received.find((request) => request.id === aSucceeded.eventId)?.body ?? "{}") as { type: string; data: Record<string, unknown> }
      assert.strictEqual(body.type, "refund_succeeded")
      assert.deepStrictEqual([body.data["refund_id"], body.data["payment_id"], body.data["amount_minor"], body.data["version"]], [a, p, 400, 2])

      const sql = yield* SqlClient.SqlClient
      const rows = yield* decodeRows(Schema.Struct({ refund_id: Schema.NullOr(Schema.String), payment_version: Schema.Int, status: Schema.String }))(sql`
        SELECT refund_id, payment_version, status FROM webhook_deliveries WHERE endpoint_id = ${endpoint.id} ORDER BY created_at`)
      assert.deepStrictEqual(rows, [
        { refund_id: null, payment_version: 3, status: "delivered" },
        { refund_id: a, payment_version: 1, status: "delivered" },
        { refund_id: a, payment_version: 2, status: "delivered" },
        { refund_id: b, payment_version: 1, status: "delivered" }
      ])
      const moved = yield* Effect.flip(sql`UPDATE webhook_deliveries SET refund_id = ${b} WHERE endpoint_id = ${endpoint.id} AND refund_id = ${a}`)
      assert.match(String(moved.reason.cause), /refund_id never changes/)
    })))

  it.effect("the database accepts the refund event types and payment_expiring as subscriptions, and refuses an unknown one", () =>
    Effect.gen(function* () {
      const sql = yield* SqlClient.SqlClient
      const merchantId = yield* createMerchant
      const insert = (types: ReadonlyArray<string>) => sql`
        INSERT INTO webhook_endpoints (id, merchant_id, url, event_types, status, created_at, updated_at)
        VALUES (${`we_${randomUUID().replaceAll("-", "").slice(0, 24)}`}, ${merchantId}, 'https://example.com/hook', ${types}, 'enabled', now(), now())`
      const unknown = yield* Effect.flip(insert(["refund_reversed"]))
      assert.match(String(unknown.reason.cause), /webhook_endpoints_event_types_check|violates check constraint/)
      const endpoints = yield* WebhookEndpoints
      const created = yield* endpoints.create(merchantId, { url: "https://example.com/hook", event_types: ["refund_created", "refund_succeeded", "refund_failed", "payment_expiring"] })
      assert.deepStrictEqual([...created.endpoint.event_types].sort(), ["payment_expiring", "refund_created", "refund_failed", "refund_succeeded"])
    }))
})
