import { assert, it } from "@effect/vitest"
import { PAYMENT_EVENT_SCHEMA_VERSION } from "@pay/domain"
import { Effect, Fiber, Schema } from "effect"
import { describe } from "vitest"
import { SqlClient } from "effect/sql"
import { defaultKafkaProducerLimits, KafkaProducer, decodeRows } from "@pay/infra"
import { MerchantRepository } from "@pay/merchants"
import { PaymentRepository } from "../../src/index.ts"
import { cloudEventsSource } from "@pay/outbox/CloudEvents"
import { paymentsEventsPartitions } from "@pay/outbox/OutboxTopics"
import {
  authorize,
  context,
  decodeAll,
  drain,
  eventually,
  freshTopic,
  kcatReadAll,
  makePublisher,
  OutboxTestLayer,
  outboxRows,
  paymentInput,
  publisherOptions,
  run,
  settle,
  silentBroker,
  unpublishedCount
} from "./support.ts"
import { applyCommand } from "../support.ts"

class Rollback extends Schema.TaggedError<Rollback>()("Rollback", {}) {}

const eventTypesInOrder = ["payment_created", "payment_authorized", "payment_settled"]

/** Each test on a database of its own and a topic of its own, so that counts are exact. */
const onFreshDatabase = <A, E, R>(effect: Effect.Effect<A, E, R>) =>
  Effect.provide(effect, OutboxTestLayer(run.kafkaBrokers, "pay-test-outbox"))

