import { type Effect, Metric, Schema } from "effect"

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
  /**
   * Idle polling: after an empty claim a worker waits `pollMin_ms`, doubling with each further
   * empty claim up to `pollInterval_ms` (after a non-empty one it claims again at once). This
   * bounds the latency an idle publisher adds to an event, without the NOTIFY that used to wake
   * it (its commit-time lock serialised every committing transaction).
   */
  readonly pollMin_ms: number
  readonly pollInterval_ms: number
  /** Backoff after a failed batch (Kafka or Postgres down): doubles from base up to max. */
  readonly backoffBase_ms: number
  readonly backoffMax_ms: number
  /** Published rows are kept this long (re-publishable history), then deleted in bounded batches. */
  readonly retention_ms: number
  /** Rows deleted per retention statement, and at most `retentionRounds_max` statements per run. */
  readonly retentionBatch: number
  readonly retentionInterval_ms: number
  /** How often `outbox_backlog_rows` / `outbox_oldest_unpublished_age_seconds` are refreshed. */
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
  pollMin_ms: 5,
  pollInterval_ms: 50,
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
  pollMin_ms: { min: 1, max: 1_000 },
  pollInterval_ms: { min: 10, max: 60_000 },
  backoffBase_ms: { min: 1, max: 60_000 },
  backoffMax_ms: { min: 1, max: 300_000 },
  retention_ms: { min: 60_000, max: 366 * 24 * 60 * 60 * 1_000 },
  retentionBatch: { min: 1, max: 10_000 },
  retentionInterval_ms: { min: 100, max: 24 * 60 * 60 * 1_000 },
  metricsInterval_ms: { min: 100, max: 60_000 }
} as const

/** One retention run deletes at most retentionBatch x this many rows, then waits for the next run. */
export const retentionRounds_max = 10

/** Figures for operators (exported with the other Effect metrics). */
export const outboxBacklogCount = Metric.gauge("outbox_backlog_rows", {
  description: "Unpublished rows in outbox_events"
})
export const outboxOldestUnpublishedAge = Metric.gauge("outbox_oldest_unpublished_age_seconds", {
  description: "Age of the oldest unpublished outbox row, in seconds (0 when none)"
})
export const outboxPublished = Metric.counter("outbox_published_total", {
  description: "Outbox rows acknowledged by Kafka and marked published"
})
export const outboxPublishFailures = Metric.counter("outbox_publish_failures_total", {
  description: "Batches that failed (Kafka or Postgres error) and were released for retry"
})
export const outboxCommitToAck = Metric.histogram("outbox_commit_to_ack_seconds", {
  description: "From the row's creation (inside its transaction) to the broker's acknowledgement, in seconds",
  // 1-2-5 steps, so that the 100 ms objective (p99 commit-to-ack) is a bucket edge. Seconds:
  // Prometheus' base unit (promtool refuses abbreviated units in names).
  boundaries: [0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 30, 60]
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

/** The wait after `idleRounds` (≥ 1) empty claims in a row: `min * 2^(idleRounds-1)`, capped at `max`. */
export const idlePollDelay_ms = (idleRounds: number, min_ms: number, max_ms: number): number =>
  Math.min(max_ms, min_ms * 2 ** Math.min(Math.max(idleRounds - 1, 0), 20))

/** `base * 2^(failures-1)`, capped at `max`: bounded whatever the failure count. */
export const backoffDelay_ms = (failures: number, base_ms: number, max_ms: number): number =>
  Math.min(max_ms, base_ms * 2 ** Math.min(Math.max(failures - 1, 0), 20))


/**
 * A claimed row the publisher cannot turn into a record (its payload does not encode: a JSON
 * nesting too deep for the encoder): recorded on the row (`last_error`), the batch fails and is
 * retried with backoff, and the on-call reads the row (docs/runbook.md). The database refuses such
 * rows since migrations/0111 (a payload's members are scalars).
 */
export class OutboxRowUnsendable extends Schema.TaggedError<OutboxRowUnsendable>()("OutboxRowUnsendable", {
  event_id: Schema.String,
  message: Schema.String
}) {}

/**
 * One produce call carries at most this many bytes of keys, values and headers. The broker takes at
 * most 1 MiB in one partition's batch (`message.max.bytes`), and a claim of `OUTBOX_BATCH_SIZE`
 * (up to 1 000) rows of up to 16 KiB each (migrations/0110) could exceed it: Kafka then refused every
 * batch (outside review of 0110: 100 rows of 16 KiB on one partition stalled the publisher).
 */
export const sendBytes_max = 256 * 1024
