import { KafkaProducer } from "@pay/infra"
import { Context, Effect, Layer } from "effect"
import { SqlClient } from "effect/sql"
import type { SqlError } from "effect/sql/SqlError"
import { OutboxStore } from "./OutboxStore.ts"
import { makeHousekeeping, makePublishBatch, makeRun, type PublishFailure, type PublisherParts } from "./PublisherLoop.ts"
import { type BatchResult, type PublisherOptions, publisherOptionBounds, type PublisherStatus } from "./PublisherModel.ts"

export * from "./PublisherModel.ts"

const validate = (options: PublisherOptions): Effect.Effect<void> => {
  for (const [name, bound] of Object.entries(publisherOptionBounds)) {
    const value: unknown = Reflect.get(options, name)
    if (typeof value !== "number" || !Number.isInteger(value) || value < bound.min || value > bound.max) {
      return Effect.die(new Error(`publisher option ${name} must be an integer within ${bound.min}..${bound.max}, got ${String(value)}`))
    }
  }
  if (options.backoffBase_ms > options.backoffMax_ms) {
    return Effect.die(new Error(`backoffBase_ms (${options.backoffBase_ms}) exceeds backoffMax_ms (${options.backoffMax_ms})`))
  }
  if (options.pollMin_ms > options.pollInterval_ms) {
    return Effect.die(new Error(`pollMin_ms (${options.pollMin_ms}) exceeds pollInterval_ms (${options.pollInterval_ms})`))
  }
  if (options.topic.length === 0) return Effect.die(new Error("publisher topic is empty"))
  return Effect.void
}

/**
 * The outbox publisher: claims unpublished rows (FOR UPDATE SKIP LOCKED, so several instances can
 * run), sends them to Kafka, and marks them published only after the broker acknowledged them —
 * all inside one database transaction, so a crash at any point leaves the rows unpublished and
 * they are sent again (at least once; consumers deduplicate by the event id).
 */
export class OutboxPublisher extends Context.Service<OutboxPublisher, {
  /**
   * One claim-send-mark round. Uninterruptible once started, so shutdown finishes it (bounded by
   * the producer's own timeouts); the few regions the SQL client keeps interruptible (waiting for
   * a pool connection) roll the transaction back instead, which releases the rows. Either way no
   * row is marked without an ack. A send failure is recorded on the rows (attempt_count,
   * last_error), the rows are released, and the call fails with the KafkaError.
   */
  readonly publishBatch: Effect.Effect<BatchResult, PublishFailure>
  /** The long-running loop; runs until interrupted (SIGTERM), finishing the batch in hand. */
  readonly run: Effect.Effect<never>
  /** One retention run: deletes published rows past the retention, in bounded statements. */
  readonly pruneOnce: Effect.Effect<number, SqlError>
  /** Reads the backlog and sets the two gauges. */
  readonly refreshMetrics: Effect.Effect<void, SqlError>
  readonly status: Effect.Effect<PublisherStatus>
}>()("outbox/OutboxPublisher") {
  static readonly make = (options: PublisherOptions) =>
    Effect.gen(function* () {
      yield* validate(options)
      const parts: PublisherParts = {
        options,
        sql: yield* SqlClient.SqlClient,
        store: yield* OutboxStore,
        producer: yield* KafkaProducer,
        state: { running: false, lastSuccessAt_ms: null, lastError: null, publishedCount: 0 },
        workerFailures: []
      }
      const publishBatch = makePublishBatch(parts)
      const housekeeping = makeHousekeeping(parts)
      const run = makeRun(parts, publishBatch, housekeeping)
      const status = Effect.sync((): PublisherStatus => ({ ...parts.state, consecutiveFailures: Math.max(0, ...parts.workerFailures) }))
      return OutboxPublisher.of({ publishBatch: publishBatch(), run, ...housekeeping, status })
    })

  static readonly layerWith = (options: PublisherOptions) =>
    Layer.effect(OutboxPublisher, OutboxPublisher.make(options)).pipe(Layer.provide(OutboxStore.layer))

  /** Starts the loop in the background for the lifetime of the layer (the server's, or its own process). */
  static readonly launch = Layer.effectDiscard(
    Effect.gen(function* () {
      const publisher = yield* OutboxPublisher
      yield* Effect.forkScoped(publisher.run)
    })
  )
}
