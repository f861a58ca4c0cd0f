import { type KafkaError, type KafkaProducer, spanFromTraceparent, traceparentRecordHeader } from "@pay/infra"
import { Cause, Clock, Duration, Effect, Exit, Metric, Option, type Tracer } from "effect"
import type { SqlClient } from "effect/sql"
import type { SqlError } from "effect/sql/SqlError"
import { type EventRecord, type OutboxRow, toEventRecord } from "./CloudEvents.ts"
import type { OutboxStore } from "./OutboxStore.ts"
import {
  backoffDelay_ms,
  idlePollDelay_ms,
  type BatchResult,
  OutboxRowUnsendable,
  outboxBacklogCount,
  outboxCommitToAck,
  outboxOldestUnpublishedAge,
  outboxPublished,
  outboxPublishFailures,
  type PublisherOptions,
  type PublisherStatus,
  retentionRounds_max,
  sendBytes_max
} from "./PublisherModel.ts"

/**
 * The publisher's moving parts (Publisher.ts assembles them): the claim-send-mark batch, the
 * housekeeping (gauges, retention) and the polling workers.
 */
export interface PublisherParts {
  readonly options: PublisherOptions
  readonly sql: SqlClient.SqlClient
  readonly store: OutboxStore["Service"]
  readonly producer: KafkaProducer["Service"]
  readonly state: { -readonly [K in Exclude<keyof PublisherStatus, "consecutiveFailures">]: PublisherStatus[K] }
  /**
   * Consecutive failures per worker. Kept apart because an idle worker's empty claim says
   * nothing about the other one's failing sends (while one worker holds the rows and fails,
   * the other claims nothing): a shared counter would be reset by it, hiding the outage from
   * the health signal and collapsing the backoff.
   */
  readonly workerFailures: Array<number>
}

const emptyBatch: BatchResult = { claimed: 0, published: 0, commitToAck_ms: [], eventTypes: [] }

/**
 * The loops below observe failures with `Effect.exit` in order to log and retry them. An
 * interruption (shutdown) can surface there too, from an interruptible region inside the batch
 * (pool acquisition, a race): it must end the loop, never be counted as one more failure and
 * retried, or the fiber would outlive its scope and shutdown would hang.
 */
const endOnInterrupt = <A, E>(exit: Exit.Exit<A, E>): Effect.Effect<void> =>
  Exit.isFailure(exit) && Cause.hasInterrupts(exit.cause) ? Effect.interrupt : Effect.void

/** A round's outcome: what was published (marked), and the failure that ended it, if any. */
interface Round {
  readonly result: BatchResult
  readonly failure?: KafkaError | OutboxRowUnsendable
}

/** A claimed row and the record it is sent as. */
interface Outgoing {
  readonly row: OutboxRow
  readonly record: EventRecord
}

/** Each row with its record, or the first row that does not encode (and why). */
const encodeRows = (rows: ReadonlyArray<OutboxRow>): Array<Outgoing> | OutboxRowUnsendable => {
  const outgoing: Array<Outgoing> = []
  for (const row of rows) {
    try {
      outgoing.push({ row, record: toEventRecord(row) })
    } catch (error) {
      return new OutboxRowUnsendable({ event_id: row.id, message: `unsendable: ${error instanceof Error ? error.message : String(error)}` })
    }
  }
  return outgoing
}

const recordBytes = (record: EventRecord): number => {
  let bytes = Buffer.byteLength(record.key) + Buffer.byteLength(record.value)
  for (const [name, value] of Object.entries(record.headers)) bytes += Buffer.byteLength(name) + Buffer.byteLength(value)
  return bytes
}

/** Consecutive slices (position order kept), each of at most `sendBytes_max` bytes (a larger record alone). */
const sendSlices = (outgoing: ReadonlyArray<Outgoing>): Array<Array<Outgoing>> => {
  const slices: Array<Array<Outgoing>> = []
  let bytes = 0
  for (const item of outgoing) {
    const size = recordBytes(item.record)
    const last = slices[slices.length - 1]
    if (last === undefined || bytes + size > sendBytes_max) {
      slices.push([item])
      bytes = size
    } else {
      last.push(item)
      bytes += size
    }
  }
  return slices
}

