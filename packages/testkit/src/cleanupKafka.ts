import { Effect } from "effect"

/** Deletes every topic under the run's prefix. Filled in with the Kafka admin service. */
export const cleanupKafkaPrefix = (_brokers: string, _prefix: string) => Effect.void
