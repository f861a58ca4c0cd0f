import type { DecodedPaymentEvent } from "@pay/outbox/CloudEvents"
import type { KafkaRecord } from "@pay/infra"
import { Effect, Metric, type Result, Schema } from "effect"
import type { Statement } from "effect/sql"
import type { SqlError } from "effect/sql/SqlError"

/** A handler's refusal of an event. Retried with backoff, then the record is parked. */
export class HandlerFailed extends Schema.TaggedError<HandlerFailed>()("HandlerFailed", { message: Schema.String }) {}

/**
 * What a consumer does with a NEW event (never seen by this consumer, and newer than the
 * payment's version it applied last). Runs inside the record's transaction, on the same
 * connection: its writes commit with the processed_events row and the stored offset, or not at all.
 */
export interface ConsumerHandler {
  /** The consumer's name: `[a-z0-9_.-]{1,100}`; its group id is `<topic prefix><name>`. */
  readonly name: string
  readonly apply: (decoded: DecodedPaymentEvent, record: KafkaRecord) => Effect.Effect<void, HandlerFailed | SqlError>
  /**
   * Optional: the effects of several NEW events at once (in offset order), in the batch's
   * transaction; must equal `apply` on each in turn. A failure rolls the batch back, and its
   * records go one by one through `apply` (PartitionBatch.ts).
   */
  readonly applyBatch?: (
    events: ReadonlyArray<{ readonly decoded: DecodedPaymentEvent; readonly record: KafkaRecord }>
  ) => Effect.Effect<void, HandlerFailed | SqlError>
  /**
   * Optional: the slice's claim AND its effects as ONE statement, run on its own (its implicit
   * transaction: one round trip instead of BEGIN, claim, effects, COMMIT; what a quiet stream, a
   * record or two per slice, pays for). Given `claim`, the SQL expression whose
   * value is the slice's outcomes (text[], 1-based, `claimSliceCall`), and the slice's events in
   * order, a statement that evaluates `claim` once (a MATERIALIZED CTE), applies the effects of
   * the events whose outcome is 'applied' and no other, in the same row order (locks) as
   * `applyBatch`, and answers one row whose column `outcomes` is the claim's value. Must equal
   * claimSlice then the handler's effects (`applyBatch`, or `apply` on each) of the applied
   * events. A refusal (a failure with its message) or a failed statement goes the same way as
   * `applyBatch`'s: nothing written, the records one by one (where `apply` decides).
   */
  readonly applySlice?: (
    claim: Statement.Fragment,
    events: ReadonlyArray<{ readonly decoded: DecodedPaymentEvent; readonly record: KafkaRecord }>
  ) => Result.Result<Statement.Statement<unknown>, { readonly message: string }>
}

export const consumerName = /^[a-z0-9_.-]{1,100}$/

/**
 * `dismissed`: undecodable or failing like a parked record, which an operator had dismissed (a
 * replay or a backward reset re-read it): stored dismissed, not counted as parked.
 */
export type RecordOutcome = "applied" | "duplicate" | "stale" | "behind" | "parked" | "dismissed"

/** Where a test (or the fault-injecting process) may stop the world: see main.ts. */
export interface ConsumerFaults {
  /** Before the record's transaction begins. */
  readonly beforeTransaction?: (record: KafkaRecord) => Effect.Effect<void>
  /** Inside the record's (or its batch's) transaction, after its effect, before the COMMIT. */
  readonly insideTransaction?: (record: KafkaRecord) => Effect.Effect<void>
  /** After the record's transaction committed, before the Kafka commit of its batch. */
  readonly afterTransaction?: (record: KafkaRecord) => Effect.Effect<void>
}

/** One instance's health signal (readiness, `consumers lag`). */
export interface ConsumerStatus {
  readonly name: string
  readonly running: boolean
  readonly handled_count: number
  readonly consecutiveFailure_count: number
  readonly lastError: string | null
  readonly lastBatchAt_ms: number | null
}

export const consumerRecords = Metric.counter("consumer_records_total", {
  description: "Records handled by a consumer, by outcome (applied, duplicate, stale, behind, parked, dismissed)",
  bigint: false
})
export const consumerParked = Metric.counter("consumer_parked_total", {
  description: "Records parked in dead_letter_events (undecodable, or failing after the bounded retries)"
})
export const consumerLag = Metric.gauge("consumer_lag_records", {
  description: "Log end offset minus the offset stored in the database, per consumer and partition"
})
/**
 * Lag measurements that failed (Kafka's end offsets or the stored offsets unreadable): while it
 * rises, `consumer_lag_records` holds its last value, which may be a stale 0.
 */
export const consumerLagUnavailable = Metric.counter("consumer_lag_unavailable_total", {
  description: "Failed measurements of a consumer's lag: while this rises, consumer_lag_records is stale",
  incremental: true
})
/**
 * Unix time of a consumer's last successful lag measurement: how old `consumer_lag_records` is,
 * whatever `CONSUMER_LAG_INTERVAL_MS` says (ConsumerLagUnmeasured reads it).
 */
export const consumerLagMeasuredAt = Metric.gauge("consumer_lag_measured_timestamp_seconds", {
  description: "Unix time of the consumer's last successful lag measurement (consumer_lag_records is that old)"
})
/** Partitions whose stored offset was rewound to 0 because the topic was re-created (ConsumerRunner.ts). */
export const consumerOffsetsRewound = Metric.counter("consumer_offsets_rewound_total", {
  description: "Partitions a consumer read again from offset 0 because the topic was deleted and created again",
  incremental: true
})
export const reconciliationDifferences = Metric.gauge("reconciliation_differences", {
  description: "Merchant/currency rows where the settlement projection, the ledger and the payments table disagree"
})

export const countOutcome = (name: string, outcome: RecordOutcome, count = 1) =>
  Metric.update(Metric.withAttributes(consumerRecords, { consumer: name, outcome }), count).pipe(
    Effect.andThen(outcome === "parked" ? Metric.update(Metric.withAttributes(consumerParked, { consumer: name }), count) : Effect.void)
  )

/** A slice's outcomes counted once per outcome, not once per record (fewer metric updates and allocations). */
export const countOutcomes = (name: string, outcomes: ReadonlyArray<RecordOutcome>) =>
  Effect.suspend(() => {
    const counts = new Map<RecordOutcome, number>()
    for (const outcome of outcomes) counts.set(outcome, (counts.get(outcome) ?? 0) + 1)
    return Effect.forEach(counts, ([outcome, count]) => countOutcome(name, outcome, count), { discard: true })
  })