/**
 * The publish span links to the span of each change it carries (the `traceparent` stored with the
 * row by the request that wrote it): the request's trace leads to its publication, although the
 * publisher runs later, in a batch, perhaps in another process.
 */
const changeLinks = (slice: ReadonlyArray<Outgoing>): Array<Tracer.SpanLink> =>
  slice.flatMap(({ row, record }) =>
    Option.match(spanFromTraceparent(record.headers[traceparentRecordHeader]), {
      onNone: () => [],
      onSome: (span) => [{ span, attributes: { "outbox.event_id": row.id, "outbox.event_type": row.event_type } }]
    })
  )

const publishedResult = (claimed: number, rows: ReadonlyArray<OutboxRow>, acked_ms: number): BatchResult => ({
  claimed,
  published: rows.length,
  commitToAck_ms: rows.map((row) => acked_ms - row.created_at.getTime()),
  eventTypes: rows.map((row) => row.event_type)
})

/**
 * Sends the claimed rows in order, in produce calls of at most `sendBytes_max` bytes, each after
 * the previous one's ack, then marks them. When a call fails, the rows acknowledged before it are
 * marked (they are in Kafka) and the failure is recorded on the others, all in the claiming
 * transaction; the broker may have stored part of the failed call: those rows are sent again
 * (at-least-once). A row that does not encode is recorded as such and nothing is sent.
 */
const makeSendAndMark = ({ options, store, producer }: PublisherParts) =>
  (rows: ReadonlyArray<OutboxRow>) =>
    Effect.gen(function* () {
      const outgoing = encodeRows(rows)
      if (!Array.isArray(outgoing)) {
        yield* store.recordFailure(rows.map((row) => row.id), `${outgoing.message} (event ${outgoing.event_id})`)
        const unsendable: Round = { result: { ...emptyBatch, claimed: rows.length }, failure: outgoing }
        return unsendable
      }
      const acked: Array<OutboxRow> = []
      let acked_ms = Date.now()
      for (const slice of sendSlices(outgoing)) {
        const sent = yield* Effect.result(
          producer.send(slice.map(({ record }) => ({ topic: options.topic, ...record }))).pipe(
            Effect.withSpan("OutboxPublisher.send", {
              kind: "producer",
              links: changeLinks(slice),
              attributes: { "messaging.destination.name": options.topic, "messaging.batch.message_count": slice.length }
            })
          )
        )
        if (sent._tag === "Failure") {
          const error = `${sent.failure.code}: ${sent.failure.message}`
          const firstWaiting = slice[0]?.row
          // Said with what went before it: an operator reads which rows wait and which went (outside re-test).
          yield* Effect.logWarning("outbox send failed; the rows acknowledged before it are marked, the rest wait").pipe(Effect.annotateLogs({
            claimed: rows.length, acknowledged: acked.length, first_waiting_event_id: firstWaiting?.id ?? null,
            first_waiting_position: String(firstWaiting?.position ?? ""), error
          }))
          // Recorded in the claiming transaction itself (the rows are still ours), then the commit releases them.
          yield* store.markPublished(acked.map((row) => row.id))
          yield* store.recordFailure(rows.slice(acked.length).map((row) => row.id), error)
          const failed: Round = { result: publishedResult(rows.length, acked, acked_ms), failure: sent.failure }
          return failed
        }
        acked_ms = Date.now()
        acked.push(...slice.map(({ row }) => row))
      }
      if (options.afterAck !== undefined) yield* options.afterAck
      yield* store.markPublished(rows.map((row) => row.id))
      const published: Round = { result: publishedResult(rows.length, rows, acked_ms) }
      return published
    })

export type PublishFailure = KafkaError | OutboxRowUnsendable | SqlError

/** What a batch's caller does with its failure inside the batch's span (its log line then carries the batch's trace). */
export type OnBatchFailure = (cause: Cause.Cause<PublishFailure>) => Effect.Effect<void>

/** One batch, a trace of its own; `onFailure` runs inside that trace (not on an interruption). */
export type PublishBatch = (onFailure?: OnBatchFailure) => Effect.Effect<BatchResult, PublishFailure>

