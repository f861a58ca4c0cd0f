// A partition's polled records go in ONE transaction (issue 14: throughput); a handler failing
// inside it rolls the whole batch back and its records are handled one transaction each, so a
// poison record in the middle is retried and parked exactly as before while the others are
// applied exactly once. Real Postgres; records handed to the partition handler directly. Which
// transaction wrote a row is read from Postgres itself (`xmin`), not from the code.
import { assert, it } from "@effect/vitest"
import { decodeRows } from "@pay/infra"
import { makeTestDatabase } from "@pay/testkit"
import { Cause, Effect, Exit, Metric, Schema } from "effect"
import { SqlClient } from "effect/sql"
import { consumerRecords } from "../src/ConsumerModel.ts"
import { makeConsumerStore } from "../src/ConsumerStore.ts"
import { makeDeadLetters } from "../src/DeadLetters.ts"
import { makePartitionHandler } from "../src/PartitionBatch.ts"
import { makeRecordProcessor } from "../src/RecordProcessor.ts"
import { makeSettlementProjection } from "../src/SettlementProjection.ts"
import { eventMessage, expectedProjection, lifecycle, merchantId, projectionAsExpected, recordsOf, testOptions } from "./support.ts"

const topic = "batch-test.payments.events"


const Transactions = Schema.Struct({ transactions: Schema.BigInt, rows: Schema.BigInt })

it.live("a batch commits once; a poison record in the middle rolls it back, the others are applied exactly once and the poison one is parked", () =>
  Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    const projection = makeSettlementProjection(sql)
    const settings = { handler: projection.handler(1), dlqTopic: null, options: { ...testOptions, transactionRecords_max: 100 } }
    const handlePartition = yield* makePartitionHandler(settings, yield* makeRecordProcessor(settings))
    const store = makeConsumerStore(sql)
    const writers = (offsetFrom: bigint, offsetTo: bigint) =>
      decodeRows(Transactions)(sql`
        SELECT count(DISTINCT xmin::text)::bigint AS transactions, count(*)::bigint AS rows FROM processed_events
        WHERE consumer = 'settlement.g1' AND "offset" BETWEEN ${offsetFrom} AND ${offsetTo}`).pipe(Effect.map((rows) => rows[0]))
    const merchant = merchantId()
    const settled: Array<Record<string, unknown>> = []
    const eventsOf = (count: number, from: number) =>
      Array.from({ length: count }, (_, n) => lifecycle(merchant, "EUR", 1_000 + (from + n) * 7, true)).flatMap((payloads) => {
        settled.push(payloads[2])
        return payloads.map((payload) => eventMessage(topic, payload))
      })

    // A clean batch: twelve records (one a partial capture: gross is the captured amount), one
    // duplicate (same ce_id again) and one stale copy (new id, old version).
    const [createdPartial, authorizedPartial, settledFull] = lifecycle(merchant, "EUR", 9_000, true)
    const settledPartial = { ...settledFull, captured_amount_minor: 6_000, fee_minor: 120, net_minor: 5_880 }
    settled.push({ ...settledPartial, amount_minor: 6_000 })
    const clean = [...eventsOf(3, 0), ...[createdPartial, authorizedPartial, settledPartial].map((payload) => eventMessage(topic, payload))]
    const first = clean[0]
    if (first === undefined) return assert.fail("no events")
    const cleanBatch = [...clean, eventMessage(topic, first.payload, first.eventId), eventMessage(topic, first.payload)]
    yield* handlePartition(recordsOf(topic, cleanBatch, 0n))
    assert.deepStrictEqual(yield* writers(0n, 13n), { transactions: 1n, rows: 13n }, "the whole batch in one transaction (the duplicate writes no row)")

    // A batch with a poison record in the middle: payment_settled whose fee + net is not the amount.
    const before = eventsOf(3, 4)
    const after = eventsOf(3, 7)
    const [, , poisonSettled] = lifecycle(merchant, "EUR", 5_000, true)
    const poison = eventMessage(topic, { ...poisonSettled, fee_minor: 1 })
    const mixed = [...before, poison, ...after]
    yield* handlePartition(recordsOf(topic, mixed, 14n))
    const fallback = yield* writers(14n, 14n + BigInt(mixed.length) - 1n)
    assert.deepStrictEqual(fallback, { transactions: BigInt(mixed.length - 1), rows: BigInt(mixed.length - 1) }, "rolled back, then one transaction per record")

    assert.deepStrictEqual(projectionAsExpected(yield* projection.rows(1)), expectedProjection(settled))
    const [offsets] = yield* store.offsets("settlement.g1")
    assert.strictEqual(offsets?.next_offset, 14n + BigInt(mixed.length))
    assert.deepStrictEqual(
      [offsets?.applied_count, offsets?.duplicate_count, offsets?.stale_count, offsets?.parked_count],
      [BigInt(clean.length + mixed.length - 1), 1n, 1n, 1n]
    )
    const parked = yield* makeDeadLetters(sql).list({ includeRedriven: false, limit: 10 })
    assert.deepStrictEqual(parked.map((letter) => letter.event_id), [poison.eventId])
    assert.strictEqual(parked[0]?.attempt_count, testOptions.attempt_max, "retried with the per-record bounds, then parked")
    assert.match(parked[0]?.error ?? "", /fee 1 \+ net/)

    // Redelivered (a Kafka commit lost): every record is behind the stored offset, nothing changes.
    yield* handlePartition(recordsOf(topic, [...cleanBatch, ...mixed], 0n))
    assert.deepStrictEqual(projectionAsExpected(yield* projection.rows(1)), expectedProjection(settled))
    const [again] = yield* store.offsets("settlement.g1")
    assert.deepStrictEqual(again, offsets)
  }).pipe(Effect.provide(makeTestDatabase({ maxConnections: 2 }))))

it.live("a slice interrupted right after its COMMIT still counts its records in consumer_records_total (a subscription restart there dropped the count)", () =>
  Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    const projection = makeSettlementProjection(sql)
    // A generation of its own, so that the counter's series is this test's alone.
    const handler = projection.handler(7)
    const applied = Metric.value(Metric.withAttributes(consumerRecords, { consumer: handler.name, outcome: "applied" })).pipe(Effect.map((state) => state.count))
    const before = yield* applied
    // The interruption arrives as the transaction commits: the fault after it interrupts the fiber.
    const settings = {
      handler, dlqTopic: null, options: { ...testOptions, transactionRecords_max: 100 },
      faults: { afterTransaction: () => Effect.interrupt }
    }
    const handlePartition = yield* makePartitionHandler(settings, yield* makeRecordProcessor(settings))
    const events = lifecycle(merchantId(), "EUR", 2_500, true).map((payload) => eventMessage(topic, payload))
    const exit = yield* Effect.exit(handlePartition(recordsOf(topic, events, 0n)))
    assert.isTrue(Exit.isFailure(exit) && Cause.hasInterruptsOnly(exit.cause), "interrupted after the commit")
    const [stored] = yield* makeConsumerStore(sql).offsets(handler.name)
    assert.strictEqual(stored?.applied_count, 3n, "committed")
    assert.strictEqual((yield* applied) - before, 3, "and counted")
  }).pipe(Effect.provide(makeTestDatabase({ maxConnections: 2 }))))
