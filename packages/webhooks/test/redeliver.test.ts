// Manual redelivery (`POST …/deliveries/{id}/redeliver`) with the real sender loop (LISTEN, its
// slots, its claim) and real Postgres: a delivery waiting for its next retry is made due now and
// goes out within seconds, a given-up one starts a new round, each waking the sender as a new
// delivery does; the attempt history is kept, the per-payment order holds, and on a disabled
// endpoint the delivery waits until it is enabled. The poll interval is the longest allowed (60 s),
// so anything sent within the bounds below was sent because the sender was woken.
import { assert, layer } from "@effect/vitest"
import type { MerchantId } from "@pay/domain"
import { makeTestDatabase } from "@pay/testkit"
import { Effect, Layer } from "effect"
import { WebhookSecretBoxPlaintext } from "../src/SecretSealing.ts"
import { WebhookDeliveries, type WebhookDelivery } from "../src/Deliveries.ts"
import { WebhookSender, WebhookSenderLoop } from "../src/DeliveryWorker.ts"
import { WebhookEndpoints } from "../src/Endpoints.ts"
import { defaultSenderOptions, type SenderOptions } from "../src/Model.ts"
import { createMerchant, enqueue, newPaymentId, paymentEvent } from "./support/Fixtures.ts"
import { eventually, type Received, startReceiver } from "./support/Receiver.ts"

/** Two quick attempts, then the next one 5 minutes away (what the outside tester saw). */
const senderOptions: SenderOptions = {
  ...defaultSenderOptions,
  timeout_ms: 1_000,
  retrySchedule_ms: [0, 0, 300_000],
  pollInterval_ms: 60_000,
  allowLoopbackHttp: true,
  concurrency: 4
}

const Sender = WebhookSender.layerWith(senderOptions)
const TestLayer = Layer.mergeAll(
  WebhookEndpoints.layerWith({ allowLoopbackHttp: true }),
  WebhookDeliveries.layer,
  Sender,
  WebhookSenderLoop.pipe(Layer.provide(Sender))
).pipe(Layer.provideMerge(makeTestDatabase({ maxConnections: 8 })))

/** Well within the 60 s poll: only a wake-up gets an attempt out this fast. */
const WOKEN_WITHIN_MS = 5_000

/** A merchant with one endpoint at `url`, and the services. */
const setUp = (url: string) =>
  Effect.gen(function* () {
    const merchantId = yield* createMerchant
    const endpoints = yield* WebhookEndpoints
    const deliveries = yield* WebhookDeliveries
    const { endpoint } = yield* endpoints.create(merchantId, { url, event_types: ["*"] })
    return { merchantId, endpointId: endpoint.id, endpoints, deliveries }
  })

const deliveryOf = (merchantId: MerchantId, endpointId: string, eventId: string) =>
  Effect.gen(function* () {
    const deliveries = yield* WebhookDeliveries
    const { data } = yield* deliveries.list(merchantId, endpointId, { limit: 10, eventId })
    return data[0] ?? assert.fail(`the delivery of ${eventId} is listed`)
  })

/** Polls the delivery until `condition` holds (the sender records an outcome right after the receiver answered). */
const awaitDelivery = (
  merchantId: MerchantId,
  endpointId: string,
  eventId: string,
  condition: (delivery: WebhookDelivery) => boolean
) =>
  Effect.gen(function* () {
    for (let poll = 0; poll < 200; poll++) {
      const delivery = yield* deliveryOf(merchantId, endpointId, eventId)
      if (condition(delivery)) return delivery
      yield* Effect.sleep("25 millis")
    }
    return assert.fail(`the delivery of ${eventId} never reached the expected state`)
  })

/** Two attempts failed and recorded (not merely claimed): the third is scheduled minutes away. */
const waitingForThirdAttempt = (delivery: WebhookDelivery) =>
  delivery.status === "pending" && delivery.attempt_count === 2 && delivery.next_attempt_at.getTime() - Date.now() > 200_000

const typeOf = (request: Received) => (JSON.parse(request.body) as { readonly type: string }).type

