import { PgClient } from "@effect/sql-pg"
import { type KafkaError, KafkaProducer } from "@pay/infra"
import { Cause, Context, Duration, Effect, Exit, Layer, Metric, Queue } from "effect"
import { SqlClient } from "effect/sql"
import type { SqlError } from "effect/sql/SqlError"
import { type OutboxRow, toEventRecord } from "./CloudEvents.ts"
import { OutboxStore } from "./OutboxStore.ts"

/** The channel the `outbox_events_notify` trigger (migrations/0004_outbox.sql) notifies after each insert. */
export const outboxNotifyChannel = "outbox_events"

export interface PublisherOptions {
  /** The topic every event goes to (`payments.events`, with the deployment's prefix). */
  readonly topic: string
  /** Rows claimed and sent per transaction. Bounded: 1..1000 (the producer refuses more per send). */
  readonly batchSize: number
  /**
   * Claim-send-mark loops in this instance, each with its own transaction (1..8). With 2, one
   * loop's database work (claim, mark, commit) overlaps the other's wait for the broker's ack,
   * which is what lets a backlog drain near the producer's own speed. They coordinate exactly
   * like separate instances do (SKIP LOCKED and the per-payment guard).
   */
  readonly workers: number
  /** Polling fallback when no NOTIFY arrives (lost listen connection, missed notification). */
  readonly pollInterval_ms: number
  /** Backoff after a failed batch (Kafka or Postgres down): doubles from base up to max. */
  readonly backoffBase_ms: number
  readonly backoffMax_ms: number
  /** Published rows are kept this long (re-publishable history), then deleted in bounded batches. */
  readonly retention_ms: number
  /** Rows deleted per retention statement, and at most `retentionRounds_max` statements per run. */
  readonly retentionBatch: number
  readonly retentionInterval_ms: number
  /** How often `outbox_backlog_count` / `outbox_oldest_unpublished_age_ms` are refreshed. */
  readonly metricsInterval_ms: number
  /**
   * Fault injection for tests: runs after the broker acknowledged a batch and before the rows are
   * marked published (the window in which a crash makes the publisher send the batch again).
   */
  readonly afterAck?: Effect.Effect<void>
  /**
   * Observer called after each committed non-empty batch (the benchmark collects the exact
   * commit-to-ack latencies here; the histogram keeps only buckets). Must not fail or block.
   */
  readonly onBatch?: (result: BatchResult) => Effect.Effect<void>
}

export const defaultPublisherOptions = {
  batchSize: 200,
  workers: 2,
  pollInterval_ms: 500,
  backoffBase_ms: 100,
  backoffMax_ms: 5_000,
  retention_ms: 7 * 24 * 60 * 60 * 1_000,
  retentionBatch: 1_000,
  retentionInterval_ms: 60_000,
  metricsInterval_ms: 1_000
} as const

/** Bounds the options must satisfy; `PublisherConfig` enforces the same ones on the environment. */
export const publisherOptionBounds = {
  batchSize: { min: 1, max: 1_000 },
  workers: { min: 1, max: 8 },
  pollInterval_ms: { min: 10, max: 60_000 },
  backoffBase_ms: { min: 1, max: 60_000 },
  backoffMax_ms: { min: 1, max: 300_000 },
  retention_ms: { min: 60_000, max: 366 * 24 * 60 * 60 * 1_000 },
  retentionBatch: { min: 1, max: 10_000 },
  retentionInterval_ms: { min: 100, max: 24 * 60 * 60 * 1_000 },
  metricsInterval_ms: { min: 100, max: 60_000 }
} as const

/** One retention run deletes at most retentionBatch x this many rows, then waits for the next run. */
const retentionRounds_max = 10

