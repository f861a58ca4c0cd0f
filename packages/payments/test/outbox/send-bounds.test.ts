// What one claim may hold and still reach the broker (outside review of 0110, 2026-12-05): 100 rows
// of ~16 KiB for one aggregate (one partition) passed every row bound, but the publisher sent its
// whole claim in one produce call, which Kafka refused (MESSAGE_TOO_LARGE: 1 MiB per partition's
// batch) for ever, re-appending the other partitions' records on each retry; and a payload nested
// 6,000 levels deep overflowed the encoder's stack before anything was sent, leaving no trace on
// the row. Real Postgres (the test database, as its owner), real Kafka, read back with kcat.
import { assert, it } from "@effect/vitest"
import { OutboxRowUnsendable, sendBytes_max } from "@pay/outbox"
import { decodeRows, KafkaError, KafkaProducer } from "@pay/infra"
import { Effect, Schema } from "effect"
import { SqlClient } from "effect/sql"
import { describe } from "vitest"
import { drain, freshTopic, kcatReadAll, makePublisher, OutboxTestLayer, publisherOptions, run } from "./support.ts"

const onFreshDatabase = <A, E, R>(effect: Effect.Effect<A, E, R>) =>
  Effect.provide(effect, OutboxTestLayer(run.kafkaBrokers, "pay-test-outbox-bounds"))

const RowState = Schema.Struct({ published: Schema.Boolean, attempt_count: Schema.Number, last_error: Schema.NullOr(Schema.String) })

describe("outbox publisher: a claim larger than one produce call may carry", () => {
  it.live("100 rows of 15 KB for one aggregate (1.5 MB on one partition, past the broker's 1 MiB) are sent in slices, in order, each once", () =>
    onFreshDatabase(Effect.gen(function* () {
      const sql = yield* SqlClient.SqlClient
      const { topic } = yield* freshTopic
      // The owner's own aggregate (the payment aggregate's truth checks are not this test's matter).
      yield* sql`
        INSERT INTO outbox_events (id, aggregate_type, aggregate_id, event_type, payload, headers)
        SELECT gen_random_uuid(), 'bounds_test', 'one-aggregate', 'bounds_padded',
               jsonb_build_object('version', n, 'pad', repeat('x', 15000)), '{"correlation_id":"corr-bounds"}'
        FROM generate_series(1, 100) AS n`
      assert.isAbove(100 * 15_000, sendBytes_max * 4, "several slices are needed")
      const publisher = yield* makePublisher(publisherOptions(topic, { batchSize: 200 }))
      assert.strictEqual(yield* drain(publisher, 10), 100)
      const states = yield* decodeRows(RowState)(sql`
        SELECT published_at IS NOT NULL AS published, attempt_count, last_error FROM outbox_events ORDER BY position`)
      assert.deepStrictEqual(new Set(states.map((state) => JSON.stringify(state))), new Set([JSON.stringify({ published: true, attempt_count: 1, last_error: null })]))
      // Each event once, in the order written (one key: one partition).
      const records = yield* kcatReadAll(run.kafkaBrokers, topic)
      const versions = records.map((record) => Schema.decodeUnknownSync(Schema.fromJsonString(Schema.Struct({ version: Schema.Number })))(record.value).version)
      assert.deepStrictEqual(versions, Array.from({ length: 100 }, (_, index) => index + 1))
    })), { timeout: 120_000 })

  it.live("a produce call failing after earlier slices were acknowledged: those rows are marked (in Kafka once), the failure recorded on the rest, which the next round sends", () =>
    onFreshDatabase(Effect.gen(function* () {
      const sql = yield* SqlClient.SqlClient
      const { topic } = yield* freshTopic
      yield* sql`
        INSERT INTO outbox_events (id, aggregate_type, aggregate_id, event_type, payload)
        SELECT gen_random_uuid(), 'bounds_test', 'agg-' || (n % 7), 'bounds_padded', jsonb_build_object('version', n, 'pad', repeat('y', 15000))
        FROM generate_series(1, 60) AS n`
      // The broker refuses the second produce call once (a fault at the seam; the rest is the real client).
      const real = yield* KafkaProducer
      let calls = 0
      const flaky = KafkaProducer.of({
        send: (messages) => {
          calls += 1
          return calls === 2
            ? Effect.fail(new KafkaError({ operation: "send", message: "injected: leader not available", retriable: true, code: "LEADER_NOT_AVAILABLE" }))
            : real.send(messages)
        }
      })
      const first = yield* makePublisher(publisherOptions(topic, { batchSize: 200 })).pipe(Effect.provideService(KafkaProducer, flaky))
      const failure = yield* Effect.flip(first.publishBatch)
      assert.strictEqual(failure._tag, "KafkaError")
      const states = yield* decodeRows(RowState)(sql`
        SELECT published_at IS NOT NULL AS published, attempt_count, last_error FROM outbox_events ORDER BY position`)
      const marked = states.filter((state) => state.published).length
      assert.isAbove(marked, 0, "the first slice's rows are marked")
      assert.isBelow(marked, 60)
      assert.isTrue(states.slice(0, marked).every((state) => state.published && state.last_error === null), "the acknowledged prefix, in position order")
      assert.isTrue(states.slice(marked).every((state) => !state.published && (state.last_error ?? "").startsWith("LEADER_NOT_AVAILABLE")))
      assert.strictEqual((yield* kcatReadAll(run.kafkaBrokers, topic)).length, marked)
      // The next round sends the rest; every event is in Kafka once.
      assert.strictEqual(yield* drain(yield* makePublisher(publisherOptions(topic, { batchSize: 200 })), 10), 60 - marked)
      const versions = (yield* kcatReadAll(run.kafkaBrokers, topic)).map((record) =>
        Schema.decodeUnknownSync(Schema.fromJsonString(Schema.Struct({ version: Schema.Number })))(record.value).version)
      assert.deepStrictEqual([...versions].sort((a, b) => a - b), Array.from({ length: 60 }, (_, index) => index + 1))
    })), { timeout: 120_000 })

  it.live("a row whose payload the encoder cannot take (nested 6,000 levels: 0111 refuses it, removed here as the owner may) fails its batch with the reason recorded on the rows; nothing is sent", () =>
    onFreshDatabase(Effect.gen(function* () {
      const sql = yield* SqlClient.SqlClient
      const { topic } = yield* freshTopic
      yield* sql`ALTER TABLE outbox_events DROP CONSTRAINT outbox_events_payload_flat`
      yield* sql.unsafe(`
        INSERT INTO outbox_events (id, aggregate_type, aggregate_id, event_type, payload)
        VALUES (gen_random_uuid(), 'bounds_test', 'deep', 'bounds_deep',
                ('{"version": 1, "deep": ' || repeat('[', 6000) || repeat(']', 6000) || '}')::jsonb)`)
      const publisher = yield* makePublisher(publisherOptions(topic, { batchSize: 200 }))
      const failure = yield* Effect.flip(publisher.publishBatch)
      assert.instanceOf(failure, OutboxRowUnsendable)
      const [state] = yield* decodeRows(RowState)(sql`SELECT published_at IS NOT NULL AS published, attempt_count, last_error FROM outbox_events`)
      assert.strictEqual(state?.published, false)
      assert.strictEqual(state?.attempt_count, 1)
      assert.match(state?.last_error ?? "", /^unsendable: /)
      assert.deepStrictEqual(yield* kcatReadAll(run.kafkaBrokers, topic), [])
    })), { timeout: 120_000 })
})
