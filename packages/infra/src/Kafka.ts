/**
 * Kafka for the platform, over @platformatic/kafka (see docs/adr/0002-platformatic-kafka.md).
 * The service interfaces use only our own types, so the client can be swapped without touching
 * callers. Topic names are used as given: callers prepend `KAFKA_TOPIC_PREFIX` themselves.
 */
import { Effect, Layer } from "effect"
import { KafkaAdmin } from "./KafkaAdmin.ts"
import { KafkaConsumer } from "./KafkaConsumer.ts"
import { kafkaLibrary } from "./KafkaLibrary.ts"
import { KafkaProducer } from "./KafkaProducer.ts"

export * from "./KafkaAdmin.ts"
export { defaultKafkaTimeouts, type KafkaClientOptions, KafkaError, wallClockSleep } from "./KafkaCommon.ts"
export * from "./KafkaConsumer.ts"
export * from "./KafkaProducer.ts"

/** Admin, producer and consumer, all from `KAFKA_BROKERS`. */
export const KafkaLive = Layer.mergeAll(KafkaAdmin.layer, KafkaProducer.layer, KafkaConsumer.layer)

/**
 * Imports the client library now, before anything else is in flight. Its import blocks the event
 * loop (~0.5 s here, seconds on a loaded machine); a connection begun just before it (Postgres,
 * 5 s connect timer) finds its timer firing first. A short-lived process that talks to Kafka runs
 * this before it connects anywhere (the CLI's broker commands).
 */
export const preloadKafkaLibrary: Effect.Effect<void> = Effect.asVoid(kafkaLibrary)
