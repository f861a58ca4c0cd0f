// A process started while Kafka is down (an outside outage drill): the publisher waits for its
// topic in the background, and meanwhile the backlog gauges must still be exported, or
// OutboxEventsLate cannot fire (the drill saw no outbox_* series for 42 s and a 1,569-row backlog).
// The broker here is a port nobody listens on.
import { assert, layer } from "@effect/vitest"
import { KafkaAdmin, KafkaProducer } from "@pay/infra"
import { freePort, makeTestDatabase, testRun } from "@pay/testkit"
import { ConfigProvider, Effect, Layer, Metric } from "effect"
import { outboxBacklogCount } from "../src/Publisher.ts"
import { outboxPublisherLayer } from "../src/PublisherConfig.ts"
import { outboxPublishFailures } from "../src/PublisherModel.ts"
import { insertTestRows } from "./support.ts"

const Database = makeTestDatabase({ maxConnections: 4 })

layer(Database, { excludeTestServices: true, timeout: 60_000 })("outbox publisher started without Kafka", (it) => {
  it.effect("the backlog gauge follows the table while the topic cannot be made, and each failed attempt counts as a failed publish", () =>
    Effect.gen(function* () {
      yield* insertTestRows("nokafka", 7)
      const failuresBefore = (yield* Metric.value(outboxPublishFailures)).count
      const port = yield* freePort
      const config = ConfigProvider.layer(ConfigProvider.fromEnv({
        env: { KAFKA_BROKERS: `127.0.0.1:${port}`, KAFKA_TOPIC_PREFIX: `${testRun().kafkaTopicPrefix}nokafka.`, OUTBOX_METRICS_INTERVAL_MS: "1000" }
      }))
      const publisher = outboxPublisherLayer().pipe(
        Layer.provide(Layer.mergeAll(KafkaAdmin.layer, KafkaProducer.layer)),
        Layer.provide(config)
      )
      const seen = yield* Effect.gen(function* () {
        for (let look = 0; look < 100; look++) {
          const gauge = yield* Metric.value(outboxBacklogCount)
          if (gauge.value === 7) return gauge.value
          yield* Effect.sleep("100 millis")
        }
        return (yield* Metric.value(outboxBacklogCount)).value
      }).pipe(
        // Nothing can be published: the runbook's "backlog grows with no failure" branch (stolen
        // credentials) must not be where a broker down at start leads (outside operator drill).
        Effect.tap(() => Effect.gen(function* () {
          for (let look = 0; look < 200 && (yield* Metric.value(outboxPublishFailures)).count <= failuresBefore; look++) yield* Effect.sleep("100 millis")
        })),
        Effect.provide(publisher),
        Effect.scoped
      )
      assert.strictEqual(seen, 7, "outbox_backlog_rows says 7 rows wait, Kafka down")
      assert.isAbove((yield* Metric.value(outboxPublishFailures)).count, failuresBefore, "outbox_publish_failures_total counts the failed attempts")
    }))
})
