// A replay used to bring back what an operator had dismissed: generation N+1 re-reads a poison
// record that `dlq dismiss` closed for generation N, parks it again as a new OPEN row (in `dlq
// list`, sent to the DLQ topic, counted in consumer_parked_total: ConsumerRecordsParked fires for a
// known record). Now the re-read record is stored dismissed at once, naming the generation that
// dismissed it, with no parked count; a record that was parked and not dismissed parks again, open.
// The same for the consumer itself after a backward `consumers reset` (it used to re-park a record
// it had dismissed: counted, paged, while `dlq list` showed nothing).
// The settlement projection's record processor, on a real Postgres, records as Kafka gives them.
import { assert, it } from "@effect/vitest"
import { type KafkaRecord } from "@pay/infra"
import { makeTestDatabase } from "@pay/testkit"
import { Effect, Metric } from "effect"
import { SqlClient } from "effect/sql"
import { consumerParked } from "../src/ConsumerModel.ts"
import { makeConsumerStore } from "../src/ConsumerStore.ts"
import { makeDeadLetters } from "../src/DeadLetters.ts"
import { makeRecordProcessor } from "../src/RecordProcessor.ts"
import { makeSettlementProjection } from "../src/SettlementProjection.ts"
import { eventMessage, lifecycle, merchantId, recordsOf, testOptions } from "./support.ts"

const topic = "dismissed-replay.payments.events"

const parkedCount = (consumer: string) =>
  Metric.value(Metric.withAttributes(consumerParked, { consumer })).pipe(Effect.map((state) => state.count))

it.effect("a record dismissed for generation 1 is stored dismissed when generation 2 re-reads it: not open, not counted as parked; an undismissed one parks again", () =>
  Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    const letters = makeDeadLetters(sql)
    const projection = makeSettlementProjection(sql)
    const processorOf = (generation: number) =>
      makeRecordProcessor({ handler: projection.handler(generation), dlqTopic: null, options: testOptions })
    const [good] = recordsOf(topic, lifecycle(merchantId(), "EUR", 1_200, true).slice(0, 1).map((payload) => eventMessage(topic, payload)))
    if (good === undefined) return assert.fail("no record")
    const poison = (offset: bigint): KafkaRecord => ({ ...good, offset, value: "{not json", value_bytes: new TextEncoder().encode("{not json") })
    const dismissedPoison = poison(1n)
    const openPoison = poison(2n)

    const first = yield* processorOf(1)
    assert.deepStrictEqual(
      [yield* first.handle(good), yield* first.handle(dismissedPoison), yield* first.handle(openPoison)],
      ["applied", "parked", "parked"]
    )
    const [toDismiss] = (yield* letters.list({ consumer: "settlement.g1", includeRedriven: false, limit: 10 })).filter((row) => row.offset === 1n)
    assert.isTrue(yield* letters.dismiss(toDismiss?.id ?? assert.fail("not parked"), "a test event sent by hand"))

    // The replay: generation 2 reads the partition from offset 0.
    const second = yield* processorOf(2)
    const parkedBefore = yield* parkedCount("settlement.g2")
    assert.deepStrictEqual(
      [yield* second.handle(good), yield* second.handle(dismissedPoison), yield* second.handle(openPoison)],
      ["applied", "dismissed", "parked"]
    )
    assert.strictEqual((yield* parkedCount("settlement.g2")) - parkedBefore, 1, "only the undismissed record counts as parked")
    const open = yield* letters.list({ consumer: "settlement.g2", includeRedriven: false, limit: 10 })
    assert.deepStrictEqual(open.map((row) => row.offset), [2n], "dlq list shows only the record nobody dismissed")
    const all = yield* letters.list({ consumer: "settlement.g2", includeRedriven: true, limit: 10 })
    const carried = all.find((row) => row.offset === 1n)
    assert.strictEqual(carried?.dismiss_reason, "dismissed for settlement.g1: a test event sent by hand")
    assert.isNotNull(carried?.dismissed_at ?? null)
  }).pipe(Effect.provide(makeTestDatabase({ maxConnections: 2 }))))

it.effect("after a backward reset, the same consumer re-reads a record it had dismissed: dismissed again, not counted, not open; one it had parked and left open parks again", () =>
  Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    const letters = makeDeadLetters(sql)
    const processor = yield* makeRecordProcessor({ handler: makeSettlementProjection(sql).handler(1), dlqTopic: null, options: testOptions })
    const [good] = recordsOf(topic, lifecycle(merchantId(), "EUR", 1_300, true).slice(0, 1).map((payload) => eventMessage(topic, payload)))
    if (good === undefined) return assert.fail("no record")
    const poison = (offset: bigint): KafkaRecord => ({ ...good, offset, value: "{not json", value_bytes: new TextEncoder().encode("{not json") })
    assert.deepStrictEqual([yield* processor.handle(good), yield* processor.handle(poison(1n)), yield* processor.handle(poison(2n))], ["applied", "parked", "parked"])
    const [toDismiss] = (yield* letters.list({ consumer: "settlement.g1", includeRedriven: false, limit: 10 })).filter((row) => row.offset === 1n)
    assert.isTrue(yield* letters.dismiss(toDismiss?.id ?? assert.fail("not parked"), "sent by hand"))

    // `pnpm cli consumers reset settlement.g1 0`: the stored offsets go back, the records are read again.
    yield* makeConsumerStore(sql).resetOffsets("settlement.g1", topic, 1, 0n)
    const parkedBefore = yield* parkedCount("settlement.g1")
    assert.deepStrictEqual([yield* processor.handle(good), yield* processor.handle(poison(1n)), yield* processor.handle(poison(2n))], ["duplicate", "dismissed", "parked"])
    assert.strictEqual((yield* parkedCount("settlement.g1")) - parkedBefore, 1, "only the open record counts as parked again")
    const open = yield* letters.list({ consumer: "settlement.g1", includeRedriven: false, limit: 10 })
    assert.deepStrictEqual(open.map((row) => row.offset), [2n], "dlq list shows the open record; the dismissed one stays dismissed")
  }).pipe(Effect.provide(makeTestDatabase({ maxConnections: 2 }))))
