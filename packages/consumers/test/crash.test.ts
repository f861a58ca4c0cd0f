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

/** Builds payment lifecycles of one merchant (`count` of them), as events on the run's topic. */
interface Stream {
  readonly events: ReadonlyArray<TestEvent>
  readonly settled: ReadonlyArray<Record<string, unknown>>
}

type Lifecycle = (n: number) => { readonly currency: "EUR" | "USD"; readonly amount_minor: number; readonly settles: boolean }

/**
 * One crash scenario's world: a database of its own, the Kafka clients, fresh topics with `count`
 * lifecycles sent, and the consumer child's environment. `body` kills children and checks.
 */
const crashFixture = <A, E, R>(
  clientId: string,
  count: number,
  shape: Lifecycle,
  body: (world: Stream & { readonly env: Readonly<Record<string, string>>; readonly topics: Effect.Success<typeof freshTopics> }) => Effect.Effect<A, E, R>
) =>
  Effect.gen(function* () {
    const database = yield* acquireTestDatabase
    const layer = kafkaTestClients(clientId).pipe(
      Layer.provideMerge(postgresLayer({ url: Redacted.make(database.url), maxConnections: 4, applicationName: "pay-test" }))
    )
    return yield* Effect.gen(function* () {
      const topics = yield* freshTopics
      const settled: Array<Record<string, unknown>> = []
      const events: Array<TestEvent> = []
      const merchant = merchantId()
      for (let n = 0; n < count; n++) {
        const { currency, amount_minor, settles } = shape(n)
        for (const payload of lifecycle(merchant, currency, amount_minor, settles)) {
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
        CONSUMER_POLL_TIMEOUT_MS: "200",
        CONSUMER_LAG_INTERVAL_MS: "60000"
      }
      return yield* body({ events, settled, env, topics })
    }).pipe(Effect.provide(layer))
  }).pipe(Effect.scoped)

/** After the crashes: a live consumer drains the topic, and the projection and counters are exact. */
const assertExactAfterDrain = (world: Stream & { readonly topics: Effect.Success<typeof freshTopics> }) =>
  Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    yield* drainLive(world.topics)
    assert.deepStrictEqual(projectionAsExpected(yield* makeSettlementProjection(sql).rows(1)), expectedProjection(world.settled))
    const applied = (yield* makeConsumerStore(sql).offsets("settlement.g1")).reduce((sum, row) => sum + row.applied_count, 0n)
    assert.strictEqual(applied, BigInt(world.events.length), "every event applied exactly once")
    const processed = yield* decodeRow(CountRow)(sql`SELECT count(*)::bigint AS count FROM processed_events WHERE consumer = 'settlement.g1'`)
    assert.strictEqual(processed.count, BigInt(world.events.length))
  })

describe("a consumer process killed with SIGKILL (real process, real broker)", () => {
  it.live("killed before a record's transaction, then after a transaction and before the Kafka commit: after restart the projection is exact and every event was applied once", () =>
    crashFixture("pay-test-consumer-crash", 30, (n) => ({ currency: n % 2 === 0 ? "EUR" : "USD", amount_minor: 500 + n * 31, settles: n % 5 !== 4 }), (world) =>
      Effect.gen(function* () {
        const env = { ...world.env, CONSUMER_BATCH_SIZE: "10" }
        const first = yield* runChild({ ...env, CONSUMER_FAULT_CRASH_AT: "before_transaction", CONSUMER_FAULT_CRASH_AT_RECORD: "25" })
        assert.strictEqual(first.signal, "SIGKILL", `the first child died of its own SIGKILL: ${first.output}`)
        const second = yield* runChild({ ...env, CONSUMER_FAULT_CRASH_AT: "after_transaction", CONSUMER_FAULT_CRASH_AT_RECORD: "15" })
        assert.strictEqual(second.signal, "SIGKILL", `the second child died of its own SIGKILL: ${second.output}`)

        const sql = yield* SqlClient.SqlClient
        const midway = (yield* makeConsumerStore(sql).offsets("settlement.g1")).reduce((sum, row) => sum + row.applied_count, 0n)
        assert.isTrue(midway > 0n && midway < BigInt(world.events.length), `the children stopped midway (${midway} of ${world.events.length})`)
        yield* assertExactAfterDrain(world)
      })))

  it.live("killed inside a batch's transaction (records of the batch applied, not committed): nothing of the batch is kept, the stored offsets match what is applied, and after restart the projection is exact", () =>
    crashFixture("pay-test-consumer-crash-batch", 40, (n) => ({ currency: n % 3 === 0 ? "EUR" : "USD", amount_minor: 700 + n * 13, settles: n % 4 !== 3 }), (world) =>
      Effect.gen(function* () {
        const child = yield* runChild({
          ...world.env,
          CONSUMER_BATCH_SIZE: "60",
          CONSUMER_TRANSACTION_RECORDS_MAX: "20",
          CONSUMER_FAULT_CRASH_AT: "inside_transaction",
          CONSUMER_FAULT_CRASH_AT_RECORD: "50"
        })
        assert.strictEqual(child.signal, "SIGKILL", `the child died of its own SIGKILL: ${child.output}`)

        const sql = yield* SqlClient.SqlClient
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
        assert.isTrue(midway < BigInt(world.events.length), `the child stopped midway (${midway} of ${world.events.length})`)
        yield* assertExactAfterDrain(world)
      })))
})
