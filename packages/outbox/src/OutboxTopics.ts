import { boundedInt, configRefused, KafkaAdmin, KafkaError, KafkaTopicPrefix, type TopicReady } from "@pay/infra"
import { Config, Duration, Effect } from "effect"
import type { ConfigError } from "effect/Config"
import { backoffDelay_ms } from "./Publisher.ts"

/** The topic of payment events, before the deployment's `KAFKA_TOPIC_PREFIX`. */
export const paymentsEventsTopicName = "payments.events"

/**
 * Partitions of `payments.events`. At least 3 (the floor), so that consumers of one group
 * can share the load; the key (payment id) keeps each payment on one partition whatever the count.
 * Raising it later moves keys to other partitions: only do so with the publisher stopped and the
 * topic drained.
 */
export const paymentsEventsPartitions = 3

export const paymentsEventsTopic = (prefix: string): string => `${prefix}${paymentsEventsTopicName}`

/**
 * How durable `payments.events` is, set explicitly when it is created (and set again on an existing
 * topic), never left to the broker's defaults (issue 11):
 *
 * | variable                          | default | bounds     | local / cluster |
 * | --------------------------------- | ------- | ---------- | --------------- |
 * | `KAFKA_REPLICATION_FACTOR`        | 1       | 1..32      | 1 / 3           |
 * | `KAFKA_MIN_INSYNC_REPLICAS`       | 1       | 1..32, ≤ replication factor | 1 / 2 |
 * | `PAYMENTS_EVENTS_RETENTION_DAYS`  | 0       | 0..36500   | 0 = kept forever (`retention.ms=-1`) |
 *
 * With the producer's `acks=all`, `min.insync.replicas` is how many copies an acknowledged event
 * has. The retention makes "a consumer can replay from offset 0" true for as long as it says;
 * the default keeps the history forever (docs/events.md).
 */
export interface PaymentsEventsTopicSettings {
  readonly replicationFactor: number
  readonly minInsyncReplicas: number
  /** 0: kept forever. */
  readonly retention_days: number
}

export const paymentsEventsTopicBounds = {
  replicationFactor: { min: 1, max: 32 },
  minInsyncReplicas: { min: 1, max: 32 },
  retention_days: { min: 0, max: 36_500 }
} as const

/** The local single-broker stack's settings (tests too). */
export const localPaymentsEventsTopicSettings: PaymentsEventsTopicSettings = { replicationFactor: 1, minInsyncReplicas: 1, retention_days: 0 }

const minInsyncAboveReplicas = (settings: PaymentsEventsTopicSettings) =>
  `KAFKA_MIN_INSYNC_REPLICAS (${settings.minInsyncReplicas}) exceeds KAFKA_REPLICATION_FACTOR (${settings.replicationFactor}): every acks=all write would be refused`

/** Read at start-up; a min ISR above the replication factor is refused there, like a value out of bounds. */
export const PaymentsEventsTopicConfig: Config.Config<PaymentsEventsTopicSettings> = Config.all({
  replicationFactor: boundedInt("KAFKA_REPLICATION_FACTOR", paymentsEventsTopicBounds.replicationFactor, 1),
  minInsyncReplicas: boundedInt("KAFKA_MIN_INSYNC_REPLICAS", paymentsEventsTopicBounds.minInsyncReplicas, 1),
  retention_days: boundedInt("PAYMENTS_EVENTS_RETENTION_DAYS", paymentsEventsTopicBounds.retention_days, 0)
}).pipe(Config.mapEffect((settings) =>
  settings.minInsyncReplicas > settings.replicationFactor
    ? configRefused(minInsyncAboveReplicas(settings))
    : Effect.succeed(settings)
))

const day_ms = 24 * 60 * 60 * 1_000

/** The topic-level configs for the settings (what `describeTopic` then reports). */
export const paymentsEventsTopicConfigs = (settings: PaymentsEventsTopicSettings): Readonly<Record<string, string>> => ({
  "min.insync.replicas": String(settings.minInsyncReplicas),
  "retention.ms": settings.retention_days === 0 ? "-1" : String(settings.retention_days * day_ms),
  // History is what consumers replay: never compacted away, never trimmed by size.
  "cleanup.policy": "delete",
  "retention.bytes": "-1",
  // The largest record batch the topic takes, said rather than left to the broker's default: the
  // publisher's produce calls stay four times under it (`sendBytes_max`, 256 KiB, PublisherModel.ts).
  // A topic configured below the publisher's calls refused them for ever (outside re-test of 001ea54).
  "max.message.bytes": String(paymentsEventsMessageBytes_max)
})

