import { assert, it } from "@effect/vitest"
import { KafkaAdmin, KafkaConsumer, decodeRows } from "@pay/infra"
import { Effect, Schema } from "effect"
import { SqlClient } from "effect/sql"
import type { SqlError } from "effect/sql/SqlError"
import { describe } from "vitest"
import { makeConsumerStore } from "../src/ConsumerStore.ts"
import { makeDeadLetters } from "../src/DeadLetters.ts"
import { redrive } from "../src/Redrive.ts"
import { rebuildSettlement } from "../src/SettlementConsumer.ts"
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
  type TestEvent,
  testOptions
} from "./support.ts"

const onFreshDatabase = <A, E, R>(effect: Effect.Effect<A, E, R>) => Effect.provide(effect, ConsumerTestLayer("pay-test-consumers"))

const sumCounters = (rows: ReadonlyArray<{ readonly applied_count: bigint; readonly duplicate_count: bigint; readonly stale_count: bigint; readonly parked_count: bigint }>) =>
  rows.reduce(
    (sum, row) => ({
      applied: sum.applied + row.applied_count,
      duplicate: sum.duplicate + row.duplicate_count,
      stale: sum.stale + row.stale_count,
      parked: sum.parked + row.parked_count
    }),
    { applied: 0n, duplicate: 0n, stale: 0n, parked: 0n }
  )