/** Figures for operators (exported with the other Effect metrics). */
export const outboxBacklogCount = Metric.gauge("outbox_backlog_count", {
  description: "Unpublished rows in outbox_events"
})
export const outboxOldestUnpublishedAge = Metric.gauge("outbox_oldest_unpublished_age_ms", {
  description: "Age of the oldest unpublished outbox row, in milliseconds (0 when none)"
})
export const outboxPublished = Metric.counter("outbox_published_total", {
  description: "Outbox rows acknowledged by Kafka and marked published"
})
export const outboxPublishFailures = Metric.counter("outbox_publish_failures_total", {
  description: "Batches that failed (Kafka or Postgres error) and were released for retry"
})
export const outboxCommitToAck = Metric.histogram("outbox_commit_to_ack_ms", {
  description: "From the row's creation (inside its transaction) to the broker's acknowledgement, in ms",
  // 1-2-5 steps, so that the 100 ms objective (p99 commit-to-ack) is a bucket edge.
  boundaries: [1, 2, 5, 10, 20, 50, 100, 200, 500, 1_000, 2_000, 5_000, 10_000, 30_000, 60_000]
})

export interface BatchResult {
  /** Rows claimed (0: nothing claimable right now). */
  readonly claimed: number
  /** Rows acknowledged by the broker and marked published (equal to `claimed` on success). */
  readonly published: number
  /** Per row: creation (its transaction) to broker ack, in ms. */
  readonly commitToAck_ms: ReadonlyArray<number>
  /** Per row, same order: its event type (lets an observer split the latencies by type). */
  readonly eventTypes: ReadonlyArray<string>
}

/** The health signal: what the loop did last. Plain data, for logs and a readiness probe. */
export interface PublisherStatus {
  readonly running: boolean
  /** Wall-clock ms of the last batch that completed without error (empty ones included). */
  readonly lastSuccessAt_ms: number | null
  /** The worst worker's count of consecutive failed rounds (0: every worker's last round succeeded). */
  readonly consecutiveFailures: number
  readonly lastError: string | null
  /** Rows this instance has published (acked and marked) since it was made. */
  readonly publishedCount: number
}

const emptyBatch: BatchResult = { claimed: 0, published: 0, commitToAck_ms: [], eventTypes: [] }

/** `base * 2^(failures-1)`, capped at `max`: bounded whatever the failure count. */
export const backoffDelay_ms = (failures: number, base_ms: number, max_ms: number): number =>
  Math.min(max_ms, base_ms * 2 ** Math.min(Math.max(failures - 1, 0), 20))

/**
 * The loops below observe failures with `Effect.exit` in order to log and retry them. An
 * interruption (shutdown) can surface there too, from an interruptible region inside the batch
 * (pool acquisition, a race): it must end the loop, never be counted as one more failure and
 * retried, or the fiber would outlive its scope and shutdown would hang.
 */
