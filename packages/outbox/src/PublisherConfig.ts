import { boundedInt, checkDatabaseRole, type KafkaAdmin, KafkaTopicPrefix } from "@pay/infra"
import { Config, Effect, Layer, Metric } from "effect"
import { OutboxTopics, paymentsEventsTopic, PaymentsEventsTopicConfig } from "./OutboxTopics.ts"
import { defaultPublisherOptions, OutboxPublisher, publisherOptionBounds, type PublisherOptions } from "./Publisher.ts"
import { every } from "./PublisherLoop.ts"
import { outboxPublishFailures } from "./PublisherModel.ts"

/**
 * The publisher's settings from the environment. Every value is bounded (a value outside its
 * bounds is a ConfigError at start-up, not a surprise at run time):
 *
 * | variable                      | default     | bounds            |
 * | ----------------------------- | ----------- | ----------------- |
 * | `KAFKA_TOPIC_PREFIX`          | ""          | topic = prefix + `payments.events` |
 * | `OUTBOX_BATCH_SIZE`           | 200         | 1..1000           |
 * | `OUTBOX_WORKERS`              | 2           | 1..8              |
 * | `OUTBOX_POLL_MIN_MS`          | 5           | 1..1000, ≤ interval |
 * | `OUTBOX_POLL_INTERVAL_MS`     | 50          | 10..60000         |
 * | `OUTBOX_BACKOFF_BASE_MS`      | 100         | 1..60000          |
 * | `OUTBOX_BACKOFF_MAX_MS`       | 5000        | 1..300000         |
 * | `OUTBOX_RETENTION_MS`         | 7 days      | 1 min..366 days   |
 * | `OUTBOX_RETENTION_BATCH`      | 1000        | 1..10000          |
 * | `OUTBOX_RETENTION_INTERVAL_MS`| 60000       | 100..1 day        |
 * | `OUTBOX_METRICS_INTERVAL_MS`  | 1000        | 100..60000        |
 */
export const PublisherConfig: Config.Config<PublisherOptions & { readonly topicPrefix: string }> = Config.all({
  topicPrefix: KafkaTopicPrefix,
  batchSize: boundedInt("OUTBOX_BATCH_SIZE", publisherOptionBounds.batchSize, defaultPublisherOptions.batchSize),
  workers: boundedInt("OUTBOX_WORKERS", publisherOptionBounds.workers, defaultPublisherOptions.workers),
  pollMin_ms: boundedInt("OUTBOX_POLL_MIN_MS", publisherOptionBounds.pollMin_ms, defaultPublisherOptions.pollMin_ms),
  pollInterval_ms: boundedInt("OUTBOX_POLL_INTERVAL_MS", publisherOptionBounds.pollInterval_ms, defaultPublisherOptions.pollInterval_ms),
  backoffBase_ms: boundedInt("OUTBOX_BACKOFF_BASE_MS", publisherOptionBounds.backoffBase_ms, defaultPublisherOptions.backoffBase_ms),
  backoffMax_ms: boundedInt("OUTBOX_BACKOFF_MAX_MS", publisherOptionBounds.backoffMax_ms, defaultPublisherOptions.backoffMax_ms),
  retention_ms: boundedInt("OUTBOX_RETENTION_MS", publisherOptionBounds.retention_ms, defaultPublisherOptions.retention_ms),
  retentionBatch: boundedInt("OUTBOX_RETENTION_BATCH", publisherOptionBounds.retentionBatch, defaultPublisherOptions.retentionBatch),
  retentionInterval_ms: boundedInt(
    "OUTBOX_RETENTION_INTERVAL_MS",
    publisherOptionBounds.retentionInterval_ms,
    defaultPublisherOptions.retentionInterval_ms
  ),
  metricsInterval_ms: boundedInt("OUTBOX_METRICS_INTERVAL_MS", publisherOptionBounds.metricsInterval_ms, defaultPublisherOptions.metricsInterval_ms)
}).pipe(Config.map((settings) => ({ ...settings, topic: paymentsEventsTopic(settings.topicPrefix) })))

export interface PublisherOverrides {
  /** Fault injection (tests only): see `PublisherOptions.afterAck`. */
  readonly afterAck?: Effect.Effect<void>
}

/**
 * The publisher as part of a process (the server, or `main.ts`): reads `PublisherConfig`, ensures
 * the topic in the background (retrying while Kafka is down, so start-up never waits on the
 * broker), then runs the loop until the layer is released (SIGTERM), which finishes the batch in
 * hand. Needs `SqlClient`, `KafkaProducer` and `KafkaAdmin`.
 */
export const outboxPublisherLayer = (overrides: PublisherOverrides = {}) =>
  Layer.unwrap(
    Effect.gen(function* () {
      const settings = yield* PublisherConfig
      const topicSettings = yield* PaymentsEventsTopicConfig
      const options: PublisherOptions = overrides.afterAck === undefined ? settings : { ...settings, afterAck: overrides.afterAck }
      const start = Layer.effectDiscard(
        Effect.gen(function* () {
          const publisher = yield* OutboxPublisher
          // Each failed attempt is a failed publish (nothing can be published): OutboxPublishFailing
          // and the runbook's failure branch see a broker down at start as they see one down later.
          yield* Metric.update(outboxPublishFailures, 0)
          const ensure: Effect.Effect<unknown, never, KafkaAdmin> = OutboxTopics.ensureWithRetry(settings.topicPrefix, topicSettings, {
            waiting: "the outbox publisher: no event is published until then (outbox_publish_failures_total counts each attempt)",
            onFailure: Metric.update(outboxPublishFailures, 1)
          })
          // Until the topic is there (Kafka down at start), the backlog gauges are refreshed all the
          // same: the loop refreshes them once it runs, and an outside outage drill found a server
          // started without Kafka exporting no outbox_* series at all (OutboxEventsLate could not fire).
          // The loop's own refresh (`every`: failures and defects logged, it never ends of itself),
          // so the race below ends only when the topic is there.
          const gaugesMeanwhile = every(settings.metricsInterval_ms, "metrics refresh", publisher.refreshMetrics)
          yield* Effect.forkScoped(Effect.raceFirst(ensure, gaugesMeanwhile).pipe(Effect.andThen(publisher.run)))
        })
      )
      return start.pipe(Layer.provideMerge(OutboxPublisher.layerWith(options)))
    })
  )

/** The layer the server adds: the publisher configured from the environment. */
export const OutboxPublisherLive = outboxPublisherLayer()

/**
 * At start, on the publisher's pool: its role may mark outbox rows (UPDATE of the delivery
 * columns, which only `pay_publisher` holds: migrations/0108, 0113). The server and the publisher's
 * own process stop, naming PUBLISHER_DATABASE_URL, on a role that may not.
 */
export const PublisherRoleCheck = checkDatabaseRole("PUBLISHER_DATABASE_URL", ["outbox_events"], "UPDATE")
