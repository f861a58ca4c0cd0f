// The publisher's "outbox batch failed" line is written inside the failed batch's own trace, so an
// operator goes from the line to the batch's spans (outside operator drill: every such line carried
// the trace id of "outbox publisher started"). The broker here is a port nobody listens on.
import { assert, layer } from "@effect/vitest"
import { defaultKafkaProducerLimits, KafkaProducer, structuredWithTrace } from "@pay/infra"
import { freePort, makeTestDatabase, testRun } from "@pay/testkit"
import { Effect, Fiber, Layer, Logger } from "effect"
import { OutboxPublisher } from "../src/Publisher.ts"
import { defaultPublisherOptions } from "../src/PublisherModel.ts"
import { insertTestRows } from "./support.ts"

const Database = makeTestDatabase({ maxConnections: 4 })

interface Line {
  readonly message?: unknown
  readonly trace_id?: unknown
}

layer(Database, { excludeTestServices: true, timeout: 60_000 })("outbox publisher, a batch that fails", (it) => {
  it.effect("each 'outbox batch failed' line carries its own batch's trace id, not the publisher's start-up trace", () =>
    Effect.gen(function* () {
      yield* insertTestRows("tracefail", 3)
      const lines: Array<Line> = []
      const capture = Logger.layer([Logger.map(structuredWithTrace, (text) => {
        const parsed: unknown = JSON.parse(text)
        if (typeof parsed === "object" && parsed !== null) lines.push(parsed)
      })])
      const nobody = yield* freePort
      const publisher = OutboxPublisher.layerWith({
        ...defaultPublisherOptions,
        topic: `${testRun().kafkaTopicPrefix}tracefail.payments.events`,
        workers: 1,
        backoffBase_ms: 50,
        backoffMax_ms: 100
      }).pipe(Layer.provide(KafkaProducer.layerWith({ brokers: `127.0.0.1:${nobody}`, clientId: "pay-test-tracefail", ...defaultKafkaProducerLimits, retries: 0 })))
      const failed = () => lines.filter((line) => line.message === "outbox batch failed; rows released for retry")
      yield* Effect.gen(function* () {
        const run = yield* Effect.forkChild((yield* OutboxPublisher).run)
        for (let look = 0; look < 200 && failed().length < 2; look++) yield* Effect.sleep("100 millis")
        yield* Fiber.interrupt(run)
      }).pipe(Effect.provide(Layer.merge(publisher, capture)))
      const started = lines.find((line) => line.message === "outbox publisher started")
      const failures = failed()
      assert.isAtLeast(failures.length, 2, JSON.stringify(lines.slice(-5)))
      assert.isString(started?.trace_id)
      for (const line of failures) {
        assert.isString(line.trace_id)
        assert.notStrictEqual(line.trace_id, started?.trace_id, "a batch's own trace, not the start-up's")
      }
      assert.notStrictEqual(failures[0]?.trace_id, failures[1]?.trace_id, "one trace per batch")
    }))

  it.effect("two workers on an unreachable broker back off: their consecutive failures grow, a round that claimed nothing (the other worker held the rows) does not reset them", () =>
    Effect.gen(function* () {
      yield* insertTestRows("backoffgrow", 3)
      const lines: Array<Line & { readonly consecutive_failures?: unknown }> = []
      const capture = Logger.layer([Logger.map(structuredWithTrace, (text) => {
        const parsed: unknown = JSON.parse(text)
        if (typeof parsed === "object" && parsed !== null) lines.push(parsed)
      })])
      const nobody = yield* freePort
      const publisher = OutboxPublisher.layerWith({
        ...defaultPublisherOptions,
        topic: `${testRun().kafkaTopicPrefix}backoffgrow.payments.events`,
        workers: 2,
        pollMin_ms: 5,
        backoffBase_ms: 20,
        backoffMax_ms: 2_000
      }).pipe(Layer.provide(KafkaProducer.layerWith({ brokers: `127.0.0.1:${nobody}`, clientId: "pay-test-backoffgrow", ...defaultKafkaProducerLimits, retries: 0 })))
      const failed = () => lines.filter((line) => line.message === "outbox batch failed; rows released for retry")
      yield* Effect.gen(function* () {
        const run = yield* Effect.forkChild((yield* OutboxPublisher).run)
        for (let look = 0; look < 300 && failed().length < 10; look++) yield* Effect.sleep("100 millis")
        yield* Fiber.interrupt(run)
      }).pipe(Effect.provide(Layer.merge(publisher, capture)))
      const counts = failed().map((line) => Number(line.consecutive_failures))
      assert.isAtLeast(counts.length, 10, JSON.stringify(lines.slice(-5)))
      assert.isAtLeast(Math.max(...counts), 4, `the failures keep counting: ${counts.join(",")}`)
    }))
})