export const makePublishBatch = (parts: PublisherParts): PublishBatch => {
  const { options, sql, store, state } = parts
  const sendAndMark = makeSendAndMark(parts)
  const publishBatch: Effect.Effect<BatchResult, PublishFailure> = sql
    .withTransaction(
      Effect.gen(function* () {
        const rows = yield* store.claim(options.batchSize)
        if (rows.length === 0) {
          const nothing: Round = { result: emptyBatch }
          return nothing
        }
        return yield* sendAndMark(rows)
      })
    )
    .pipe(
      // After the commit: only now are the rows really marked (or their failure recorded). What
      // was marked counts, the failure (after a part was sent) fails the batch.
      Effect.tap(({ result }) =>
        result.published === 0
          ? Effect.void
          : Effect.gen(function* () {
              state.publishedCount += result.published
              yield* Metric.update(outboxPublished, result.published)
              for (const latency_ms of result.commitToAck_ms) yield* Metric.update(outboxCommitToAck, latency_ms / 1_000)
              if (options.onBatch !== undefined) yield* options.onBatch(result)
            })
      ),
      Effect.flatMap((round) => (round.failure === undefined ? Effect.succeed(round.result) : Effect.fail(round.failure))),
      // Failures and defects count; an interruption (shutdown) is not a failed batch.
      Effect.tapCause((cause) => (Cause.hasInterruptsOnly(cause) ? Effect.void : Metric.update(outboxPublishFailures, 1))),
      Effect.uninterruptible
    )

  // A trace of its own per batch (linked to each change it carries, `OutboxPublisher.send`): as a
  // child of `OutboxPublisher.run` every batch of the process's life was one trace. The worker's
  // "outbox batch failed" line is written inside it (outside operator drill: every such line
  // carried the publisher's start-up trace id).
  return (onFailure) =>
    publishBatch.pipe(
      Effect.tapCause((cause) => (onFailure === undefined || Cause.hasInterruptsOnly(cause) ? Effect.void : onFailure(cause))),
      Effect.withSpan("OutboxPublisher.publishBatch", { root: true })
    )
}

export const makeHousekeeping = ({ options, store }: PublisherParts) => {
  const refreshMetrics = store.backlog.pipe(
    Effect.flatMap((backlog) =>
      Effect.all([
        Metric.update(outboxBacklogCount, Number(backlog.unpublished_count)),
        Metric.update(outboxOldestUnpublishedAge, backlog.oldest_unpublished_age_ms / 1_000)
      ])
    ),
    Effect.asVoid
  )

  // The cutoff is computed on each run (not once at start-up: a long-lived process would
  // otherwise keep deleting against its start time).
  const pruneOnce = Effect.gen(function* () {
    // Clock: the database's in the server (infra DatabaseClock.ts), which `published_at` is in.
    const cutoff = new Date((yield* Clock.currentTimeMillis) - options.retention_ms)
    let deleted = 0
    for (let round = 0; round < retentionRounds_max; round++) {
      const count = yield* store.deletePublishedBefore(cutoff, options.retentionBatch)
      deleted += count
      if (count < options.retentionBatch) break
    }
    return deleted
  }).pipe(Effect.withSpan("OutboxPublisher.pruneOnce", { root: true }))

  return { refreshMetrics, pruneOnce }
}

