// Tenant isolation in the sender (found by an outside security tester): one merchant's endpoints on
// a tarpit (the connection accepted, never answered) held every one of the sender's slots for the
// whole timeout, so every other merchant's webhooks waited (74 s instead of ~0.3 s). The claim now
// caps what one endpoint and one merchant may have in flight per sender. Real Postgres; the second
// block runs the real sender loop against real receivers on loopback.
import { assert, layer } from "@effect/vitest"
import type { MerchantId } from "@pay/domain"
import { decodeRows } from "@pay/infra"
import { makeTestDatabase } from "@pay/testkit"
import { Effect, Layer, Schema } from "effect"
import { WebhookSecretBoxPlaintext } from "../src/SecretSealing.ts"
import { SqlClient } from "effect/sql"
import { claimDeliveries, type ClaimedDelivery, type ClaimSlots } from "../src/DeliveryQueue.ts"
import { merchantReservedSlotsOf, queueAges } from "../src/QueueAges.ts"
import { reservedSlotsOf, WebhookSender, WebhookSenderLoop } from "../src/DeliveryWorker.ts"
import { WebhookEndpoints } from "../src/Endpoints.ts"
import { defaultSenderOptions, type SenderOptions } from "../src/Model.ts"
import { createMerchant, enqueue, newPaymentId, paymentEvent } from "./support/Fixtures.ts"
import { eventually, startReceiver } from "./support/Receiver.ts"

const lease_ms = 30_000

const endpointOf = (merchantId: MerchantId, url: string) =>
  Effect.gen(function* () {
    const endpoints = yield* WebhookEndpoints
    const { endpoint } = yield* endpoints.create(merchantId, { url, event_types: ["*"] })
    return endpoint.id
  })

/** One version-1 event per new payment of the merchant: one delivery per endpoint of it each. */
const enqueuePayments = (merchantId: MerchantId, payments_count: number) =>
  Effect.forEach(Array.from({ length: payments_count }, (_, i) => i), () =>
    Effect.gen(function* () {
      const event = paymentEvent(merchantId, yield* newPaymentId, 1)
      yield* enqueue(event)
      return event.eventId
    }))

const countBy = (claimed: ReadonlyArray<ClaimedDelivery>, key: (delivery: ClaimedDelivery) => string) => {
  const counts = new Map<string, number>()
  for (const delivery of claimed) counts.set(key(delivery), (counts.get(key(delivery)) ?? 0) + 1)
  return counts
}

const slotsAfter = (claimed: ReadonlyArray<ClaimedDelivery>, caps: Pick<ClaimSlots, "endpointInFlight_max" | "merchantInFlight_max">): ClaimSlots => ({
  endpointInFlight: countBy(claimed, (delivery) => delivery.endpoint_id),
  merchantInFlight: countBy(claimed, (delivery) => delivery.merchant_id),
  ...caps
})

const ClaimLayer = WebhookEndpoints.layerWith({ allowLoopbackHttp: true }).pipe(Layer.provideMerge(makeTestDatabase({ maxConnections: 4 })))

