import { eventAggregate } from "@pay/domain"
import { decodeRows } from "@pay/infra"
import type { KafkaRecord } from "@pay/infra"
import type { DecodedPaymentEvent } from "@pay/outbox/CloudEvents"
import { Context, Effect, Layer, Schema } from "effect"
import { SqlClient } from "effect/sql"

/**
 * The consumer's bookkeeping, all inside the record's own transaction (docs/consumers.md):
 * the partition's stored offset (locked, so two instances briefly owning one partition during a
 * rebalance take turns), the (consumer, event_id) claim, the per-payment version, the counters.
 * The caller holds the transaction; nothing here opens one.
 */
export interface EventIdentity {
  readonly eventId: string
  /**
   * The aggregate whose version the event carries (`eventAggregate` of @pay/domain): the payment
   * for a payment event, the REFUND for a refund event. Stored in the `payment_id` columns of
   * processed_events / consumer_payment_versions. Build it with `eventIdentity`, never by hand.
   */
  readonly paymentId: string
  readonly version: number
}

/** The identity of a decoded event: its ce_id and its aggregate's id and version (docs/events.md). */
export const eventIdentity = (decoded: DecodedPaymentEvent): EventIdentity => {
  const aggregate = eventAggregate(decoded.event)
  return { eventId: decoded.envelope.ce_id, paymentId: aggregate.id, version: aggregate.version }
}

export type Claim = "new" | "duplicate" | "stale"

const NextOffset = Schema.Struct({ next_offset: Schema.BigInt })
const nextOffsets = decodeRows(NextOffset)
const claims = decodeRows(Schema.Struct({ claimed: Schema.Int, moved: Schema.Int }))

export const StoredOffset = Schema.Struct({
  consumer: Schema.String,
  topic: Schema.String,
  partition: Schema.Int,
  next_offset: Schema.BigInt,
  applied_count: Schema.BigInt,
  duplicate_count: Schema.BigInt,
  stale_count: Schema.BigInt,
  parked_count: Schema.BigInt,
  updated_at: Schema.Date
})
export type StoredOffset = typeof StoredOffset.Type

export type Counter = "applied_count" | "duplicate_count" | "stale_count" | "parked_count" | "none"

export const makeConsumerStore = (sql: SqlClient.SqlClient) => {
  /**
   * Locks the partition's offset row (creating it at 0) and returns the next offset to handle.
   * The no-op DO UPDATE makes the statement lock an existing row in one round trip.
   */
  const lockOffset = (consumer: string, topic: string, partition: number) =>
    nextOffsets(sql`
      INSERT INTO consumer_offsets (consumer, topic, partition, next_offset)
      VALUES (${consumer}, ${topic}, ${partition}, 0)
      ON CONFLICT (consumer, topic, partition) DO UPDATE SET next_offset = consumer_offsets.next_offset
      RETURNING next_offset`).pipe(Effect.map((rows) => rows[0]?.next_offset ?? 0n))

  /** The stored next offset without a lock (0 when none): a cheap pre-check, re-checked under the lock. */
  const storedOffset = (consumer: string, topic: string, partition: number) =>
    nextOffsets(sql`
      SELECT next_offset FROM consumer_offsets WHERE consumer = ${consumer} AND topic = ${topic} AND partition = ${partition}`).pipe(
      Effect.map((rows) => rows[0]?.next_offset ?? 0n)
    )

  /** Advances the stored offset past `record` and bumps one counter (in the caller's transaction). */
  const advance = (consumer: string, record: KafkaRecord, counter: Counter) => {
    const next = record.offset + 1n
    // `counter` is one of four column names (a closed union), never input: safe as a literal.
    const bump = sql.literal(counter === "none" ? "" : `, ${counter} = ${counter} + 1`)
    return sql`
      UPDATE consumer_offsets SET next_offset = greatest(next_offset, ${next}), updated_at = now() ${bump}
      WHERE consumer = ${consumer} AND topic = ${record.topic} AND partition = ${record.partition}`.pipe(Effect.asVoid)
  }

  /**
   * Inserts (consumer, event_id) and moves the payment's version forward. `duplicate`: the event
   * was handled before (same id). `stale`: a new id whose version is not above the one applied
   * (a re-sent copy or a reordered delivery): recorded, counted, no effect.
   */
  const claim = (consumer: string, identity: EventIdentity, record: KafkaRecord) =>
    Effect.gen(function* () {
      // One round trip: the claim, and the version move only for a claimed (new) event.
      const [outcome] = yield* claims(sql`
        WITH claimed AS (
          INSERT INTO processed_events (consumer, event_id, payment_id, payment_version, outcome, topic, partition, "offset")
          VALUES (${consumer}, ${identity.eventId}::uuid, ${identity.paymentId}, ${identity.version}, 'applied',
                  ${record.topic}, ${record.partition}, ${record.offset})
          ON CONFLICT (consumer, event_id) DO NOTHING
          RETURNING payment_id
        ), moved AS (
          INSERT INTO consumer_payment_versions (consumer, payment_id, version)
          SELECT ${consumer}, payment_id, ${identity.version} FROM claimed
          ON CONFLICT (consumer, payment_id) DO UPDATE SET version = EXCLUDED.version
            WHERE consumer_payment_versions.version < EXCLUDED.version
          RETURNING 1
        )
        SELECT (SELECT count(*) FROM claimed)::int AS claimed, (SELECT count(*) FROM moved)::int AS moved`)
      if (outcome === undefined || outcome.claimed === 0) return "duplicate" as const
      if (outcome.moved > 0) return "new" as const
      yield* sql`UPDATE processed_events SET outcome = 'stale' WHERE consumer = ${consumer} AND event_id = ${identity.eventId}::uuid`
      return "stale" as const
    })

  return { lockOffset, storedOffset, advance, claim, ...makeOffsetAdmin(sql) }
}

