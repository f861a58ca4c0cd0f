// The publisher's "outbox batch failed" line is written inside the failed batch's own trace, so an
// operator goes from the line to the batch's spans (outside operator drill: every such line carried
// the trace id of "outbox publisher started"). The broker here is a port nobody listens on.
import { assert, layer } from "@effect/vitest"
import { defaultKafkaAdminTimeouts, defaultKafkaProducerLimits, KafkaAdmin, KafkaProducer, structuredWithTrace } from "@pay/infra"
import { freePort, makeTestDatabase, testRun } from "@pay/testkit"
import { Effect, Fiber, Layer, Logger } from "effect"
import { OutboxPublisher } from "../src/Publisher.ts"
import { defaultPublisherOptions, type PublisherOptions } from "../src/PublisherModel.ts"
import { insertTestRows } from "./support.ts"

const Database = makeTestDatabase({ maxConnections: 4 })

interface LineFields {
  readonly message?: unknown
  readonly trace_id?: unknown
}

type Line = LineFields & { readonly consecutive_failures?: unknown }

/** Every JSON log line written under `capture`, parsed, in `lines`. */
const capturedLines = () => {
  const lines: Array<Line> = []
  const capture = Logger.layer([Logger.map(structuredWithTrace, (text) => {
    const parsed: unknown = JSON.parse(text)
    if (typeof parsed === "object" && parsed !== null) lines.push(parsed)
  })])
  return { lines, capture }
}

/**
 * The publisher on a broker port nobody listens on, over `rows` rows of the test's own, until
 * `failures` "outbox batch failed" lines (or 30 s): every JSON log line it wrote.
 */
const failingPublisher = (tag: string, options: Partial<PublisherOptions>, failures: number) =>
  Effect.gen(function* () {
    yield* insertTestRows(tag, 3)
    const { lines, capture } = capturedLines()
    const nobody = yield* freePort
    const publisher = OutboxPublisher.layerWith({ ...defaultPublisherOptions, topic: `${testRun().kafkaTopicPrefix}${tag}.payments.events`, ...options })
      .pipe(Layer.provide(KafkaProducer.layerWith({ brokers: `127.0.0.1:${nobody}`, clientId: `pay-test-${tag}`, ...defaultKafkaProducerLimits, retries: 0 })))
    yield* Effect.gen(function* () {
      const run = yield* Effect.forkChild((yield* OutboxPublisher).run)
      for (let look = 0; look < 300 && failedLines(lines).length < failures; look++) yield* Effect.sleep("100 millis")
      yield* Fiber.interrupt(run)
    }).pipe(Effect.provide(Layer.merge(publisher, capture)))
    return lines
  })

const failedLines = (lines: ReadonlyArray<Line>) => lines.filter((line) => line.message === "outbox batch failed; rows released for retry")

layer(Database, { excludeTestServices: true, timeout: 60_000 })("outbox publisher, a batch that fails", (it) => {
  it.effect("each 'outbox batch failed' line carries its own batch's trace id, not the publisher's start-up trace", () =>
    Effect.gen(function* () {
      const lines = yield* failingPublisher("tracefail", { workers: 1, backoffBase_ms: 50, backoffMax_ms: 100 }, 2)
      const started = lines.find((line) => line.message === "outbox publisher started")
      const failures = failedLines(lines)
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
      const lines = yield* failingPublisher("backoffgrow", { workers: 2, pollMin_ms: 5, backoffBase_ms: 20, backoffMax_ms: 2_000 }, 10)
      const counts = failedLines(lines).map((line) => Number(line.consecutive_failures))
      assert.isAtLeast(counts.length, 10, JSON.stringify(lines.slice(-5)))
      assert.isAtLeast(Math.max(...counts), 4, `the failures keep counting: ${counts.join(",")}`)
    }))

  it.effect("a batch that one worker publishes ends every worker's run of failures: right after the topic appears, the publisher reports no consecutive failure", () =>
    Effect.gen(function* () {
      yield* insertTestRows("recovered", 3)
      const run_ = testRun()
      const topic = `${run_.kafkaTopicPrefix}recovered${Date.now()}.payments.events`
      const { lines, capture } = capturedLines()
      const publisher = OutboxPublisher.layerWith({ ...defaultPublisherOptions, topic, workers: 2, pollMin_ms: 5, backoffBase_ms: 20, backoffMax_ms: 200 })
        .pipe(Layer.provide(KafkaProducer.layerWith({ brokers: run_.kafkaBrokers, clientId: "pay-test-recovered", ...defaultKafkaProducerLimits, retries: 0 })))
      const workersFailed = () => new Set(failedLines(lines).map((line) => (line as { readonly worker?: unknown }).worker)).size
      const consecutive = yield* Effect.gen(function* () {
        const outbox = yield* OutboxPublisher
        const run = yield* Effect.forkChild(outbox.run)
        // The topic does not exist yet: both workers fail at least once.
        for (let look = 0; look < 300 && workersFailed() < 2; look++) yield* Effect.sleep("50 millis")
        assert.strictEqual(workersFailed(), 2, JSON.stringify(lines.slice(-5)))
        yield* (yield* KafkaAdmin).createTopic({ topic, partitions: 1 })
        let status = yield* outbox.status
        for (let look = 0; look < 300 && status.publishedCount < 3; look++) {
          yield* Effect.sleep("20 millis")
          status = yield* outbox.status
        }
        yield* Fiber.interrupt(run)
        assert.isAtLeast(status.publishedCount, 3)
        return status.consecutiveFailures
      }).pipe(Effect.provide(Layer.mergeAll(publisher, capture, KafkaAdmin.layerWith({ brokers: run_.kafkaBrokers, clientId: "pay-test-recovered-admin", ...defaultKafkaAdminTimeouts }))))
      assert.strictEqual(consecutive, 0, "the worker that published nothing is over its failures too")
    }))
})
