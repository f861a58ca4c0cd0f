import type { Admin } from "@platformatic/kafka"
import { Effect } from "effect"
import { boundedBy, KafkaError, toKafkaError } from "./KafkaCommon.ts"

/** What the readiness probes of `KafkaAdmin` need of its options. */
export interface PingOptions {
  readonly brokers: string
  /** Bound on each probe: short, so a dead broker fails it quickly. */
  readonly pingTimeout_ms: number
}

/** A fresh metadata round trip with no topic, bounded: what `/health/ready` asks first. */
export const makePing = (admin: Admin, options: PingOptions) =>
  Effect.suspend(() => {
    const started_ms = Date.now()
    return Effect.tryPromise({
      // No topics: the cheapest metadata request there is, yet it needs a live broker to answer.
      try: () => admin.metadata({ topics: [], forceUpdate: true, retries: 0 }),
      catch: (error) => toKafkaError("ping", error)
    }).pipe(
      boundedBy("ping", options.pingTimeout_ms),
      Effect.map((metadata) => ({
        clusterId: metadata.id,
        brokerCount: metadata.brokers.size,
        controllerId: metadata.controllerId,
        latency_ms: Date.now() - started_ms
      })),
      Effect.mapError(
        (error) =>
          new KafkaError({
            operation: "ping",
            message: `no Kafka broker answered at ${options.brokers}: ${error.message}`,
            retriable: error.retriable,
            code: error.code
          })
      ),
      Effect.withSpan("kafka.ping")
    )
  })

/** One topic's metadata, bounded: fails when it does not exist, has fewer than `partitionsMin` partitions or a partition without a leader. Never creates it. */
export const makePingTopic = (admin: Admin, options: PingOptions) => (topic: string, partitionsMin = 1) =>
  Effect.tryPromise({
    // autocreateTopics false (the client's default, said here): a probe must never create the topic.
    try: () => admin.metadata({ topics: [topic], forceUpdate: true, retries: 0, autocreateTopics: false }),
    catch: (error) => toKafkaError("pingTopic", error)
  }).pipe(
    boundedBy("pingTopic", options.pingTimeout_ms),
    Effect.flatMap((metadata) => {
      const found = metadata.topics.get(topic)
      if (found === undefined) {
        return Effect.fail(new KafkaError({ operation: "pingTopic", message: `no topic ${topic}`, retriable: false, code: "UNKNOWN_TOPIC_OR_PARTITION" }))
      }
      // Fewer partitions than the publisher requires: it refuses the topic and publishes nothing
      // (outside re-test: recreated with 1 partition, readiness said up while nothing was published).
      if (found.partitionsCount < partitionsMin) {
        return Effect.fail(new KafkaError({ operation: "pingTopic", message: `topic ${topic} has ${found.partitionsCount} partitions, ${partitionsMin} wanted`, retriable: false, code: "INVALID_PARTITIONS" }))
      }
      const leaderless = found.partitions.findIndex((partition) => partition.leader < 0)
      return leaderless === -1
        ? Effect.void
        : Effect.fail(new KafkaError({ operation: "pingTopic", message: `partition ${leaderless} of ${topic} has no leader`, retriable: true, code: "LEADER_NOT_AVAILABLE" }))
    }),
    Effect.withSpan("kafka.pingTopic")
  )
