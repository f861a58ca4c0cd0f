// A topic deleted and created again (an operator's mistake, a lost cluster restored empty): the
// stored offsets are the old log's, above the new log's end, and every new record sat below them,
// skipped as "behind" with a lag of 0 and nothing parked; the runbook's re-publication of the
// outbox was skipped the same way (outside fault review). The consumer now reads such a partition
// again from its start: new events are applied, re-published ones are duplicates (same ids).
import { assert, it } from "@effect/vitest"
import { KafkaAdmin } from "@pay/infra"
import { OutboxTopics } from "@pay/outbox/OutboxTopics"
import { Effect, Metric, Schedule } from "effect"
import { SqlClient } from "effect/sql"
import { consumerOffsetsRewound } from "../src/ConsumerModel.ts"
import { makeConsumerStore } from "../src/ConsumerStore.ts"
import { makeSettlementProjection } from "../src/SettlementProjection.ts"
import {
  ConsumerTestLayer,
  drainLive,
  eventMessage,
  expectedProjection,
  freshTopics,
  lifecycle,
  merchantId,
  projectionAsExpected,
  send,
  type TestEvent
} from "./support.ts"

const rewoundSoFar = Metric.value(Metric.withAttributes(consumerOffsetsRewound, { consumer: "settlement.g1" })).pipe(Effect.map((state) => state.count))

const payments = (merchant: string, count: number, base_minor: number) =>
  Array.from({ length: count }, (_, n) => lifecycle(merchant, "EUR", base_minor + n * 10, true))

/**
 * 30 payments consumed; the topic deleted and created again; `newPayments` payments and one old
 * settled event re-published under its id (the runbook's recovery re-queues outbox rows) sent to the
 * new log; consumed again. Every new event applied once, the re-published one a duplicate.
 */
const recreatedThen = (newPayments: number) =>
  Effect.gen(function* () {
    const topics = yield* freshTopics
    const sql = yield* SqlClient.SqlClient
    const store = makeConsumerStore(sql)
    const projection = makeSettlementProjection(sql)
    const merchant = merchantId()

    const before = payments(merchant, 30, 1_000)
    const beforeEvents: ReadonlyArray<TestEvent> = before.flat().map((payload) => eventMessage(topics.topic, payload))
    yield* send(beforeEvents)
    yield* drainLive(topics)
    const storedBefore = (yield* store.offsets("settlement.g1")).filter((row) => row.topic === topics.topic)

    // Deleted and created again (deletion is asynchronous: creation is retried, bounded).
    const admin = yield* KafkaAdmin
    yield* admin.deleteTopics([topics.topic])
    yield* OutboxTopics.ensure(topics.prefix).pipe(
      Effect.flatMap((ready) => (ready.created ? Effect.void : Effect.fail(new Error("the old topic is still there")))),
      Effect.retry({ schedule: Schedule.spaced("500 millis"), times: 40 })
    )

    const after = payments(merchant, newPayments, 9_000)
    const republished = beforeEvents.find((event) => event.payload["type"] === "payment_settled")
    if (republished === undefined) return assert.fail("no settled event")
    yield* send([...after.flat().map((payload) => eventMessage(topics.topic, payload)), republished])
    const rewoundBefore = yield* rewoundSoFar
    yield* drainLive(topics)
    assert.isAbove((yield* rewoundSoFar) - rewoundBefore, 0, "consumer_offsets_rewound_total did not move (ConsumerTopicRecreated reads it)")

    const settled = [...before, ...after].map(([, , last]) => last)
    assert.deepStrictEqual(projectionAsExpected(yield* projection.rows(1)), expectedProjection(settled), "the new log's payments are in the projection, the re-published one once")
    const counters = (yield* store.offsets("settlement.g1")).filter((row) => row.topic === topics.topic)
    assert.strictEqual(counters.reduce((sum, row) => sum + row.applied_count, 0n), BigInt(beforeEvents.length + newPayments * 3))
    assert.strictEqual(counters.reduce((sum, row) => sum + row.duplicate_count, 0n), 1n)
    return storedBefore
  }).pipe(Effect.provide(ConsumerTestLayer("pay-test-topic-recreated")))

it.live("after the topic is deleted and created again, new events are applied (not skipped as behind) and re-published ones stay applied once", () =>
  Effect.gen(function* () {
    const storedBefore = yield* recreatedThen(2)
    // The new log (7 records) ends below every old stored offset: seen even without the topic's id.
    assert.isAbove(Math.min(...storedBefore.map((row) => Number(row.next_offset))), 7)
  }), { timeout: 120_000 })

it.live("a re-created topic refilled past the old offsets before the consumer subscribes again is seen by its id: nothing below the old offsets is skipped", () =>
  // 60 payments: 181 records, past the ~30 records each partition held before.
  recreatedThen(60).pipe(Effect.asVoid), { timeout: 120_000 })