layer(ClaimLayer.pipe(Layer.provide(WebhookSecretBoxPlaintext)), { excludeTestServices: true })("the claim's in-flight caps (real Postgres)", (it) => {
  it.effect("a claim takes at most each endpoint's and merchant's share, the earliest first, and another merchant's delivery behind them; the overdue gauge leaves out what waits behind a cap", () =>
    Effect.gen(function* () {
      const sql = yield* SqlClient.SqlClient
      const busy = yield* createMerchant
      const [first, second] = [yield* endpointOf(busy, "http://127.0.0.1:9/first"), yield* endpointOf(busy, "http://127.0.0.1:9/second")]
      const busyEvents = yield* enqueuePayments(busy, 3)
      const other = yield* createMerchant
      const otherEndpoint = yield* endpointOf(other, "http://127.0.0.1:9/other")
      yield* enqueuePayments(other, 1)

      // 6 deliveries of `busy` due before the other merchant's one; 2 per endpoint, 3 per merchant.
      const caps = { endpointInFlight_max: 2, merchantInFlight_max: 3 }
      const claimed = yield* claimDeliveries(16, lease_ms, slotsAfter([], caps))
      const byMerchant = countBy(claimed, (delivery) => delivery.merchant_id)
      assert.strictEqual(byMerchant.get(busy), 3, "the merchant's share")
      assert.strictEqual(byMerchant.get(other), 1, "the other merchant's delivery, queued last, is taken in the same claim")
      for (const endpointId of [first, second]) assert.isAtMost(countBy(claimed, (d) => d.endpoint_id).get(endpointId) ?? 0, 2, endpointId)
      const [event1, , event3] = busyEvents
      assert.deepStrictEqual(claimed.filter((d) => d.event_id === event1).map((d) => d.endpoint_id).sort(), [first, second].sort(), "the earliest first")
      assert.isFalse(claimed.some((d) => d.event_id === event3), "the latest waits")
      assert.strictEqual(otherEndpoint, claimed.find((d) => d.merchant_id === other)?.endpoint_id)

      // With those in flight: nothing more of the merchant at its cap.
      assert.deepStrictEqual(yield* claimDeliveries(16, lease_ms, slotsAfter(claimed, caps)), [], "the merchant is at its cap")
      // A larger merchant share: only the endpoint with one in flight has room left (one).
      const wider = { endpointInFlight_max: 2, merchantInFlight_max: 8 }
      const more = yield* claimDeliveries(16, lease_ms, slotsAfter(claimed, wider))
      const roomy = countBy(claimed, (d) => d.endpoint_id).get(first) === 1 ? first : second
      assert.deepStrictEqual(more.map((d) => d.endpoint_id), [roomy], "one more, at the endpoint under its cap")

      // The 2 left, 90 s overdue: they wait behind their endpoints' in-flight deliveries (2 leases
      // live at each), not for a sender; with larger caps they would be taken, and are overdue.
      yield* sql`UPDATE webhook_deliveries SET next_attempt_at = now() - interval '90 seconds' WHERE merchant_id = ${busy} AND lease_token IS NULL`
      const overdue_s = (limits: Pick<SenderOptions, "endpointInFlight_max" | "merchantInFlight_max">) =>
        Effect.map(queueAges(sql, { ...limits, timeout_ms: 15_000 }), (ages) => Math.round(ages.oldestOverdue_s))
      assert.strictEqual(yield* overdue_s(wider), 0, "behind their endpoints' caps")
      assert.strictEqual(yield* overdue_s({ endpointInFlight_max: 8, merchantInFlight_max: 4 }), 0, "behind their merchant's cap (4 in flight)")
      assert.strictEqual(yield* overdue_s({ endpointInFlight_max: 8, merchantInFlight_max: 8 }), 90)
      const pending = yield* decodeRows(Schema.Struct({ count: Schema.Int }))(sql`
        SELECT count(*)::int AS count FROM webhook_deliveries WHERE status = 'pending' AND lease_token IS NULL`)
      assert.strictEqual(pending[0]?.count, 2, "what was not claimed stays pending, unleased")
    }))

  it.effect("the overdue gauge follows the merchant's reserve: its failing endpoints held at their share are not overdue; its endpoint that answers, idle, is", () =>
    Effect.gen(function* () {
      const sql = yield* SqlClient.SqlClient
      const merchant = yield* createMerchant
      const [deadA, deadB] = [yield* endpointOf(merchant, "http://127.0.0.1:9/dead-a"), yield* endpointOf(merchant, "http://127.0.0.1:9/dead-b")]
      yield* enqueuePayments(merchant, 4)
      // Caps 2 per endpoint, 4 per merchant (reserve 1): the due-time claim holds the merchant at 3.
      const caps = { endpointInFlight_max: 2, merchantInFlight_max: 4 }
      const reserveCap = { ...caps, merchantInFlight_max: caps.merchantInFlight_max - merchantReservedSlotsOf(caps.merchantInFlight_max) }
      // (The claim also leases what earlier tests of this database left due: nothing of it stays due.)
      const held = yield* claimDeliveries(16, lease_ms, slotsAfter([], reserveCap))
      assert.strictEqual(held.filter((delivery) => delivery.merchant_id === merchant).length, 3, "held at the cap less the reserve")
      yield* sql`UPDATE webhook_endpoints SET failing_since = now() - interval '5 minutes' WHERE id IN (${deadA}, ${deadB})`
      yield* sql`UPDATE webhook_deliveries SET next_attempt_at = now() - interval '90 seconds' WHERE merchant_id = ${merchant} AND lease_token IS NULL`
      const overdue_s = Effect.map(queueAges(sql, { ...caps, timeout_ms: 15_000 }), (ages) => Math.round(ages.oldestOverdue_s))
      // The failing endpoints' rest waits behind the merchant's share, as the sender intends: not overdue.
      assert.strictEqual(yield* overdue_s, 0, "a merchant's dead endpoints at their share are not the senders' delay")
      // Its endpoint that answers, with a delivery due and nothing in flight: the round would take it.
      const answering = yield* endpointOf(merchant, "http://127.0.0.1:9/answering")
      yield* enqueuePayments(merchant, 1)
      yield* sql`UPDATE webhook_deliveries SET next_attempt_at = now() - interval '30 seconds' WHERE endpoint_id = ${answering}`
      assert.strictEqual(yield* overdue_s, 30, "the answering endpoint's delivery is overdue")
    }))
})