/** Reading and resetting stored offsets (operators, lag, replay). */
const makeOffsetAdmin = (sql: SqlClient.SqlClient) => {
  const offsets = (consumer: string) =>
    decodeRows(StoredOffset)(sql`
      SELECT consumer, topic, partition, next_offset, applied_count, duplicate_count, stale_count, parked_count, updated_at
      FROM consumer_offsets WHERE consumer = ${consumer} ORDER BY topic, partition`)

  const allOffsets = decodeRows(StoredOffset)(sql`
    SELECT consumer, topic, partition, next_offset, applied_count, duplicate_count, stale_count, parked_count, updated_at
    FROM consumer_offsets ORDER BY consumer, topic, partition`)

  /**
   * Moves a consumer's stored offsets (all partitions of `topic`) to `offset`, backwards allowed:
   * the only writer that may, by setting `consumers.offset_reset` for its own transaction.
   * Effects stay exactly once: processed_events still knows every event already applied.
   */
  const resetOffsets = (consumer: string, topic: string, partitions: number, offset: bigint) =>
    sql.withTransaction(
      Effect.gen(function* () {
        yield* sql`SELECT set_config('consumers.offset_reset', 'on', true)`
        for (let partition = 0; partition < partitions; partition++) {
          yield* sql`
            INSERT INTO consumer_offsets (consumer, topic, partition, next_offset) VALUES (${consumer}, ${topic}, ${partition}, ${offset})
            ON CONFLICT (consumer, topic, partition) DO UPDATE SET next_offset = EXCLUDED.next_offset, updated_at = now()`
        }
      })
    )

  /**
   * Moves one partition's stored offset back to 0 when it still is `from` (a concurrent writer's
   * progress is never undone): for a topic whose log ends below it (re-created or truncated). True
   * when it moved. Effects stay exactly once, as with `resetOffsets`.
   */
  const rewindPartition = (consumer: string, topic: string, partition: number, from: bigint) =>
    sql.withTransaction(
      Effect.gen(function* () {
        yield* sql`SELECT set_config('consumers.offset_reset', 'on', true)`
        const moved = yield* sql`
          UPDATE consumer_offsets SET next_offset = 0, updated_at = now()
          WHERE consumer = ${consumer} AND topic = ${topic} AND partition = ${partition} AND next_offset = ${from}
          RETURNING partition`
        return moved.length === 1
      })
    )

  /** The topic id the consumer's stored offsets are positions in (migrations/0086), if recorded. */
  const storedTopicId = (consumer: string, topic: string) =>
    decodeRows(Schema.Struct({ topic_id: Schema.String }))(sql`
      SELECT topic_id FROM consumer_topic_ids WHERE consumer = ${consumer} AND topic = ${topic}`).pipe(
      Effect.map((rows) => rows[0]?.topic_id)
    )

  const recordTopicId = (consumer: string, topic: string, topicId: string) =>
    sql`
      INSERT INTO consumer_topic_ids (consumer, topic, topic_id) VALUES (${consumer}, ${topic}, ${topicId})
      ON CONFLICT (consumer, topic) DO UPDATE SET topic_id = EXCLUDED.topic_id, updated_at = now()
      WHERE consumer_topic_ids.topic_id <> EXCLUDED.topic_id`.pipe(Effect.asVoid)

  return { offsets, allOffsets, resetOffsets, rewindPartition, storedTopicId, recordTopicId }
}

/**
 * The consumers' bookkeeping as a service: offsets (locked, advanced, read, reset), claims, the
 * topic ids offsets belong to. What the operator's commands use; the consumer's own loop builds the
 * same statements over the client it runs its transactions on (`makeConsumerStore`: ConsumerRunner,
 * RecordProcessor, Redrive).
 */
export class ConsumerStore extends Context.Service<ConsumerStore, ReturnType<typeof makeConsumerStore>>()("consumers/ConsumerStore") {
  static readonly layer: Layer.Layer<ConsumerStore, never, SqlClient.SqlClient> = Layer.effect(
    ConsumerStore,
    Effect.gen(function* () {
      return makeConsumerStore(yield* SqlClient.SqlClient)
    })
  )
}
