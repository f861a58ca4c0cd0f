import { KafkaAdmin, type KafkaError, KafkaTopicPrefix, type TopicReady } from "@pay/infra"
import { Duration, Effect } from "effect"
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

/** Bounds of the background ensure step. */
const ensureBackoffBase_ms = 500
const ensureBackoffMax_ms = 10_000

/**
 * Creates `<prefix>payments.events` with at least 3 partitions, and waits until every partition
 * has a leader. Idempotent: an existing topic with enough partitions is fine; one with fewer is
 * a KafkaError (never silently accepted: ordering assumptions depend on the partitioning).
 */
const ensure = (prefix: string): Effect.Effect<TopicReady, KafkaError, KafkaAdmin> =>
  Effect.gen(function* () {
    const admin = yield* KafkaAdmin
    const ready = yield* admin.createTopic({ topic: paymentsEventsTopic(prefix), partitions: paymentsEventsPartitions })
    yield* Effect.logInfo("kafka topic ready").pipe(
      Effect.annotateLogs({ topic: ready.topic, partitions: ready.partitions, created: ready.created })
    )
    return ready
  })

/** `ensure` with the prefix from `KAFKA_TOPIC_PREFIX`. */
const ensureFromConfig: Effect.Effect<TopicReady, KafkaError | ConfigError, KafkaAdmin> = Effect.gen(function* () {
  const prefix = yield* KafkaTopicPrefix
  return yield* ensure(prefix)
})

/**
 * `ensure`, retried with bounded backoff until it succeeds (or the fiber is interrupted). The
 * publisher runs this before its loop so that a platform started while Kafka is down still
 * starts, accepts and commits; events wait in the outbox until the broker is back.
 */
const ensureWithRetry = (prefix: string): Effect.Effect<TopicReady, never, KafkaAdmin> =>
  Effect.gen(function* () {
    let failures = 0
    while (true) {
      const attempt = yield* Effect.result(ensure(prefix))
      if (attempt._tag === "Success") return attempt.success
      failures++
      const delay_ms = backoffDelay_ms(failures, ensureBackoffBase_ms, ensureBackoffMax_ms)
      // Not retriable (e.g. the topic exists with too few partitions): an operator must act.
      const log = attempt.failure.retriable ? Effect.logWarning : Effect.logError
      yield* log("cannot ensure the payments.events topic yet").pipe(
        Effect.annotateLogs({ error: attempt.failure.message, code: attempt.failure.code, retry_in_ms: delay_ms })
      )
      yield* Effect.sleep(Duration.millis(delay_ms))
    }
  })

/** The start-up step that creates the event topics (the server runs `ensureFromConfig`). */
export const OutboxTopics = { ensure, ensureFromConfig, ensureWithRetry } as const