const endOnInterrupt = <A, E>(exit: Exit.Exit<A, E>): Effect.Effect<void> =>
  Exit.isFailure(exit) && Cause.hasInterrupts(exit.cause) ? Effect.interrupt : Effect.void

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
  readonly publishBatch: Effect.Effect<BatchResult, KafkaError | SqlError>
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
      const sql = yield* SqlClient.SqlClient
      const pg = yield* PgClient.PgClient
      const store = yield* OutboxStore
      const producer = yield* KafkaProducer

      const state: { -readonly [K in Exclude<keyof PublisherStatus, "consecutiveFailures">]: PublisherStatus[K] } = {
        running: false,
        lastSuccessAt_ms: null,
        lastError: null,
        publishedCount: 0
      }
      /**
       * Consecutive failures per worker. Kept apart because an idle worker's empty claim says
       * nothing about the other one's failing sends (while one worker holds the rows and fails,
       * the other claims nothing): a shared counter would be reset by it, hiding the outage from
       * the health signal and collapsing the backoff.
       */
      const workerFailures: Array<number> = []

      type Round =
        | { readonly _tag: "Published"; readonly result: BatchResult }
        | { readonly _tag: "SendFailed"; readonly error: KafkaError }

      const sendAndMark = (rows: ReadonlyArray<OutboxRow>) =>
        Effect.gen(function* () {
          const ids = rows.map((row) => row.id)
          const sent = yield* Effect.result(producer.send(rows.map((row) => ({ topic: options.topic, ...toEventRecord(row) }))))
          if (sent._tag === "Failure") {
            // Recorded in the claiming transaction itself (the rows are still ours), then the
            // commit releases them. The broker may have stored part of the batch: it is sent
            // again whole (at-least-once).
            yield* store.recordFailure(ids, `${sent.failure.code}: ${sent.failure.message}`)
            const failed: Round = { _tag: "SendFailed", error: sent.failure }
            return failed
          }
          const acked_ms = Date.now()
          if (options.afterAck !== undefined) yield* options.afterAck
          yield* store.markPublished(ids)
          const published: Round = {
            _tag: "Published",
            result: {
              claimed: rows.length,
              published: rows.length,
              commitToAck_ms: rows.map((row) => acked_ms - row.created_at.getTime()),
              eventTypes: rows.map((row) => row.event_type)
            }
          }
          return published
        })

      const publishBatch: Effect.Effect<BatchResult, KafkaError | SqlError> = sql
        .withTransaction(
          Effect.gen(function* () {
            const rows = yield* store.claim(options.batchSize)
            if (rows.length === 0) {
              const nothing: Round = { _tag: "Published", result: emptyBatch }
              return nothing
            }
            return yield* sendAndMark(rows)
          })
        )
        .pipe(
          // After the commit: only now are the rows really marked (or their failure recorded).
          Effect.flatMap((round) => (round._tag === "SendFailed" ? Effect.fail(round.error) : Effect.succeed(round.result))),
          Effect.tap((result) =>
            result.published === 0
              ? Effect.void
              : Effect.gen(function* () {
                  state.publishedCount += result.published
                  yield* Metric.update(outboxPublished, result.published)
                  for (const latency_ms of result.commitToAck_ms) yield* Metric.update(outboxCommitToAck, latency_ms)
                  if (options.onBatch !== undefined) yield* options.onBatch(result)
                })
          ),
          // Failures and defects count; an interruption (shutdown) is not a failed batch.
          Effect.tapCause((cause) => (Cause.hasInterruptsOnly(cause) ? Effect.void : Metric.update(outboxPublishFailures, 1))),
          Effect.uninterruptible,
          Effect.withSpan("OutboxPublisher.publishBatch")
        )

      const refreshMetrics = store.backlog.pipe(
        Effect.flatMap((backlog) =>
          Effect.all([
            Metric.update(outboxBacklogCount, Number(backlog.unpublished_count)),
            Metric.update(outboxOldestUnpublishedAge, backlog.oldest_unpublished_age_ms)
          ])
        ),
        Effect.asVoid
      )

      // The cutoff is computed on each run (not once at start-up: a long-lived process would
      // otherwise keep deleting against its start time).
      const pruneOnce = Effect.gen(function* () {
        const cutoff = new Date(Date.now() - options.retention_ms)
        let deleted = 0
        for (let round = 0; round < retentionRounds_max; round++) {
          const count = yield* store.deletePublishedBefore(cutoff, options.retentionBatch)
          deleted += count
          if (count < options.retentionBatch) break
        }
        return deleted
      }).pipe(Effect.withSpan("OutboxPublisher.pruneOnce"))

      /**
       * LISTEN on a connection of its own; each notification drops a token into `wake` (a sliding
       * queue of one: a burst of commits wakes the loop once). If the listen connection dies, log,
       * wait (bounded backoff) and listen again; polling covers the gap.
       */
      const listenForever = (wakes: ReadonlyArray<Queue.Queue<void>>) =>
        Effect.gen(function* () {
          let failures = 0
          while (true) {
            const exit = yield* Effect.exit(
              Effect.scoped(
                Effect.gen(function* () {
                  const notifications = yield* pg.listen(outboxNotifyChannel)
                  failures = 0
                  const wakeAll = Effect.forEach(wakes, (wake) => Queue.offer(wake, undefined), { discard: true })
                  // Rows committed while we were not listening sent their NOTIFY to nobody.
                  yield* wakeAll
                  while (true) {
                    yield* Queue.take(notifications)
                    yield* wakeAll
                  }
                })
              )
            )
            yield* endOnInterrupt(exit)
            if (Exit.isFailure(exit)) {
              failures++
              const delay_ms = backoffDelay_ms(failures, options.backoffBase_ms, options.backoffMax_ms)
              yield* Effect.logWarning("LISTEN outbox_events lost; polling until it is back").pipe(
                Effect.annotateLogs({ retry_in_ms: delay_ms, cause: Cause.pretty(exit.cause) })
              )
              yield* Effect.sleep(Duration.millis(delay_ms))
            }
          }
        })

      /** Housekeeping on its own schedule, so a slow or failing batch never starves the gauges. */
      const every = (interval_ms: number, name: string, task: Effect.Effect<unknown, SqlError>) =>
        Effect.gen(function* () {
          while (true) {
            const exit = yield* Effect.exit(task)
            yield* endOnInterrupt(exit)
            if (Exit.isFailure(exit)) {
              yield* Effect.logWarning(`outbox ${name} failed`).pipe(Effect.annotateLogs({ cause: Cause.pretty(exit.cause) }))
            }
            yield* Effect.sleep(Duration.millis(interval_ms))
          }
        })

      /** One claim-send-mark loop; `run` starts `workers` of them. */
      const worker = (wake: Queue.Queue<void>, index: number) =>
        Effect.gen(function* () {
          const waitForWork = Queue.take(wake).pipe(Effect.timeoutOption(Duration.millis(options.pollInterval_ms)), Effect.asVoid)
          workerFailures[index] = 0
          while (true) {
            // Every failure, a defect included, is logged loudly and retried after a bounded
            // backoff: the loop must outlive a broker or database outage, and a fiber that
            // died quietly would stop publishing while the API goes on committing.
            const exit = yield* Effect.exit(publishBatch)
            yield* endOnInterrupt(exit)
            if (Exit.isFailure(exit)) {
              const failures: number = (workerFailures[index] ?? 0) + 1
              workerFailures[index] = failures
              state.lastError = Cause.pretty(exit.cause)
              const delay_ms = backoffDelay_ms(failures, options.backoffBase_ms, options.backoffMax_ms)
              const log = Cause.hasDies(exit.cause) ? Effect.logError : Effect.logWarning
              yield* log("outbox batch failed; rows released for retry").pipe(
                Effect.annotateLogs({ worker: index, consecutive_failures: failures, retry_in_ms: delay_ms, cause: state.lastError })
              )
              yield* Effect.sleep(Duration.millis(delay_ms))
              continue
            }
            workerFailures[index] = 0
            if (workerFailures.every((failures) => failures === 0)) state.lastError = null
            state.lastSuccessAt_ms = Date.now()
            // Something was claimed: more may be claimable at once (a full batch, or the next
            // event of a payment whose previous one was just marked). Otherwise wait for a
            // NOTIFY or the poll interval.
            if (exit.value.claimed === 0) yield* waitForWork
          }
        })

      const run: Effect.Effect<never> = Effect.scoped(
        Effect.gen(function* () {
          // One wake-up queue per worker: a notification wakes every idle worker.
          const wakes = yield* Effect.forEach(Array.from({ length: options.workers }, () => 0), () => Queue.sliding<void>(1))
          yield* Effect.forkScoped(listenForever(wakes))
          yield* Effect.forkScoped(every(options.metricsInterval_ms, "metrics refresh", refreshMetrics))
          yield* Effect.forkScoped(every(options.retentionInterval_ms, "retention", pruneOnce))
          state.running = true
          yield* Effect.logInfo("outbox publisher started").pipe(
            Effect.annotateLogs({
              topic: options.topic,
              batch_size: options.batchSize,
              workers: options.workers,
              poll_interval_ms: options.pollInterval_ms
            })
          )
          yield* Effect.forEach(wakes, (wake, index) => worker(wake, index), { concurrency: "unbounded", discard: true })
          return yield* Effect.never
        })
      ).pipe(
        Effect.ensuring(Effect.sync(() => {
          state.running = false
        })),
        Effect.onInterrupt(() => Effect.logInfo("outbox publisher stopped")),
        Effect.withSpan("OutboxPublisher.run")
      )

      const status = Effect.sync((): PublisherStatus => ({ ...state, consecutiveFailures: Math.max(0, ...workerFailures) }))

      return OutboxPublisher.of({ publishBatch, run, pruneOnce, refreshMetrics, status })
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
