import { assert, it } from "@effect/vitest"
import { decodeRow, KafkaProducer, postgresLayer } from "@pay/infra"
import { acquireTestDatabase } from "@pay/testkit"
import { Effect, Layer, Redacted, Schema } from "effect"
import { SqlClient } from "effect/sql"
import { describe } from "vitest"
import { startChild } from "./ConsumerChild.ts"
import { makeConsumerStore } from "../src/ConsumerStore.ts"
import { makeSettlementProjection } from "../src/SettlementProjection.ts"
import {
  eventMessage,
  expectedProjection,
  freshTopics,
  kafkaTestClients,
  lifecycle,
  merchantId,
  projectionAsExpected,
  run,
  type TestEvent
} from "./support.ts"

const CountRow = Schema.Struct({ count: Schema.BigInt })

describe("two consumer processes in one group (real processes, real broker)", () => {
  it.live("two instances in one group, one SIGKILLed mid-stream: the group moves its partitions to the other; no event is lost or applied twice; SIGTERM stops the survivor", () =>
    Effect.gen(function* () {
      const database = yield* acquireTestDatabase
      const layer = kafkaTestClients("pay-test-consumer-pair").pipe(
        Layer.provideMerge(postgresLayer({ url: Redacted.make(database.url), maxConnections: 4, applicationName: "pay-test" }))
      )
      yield* Effect.gen(function* () {
        const topics = yield* freshTopics
        const settled: Array<Record<string, unknown>> = []
        const messages: Array<TestEvent["message"]> = []
        for (let n = 0; n < 200; n++) {
          for (const payload of lifecycle(merchantId(), "EUR", 100 + n, n % 7 !== 6)) {
            messages.push(eventMessage(topics.topic, payload).message)
            if (payload.type === "payment_settled") settled.push(payload)
          }
        }
        const producer = yield* KafkaProducer
        // One produce call per chunk keeps each partition's order (a payment's events in order).
        for (let start = 0; start < messages.length; start += 300) yield* producer.send(messages.slice(start, start + 300))
        const sql = yield* SqlClient.SqlClient
        const store = makeConsumerStore(sql)
        const applied = Effect.map(store.offsets("settlement.g1"), (rows) => rows.reduce((sum, row) => sum + row.applied_count, 0n))
        const waitFor = (what: string, check: (count: bigint) => boolean, timeout_ms: number) =>
          Effect.gen(function* () {
            const deadline = Date.now() + timeout_ms
            while (!check(yield* applied)) {
              if (Date.now() > deadline) return yield* Effect.die(new Error(`timed out waiting for ${what} (applied ${yield* applied})`))
              yield* Effect.sleep("50 millis")
            }
          })
        const env = {
          DATABASE_URL: database.url,
          DATABASE_POOL_SIZE: "3",
          KAFKA_BROKERS: run.kafkaBrokers,
          KAFKA_TOPIC_PREFIX: topics.prefix,
          KAFKA_SESSION_TIMEOUT_MS: "6000",
          CONSUMER_BATCH_SIZE: "5",
          CONSUMER_POLL_TIMEOUT_MS: "200",
          CONSUMER_LAG_INTERVAL_MS: "60000"
        }
        const first = yield* startChild(env)
        const second = yield* startChild(env)
        yield* waitFor("the pair to make progress", (count) => count >= 60n, 30_000)
        yield* first.kill("SIGKILL")
        const atKill = yield* applied
        yield* waitFor("the survivor to finish every partition", (count) => count >= BigInt(messages.length), 40_000)
        yield* second.kill("SIGTERM")
        const stopped = yield* second.exited
        assert.notStrictEqual(stopped.signal, "SIGKILL", "the survivor stopped on SIGTERM by itself")
        // The survivor's own log says the group moved the partitions to it (it said nothing before:
        // an operator reading it could not tell an eviction or a takeover happened).
        const joins = stopped.output.split("\n").filter((line) => line.includes("\"consumer group joined\""))
        assert.isTrue(joins.some((line) => /payments\.events:0,1,2/.test(line)), `the survivor logged its join with every partition:\n${stopped.output.slice(-2_000)}`)
        // Named by the consumer, as every other consumer line and the alerts' label (outside operator drill).
        assert.isTrue(joins.every((line) => /"consumer":"(settlement\.g1|webhooks)"/.test(line)), joins.join("\n"))

        assert.isTrue(atKill < BigInt(messages.length), `killed mid-stream (${atKill} of ${messages.length})`)
        assert.strictEqual(yield* applied, BigInt(messages.length), "every event applied exactly once")
        const processed = yield* decodeRow(CountRow)(sql`SELECT count(*)::bigint AS count FROM processed_events WHERE consumer = 'settlement.g1'`)
        assert.strictEqual(processed.count, BigInt(messages.length))
        assert.deepStrictEqual(projectionAsExpected(yield* makeSettlementProjection(sql).rows(1)), expectedProjection(settled))
      }).pipe(Effect.provide(layer))
    }).pipe(Effect.scoped))
})