layer(TestLayer.pipe(Layer.provide(WebhookSecretBoxPlaintext)), { excludeTestServices: true, timeout: "60 seconds" })("manual redelivery (real sender loop, real Postgres, real receiver)", (it) => {
  it.effect("a pending delivery waiting for its next retry is made due now and sent within seconds; attempt_count and the attempts are kept", () =>
    Effect.scoped(Effect.gen(function* () {
      const receiver = yield* startReceiver((request) => (request.seenBefore < 2 ? { status: 500 } : { status: 204 }))
      const { merchantId, endpointId, deliveries } = yield* setUp(receiver.url)
      const event = paymentEvent(merchantId, yield* newPaymentId, 1)
      yield* enqueue(event)
      const waiting = yield* awaitDelivery(merchantId, endpointId, event.eventId, waitingForThirdAttempt)

      const answer = yield* deliveries.redeliver(merchantId, endpointId, waiting.id)
      assert.strictEqual(answer.status, "pending")
      assert.strictEqual(answer.attempt_count, 2, "attempt_count never decreases")
      assert.isBelow(answer.next_attempt_at.getTime() - Date.now(), 1_000, "due now")

      yield* eventually("the redelivery", () => receiver.received.length === 3, WOKEN_WITHIN_MS)
      assert.deepStrictEqual(receiver.received.map((r) => r.id), [event.eventId, event.eventId, event.eventId], "same webhook-id")
      const done = yield* awaitDelivery(merchantId, endpointId, event.eventId, (d) => d.status === "delivered")
      assert.strictEqual(done.attempt_count, 3)
      const { attempts } = yield* deliveries.get(merchantId, endpointId, waiting.id)
      assert.deepStrictEqual(attempts.map((a) => [a.attempt_number, a.outcome]), [[1, "retry"], [2, "retry"], [3, "delivered"]], "the history is kept")
    })))

  it.effect("a redelivered pending delivery starts a new round of the schedule: a failure is retried at the round's second delay, not given up", () =>
    Effect.scoped(Effect.gen(function* () {
      // Fails twice, then the redelivery (attempt 3) fails too: in the old round it would be the
      // schedule's last delay; in a new round it is the second (0 ms), so attempt 4 follows at once.
      const receiver = yield* startReceiver((request) => (request.seenBefore < 3 ? { status: 500 } : { status: 204 }))
      const { merchantId, endpointId, deliveries } = yield* setUp(receiver.url)
      const event = paymentEvent(merchantId, yield* newPaymentId, 1)
      yield* enqueue(event)
      const waiting = yield* awaitDelivery(merchantId, endpointId, event.eventId, waitingForThirdAttempt)
      yield* deliveries.redeliver(merchantId, endpointId, waiting.id)
      yield* eventually("the new round's two attempts", () => receiver.received.length === 4, WOKEN_WITHIN_MS)
      const done = yield* awaitDelivery(merchantId, endpointId, event.eventId, (d) => d.status === "delivered")
      assert.strictEqual(done.attempt_count, 4)
    })))

  it.effect("a given-up delivery starts a new round and wakes the sender (not left for the next poll)", () =>
    Effect.scoped(Effect.gen(function* () {
      const receiver = yield* startReceiver((request) => (request.seenBefore < 1 ? { status: 410 } : { status: 204 }))
      const { merchantId, endpointId, endpoints, deliveries } = yield* setUp(receiver.url)
      const event = paymentEvent(merchantId, yield* newPaymentId, 1)
      yield* enqueue(event)
      // 410: the delivery fails (gone) and the endpoint is disabled; the merchant fixes and enables it.
      const failed = yield* awaitDelivery(merchantId, endpointId, event.eventId, (d) => d.status === "failed")
      yield* endpoints.enable(merchantId, endpointId)
      const answer = yield* deliveries.redeliver(merchantId, endpointId, failed.id)
      assert.deepStrictEqual([answer.status, answer.failed_reason, answer.finished_at, answer.attempt_count], ["pending", null, null, 1])
      yield* eventually("the redelivery", () => receiver.received.length === 2, WOKEN_WITHIN_MS)
      const done = yield* awaitDelivery(merchantId, endpointId, event.eventId, (d) => d.status === "delivered")
      assert.strictEqual(done.attempt_count, 2)
    })))

  it.effect("the per-payment order holds: a redelivered later event waits while an earlier one of its payment is pending, then follows it", () =>
    Effect.scoped(Effect.gen(function* () {
      const receiver = yield* startReceiver((request) => (typeOf(request) === "payment_created" && request.seenBefore < 2 ? { status: 500 } : { status: 204 }))
      const { merchantId, endpointId, deliveries } = yield* setUp(receiver.url)
      const paymentId = yield* newPaymentId
      const created = paymentEvent(merchantId, paymentId, 1)
      const authorized = paymentEvent(merchantId, paymentId, 2)
      yield* enqueue(created)
      yield* enqueue(authorized)
      const first = yield* awaitDelivery(merchantId, endpointId, created.eventId, waitingForThirdAttempt)
      const second = yield* deliveryOf(merchantId, endpointId, authorized.eventId)
      assert.strictEqual(second.attempt_count, 0, "the later event waits for the earlier one")

      const answer = yield* deliveries.redeliver(merchantId, endpointId, second.id)
      assert.isBelow(answer.next_attempt_at.getTime() - Date.now(), 1_000, "due now")
      yield* Effect.sleep("1500 millis")
      assert.deepStrictEqual(receiver.received.map(typeOf), ["payment_created", "payment_created"], "still behind the pending earlier event")

      yield* deliveries.redeliver(merchantId, endpointId, first.id)
      yield* eventually("both, in order", () => receiver.received.length === 4, WOKEN_WITHIN_MS)
      assert.deepStrictEqual(receiver.received.map(typeOf), ["payment_created", "payment_created", "payment_created", "payment_authorized"])
    })))

  it.effect("on a disabled endpoint a redelivery is queued (pending, due) and waits; it goes out once the endpoint is enabled", () =>
    Effect.scoped(Effect.gen(function* () {
      const receiver = yield* startReceiver(() => ({ status: 204 }))
      const { merchantId, endpointId, endpoints, deliveries } = yield* setUp(receiver.url)
      const event = paymentEvent(merchantId, yield* newPaymentId, 1)
      yield* enqueue(event)
      const delivered = yield* awaitDelivery(merchantId, endpointId, event.eventId, (d) => d.status === "delivered")
      yield* endpoints.disable(merchantId, endpointId)
      const answer = yield* deliveries.redeliver(merchantId, endpointId, delivered.id)
      assert.deepStrictEqual([answer.status, answer.attempt_count], ["pending", 1])
      yield* Effect.sleep("1500 millis")
      assert.strictEqual(receiver.received.length, 1, "nothing is sent to a disabled endpoint")
      // Enabling wakes the senders (it used to wait for their next poll: 60 s here).
      yield* endpoints.enable(merchantId, endpointId)
      yield* eventually("sent after enable", () => receiver.received.length === 2, WOKEN_WITHIN_MS)
    })))
})