/** 4 slots, 2 per merchant, 1 per endpoint; a hung request is cut at 5 s, and not retried within the test. */
const senderOptions: SenderOptions = {
  ...defaultSenderOptions,
  timeout_ms: 5_000,
  concurrency: 4,
  endpointInFlight_max: 1,
  merchantInFlight_max: 2,
  retrySchedule_ms: [0, 60_000],
  pollInterval_ms: 200,
  allowLoopbackHttp: true
}
/** Well under the timeout: the other merchant's webhook did not wait for a hung request's slot. */
const PROMPT_MS = 2_000

const Sender = WebhookSender.layerWith(senderOptions)
const LoopLayer = Layer.mergeAll(WebhookEndpoints.layerWith({ allowLoopbackHttp: true }), WebhookSenderLoop.pipe(Layer.provide(Sender))).pipe(
  Layer.provideMerge(makeTestDatabase({ maxConnections: 8 }))
)

layer(LoopLayer.pipe(Layer.provide(WebhookSecretBoxPlaintext)), { excludeTestServices: true, timeout: "60 seconds" })("the sender loop with one merchant's endpoints hung (real receivers)", (it) => {
  it.effect("another merchant's webhook arrives at once while the hung deliveries outnumber the slots; the hung merchant holds only its share", () =>
    Effect.scoped(Effect.gen(function* () {
      const hung = yield* Effect.forEach([1, 2, 3], () => startReceiver(() => "hold"))
      const fast = yield* startReceiver(() => ({ status: 204 }))
      const tarpit = yield* createMerchant
      for (const receiver of hung) yield* endpointOf(tarpit, receiver.url)
      const victim = yield* createMerchant
      yield* endpointOf(victim, fast.url)

      // 12 hung deliveries (4 payments, 3 endpoints) for 4 slots, queued first.
      yield* enqueuePayments(tarpit, 4)
      const heldCount = () => hung.reduce((sum, receiver) => sum + receiver.received.length, 0)
      yield* eventually("the tarpit merchant's requests are held", () => heldCount() >= senderOptions.merchantInFlight_max)

      const queuedAt = Date.now()
      yield* enqueuePayments(victim, 1)
      yield* eventually("the other merchant's webhook arrives", () => fast.received.length === 1, 4 * senderOptions.timeout_ms)
      const waited_ms = Date.now() - queuedAt
      assert.isBelow(waited_ms, PROMPT_MS, `the other merchant's webhook waited ${waited_ms} ms behind the hung ones (timeout ${senderOptions.timeout_ms} ms)`)
      assert.strictEqual(heldCount(), senderOptions.merchantInFlight_max, "the hung merchant holds its share of the slots, no more")
      for (const receiver of hung) assert.isAtMost(receiver.received.length, senderOptions.endpointInFlight_max, "one in flight per endpoint")
    })))
})

/** The same sender, its loop on a database of its own. */
const TwoTarpitsLayer = Layer.mergeAll(WebhookEndpoints.layerWith({ allowLoopbackHttp: true }), WebhookSenderLoop.pipe(Layer.provide(Sender))).pipe(
  Layer.provideMerge(makeTestDatabase({ maxConnections: 8 }))
)

layer(TwoTarpitsLayer.pipe(Layer.provide(WebhookSecretBoxPlaintext)), { excludeTestServices: true, timeout: "60 seconds" })("the sender loop with two merchants' endpoints hung (real receivers)", (it) => {
  it.effect("two merchants at their caps cannot hold every slot: a slot stays for a merchant with nothing in flight, whose webhook arrives at once", () =>
    Effect.scoped(Effect.gen(function* () {
      // Without the reserved slot, two merchants at their caps (2 + 2) held all 4 slots, and a third
      // merchant's webhook waited for a hung request's timeout (an outside tester: 224 s with 16 slots).
      const hungReceivers = yield* Effect.forEach([1, 2, 3, 4, 5, 6], () => startReceiver(() => "hold"))
      const fast = yield* startReceiver(() => ({ status: 204 }))
      const tarpits = [yield* createMerchant, yield* createMerchant]
      for (const [index, receiver] of hungReceivers.entries()) {
        const tarpit = tarpits[index % 2]
        if (tarpit !== undefined) yield* endpointOf(tarpit, receiver.url)
      }
      const victim = yield* createMerchant
      yield* endpointOf(victim, fast.url)

      for (const tarpit of tarpits) yield* enqueuePayments(tarpit, 4)
      const heldCount = () => hungReceivers.reduce((sum, receiver) => sum + receiver.received.length, 0)
      const held_max = senderOptions.concurrency - reservedSlotsOf(senderOptions.concurrency)
      yield* eventually("the tarpit merchants' requests are held", () => heldCount() >= held_max)

      const queuedAt = Date.now()
      yield* enqueuePayments(victim, 1)
      yield* eventually("the third merchant's webhook arrives", () => fast.received.length === 1, 4 * senderOptions.timeout_ms)
      const waited_ms = Date.now() - queuedAt
      assert.isBelow(waited_ms, PROMPT_MS, `the third merchant's webhook waited ${waited_ms} ms behind the hung ones (timeout ${senderOptions.timeout_ms} ms)`)
      assert.strictEqual(heldCount(), held_max, "the hung merchants together hold all but the reserved slot")
    })))
})