/** Housekeeping on its own schedule, so a slow or failing batch never starves the gauges. */
export const every = (interval_ms: number, name: string, task: Effect.Effect<unknown, SqlError>) =>
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
const worker = ({ options, state, store, workerFailures }: PublisherParts, publishBatch: PublishBatch, index: number) =>
  Effect.gen(function* () {
    workerFailures[index] = 0
    // Empty rounds in a row: the idle wait grows from pollMin_ms to pollInterval_ms with them.
    let idleRounds = 0
    // Every failure, a defect included, is logged loudly (inside the batch's trace) and retried
    // after a bounded backoff: the loop must outlive a broker or database outage, and a fiber that
    // died quietly would stop publishing while the API goes on committing.
    const retryIn_ms = () => backoffDelay_ms(workerFailures[index] ?? 0, options.backoffBase_ms, options.backoffMax_ms)
    const logFailure: OnBatchFailure = (cause) =>
      Effect.suspend(() => {
        const failures: number = (workerFailures[index] ?? 0) + 1
        workerFailures[index] = failures
        state.lastError = Cause.pretty(cause)
        const log = Cause.hasDies(cause) ? Effect.logError : Effect.logWarning
        return log("outbox batch failed; rows released for retry").pipe(
          Effect.annotateLogs({ worker: index, consecutive_failures: failures, retry_in_ms: retryIn_ms(), cause: state.lastError })
        )
      })
    while (true) {
      const exit = yield* Effect.exit(publishBatch(logFailure))
      yield* endOnInterrupt(exit)
      if (Exit.isFailure(exit)) {
        yield* Effect.sleep(Duration.millis(retryIn_ms()))
        continue
      }
      // Consecutive failures end with a batch that published, any worker's: the broker works again,
      // so every worker's run of failures is over (one that published nothing during the recovery
      // started the next outage at its old count, a 5 s wait: second re-test). A round that claimed
      // nothing (the other workers held the rows) is no success of the broker's: reset on it, every
      // worker's backoff stayed at its first step while the topic was missing, ten failed sends a
      // second, each logged with consecutive_failures 1 (outside re-test).
      if (exit.value.claimed > 0) {
        workerFailures.fill(0)
        state.lastError = null
      }
      state.lastSuccessAt_ms = Date.now()
      // Something was claimed: more may be claimable at once (a full batch, or the next
      // event of a payment whose previous one was just marked), so claim again right away.
      // Otherwise poll again after a short wait that doubles while nothing comes (bounded
      // by pollInterval_ms). No NOTIFY: it takes a database-wide lock at every commit that
      // sends one, which serialised the API's commits (docs/performance.md).
      if (exit.value.claimed > 0) {
        idleRounds = 0
        continue
      }
      // Idle: wait, then look (one autocommitted read) before opening a claim's transaction again.
      while (true) {
        idleRounds = Math.min(idleRounds + 1, 30)
        yield* Effect.sleep(Duration.millis(idlePollDelay_ms(idleRounds, options.pollMin_ms, options.pollInterval_ms)))
        const found = yield* Effect.exit(store.anyUnpublished)
        yield* endOnInterrupt(found)
        // A failed look is the claim's to report (it fails the same way, with backoff and logs).
        if (Exit.isFailure(found) || found.value) break
      }
    }
  })


export const makeRun = (
  parts: PublisherParts,
  publishBatch: PublishBatch,
  housekeeping: ReturnType<typeof makeHousekeeping>
) => {
  const { options, state } = parts
  const { refreshMetrics, pruneOnce } = housekeeping
  const run: Effect.Effect<never> = Effect.scoped(
    Effect.gen(function* () {
      yield* Effect.forkScoped(every(options.metricsInterval_ms, "metrics refresh", refreshMetrics))
      yield* Effect.forkScoped(every(options.retentionInterval_ms, "retention", pruneOnce))
      state.running = true
      // Counters start at 0, so that `increase()` in an alert sees the first failure.
      yield* Metric.update(outboxPublishFailures, 0)
      yield* Metric.update(outboxPublished, 0)
      yield* Effect.logInfo("outbox publisher started").pipe(
        Effect.annotateLogs({
          topic: options.topic,
          batch_size: options.batchSize,
          workers: options.workers,
          poll_min_ms: options.pollMin_ms,
          poll_interval_ms: options.pollInterval_ms
        })
      )
      const indices = Array.from({ length: options.workers }, (_, index) => index)
      yield* Effect.forEach(indices, (index) => worker(parts, publishBatch, index), { concurrency: "unbounded", discard: true })
      return yield* Effect.never
    })
  ).pipe(
    Effect.ensuring(Effect.sync(() => {
      state.running = false
    })),
    Effect.onInterrupt(() => Effect.logInfo("outbox publisher stopped")),
    Effect.withSpan("OutboxPublisher.run")
  )

  return run
}
