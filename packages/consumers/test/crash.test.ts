import { assert, it } from "@effect/vitest"
import { decodeRow, decodeRows, postgresLayer } from "@pay/infra"
import { acquireTestDatabase } from "@pay/testkit"
import { Effect, Layer, Redacted, Schema } from "effect"
import { SqlClient } from "effect/sql"
import { describe } from "vitest"
import { startChild } from "./ConsumerChild.ts"
import { makeConsumerStore } from "../src/ConsumerStore.ts"
import { makeSettlementProjection } from "../src/SettlementProjection.ts"
import {
  drainLive,
  eventMessage,
  expectedProjection,
  freshTopics,
  kafkaTestClients,
  lifecycle,
  merchantId,
  projectionAsExpected,
  run,
  send,
  type TestEvent
} from "./support.ts"

/** A child with a fault armed: it must kill itself. */
const runChild = (env: Readonly<Record<string, string>>) =>
  Effect.scoped(Effect.flatMap(startChild(env), (child) => child.exited))

const CountRow = Schema.Struct({ count: Schema.BigInt })
const KeptRow = Schema.Struct({ partition: Schema.Int, next_offset: Schema.BigInt, counted: Schema.BigInt, rows: Schema.BigInt, above: Schema.BigInt })

describe("a consumer process killed with SIGKILL (real process, real broker)", () => {
  it.live("killed before a record's transaction, then after a transaction and before the Kafka commit: after restart the projection is exact and every event was applied once", () =>
    Effect.gen(function* () {
      const database = yield* acquireTestDatabase
      const layer = kafkaTestClients("pay-test-consumer-crash").pipe(
        Layer.provideMerge(postgresLayer({ url: Redacted.make(database.url), maxConnections: 4, applicationName: "pay-test" }))
      )
      yield* Effect.gen(function* () {
        const topics = yield* freshTopics
        const settled: Array<Record<string, unknown>> = []
        const events: Array<TestEvent> = []
        const merchant = merchantId()
        for (let n = 0; n < 30; n++) {
          const payloads = lifecycle(merchant, n % 2 === 0 ? "EUR" : "USD", 500 + n * 31, n % 5 !== 4)
          for (const payload of payloads) {
            events.push(eventMessage(topics.topic, payload))
            if (payload.type === "payment_settled") settled.push(payload)
          }
        }
        yield* send(events)
        const env = {
          DATABASE_URL: database.url,
          DATABASE_POOL_SIZE: "4",
          KAFKA_BROKERS: run.kafkaBrokers,
          KAFKA_TOPIC_PREFIX: topics.prefix,
          KAFKA_SESSION_TIMEOUT_MS: "6000",
          CONSUMER_BATCH_SIZE: "10",
          CONSUMER_POLL_TIMEOUT_MS: "200",
          CONSUMER_LAG_INTERVAL_MS: "60000"
        }
        const first = yield* runChild({ ...env, CONSUMER_FAULT_CRASH_AT: "before_transaction", CONSUMER_FAULT_CRASH_AT_RECORD: "25" })
        assert.strictEqual(first.signal, "SIGKILL", `the first child died of its own SIGKILL: ${first.output}`)
        const second = yield* runChild({ ...env, CONSUMER_FAULT_CRASH_AT: "after_transaction", CONSUMER_FAULT_CRASH_AT_RECORD: "15" })
        assert.strictEqual(second.signal, "SIGKILL", `the second child died of its own SIGKILL: ${second.output}`)

        const sql = yield* SqlClient.SqlClient
        const store = makeConsumerStore(sql)
        const midway = (yield* store.offsets("settlement.g1")).reduce((sum, row) => sum + row.applied_count, 0n)
        assert.isTrue(midway > 0n && midway < BigInt(events.length), `the children stopped midway (${midway} of ${events.length})`)

        yield* drainLive(topics)
        const projection = makeSettlementProjection(sql)
        assert.deepStrictEqual(projectionAsExpected(yield* projection.rows(1)), expectedProjection(settled))
        const applied = (yield* store.offsets("settlement.g1")).reduce((sum, row) => sum + row.applied_count, 0n)
        assert.strictEqual(applied, BigInt(events.length), "every event applied exactly once")
        const processed = yield* decodeRow(CountRow)(sql`SELECT count(*)::bigint AS count FROM processed_events WHERE consumer = 'settlement.g1'`)
        assert.strictEqual(processed.count, BigInt(events.length))
      }).pipe(Effect.provide(layer))
    }).pipe(Effect.scoped))

  it.live("killed inside a batch's transaction (records of the batch applied, not committed): nothing of the batch is kept, the stored offsets match what is applied, and after restart the projection is exact", () =>
    Effect.gen(function* () {
      const database = yield* acquireTestDatabase
      const layer = kafkaTestClients("pay-test-consumer-crash-batch").pipe(
        Layer.provideMerge(postgresLayer({ url: Redacted.make(database.url), maxConnections: 4, applicationName: "pay-test" }))
      )
      yield* Effect.gen(function* () {
        const topics = yield* freshTopics
        const settled: Array<Record<string, unknown>> = []
        const events: Array<TestEvent> = []
        const merchant = merchantId()
        for (let n = 0; n < 40; n++) {
          for (const payload of lifecycle(merchant, n % 3 === 0 ? "EUR" : "USD", 700 + n * 13, n % 4 !== 3)) {
            events.push(eventMessage(topics.topic, payload))
            if (payload.type === "payment_settled") settled.push(payload)
          }
        }
        yield* send(events)
        const child = yield* runChild({
          DATABASE_URL: database.url,
          DATABASE_POOL_SIZE: "4",
          KAFKA_BROKERS: run.kafkaBrokers,
          KAFKA_TOPIC_PREFIX: topics.prefix,
          KAFKA_SESSION_TIMEOUT_MS: "6000",
          CONSUMER_BATCH_SIZE: "60",
          CONSUMER_TRANSACTION_RECORDS_MAX: "20",
          CONSUMER_POLL_TIMEOUT_MS: "200",
          CONSUMER_LAG_INTERVAL_MS: "60000",
          CONSUMER_FAULT_CRASH_AT: "inside_transaction",
          CONSUMER_FAULT_CRASH_AT_RECORD: "50"
        })
        assert.strictEqual(child.signal, "SIGKILL", `the child died of its own SIGKILL: ${child.output}`)

        const sql = yield* SqlClient.SqlClient
        const store = makeConsumerStore(sql)
        // What the killed transaction had written is gone: each partition's stored offset is above
        // every processed event of it, and its counters are exactly the rows kept.
        const kept = yield* decodeRows(KeptRow)(sql`
          SELECT o.partition, o.next_offset, o.applied_count + o.stale_count AS counted,
                 (SELECT count(*) FROM processed_events p WHERE p.consumer = o.consumer AND p.partition = o.partition)::bigint AS rows,
                 (SELECT coalesce(max(p."offset") + 1, 0) FROM processed_events p WHERE p.consumer = o.consumer AND p.partition = o.partition)::bigint AS above
          FROM consumer_offsets o WHERE o.consumer = 'settlement.g1' ORDER BY o.partition`)
        for (const row of kept) {
          assert.strictEqual(row.counted, row.rows, `partition ${row.partition}: counters = rows kept`)
          assert.isTrue(row.above <= row.next_offset, `partition ${row.partition}: nothing applied at or above the stored offset`)
        }
        const midway = kept.reduce((sum, row) => sum + row.rows, 0n)
        assert.isTrue(midway < BigInt(events.length), `the child stopped midway (${midway} of ${events.length})`)

        yield* drainLive(topics)
        assert.deepStrictEqual(projectionAsExpected(yield* makeSettlementProjection(sql).rows(1)), expectedProjection(settled))
        const applied = (yield* store.offsets("settlement.g1")).reduce((sum, row) => sum + row.applied_count, 0n)
        assert.strictEqual(applied, BigInt(events.length), "every event applied exactly once")
        const processed = yield* decodeRow(CountRow)(sql`SELECT count(*)::bigint AS count FROM processed_events WHERE consumer = 'settlement.g1'`)
        assert.strictEqual(processed.count, BigInt(events.length))
      }).pipe(Effect.provide(layer))
    }).pipe(Effect.scoped))
})