/** The same sender, its loop on a database of its own. */
const OwnTarpitsLayer = Layer.mergeAll(WebhookEndpoints.layerWith({ allowLoopbackHttp: true }), WebhookSenderLoop.pipe(Layer.provide(Sender))).pipe(
  Layer.provideMerge(makeTestDatabase({ maxConnections: 8 }))
)

layer(OwnTarpitsLayer.pipe(Layer.provide(WebhookSecretBoxPlaintext)), { excludeTestServices: true, timeout: "90 seconds" })("the sender loop with a merchant's own endpoints hung beside one that answers (real receivers)", (it) => {
  it.effect("its endpoints that never answer cannot hold all of its slots: once they are failing, its endpoint that answers gets each new webhook at once", () =>
    Effect.scoped(Effect.gen(function* () {
      // Without the merchant's reserved slot, its two hung endpoints (1 + 1) held its cap of 2, and
      // its endpoint that answers waited behind their timeouts and their backlog (an outside
      // merchant's engineer: 70 s behind within 45 s of one payment a second, with 4 + 4 of 8).
      const sql = yield* SqlClient.SqlClient
      const hung = [yield* startReceiver(() => "hold"), yield* startReceiver(() => "hold")]
      let failNext = false
      const fast = yield* startReceiver(() => {
        if (!failNext) return { status: 204 }
        failNext = false
        return { status: 500 }
      })
      const merchant = yield* createMerchant
      for (const receiver of hung) yield* endpointOf(merchant, receiver.url)
      yield* endpointOf(merchant, fast.url)

      // A backlog for the hung endpoints: 6 deliveries each, every attempt held until the 5 s timeout.
      yield* enqueuePayments(merchant, 6)
      const Failing = Schema.Struct({ failing: Schema.Int })
      const failingCount = decodeRows(Failing)(sql`
        SELECT count(*)::int AS failing FROM webhook_endpoints WHERE merchant_id = ${merchant} AND failing_since IS NOT NULL`)
      const deadline_ms = Date.now() + 4 * senderOptions.timeout_ms
      while (((yield* failingCount)[0]?.failing ?? 0) < 2 && Date.now() < deadline_ms) yield* Effect.sleep("200 millis")
      assert.strictEqual((yield* failingCount)[0]?.failing, 2, "both hung endpoints have a failure streak")
      yield* eventually("the answering endpoint got the backlog's webhooks", () => fast.received.length === 6, 6 * senderOptions.timeout_ms)

      for (const round of [1, 2]) {
        const queuedAt = Date.now()
        yield* enqueuePayments(merchant, 1)
        yield* eventually(`webhook ${round} at the answering endpoint`, () => fast.received.length === 6 + round, 4 * senderOptions.timeout_ms)
        const waited_ms = Date.now() - queuedAt
        assert.isBelow(waited_ms, PROMPT_MS, `the answering endpoint's webhook ${round} waited ${waited_ms} ms behind its merchant's hung ones (timeout ${senderOptions.timeout_ms} ms)`)
      }

      // The dead ones dead for minutes; the answering one fails once (a deploy's 500): its next
      // webhook still gets a kept slot. With the streak alone deciding, that one failure put it
      // behind the dead endpoints' backlog for good (outside re-test: nothing for 96 s).
      yield* sql`UPDATE webhook_endpoints SET failing_since = now() - interval '5 minutes' WHERE url IN (${hung[0]?.url ?? ""}, ${hung[1]?.url ?? ""})`
      failNext = true
      yield* enqueuePayments(merchant, 1)
      yield* eventually("the answering endpoint's failed attempt", () => fast.received.length === 9, 4 * senderOptions.timeout_ms)
      const afterFailure = Date.now()
      yield* enqueuePayments(merchant, 1)
      yield* eventually("the next webhook at the answering endpoint after its failure", () => fast.received.length === 10, 6 * senderOptions.timeout_ms)
      const waited_ms = Date.now() - afterFailure
      assert.isBelow(waited_ms, PROMPT_MS, `after one failure, the answering endpoint's next webhook waited ${waited_ms} ms`)
    })))
})
