import type * as Kafka from "@platformatic/kafka"
import { Effect } from "effect"

/** `@platformatic/kafka`'s module: the client classes and the protocol's constants. */
export type KafkaLibrary = typeof Kafka

/**
 * The client library, imported the first time a Kafka client is made rather than when `@pay/infra`
 * is: importing it costs ~0.8 s of CPU (it compiles its option schemas with Ajv), which every
 * process that never talks to Kafka paid at start (the CLI's database commands: `merchants
 * create`, `keys`, `fees`, `reconcile`; `pnpm cli --help`). The import blocks the event loop, so a
 * process that does talk to Kafka imports it before it connects anywhere (`preloadKafkaLibrary`,
 * Kafka.ts). Node caches the module: the second client pays nothing. A failed import is a broken
 * installation, a defect.
 */
export const kafkaLibrary: Effect.Effect<KafkaLibrary> = Effect.promise(() => import("@platformatic/kafka"))
