import { assert, it } from "@effect/vitest"
import { startThrowawayKafka } from "@pay/testkit"
import { Effect, Fiber, Metric } from "effect"
import { MerchantRepository } from "@pay/merchants"
import { PaymentRepository } from "../../src/index.ts"
import { outboxBacklogCount, outboxOldestUnpublishedAge } from "@pay/outbox/Publisher"
import {
  authorize,
  context,
  decodeAll,
  eventually,
  freshTopic,
  kcatReadAll,
  makePublisher,
  OutboxTestLayer,
  outboxRows,
  paymentInput,
  publisherOptions,
  settle,
  unpublishedCount
} from "./support.ts"
import { applyCommand } from "../support.ts"

it.live(
  "Kafka down (a throwaway broker, stopped): payments keep committing, the backlog gauges grow, and everything drains in per-payment order once the broker is back",
  () =>
    Effect.gen(function* () {
      const broker = yield* startThrowawayKafka()

      yield* Effect.gen(function* () {
        const { topic } = yield* freshTopic
        const payments = yield* PaymentRepository
        const merchant = yield* (yield* MerchantRepository).create("Kafka down merchant")
        const publisher = yield* makePublisher(publisherOptions(topic, { metricsInterval_ms: 100, backoffBase_ms: 50, backoffMax_ms: 500 }))
        const loop = yield* Effect.forkChild(publisher.run)
        const takeThrough = (count: number, amount_minor: number) =>
          Effect.forEach(
            Array.from({ length: count }, (_, index) => index),
            (index) =>
              Effect.gen(function* () {
                const payment = yield* payments.create(paymentInput(merchant, amount_minor + index), context)
                yield* payments.apply(merchant.id, payment.id, authorize, context)
                yield* applyCommand(merchant.id, payment.id, settle, context)
              }),
            { concurrency: 6, discard: true }
          )

        // Broker up: published as they commit.
        yield* takeThrough(10, 1_000)
        yield* eventually("first events published", Effect.map(unpublishedCount, (count) => count === 0), 15_000)

        yield* broker.stop

        // Broker down: the writes still commit (the request path never talks to Kafka) ...
        yield* takeThrough(40, 2_000)
        assert.strictEqual((yield* outboxRows).length, 150)
        assert.strictEqual(yield* unpublishedCount, 120)
        // ... the operators' gauges show the backlog and its age ...
        yield* eventually(
          "backlog gauge shows the 120 waiting events",
          Effect.map(Metric.value(outboxBacklogCount), (gauge) => gauge.value === 120),
          5_000
        )
        yield* Effect.sleep("300 millis")
        const age = yield* Metric.value(outboxOldestUnpublishedAge)
        assert.isAbove(age.value, 0.2, "seconds")
        // ... and the publisher keeps failing (each send fails within the client's bounded
        // retries), backing off, and recording why on the rows.
        yield* eventually(
          "the publisher reports failures and records them on the rows",
          Effect.gen(function* () {
            const status = yield* publisher.status
            const rows = yield* outboxRows
            return status.consecutiveFailures >= 2 && status.lastError !== null &&
              rows.some((row) => row.published_at === null && row.attempt_count >= 2)
          }),
          10_000
        )

        yield* broker.restart

        yield* eventually("backlog drained after the restart", Effect.map(unpublishedCount, (count) => count === 0), 30_000)
        yield* eventually("backlog gauge back to 0", Effect.map(Metric.value(outboxBacklogCount), (gauge) => gauge.value === 0), 5_000)
        yield* Fiber.interrupt(loop)

        const rows = yield* outboxRows
        const records = yield* decodeAll(yield* kcatReadAll(broker.brokers, topic))
        const ids = records.map((record) => record.envelope.ce_id)
        // Nothing lost; deduplicated by id (a failed send may have stored part of a batch), the
        // topic holds exactly the committed events.
        assert.deepStrictEqual([...new Set(ids)].sort(), rows.map((row) => row.id).sort())
        const firstSeen = records.filter((record, index) => ids.indexOf(record.envelope.ce_id) === index)
        const byPayment = new Map<string, Array<string>>()
        for (const record of firstSeen) byPayment.set(record.event.payment_id, [...(byPayment.get(record.event.payment_id) ?? []), record.event.type])
        assert.strictEqual(byPayment.size, 50)
        for (const [paymentId, types] of byPayment) {
          assert.deepStrictEqual(types, ["payment_created", "payment_authorized", "payment_settled"], paymentId)
        }
      }).pipe(Effect.provide(OutboxTestLayer(broker.brokers, "pay-test-down")))
    }),
  90_000
)