describe("settlement consumer (real Postgres, real Kafka)", () => {
  it.live("applies each event once: duplicates, stale and reordered deliveries change nothing; a poison record is parked and the partition goes on; a replay from offset 0 equals the live projection", () =>
    onFreshDatabase(Effect.gen(function* () {
      const topics = yield* freshTopics
      const merchants = [merchantId(), merchantId()]
      const settled: Array<Record<string, unknown>> = []
      const events: Array<TestEvent> = []
      let index = 0
      for (const merchant of merchants) {
        for (const currency of ["EUR", "JPY"]) {
          for (let n = 0; n < 4; n++) {
            index++
            const [created, authorized, last] = lifecycle(merchant, currency, 1_000 + index * 137, n !== 3)
            if (last.type === "payment_settled") settled.push(last)
            if (index === 5) {
              // Reordered: settled (v3) delivered before authorized (v2). v2 then is stale.
              events.push(eventMessage(topics.topic, created), eventMessage(topics.topic, last), eventMessage(topics.topic, authorized))
            } else {
              events.push(eventMessage(topics.topic, created), eventMessage(topics.topic, authorized), eventMessage(topics.topic, last))
            }
          }
        }
      }
      const half = Math.floor(events.length / 2)
      const firstSettled = events.find((event) => event.payload["type"] === "payment_settled")
      assert.isDefined(firstSettled)
      if (firstSettled === undefined) return
      // A poison record in the middle of a partition: the key of a real payment, a value that is not an event.
      const poison = eventMessage(topics.topic, { ...firstSettled.payload, amount_minor: "lots" })
      // A re-sent copy under a NEW id of an older event (version 2 of a settled payment): stale.
      const staleCopy = eventMessage(topics.topic, { ...firstSettled.payload, type: "payment_authorized", version: 2, status: "AUTHORIZED", previous_status: "CREATED", fee_minor: undefined, net_minor: undefined })
      // Re-sent with the SAME ids (the publisher's at-least-once): duplicates.
      const duplicates = events.filter((event) => event.payload["type"] === "payment_settled").slice(0, 4)
      yield* send([...events.slice(0, half), poison, ...events.slice(half), staleCopy, ...duplicates])

      const sql = yield* SqlClient.SqlClient
      const projection = makeSettlementProjection(sql)
      const store = makeConsumerStore(sql)
      yield* drainLive(topics)

      const live = yield* projection.rows(1)
      assert.deepStrictEqual(projectionAsExpected(live), expectedProjection(settled))
      const counters = sumCounters(yield* store.offsets("settlement.g1"))
      assert.deepStrictEqual(counters, { applied: BigInt(events.length - 1), duplicate: 4n, stale: 2n, parked: 1n })

      const parked = yield* makeDeadLetters(sql).list({ includeRedriven: false, limit: 10 })
      assert.strictEqual(parked.length, 1)
      assert.strictEqual(parked[0]?.event_id, poison.eventId)
      assert.match(parked[0]?.error ?? "", /undecodable/)
      assert.strictEqual(parked[0]?.headers["ce_type"], "payment_settled", "the original headers are kept")
      // The DLQ topic got the record too, with the error.
      const dlq = yield* (yield* KafkaConsumer).readFromBeginning({ topic: topics.dlqTopic, count: 1, timeout_ms: 10_000 })
      assert.strictEqual(dlq[0]?.headers["ce_id"], poison.eventId)
      assert.match(dlq[0]?.headers["dlq_error"] ?? "", /undecodable/)

      // Replay from offset 0 into a new generation: identical, then swapped in.
      const rebuilt = yield* rebuildSettlement({ ...topics, options: testOptions, timeout_ms: 40_000 })
      assert.deepStrictEqual({ previous: rebuilt.previous, generation: rebuilt.generation, swapped: rebuilt.swapped }, { previous: 1, generation: 2, swapped: true })
      assert.deepStrictEqual(yield* projection.rows(2), live)
      assert.deepStrictEqual(yield* projection.eventCounts(2), yield* projection.eventCounts(1))
      assert.strictEqual((yield* projection.live).generation, 2)

      // Everything delivered again (same ids): the live generation does not move.
      yield* send(events)
      yield* drainLive(topics)
      assert.deepStrictEqual(yield* projection.rows(2), live)
      const again = sumCounters(yield* store.offsets("settlement.g2"))
      assert.strictEqual(again.duplicate, 4n + BigInt(events.length))
    })))

  it.live("a record whose effect keeps failing is parked after the bounded retries, the partition goes on, and it is re-driven exactly once after the fix", () =>
    onFreshDatabase(Effect.gen(function* () {
      const topics = yield* freshTopics
      const sql = yield* SqlClient.SqlClient
      const victim = merchantId()
      const other = merchantId()
      // The "bug": the projection refuses this merchant's rows (a trigger, so the failure is real SQL).
      yield* sql.unsafe(`CREATE FUNCTION test_refuse() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN IF NEW.merchant_id = '${victim}' THEN RAISE EXCEPTION 'simulated bug'; END IF; RETURN NEW; END $$`)
      yield* sql.unsafe(`CREATE TRIGGER test_refuse BEFORE INSERT OR UPDATE ON settlement_projection FOR EACH ROW EXECUTE FUNCTION test_refuse()`)
      const victimEvents = lifecycle(victim, "EUR", 4_200, true)
      const otherFirst = lifecycle(other, "EUR", 1_000, true)
      const otherSecond = lifecycle(other, "EUR", 2_000, true)
      const otherEvents = [...otherFirst, ...otherSecond]
      yield* send([...victimEvents, ...otherEvents].map((payload) => eventMessage(topics.topic, payload)))
      yield* drainLive(topics)

      const deadLetters = makeDeadLetters(sql)
      const parked = yield* deadLetters.list({ includeRedriven: false, limit: 10 })
      assert.strictEqual(parked.length, 1)
      const letter = parked[0]
      if (letter === undefined) return
      assert.strictEqual(letter.attempt_count, testOptions.attempt_max)
      assert.match(letter.error, /simulated bug/)
      const projection = makeSettlementProjection(sql)
      assert.deepStrictEqual(projectionAsExpected(yield* projection.rows(1)), expectedProjection([otherFirst[2], otherSecond[2]]))

      // Still broken: the re-drive fails, is recorded, and changes nothing.
      assert.strictEqual(yield* redrive(letter.id), "failed")
      assert.match((yield* deadLetters.list({ includeRedriven: false, limit: 10 }))[0]?.redrive_error ?? "", /simulated bug/)
      // The fix, then the re-drive: applied once; a second re-drive is refused as already done.
      yield* sql`DROP TRIGGER test_refuse ON settlement_projection`
      assert.strictEqual(yield* redrive(letter.id), "applied")
      assert.strictEqual(yield* redrive(letter.id), "already_redriven")
      assert.deepStrictEqual(
        projectionAsExpected(yield* projection.rows(1)),
        expectedProjection([otherFirst[2], otherSecond[2], victimEvents[2]])
      )
      assert.deepStrictEqual(yield* deadLetters.list({ includeRedriven: false, limit: 10 }), [])
    })))

  it.live("on start the consumer moves its (empty) group to the offsets stored in the database: the database, not Kafka, says where to resume", () =>
    onFreshDatabase(Effect.gen(function* () {
      const topics = yield* freshTopics
      const merchant = merchantId()
      yield* send([...lifecycle(merchant, "EUR", 100, true), ...lifecycle(merchant, "USD", 200, true)].map((payload) => eventMessage(topics.topic, payload)))
      const ends = yield* (yield* KafkaConsumer).endOffsets(topics.topic)
      const sql = yield* SqlClient.SqlClient
      // As if everything had been handled (a restored database, a reset): the group has no offsets yet.
      for (const [partition, end] of ends.entries()) {
        yield* sql`INSERT INTO consumer_offsets (consumer, topic, partition, next_offset) VALUES ('settlement.g1', ${topics.topic}, ${partition}, ${end})`
      }
      const admin = yield* KafkaAdmin
      const groupId = `${topics.prefix}settlement.g1`
      assert.isTrue((yield* admin.groupOffsets(groupId, topics.topic)).every((entry) => entry.offset < 0n), "no committed offsets before")
      yield* drainLive(topics)
      assert.deepStrictEqual((yield* admin.groupOffsets(groupId, topics.topic)).map((entry) => entry.offset), [...ends])
      assert.deepStrictEqual(yield* makeSettlementProjection(sql).rows(1), [], "nothing below the stored offsets was applied")
    })))

  it.live("the database refuses what the code refuses: a stored offset cannot go back, a payment's version cannot go down, an event cannot be processed twice, fee + net must be gross", () =>
    onFreshDatabase(Effect.gen(function* () {
      const sql = yield* SqlClient.SqlClient
      const refused = (statement: Effect.Effect<unknown, SqlError>) =>
        statement.pipe(Effect.flip, Effect.map((error) => String(error.reason.cause)))
      yield* sql`INSERT INTO consumer_offsets (consumer, topic, partition, next_offset) VALUES ('c1', 't', 0, 10)`
      assert.match(yield* refused(sql`UPDATE consumer_offsets SET next_offset = 3 WHERE consumer = 'c1'`), /would go back/)
      yield* sql`INSERT INTO consumer_payment_versions (consumer, payment_id, version) VALUES ('c1', 'pay_x', 3)`
      assert.match(yield* refused(sql`UPDATE consumer_payment_versions SET version = 2 WHERE consumer = 'c1'`), /would go back/)
      const id = "6f1c2a43-1f54-4a59-9b38-0a4c9e0f6b11"
      const insert = sql`INSERT INTO processed_events (consumer, event_id, payment_id, payment_version, outcome, topic, partition, "offset")
                         VALUES ('c1', ${id}::uuid, 'pay_x', 3, 'applied', 't', 0, 1)`
      yield* insert
      assert.match(yield* refused(insert), /duplicate key|unique/i)
      assert.match(
        yield* refused(sql`INSERT INTO settlement_projection (generation, merchant_id, currency, settled_gross_minor, fees_minor, net_minor, payment_count)
                           VALUES (1, 'mer_x', 'EUR', 100, 10, 80, 1)`),
        /settlement_projection_fee_plus_net/
      )
      // The reset path is the one way back, and only for its own transaction.
      yield* makeConsumerStore(sql).resetOffsets("c1", "t", 1, 0n)
      const rows = yield* decodeRows(Schema.Struct({ next_offset: Schema.BigInt }))(sql`SELECT next_offset FROM consumer_offsets WHERE consumer = 'c1'`)
      assert.deepStrictEqual(rows, [{ next_offset: 0n }])
    })))
})