/** `max.message.bytes` of `payments.events`: 1 MiB, Kafka's usual limit. */
export const paymentsEventsMessageBytes_max = 1024 * 1024

/** Bounds of the background ensure step. */
const ensureBackoffBase_ms = 500
const ensureBackoffMax_ms = 10_000

/**
 * Creates `<prefix>payments.events` with at least 3 partitions, and waits until every partition
 * has a leader. Idempotent: an existing topic with enough partitions is fine; one with fewer is
 * a KafkaError (never silently accepted: ordering assumptions depend on the partitioning).
 */
const ensure = (
  prefix: string,
  settings: PaymentsEventsTopicSettings = localPaymentsEventsTopicSettings
): Effect.Effect<TopicReady, KafkaError, KafkaAdmin> =>
  Effect.gen(function* () {
    if (settings.minInsyncReplicas > settings.replicationFactor) {
      // Every acks=all write would be refused (NOT_ENOUGH_REPLICAS): a configuration error.
      return yield* Effect.fail(new KafkaError({
        operation: "ensureTopic",
        message: minInsyncAboveReplicas(settings),
        retriable: false,
        code: "INVALID_CONFIG"
      }))
    }
    const admin = yield* KafkaAdmin
    const ready = yield* admin.createTopic({
      topic: paymentsEventsTopic(prefix),
      partitions: paymentsEventsPartitions,
      replicationFactor: settings.replicationFactor,
      configs: paymentsEventsTopicConfigs(settings)
    })
    yield* Effect.logInfo("kafka topic ready").pipe(
      // `retention_days` 0 is "kept for ever" (retention.ms -1), which an operator must not read as 0 days.
      Effect.annotateLogs({
        topic: ready.topic,
        partitions: ready.partitions,
        created: ready.created,
        replicationFactor: settings.replicationFactor,
        minInsyncReplicas: settings.minInsyncReplicas,
        retention: settings.retention_days === 0 ? "unlimited" : `${settings.retention_days} days`
      })
    )
    return ready
  })

/** `ensure` with the prefix and the durability settings from the environment. */
const ensureFromConfig: Effect.Effect<TopicReady, KafkaError | ConfigError, KafkaAdmin> = Effect.gen(function* () {
  const prefix = yield* KafkaTopicPrefix
  return yield* ensure(prefix, yield* PaymentsEventsTopicConfig)
})

/** Who waits for the topic (named on the log line) and what else a failed attempt does (a counter). */
export interface TopicWaiter {
  /** `the outbox publisher: no event is published until then`. */
  readonly waiting: string
  readonly onFailure?: Effect.Effect<void>
}

/**
 * `ensure`, retried with bounded backoff until it succeeds (or the fiber is interrupted). The
 * publisher runs this before its loop so that a platform started while Kafka is down still
 * starts, accepts and commits; events wait in the outbox until the broker is back. Each failed
 * attempt is logged naming who waits (outside operator drill: the line did not say that the
 * publisher and the consumers were not running, and the runbook's "no failure" branch then
 * suspected stolen credentials).
 */
const ensureWithRetry = (prefix: string, settings: PaymentsEventsTopicSettings, waiter: TopicWaiter): Effect.Effect<TopicReady, never, KafkaAdmin> =>
  Effect.gen(function* () {
    let failures = 0
    while (true) {
      const attempt = yield* Effect.result(ensure(prefix, settings))
      if (attempt._tag === "Success") return attempt.success
      failures++
      if (waiter.onFailure !== undefined) yield* waiter.onFailure
      const delay_ms = backoffDelay_ms(failures, ensureBackoffBase_ms, ensureBackoffMax_ms)
      // Not retriable (e.g. the topic exists with too few partitions): an operator must act.
      const log = attempt.failure.retriable ? Effect.logWarning : Effect.logError
      yield* log("cannot ensure the payments.events topic yet").pipe(
        Effect.annotateLogs({ error: attempt.failure.message, code: attempt.failure.code, retry_in_ms: delay_ms, waiting: waiter.waiting })
      )
      yield* Effect.sleep(Duration.millis(delay_ms))
    }
  })

/** The start-up step that creates the event topics (the server runs `ensureFromConfig`). */
export const OutboxTopics = { ensure, ensureFromConfig, ensureWithRetry } as const
