import { assert, layer } from "@effect/vitest"
import { decodeRow, decodeRows } from "@pay/infra"
import { makeTestDatabase } from "@pay/testkit"
import { Effect, Layer, Logger, Schema } from "effect"
import { WebhookSecretBoxPlaintext } from "../src/SecretSealing.ts"
import { SqlClient } from "effect/sql"
import { Webhook } from "standardwebhooks"
import { enqueueDeliveries } from "../src/DeliveryQueue.ts"
import { makeWebhookConsumerHandler } from "../src/WebhookConsumer.ts"
import { WebhookSender } from "../src/DeliveryWorker.ts"
import { WebhookEndpoints } from "../src/Endpoints.ts"
import { defaultSenderOptions, type SenderOptions } from "../src/Model.ts"
import { createMerchant, enqueue, expiringEvent, newPaymentId, paymentEvent } from "./support/Fixtures.ts"
import { type Received, startReceiver } from "./support/Receiver.ts"

/** Short timeout, retries without waiting (the schedule's arithmetic is tested in retry-policy.test.ts). */
const senderOptions: SenderOptions = {
  ...defaultSenderOptions,
  timeout_ms: 1_000,
  retrySchedule_ms: [0, 0, 0, 0],
  allowLoopbackHttp: true,
  concurrency: 8
}

const TestLayer = Layer.mergeAll(WebhookEndpoints.layerWith({ allowLoopbackHttp: true }), WebhookSender.layerWith(senderOptions)).pipe(
  Layer.provideMerge(makeTestDatabase({ maxConnections: 8 }))
)

const DeliveryRow = Schema.Struct({
  status: Schema.String,
  failed_reason: Schema.NullOr(Schema.String),
  attempt_count: Schema.Int,
  last_response_status: Schema.NullOr(Schema.Int),
  next_attempt_at: Schema.Date,
  event_id: Schema.String,
  body: Schema.String
})
const deliveryRows = decodeRows(DeliveryRow)
const AttemptRow = Schema.Struct({ attempt_number: Schema.Int, outcome: Schema.NullOr(Schema.String), response_status: Schema.NullOr(Schema.Int), error: Schema.NullOr(Schema.String) })
const attemptRows = decodeRows(AttemptRow)
const endpointRow = decodeRow(Schema.Struct({ status: Schema.String, disabled_reason: Schema.NullOr(Schema.String) }))

const deliveriesOf = (endpointId: string) =>
  Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    return yield* deliveryRows(sql`SELECT status, failed_reason, attempt_count, last_response_status, next_attempt_at, event_id::text AS event_id, body
                     FROM webhook_deliveries WHERE endpoint_id = ${endpointId} ORDER BY payment_id, payment_version`)
  })

const attemptsOf = (eventId: string) =>
  Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    return yield* attemptRows(sql`SELECT a.attempt_number, a.outcome, a.response_status, a.error FROM webhook_attempts a
                    JOIN webhook_deliveries d ON d.id = a.delivery_id WHERE d.event_id = ${eventId}::uuid ORDER BY a.attempt_number`)
  })

/** A merchant with one endpoint at `url`; returns the ids and the secret. */
const setUp = (url: string, event_types: ReadonlyArray<string> = ["*"]) =>
  Effect.gen(function* () {
    const merchantId = yield* createMerchant
    const endpoints = yield* WebhookEndpoints
    const { endpoint, secret } = yield* endpoints.create(merchantId, { url, event_types })
    return { merchantId, endpointId: endpoint.id, secret }
  })

const drain = Effect.gen(function* () {
  const sender = yield* WebhookSender
  return yield* sender.drain(50)
})

const ok = { status: 204 } as const

