// A consumer continues the change's trace and correlation id from the record's headers
// (`traceparent`, `correlation_id`, written by the outbox from the request that made the change):
// the handler runs in a span of the request's trace, and the record's log lines (parking
// included) carry the request's correlation id. Real Postgres; the records are handed to the
// processor directly (no broker needed for what is checked here).
import { assert, it } from "@effect/vitest"
import { CurrentCorrelationId, type KafkaRecord } from "@pay/infra"
import { makeTestDatabase } from "@pay/testkit"
import { Effect, Logger } from "effect"
import { randomBytes } from "node:crypto"
import type { ConsumerHandler } from "../src/ConsumerModel.ts"
import { makeRecordProcessor } from "../src/RecordProcessor.ts"
import { eventMessage, lifecycle, merchantId, testOptions } from "./support.ts"

const topic = "trace-test.payments.events"

const recordOf = (value: string, headers: Readonly<Record<string, string>>, offset: bigint, key: string): KafkaRecord => ({
  topic,
  partition: 0,
  offset,
  key,
  value,
  value_bytes: new TextEncoder().encode(value),
  headers,
  timestamp_ms: Date.now()
})

it.live("a consumed record continues the request's trace (traceparent) and correlation id, in the handler and on the parking log line", () =>
  Effect.gen(function* () {
    const seen: Array<{ traceId: string; correlationId: string | undefined }> = []
    const handler: ConsumerHandler = {
      name: "trace-test",
      apply: () =>
        Effect.gen(function* () {
          const span = yield* Effect.currentSpan
          seen.push({ traceId: span.traceId, correlationId: yield* CurrentCorrelationId })
        }).pipe(Effect.orDie)
    }
    const processor = yield* makeRecordProcessor({ handler, dlqTopic: null, options: testOptions })
    const traceId = randomBytes(16).toString("hex")
    const traceparent = `00-${traceId}-${randomBytes(8).toString("hex")}-01`
    const [created] = lifecycle(merchantId(), "EUR", 1_000, true)
    const event = eventMessage(topic, created)
    const correlationId = `corr-${randomBytes(6).toString("hex")}`
    const headers = { ...event.message.headers, traceparent, correlation_id: correlationId }
    assert.strictEqual(yield* processor.handle(recordOf(String(event.message.value), headers, 0n, event.message.key)), "applied")
    assert.deepStrictEqual(seen, [{ traceId, correlationId }])

    // A record that does not decode is parked; its log line names the request's correlation id.
    const logged: Array<Record<string, unknown>> = []
    const capture = Logger.layer([Logger.make((options) => {
      const line = Logger.formatStructured.log(options)
      logged.push({ message: line.message, ...line.annotations })
    })])
    const parked = yield* processor.handle(recordOf("not json", { correlation_id: correlationId, traceparent }, 1n, "k")).pipe(Effect.provide(capture))
    assert.strictEqual(parked, "parked")
    const parkLine = logged.find((line) => JSON.stringify(line.message).includes("consumer parks a record"))
    assert.strictEqual(parkLine?.["correlation_id"], correlationId, JSON.stringify(logged).slice(0, 500))
  }).pipe(Effect.provide(makeTestDatabase({ maxConnections: 2 }))))