describe("outbox publisher (real Postgres, real Kafka)", () => {
  it.live("a committed payment_created is published once, with the payment id as key, CloudEvents headers and the JSON payload (read back with kcat)", () =>
    onFreshDatabase(Effect.gen(function* () {
      const { topic, partitions } = yield* freshTopic
      assert.isAtLeast(partitions, 3)
      const merchant = yield* (yield* MerchantRepository).create("Outbox merchant")
      const payment = yield* (yield* PaymentRepository).create(paymentInput(merchant, 123_456_789), context)
      const publisher = yield* makePublisher(publisherOptions(topic))

      const first = yield* publisher.publishBatch
      assert.strictEqual(first.published, 1)
      // Marked only after the ack, and never sent twice: the next round has nothing to claim.
      const second = yield* publisher.publishBatch
      assert.strictEqual(second.claimed, 0)

      const [row] = yield* outboxRows
      assert.isDefined(row)
      if (row === undefined) return
      assert.isNotNull(row.published_at)
      assert.strictEqual(row.attempt_count, 1)

      const records = yield* kcatReadAll(run.kafkaBrokers, topic)
      assert.strictEqual(records.length, 1, "exactly one record on the topic")
      const record = records[0]
      assert.isDefined(record)
      if (record === undefined) return
      assert.strictEqual(record.key, payment.id)
      const { ce_time, ...stable } = record.headers
      assert.deepStrictEqual(stable, {
        ce_id: row.id,
        ce_source: cloudEventsSource,
        ce_type: "payment_created",
        ce_specversion: "1.0",
        ce_subject: `payment/${payment.id}`,
        ce_eventversion: String(PAYMENT_EVENT_SCHEMA_VERSION),
        "content-type": "application/json",
        correlation_id: context.correlationId,
        traceparent: context.traceparent ?? ""
      })
      assert.isTrue(ce_time !== undefined && !Number.isNaN(Date.parse(ce_time)), `ce_time ${String(ce_time)} is an instant`)

      // Money stays an integer number of minor units in the JSON (not a string, not a float).
      const json: unknown = JSON.parse(record.value)
      assert.deepInclude(json, { type: "payment_created", payment_id: payment.id, merchant_id: merchant.id, amount_minor: 123_456_789, currency: "EUR", status: "CREATED", version: 1 })
      const [decoded] = yield* decodeAll(records)
      assert.strictEqual(decoded?.event.amount_minor, 123_456_789n)
      assert.strictEqual(decoded?.envelope.ce_id, row.id)
    })))

  it.live("a rolled-back transaction produces no event, ever: no outbox row exists to be published", () =>
    onFreshDatabase(Effect.gen(function* () {
      const { topic } = yield* freshTopic
      const sql = yield* SqlClient.SqlClient
      const payments = yield* PaymentRepository
      const merchant = yield* (yield* MerchantRepository).create("Rollback merchant")
      const kept = yield* payments.create(paymentInput(merchant), context)
      yield* payments.apply(merchant.id, kept.id, authorize, context)
      const before = (yield* outboxRows).length

      // A create and a transition, each inside an outer transaction that then fails: the
      // repository's writes (payment, history, outbox row) are rolled back with it.
      const failedCreate = yield* sql
        .withTransaction(
          Effect.gen(function* () {
            yield* payments.create(paymentInput(merchant, 777), context)
            return yield* new Rollback()
          })
        )
        .pipe(Effect.flip)
      assert.strictEqual(failedCreate._tag, "Rollback")
      const failedSettle = yield* sql
        .withTransaction(
          Effect.gen(function* () {
            yield* payments.apply(merchant.id, kept.id, settle, context)
            return yield* new Rollback()
          })
        )
        .pipe(Effect.flip)
      assert.strictEqual(failedSettle._tag, "Rollback")
      assert.strictEqual((yield* outboxRows).length, before, "rolled-back changes left no outbox row")

      // The publisher runs (loop, LISTEN and polling) for a while: only the committed events arrive.
      const publisher = yield* makePublisher(publisherOptions(topic))
      const loop = yield* Effect.forkChild(publisher.run)
      yield* eventually("outbox drained", Effect.map(unpublishedCount, (count) => count === 0), 10_000)
      yield* Effect.sleep("300 millis") // a few more polls: nothing else may show up
      yield* Fiber.interrupt(loop)

      const records = yield* decodeAll(yield* kcatReadAll(run.kafkaBrokers, topic))
      assert.deepStrictEqual(
        records.map((record) => [record.event.type, record.event.payment_id]),
        [["payment_created", kept.id], ["payment_authorized", kept.id]]
      )
      assert.notInclude(records.map((record) => Number(record.event.amount_minor)), 777)
      const status = yield* (yield* PaymentRepository).findById(merchant.id, kept.id)
      assert.strictEqual(status.status, "AUTHORIZED")
    })))

  it.live(
    "order: 500 payments taken through create → authorize → settle while two publishers run; kcat reads every event once, by id, each payment's in order on one partition",
    () =>
      onFreshDatabase(Effect.gen(function* () {
        const { topic } = yield* freshTopic
        const payments = yield* PaymentRepository
        const merchant = yield* (yield* MerchantRepository).create("Order merchant")
        const paymentCount = 500
        // Each payment's three transitions in sequence (as the API would), 12 payments at a time.
        const takeThrough = (indexes: ReadonlyArray<number>) =>
          Effect.forEach(
            indexes,
            (index) =>
              Effect.gen(function* () {
                const payment = yield* payments.create(paymentInput(merchant, 1_000 + index), context)
                yield* payments.apply(merchant.id, payment.id, authorize, context)
                yield* applyCommand(merchant.id, payment.id, settle, context)
              }),
            { concurrency: 12, discard: true }
          )
        const started_ms = Date.now()
        // The first half waits as a backlog, so that the two publishers compete for the same rows
        // (a payment's three events sit a few dozen positions apart, across batch boundaries):
        // without the per-payment claim guard one instance would send a payment_authorized while
        // the other still holds its payment_created. The second half is written while they run.
        yield* takeThrough(Array.from({ length: paymentCount / 2 }, (_, index) => index))
        // Small batches so that both publishers get work and the guard is hit.
        const first = yield* makePublisher(publisherOptions(topic, { batchSize: 25 }))
        const second = yield* makePublisher(publisherOptions(topic, { batchSize: 25 }))
        const loops = [yield* Effect.forkChild(first.run), yield* Effect.forkChild(second.run)]
        yield* takeThrough(Array.from({ length: paymentCount / 2 }, (_, index) => paymentCount / 2 + index))
        const written_ms = Date.now() - started_ms
        yield* eventually("outbox drained", Effect.map(unpublishedCount, (count) => count === 0), 20_000)
        const drained_ms = Date.now() - started_ms
        for (const loop of loops) yield* Fiber.interrupt(loop)

        const rows = yield* outboxRows
        assert.strictEqual(rows.length, paymentCount * 3)
        const records = yield* kcatReadAll(run.kafkaBrokers, topic)
        const decoded = yield* decodeAll(records)

        // One for one by id: every committed event once, nothing else (no crash: no duplicate).
        assert.strictEqual(records.length, rows.length)
        assert.deepStrictEqual(
          decoded.map((record) => record.envelope.ce_id).sort(),
          rows.map((row) => row.id).sort()
        )
        // Per payment: one partition, offsets increasing, types and versions in commit order.
        const byPayment = new Map<string, Array<{ partition: number; offset: number; type: string; version: number }>>()
        decoded.forEach((record, index) => {
          const raw = records[index]
          if (raw === undefined) return
          const list = byPayment.get(record.event.payment_id) ?? []
          list.push({ partition: raw.partition, offset: raw.offset, type: record.event.type, version: record.event.version })
          byPayment.set(record.event.payment_id, list)
        })
        assert.strictEqual(byPayment.size, paymentCount)
        const partitionsUsed = new Set<number>()
        for (const [paymentId, events] of byPayment) {
          const partitions = new Set(events.map((event) => event.partition))
          assert.strictEqual(partitions.size, 1, `${paymentId} spread over partitions ${[...partitions].join(",")}`)
          for (const partition of partitions) partitionsUsed.add(partition)
          const inOffsetOrder = [...events].sort((a, b) => a.offset - b.offset)
          assert.deepStrictEqual(inOffsetOrder.map((event) => event.type), eventTypesInOrder, `${paymentId} out of order`)
          assert.deepStrictEqual(inOffsetOrder.map((event) => event.version), [1, 2, 3])
        }
        assert.strictEqual(partitionsUsed.size, paymentsEventsPartitions, "the keys spread over every partition")

        // Both instances published, and together exactly once per event.
        const firstStatus = yield* first.status
        const secondStatus = yield* second.status
        assert.strictEqual(firstStatus.publishedCount + secondStatus.publishedCount, rows.length)
        assert.isAbove(firstStatus.publishedCount, 0)
        assert.isAbove(secondStatus.publishedCount, 0)
        yield* Effect.logInfo(`500 payments: written in ${written_ms} ms, drained ${drained_ms} ms after start`)
      }))
  )

  it.live("a batch whose send fails is released with its failure recorded, and meanwhile no other publisher overtakes that payment's earlier event", () =>
    onFreshDatabase(Effect.gen(function* () {
      const { topic } = yield* freshTopic
      const sql = yield* SqlClient.SqlClient
      const payments = yield* PaymentRepository
      const merchant = yield* (yield* MerchantRepository).create("Failing send merchant")
      // Outbox order: x created, y created, x authorized.
      const x = yield* payments.create(paymentInput(merchant, 10), context)
      const y = yield* payments.create(paymentInput(merchant, 20), context)
      yield* payments.apply(merchant.id, x.id, authorize, context)

      // Publisher 1's producer talks to a hung broker: its send times out (bounded), while it
      // holds x's payment_created (batch of one).
      const hung = yield* silentBroker
      // Made in the test's scope (a layer provided to `make` alone would close with it).
      const hungProducer = yield* KafkaProducer.make({
        ...defaultKafkaProducerLimits,
        brokers: `127.0.0.1:${hung.port}`,
        clientId: "pay-test-hung",
        connectTimeout_ms: 1_000,
        requestTimeout_ms: 1_000,
        operationTimeout_ms: 2_500
      })
      const stuck = yield* makePublisher(publisherOptions(topic, { batchSize: 1 })).pipe(Effect.provideService(KafkaProducer, hungProducer))
      const healthy = yield* makePublisher(publisherOptions(topic))
      const failing = yield* Effect.forkChild(Effect.flip(stuck.publishBatch))
      yield* eventually(
        "publisher 1 holds its claim (idle in transaction after the claim query)",
        Effect.map(
          decodeRows(Schema.Struct({ count: Schema.BigInt }))(sql`
            SELECT count(*)::bigint AS count FROM pg_stat_activity
            WHERE datname = current_database() AND state = 'idle in transaction' AND query LIKE '%SKIP LOCKED%'`),
          (rows) => (rows[0]?.count ?? 0n) === 1n
        ),
        5_000
      )

      // Publisher 2 takes y's event, but not x's payment_authorized: x's payment_created is not out.
      const meanwhile = yield* healthy.publishBatch
      assert.strictEqual(meanwhile.published, 1)

      const error = yield* Fiber.join(failing)
      assert.strictEqual(error._tag, "KafkaError")
      const rows = yield* decodeRows(Schema.Struct({ aggregate_id: Schema.String, event_type: Schema.String, attempt_count: Schema.Number, last_error: Schema.NullOr(Schema.String), published: Schema.Boolean }))(sql`
        SELECT aggregate_id, event_type, attempt_count, last_error, published_at IS NOT NULL AS published
        FROM outbox_events ORDER BY position`)
      assert.deepStrictEqual(
        rows.map((row) => [row.aggregate_id, row.event_type, row.attempt_count, row.published]),
        [[x.id, "payment_created", 1, false], [y.id, "payment_created", 1, true], [x.id, "payment_authorized", 0, false]]
      )
      assert.include(rows[0]?.last_error ?? "", error._tag === "KafkaError" ? error.code : "not a KafkaError")

      assert.strictEqual(yield* drain(healthy), 2)
      const decoded = yield* decodeAll(yield* kcatReadAll(run.kafkaBrokers, topic))
      assert.deepStrictEqual(
        decoded.filter((record) => record.event.payment_id === x.id).map((record) => record.event.type),
        ["payment_created", "payment_authorized"]
      )
      assert.strictEqual(decoded.length, 3)
    })))

  it.live("two publishers at once on a backlog: every event is published, none lost, none sent twice", () =>
    onFreshDatabase(Effect.gen(function* () {
      const { topic } = yield* freshTopic
      const payments = yield* PaymentRepository
      const merchant = yield* (yield* MerchantRepository).create("Two publishers merchant")
      // The backlog exists before either publisher starts: they compete for the same rows.
      yield* Effect.forEach(
        Array.from({ length: 120 }, (_, index) => index),
        (index) =>
          Effect.gen(function* () {
            const payment = yield* payments.create(paymentInput(merchant, 50 + index), context)
            if (index % 2 === 0) yield* payments.apply(merchant.id, payment.id, authorize, context)
          }),
        { concurrency: 8, discard: true }
      )
      const total = (yield* outboxRows).length
      assert.strictEqual(total, 180)

      const first = yield* makePublisher(publisherOptions(topic, { batchSize: 10 }))
      const second = yield* makePublisher(publisherOptions(topic, { batchSize: 10 }))
      // One batch each, at once: with 180 rows waiting, each claims rows of its own (SKIP LOCKED),
      // so both publish, whatever the timing; then both drain the rest side by side.
      const [firstBatch, secondBatch] = yield* Effect.all([first.publishBatch, second.publishBatch], { concurrency: 2 })
      assert.isAbove(firstBatch.published, 0, "the first publisher published")
      assert.isAbove(secondBatch.published, 0, "the second publisher published")
      const [publishedByFirst, publishedBySecond] = yield* Effect.all([drain(first), drain(second)], { concurrency: 2 })
      // `drain` stops at the first round that claims nothing, and with two publishers a round can
      // claim nothing while rows remain: its candidates' earlier events are counted as unpublished
      // in the statement's snapshot although the other publisher committed them meanwhile, so
      // they are held back (the order rule), unlocked, for the next poll. The publisher's loop
      // polls again; here one more drain, alone, is that next poll.
      const publishedAfter = yield* drain(first)
      assert.strictEqual(firstBatch.published + secondBatch.published + publishedByFirst + publishedBySecond + publishedAfter, total)
      // Whatever one drained after the other stopped is still unpublished for nobody.
      assert.strictEqual(yield* unpublishedCount, 0)

      const decoded = yield* decodeAll(yield* kcatReadAll(run.kafkaBrokers, topic))
      const ids = decoded.map((record) => record.envelope.ce_id)
      assert.strictEqual(new Set(ids).size, ids.length, "no id twice")
      assert.deepStrictEqual(ids.sort(), (yield* outboxRows).map((row) => row.id).sort())
    })))
})