layer(TestLayer.pipe(Layer.provide(WebhookSecretBoxPlaintext)), { excludeTestServices: true })("webhook delivery (real Postgres, real HTTP receiver)", (it) => {
  it.effect("one delivery per subscribed endpoint; a redelivered event creates nothing; other types and disabled endpoints get none", () =>
    Effect.scoped(Effect.gen(function* () {
      const receiver = yield* startReceiver(() => ok)
      const all = yield* setUp(receiver.url)
      const endpoints = yield* WebhookEndpoints
      const settledOnly = yield* endpoints.create(all.merchantId, { url: receiver.url, event_types: ["payment_settled"] })
      const disabled = yield* endpoints.create(all.merchantId, { url: receiver.url, event_types: ["*"] })
      yield* endpoints.disable(all.merchantId, disabled.endpoint.id)
      const created = paymentEvent(all.merchantId, yield* newPaymentId, 1)
      assert.strictEqual(yield* enqueue(created), 1)
      assert.strictEqual(yield* enqueue(created), 0, "the same event again (redelivery, replay): nothing new")
      const settled = paymentEvent(all.merchantId, yield* newPaymentId, 3)
      assert.strictEqual(yield* enqueue(settled), 2)
      assert.strictEqual(yield* enqueue(settled), 0)
      assert.strictEqual((yield* deliveriesOf(disabled.endpoint.id)).length, 0)
      assert.strictEqual((yield* deliveriesOf(settledOnly.endpoint.id)).length, 1, "only the settled event")
      // Outside a transaction, enqueueing is a bug of the caller: a defect, nothing written.
      const outside = yield* Effect.exit(enqueueDeliveries(paymentEvent(all.merchantId, yield* newPaymentId, 1)))
      assert.isTrue(outside._tag === "Failure")
      assert.strictEqual((yield* deliveriesOf(all.endpointId)).length, 2)
    })))

  it.effect("the receiver verifies the signature with standardwebhooks over the exact stored bytes; webhook-id is the event id", () =>
    Effect.scoped(Effect.gen(function* () {
      const receiver = yield* startReceiver(() => ok)
      const { merchantId, endpointId, secret } = yield* setUp(receiver.url)
      const event = paymentEvent(merchantId, yield* newPaymentId, 1)
      yield* enqueue(event)
      yield* drain
      assert.strictEqual(receiver.received.length, 1)
      const [got] = receiver.received
      if (got === undefined) return assert.fail("nothing received")
      const headers = { "webhook-id": got.id, "webhook-timestamp": got.timestamp, "webhook-signature": got.signature }
      const verified = new Webhook(secret).verify(got.body, headers)
      assert.deepInclude(verified, { id: event.eventId, type: "payment_created" })
      assert.strictEqual(got.id, event.eventId)
      const [row] = yield* deliveriesOf(endpointId)
      assert.strictEqual(row?.body, got.body, "the bytes sent are the bytes stored")
      assert.strictEqual(row?.status, "delivered")
      assert.throws(() => new Webhook(secret).verify(JSON.stringify(JSON.parse(got.body), null, 1), headers))
    })))

  it.effect("500, 500, then 200: delivered on the third attempt, same webhook-id and bytes each time, every attempt recorded", () =>
    Effect.scoped(Effect.gen(function* () {
      const receiver = yield* startReceiver((request) => (request.seenBefore < 2 ? { status: 500, body: "boom" } : ok))
      const { merchantId, endpointId } = yield* setUp(receiver.url)
      const event = paymentEvent(merchantId, yield* newPaymentId, 1)
      yield* enqueue(event)
      yield* drain
      assert.deepStrictEqual(receiver.received.map((r) => r.id), [event.eventId, event.eventId, event.eventId])
      assert.strictEqual(new Set(receiver.received.map((r) => r.body)).size, 1)
      const attempts = yield* attemptsOf(event.eventId)
      assert.deepStrictEqual(attempts.map((a) => [a.outcome, a.response_status]), [["retry", 500], ["retry", 500], ["delivered", 204]])
      const [row] = yield* deliveriesOf(endpointId)
      assert.strictEqual(row?.status, "delivered")
      assert.strictEqual(row?.attempt_count, 3)
    })))

  it.effect("a receiver failing every attempt: the delivery is given up when the schedule is used up (exhausted, visible)", () =>
    Effect.scoped(Effect.gen(function* () {
      const receiver = yield* startReceiver(() => ({ status: 503 }))
      const { merchantId, endpointId } = yield* setUp(receiver.url)
      const event = paymentEvent(merchantId, yield* newPaymentId, 1)
      yield* enqueue(event)
      const logged: Array<Record<string, unknown>> = []
      const capture = Logger.layer([Logger.make((options) => {
        const line = Logger.formatStructured.log(options)
        logged.push({ level: line.level, message: line.message, ...line.annotations })
      })])
      yield* drain.pipe(Effect.provide(capture))
      assert.strictEqual(receiver.received.length, senderOptions.retrySchedule_ms.length)
      const [row] = yield* deliveriesOf(endpointId)
      assert.deepStrictEqual([row?.status, row?.failed_reason, row?.last_response_status], ["failed", "exhausted", 503])
      // The operator reads which endpoint fails: each failed attempt at INFO, the giving up at WARN.
      const lines = logged.filter((line) => line["webhook_endpoint_id"] === endpointId)
      const failed = lines.filter((line) => JSON.stringify(line["message"]).includes("webhook attempt failed"))
      const givenUp = lines.filter((line) => JSON.stringify(line["message"]).includes("webhook delivery given up"))
      assert.strictEqual(failed.length, senderOptions.retrySchedule_ms.length - 1, JSON.stringify(logged).slice(0, 800))
      assert.deepStrictEqual(failed.map((line) => [line["level"], line["status"]])[0], ["INFO", 503])
      assert.deepStrictEqual(givenUp.map((line) => [line["level"], line["outcome"], line["status"]]), [["WARN", "Exhausted", 503]])
    })))

  it.effect("410 Gone disables the endpoint: the delivery fails, nothing more is sent to it", () =>
    Effect.scoped(Effect.gen(function* () {
      const receiver = yield* startReceiver(() => ({ status: 410 }))
      const { merchantId, endpointId } = yield* setUp(receiver.url)
      const paymentId = yield* newPaymentId
      yield* enqueue(paymentEvent(merchantId, paymentId, 1))
      yield* drain
      const sql = yield* SqlClient.SqlClient
      const endpoint = yield* endpointRow(sql`SELECT status, disabled_reason FROM webhook_endpoints WHERE id = ${endpointId}`)
      assert.deepStrictEqual(endpoint, { status: "disabled", disabled_reason: "gone" })
      assert.strictEqual(yield* enqueue(paymentEvent(merchantId, paymentId, 2)), 0, "a disabled endpoint gets no new deliveries")
      yield* drain
      assert.strictEqual(receiver.received.length, 1)
      const [row] = yield* deliveriesOf(endpointId)
      assert.deepStrictEqual([row?.status, row?.failed_reason], ["failed", "gone"])
    })))

  it.effect("per payment, events arrive in order while the first is retried; another payment is not held back", () =>
    Effect.scoped(Effect.gen(function* () {
      const slowStart = (request: Received) => {
        const type = (JSON.parse(request.body) as { type: string }).type
        return type === "payment_created" && request.seenBefore < 2 ? { status: 500 } : ok
      }
      const receiver = yield* startReceiver(slowStart)
      const { merchantId } = yield* setUp(receiver.url)
      const p = yield* newPaymentId
      const q = yield* newPaymentId
      const p1 = paymentEvent(merchantId, p, 1)
      const p2 = paymentEvent(merchantId, p, 2)
      const p3 = paymentEvent(merchantId, p, 3)
      const q2 = paymentEvent(merchantId, q, 2)
      for (const event of [p1, p2, p3, q2]) yield* enqueue(event)
      yield* drain
      const order = receiver.received.map((r) => r.id)
      const firstSuccessOfP1 = order.lastIndexOf(p1.eventId)
      assert.deepStrictEqual(order.filter((id) => id !== q2.eventId), [p1.eventId, p1.eventId, p1.eventId, p2.eventId, p3.eventId])
      assert.isBelow(order.indexOf(q2.eventId), firstSuccessOfP1, "q's event did not wait for p's retries")
    })))

  it.effect("payment_expiring waits for the authorization it warns about (the same version) while that one is retried", () =>
    Effect.scoped(Effect.gen(function* () {
      const failAuthorized = (request: Received) => {
        const type = (JSON.parse(request.body) as { type: string }).type
        return type === "payment_authorized" && request.seenBefore < 2 ? { status: 500 } : ok
      }
      const receiver = yield* startReceiver(failAuthorized)
      const { merchantId } = yield* setUp(receiver.url)
      const p = yield* newPaymentId
      const created = paymentEvent(merchantId, p, 1)
      const authorized = paymentEvent(merchantId, p, 2)
      const warning = expiringEvent(merchantId, p)
      for (const event of [created, authorized, warning]) yield* enqueue(event)
      yield* drain
      const order = receiver.received.map((r) => r.id)
      assert.deepStrictEqual(order, [created.eventId, authorized.eventId, authorized.eventId, authorized.eventId, warning.eventId])
    })))

  it.effect("a slow receiver is cut at the timeout: the attempt is recorded as unanswered and retried", () =>
    Effect.scoped(Effect.gen(function* () {
      const receiver = yield* startReceiver((request) => (request.seenBefore === 0 ? "hold" : ok))
      const { merchantId, endpointId } = yield* setUp(receiver.url)
      const event = paymentEvent(merchantId, yield* newPaymentId, 1)
      yield* enqueue(event)
      yield* drain
      const attempts = yield* attemptsOf(event.eventId)
      assert.strictEqual(attempts[0]?.outcome, "retry")
      assert.match(attempts[0]?.error ?? "", /no answer within 1000 ms/)
      assert.strictEqual(attempts[1]?.outcome, "delivered")
      assert.strictEqual((yield* deliveriesOf(endpointId))[0]?.status, "delivered")
    })))

  it.effect("429 with Retry-After pushes the next attempt out (within the bound)", () =>
    Effect.scoped(Effect.gen(function* () {
      const receiver = yield* startReceiver(() => ({ status: 429, headers: { "retry-after": "120" } }))
      const { merchantId, endpointId } = yield* setUp(receiver.url)
      yield* enqueue(paymentEvent(merchantId, yield* newPaymentId, 1))
      const sql = yield* SqlClient.SqlClient
      yield* drain
      assert.strictEqual(receiver.received.length, 1, "not retried before Retry-After")
      const [row] = yield* deliveriesOf(endpointId)
      const now = yield* decodeRow(Schema.Struct({ now: Schema.Date }))(sql`SELECT clock_timestamp() AS now`)
      const wait_ms = (row?.next_attempt_at.getTime() ?? 0) - now.now.getTime()
      assert.isAbove(wait_ms, 100_000)
      assert.isAtMost(wait_ms, 120_000)
    })))

  it.effect("an endpoint failing for longer than the configured period is disabled (reason failing) when a delivery is given up, not at a failure that still has its retries", () =>
    Effect.scoped(Effect.gen(function* () {
      let answers = 0
      // The first delivery fails once, then is answered: its retry is sent, the endpoint kept.
      const receiver = yield* startReceiver(() => (answers++ === 0 ? { status: 500 } : ok))
      const { merchantId, endpointId } = yield* setUp(receiver.url)
      const sql = yield* SqlClient.SqlClient
      const endpointState = endpointRow(sql`SELECT status, disabled_reason FROM webhook_endpoints WHERE id = ${endpointId}`)
      // The streak started long ago: a failure days ago, then nothing to send (an idle endpoint),
      // then one failure. Disabling at it lost the retry that would have been answered.
      yield* sql`UPDATE webhook_endpoints SET failing_since = clock_timestamp() - interval '6 days' WHERE id = ${endpointId}`
      yield* enqueue(paymentEvent(merchantId, yield* newPaymentId, 1))
      yield* drain
      assert.deepStrictEqual(yield* endpointState, { status: "enabled", disabled_reason: null }, "one failure with retries left disables nothing")
      assert.strictEqual(receiver.received.length, 2, "the retry was sent, and answered")
      // Failing every attempt of a delivery (its retries exhausted) with the streak overdue: disabled.
      const failing = yield* startReceiver(() => ({ status: 500 }))
      yield* sql`UPDATE webhook_endpoints SET url = ${failing.url} WHERE id = ${endpointId}`
      yield* sql`UPDATE webhook_endpoints SET failing_since = clock_timestamp() - interval '6 days' WHERE id = ${endpointId}`
      yield* enqueue(paymentEvent(merchantId, yield* newPaymentId, 1))
      yield* drain
      assert.deepStrictEqual(yield* endpointState, { status: "disabled", disabled_reason: "failing" })
      assert.strictEqual(failing.received.length, senderOptions.retrySchedule_ms.length, "every attempt of the delivery, then disabled")
    })))

  it.effect("an endpoint disabled for failing keeps its events queued (pending, unsent) for 30 days; enabled again, it receives them", () =>
    Effect.scoped(Effect.gen(function* () {
      let up = false
      const receiver = yield* startReceiver(() => (up ? ok : { status: 500 }))
      const { merchantId, endpointId } = yield* setUp(receiver.url)
      const sql = yield* SqlClient.SqlClient
      yield* sql`UPDATE webhook_endpoints SET failing_since = clock_timestamp() - interval '6 days' WHERE id = ${endpointId}`
      const paymentId = yield* newPaymentId
      yield* enqueue(paymentEvent(merchantId, paymentId, 1))
      yield* drain
      assert.deepStrictEqual(yield* endpointRow(sql`SELECT status, disabled_reason FROM webhook_endpoints WHERE id = ${endpointId}`), { status: "disabled", disabled_reason: "failing" })
      const during = paymentEvent(merchantId, paymentId, 2)
      assert.strictEqual(yield* enqueue(during), 1, "an event of the outage is queued for the endpoint")
      yield* drain
      // The first event's every attempt (its retries exhausted: that disabled the endpoint), nothing of the second.
      assert.strictEqual(receiver.received.length, senderOptions.retrySchedule_ms.length, "and not sent while the endpoint is disabled")
      up = true
      const endpoints = yield* WebhookEndpoints
      yield* endpoints.enable(merchantId, endpointId)
      yield* drain
      assert.includeMembers(receiver.received.map((request) => request.id), [during.eventId], "enabled again, it receives the outage's event")
      // Past the bound, a failing endpoint gets nothing new.
      yield* sql`UPDATE webhook_endpoints SET status = 'disabled', disabled_reason = 'failing', disabled_at = clock_timestamp() - interval '31 days' WHERE id = ${endpointId}`
      assert.strictEqual(yield* enqueue(paymentEvent(merchantId, paymentId, 3)), 0)
    })))

  it.effect("a redirect is not followed (the attempt fails as a 3xx and is retried), and a huge answer is read only up to the bound", () =>
    Effect.scoped(Effect.gen(function* () {
      const elsewhere = yield* startReceiver(() => ok)
      const receiver = yield* startReceiver((request) =>
        request.seenBefore === 0 ? { status: 307, headers: { location: elsewhere.url } } : { status: 500, body: "x".repeat(1_000_000) })
      const { merchantId } = yield* setUp(receiver.url)
      const event = paymentEvent(merchantId, yield* newPaymentId, 1)
      yield* enqueue(event)
      yield* drain
      assert.strictEqual(elsewhere.received.length, 0, "the Location was never followed")
      const attempts = yield* attemptsOf(event.eventId)
      assert.deepStrictEqual(attempts.slice(0, 2).map((a) => [a.outcome, a.response_status]), [["retry", 307], ["retry", 500]])
      const sql = yield* SqlClient.SqlClient
      const excerpts = yield* decodeRows(Schema.Struct({ bytes: Schema.Int }))(sql`
        SELECT octet_length(response_body_excerpt)::int AS bytes FROM webhook_attempts a JOIN webhook_deliveries d ON d.id = a.delivery_id
        WHERE d.event_id = ${event.eventId}::uuid AND a.attempt_number = 2`)
      assert.strictEqual(excerpts[0]?.bytes, 1_024)
    })))

  it.effect("the consumer handler queues an event's deliveries inside the record's transaction: a rollback leaves none, a commit one", () =>
    Effect.scoped(Effect.gen(function* () {
      const receiver = yield* startReceiver(() => ok)
      const { merchantId, endpointId } = yield* setUp(receiver.url)
      const handler = yield* makeWebhookConsumerHandler
      const sql = yield* SqlClient.SqlClient
      const event = paymentEvent(merchantId, yield* newPaymentId, 1)
      const consumed = { envelope: { ce_id: event.eventId }, event: event.event }
      const rolledBack = yield* Effect.exit(sql.withTransaction(handler.apply(consumed).pipe(Effect.andThen(Effect.fail("the consumer's bookkeeping failed")))))
      assert.isTrue(rolledBack._tag === "Failure")
      assert.strictEqual((yield* deliveriesOf(endpointId)).length, 0)
      yield* sql.withTransaction(handler.apply(consumed))
      yield* sql.withTransaction(handler.apply(consumed))
      const rows = yield* deliveriesOf(endpointId)
      assert.deepStrictEqual(rows.map((row) => row.event_id), [event.eventId])
    })))

  it.effect("two senders at once: every event is sent exactly once, and each payment's events in order", () =>
    Effect.scoped(Effect.gen(function* () {
      // Slow enough answers that one sender claims while the other's requests are in flight.
      const receiver = yield* startReceiver(() => ({ status: 204, delay_ms: 30 }))
      const { merchantId } = yield* setUp(receiver.url)
      const payments = yield* Effect.forEach(Array.from({ length: 20 }, () => 0), () => newPaymentId)
      const events = payments.flatMap((paymentId) => [1, 2, 3].map((version) => paymentEvent(merchantId, paymentId, version)))
      for (const event of events) yield* enqueue(event)
      const sender = yield* WebhookSender
      yield* Effect.all([sender.drain(100), sender.drain(100)], { concurrency: 2 })
      const ids = receiver.received.map((r) => r.id)
      assert.strictEqual(ids.length, events.length, "no event sent twice")
      assert.strictEqual(new Set(ids).size, events.length, "none missing")
      for (const paymentId of payments) {
        const order = receiver.received
          .map((r) => JSON.parse(r.body) as { readonly data: { readonly payment_id: string; readonly version: number } })
          .filter((body) => body.data.payment_id === paymentId)
          .map((body) => body.data.version)
        assert.deepStrictEqual(order, [1, 2, 3], paymentId)
      }
    })))
})
