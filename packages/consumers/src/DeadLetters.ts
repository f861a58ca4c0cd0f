import { decodeRows, type KafkaRecord } from "@pay/infra"
import { Context, Effect, Layer, Schema } from "effect"
import { SqlClient } from "effect/sql"

/** A parked record: the error, the attempts, and the original record (value and headers). */
export const DeadLetter = Schema.Struct({
  id: Schema.BigInt,
  consumer: Schema.String,
  topic: Schema.String,
  partition: Schema.Int,
  offset: Schema.BigInt,
  event_id: Schema.NullOr(Schema.String),
  record_key: Schema.NullOr(Schema.String),
  record_value: Schema.String,
  headers: Schema.Record(Schema.String, Schema.String),
  error: Schema.String,
  attempt_count: Schema.Int,
  parked_at: Schema.Date,
  redriven_at: Schema.NullOr(Schema.Date),
  redrive_error: Schema.NullOr(Schema.String),
  dismissed_at: Schema.NullOr(Schema.Date),
  dismiss_reason: Schema.NullOr(Schema.String)
})
export type DeadLetter = typeof DeadLetter.Type

/** Bounds of what a DLQ row keeps of an error message (the column's CHECK is 4000). */
export const DEAD_LETTER_ERROR_CHARS_MAX = 4_000
/** A dismissal's reason: 1..500 characters (the column's CHECK). */
export const DISMISS_REASON_CHARS_MAX = 500

/** `dlq list` shows at most this many rows per call. */
export const DEAD_LETTER_LIST_MAX = 1_000

const clip = (error: string): string => {
  const text = error.length === 0 ? "(empty error)" : error
  return text.length > DEAD_LETTER_ERROR_CHARS_MAX ? text.slice(0, DEAD_LETTER_ERROR_CHARS_MAX) : text
}

/** A dismissal of the same record by another generation of the consumer (`DeadLetters.dismissedEarlier`). */
const EarlierDismissal = Schema.Struct({ consumer: Schema.String, dismiss_reason: Schema.String })
export type EarlierDismissal = typeof EarlierDismissal.Type

/** A row's settlement generation (`settlement.g7`: 7), NULL for any other consumer: `list` and `countOlderGenerations` compare it. */
const settlementGeneration = "CASE WHEN consumer ~ '^settlement\\.g[0-9]{1,9}$' THEN substring(consumer FROM 13)::int END"

/** A consumer's name without its generation (`settlement` for `settlement.g2`). */
export const consumerFamily = (consumer: string): string => consumer.replace(/\.g[0-9]+$/, "")

const columns = `id, consumer, topic, partition, "offset", event_id, record_key, record_value, headers, error, attempt_count,
  parked_at, redriven_at, redrive_error, dismissed_at, dismiss_reason`

export const makeDeadLetters = (sql: SqlClient.SqlClient) => {
  const rows = decodeRows(DeadLetter)

  /**
   * Inside the caller's transaction; a record parked twice (redelivery) keeps its first row. With
   * `dismissedFor` (`dismissedEarlier`'s row), the row is written dismissed at once, its reason
   * naming the generation that dismissed the record first.
   */
  const park = (consumer: string, record: KafkaRecord, error: string, attempt_count: number, dismissedFor?: EarlierDismissal) =>
    sql`
      INSERT INTO dead_letter_events (consumer, topic, partition, "offset", event_id, record_key, record_value, headers, error, attempt_count,
                                      dismissed_at, dismiss_reason)
      VALUES (${consumer}, ${record.topic}, ${record.partition}, ${record.offset}, ${record.headers["ce_id"] ?? null},
              ${record.key}, ${record.value}, ${JSON.stringify(record.headers)}::jsonb, ${clip(error)}, ${attempt_count},
              ${dismissedFor === undefined ? null : sql`now()`},
              ${dismissedFor === undefined ? null : `dismissed for ${dismissedFor.consumer}: ${dismissedFor.dismiss_reason}`.slice(0, DISMISS_REASON_CHARS_MAX)})
      ON CONFLICT (consumer, topic, partition, "offset") DO NOTHING`.pipe(Effect.asVoid)

  /**
   * The same record (topic, partition, offset) dismissed by this consumer or another generation of
   * it (`settlement.g1` for `settlement.g2`): a replay, or a backward `consumers reset`, re-reads
   * what an operator already dismissed (the reset's re-park paged ConsumerRecordsParked for a
   * record `dlq list` no longer showed: outside operator review). The first such dismissal: its
   * consumer and reason. Parking is rare: no index needed.
   */
  const dismissedEarlier = (consumer: string, record: KafkaRecord) =>
    decodeRows(EarlierDismissal)(sql`
      SELECT consumer, dismiss_reason FROM dead_letter_events
      WHERE topic = ${record.topic} AND partition = ${record.partition} AND "offset" = ${record.offset}
        AND regexp_replace(consumer, '\\.g[0-9]+$', '') = ${consumerFamily(consumer)}
        AND dismissed_at IS NOT NULL
      ORDER BY id LIMIT 1`).pipe(Effect.map((rows) => rows[0]))

  /**
   * Parked rows by id. `liveGeneration` (the live settlement generation) leaves out the rows of
   * older settlement generations, in the query: filtered after the limit, a thousand old rows hid
   * the live consumer's (outside re-test). A newer generation's (a replay being built) are kept.
   */
  const list = (options: { readonly consumer?: string; readonly includeRedriven: boolean; readonly limit: number; readonly liveGeneration?: number }) => {
    const limit = Math.max(1, Math.min(DEAD_LETTER_LIST_MAX, options.limit))
    return rows(sql.unsafe(
      `SELECT ${columns} FROM dead_letter_events
       WHERE ($1::text IS NULL OR consumer = $1) AND ($2 OR (redriven_at IS NULL AND dismissed_at IS NULL))
         AND ($4::int IS NULL OR coalesce(${settlementGeneration} >= $4, true))
       ORDER BY id LIMIT $3`,
      [options.consumer ?? null, options.includeRedriven, limit, options.liveGeneration ?? null]
    ))
  }

  /** Open rows of settlement generations older than `liveGeneration`: what `list` leaves out with it. */
  const countOlderGenerations = (liveGeneration: number) =>
    decodeRows(Schema.Struct({ count: Schema.BigInt }))(sql`
      SELECT count(*) AS count FROM dead_letter_events
      WHERE redriven_at IS NULL AND dismissed_at IS NULL AND ${sql.literal(settlementGeneration)} < ${liveGeneration}`).pipe(
      Effect.map((found) => found[0]?.count ?? 0n)
    )

  const find = (id: bigint) => rows(sql.unsafe(`SELECT ${columns} FROM dead_letter_events WHERE id = $1 FOR UPDATE`, [id]))

  const markRedriven = (id: bigint) => sql`UPDATE dead_letter_events SET redriven_at = now(), redrive_error = NULL WHERE id = ${id}`
  const markRedriveFailed = (id: bigint, error: string) =>
    sql`UPDATE dead_letter_events SET redrive_error = ${clip(error)} WHERE id = ${id}`

  /**
   * Dismisses an open row (neither re-driven nor dismissed) for good, with the operator's reason:
   * it leaves the open list and is never re-driven. False when no open row has this id.
   */
  const dismiss = (id: bigint, reason: string) =>
    decodeRows(Schema.Struct({ id: Schema.BigInt }))(sql`
      UPDATE dead_letter_events SET dismissed_at = now(), dismiss_reason = ${reason}
      WHERE id = ${id} AND redriven_at IS NULL AND dismissed_at IS NULL
      RETURNING id`).pipe(Effect.map((updated) => updated.length === 1))

  return { park, dismissedEarlier, list, countOlderGenerations, find, markRedriven, markRedriveFailed, dismiss }
}

/** The record a parked row stood for (to run it through the handler again). */
export const recordOf = (letter: DeadLetter): KafkaRecord => ({
  topic: letter.topic,
  partition: letter.partition,
  offset: letter.offset,
  key: letter.record_key,
  value: letter.record_value,
  value_bytes: new TextEncoder().encode(letter.record_value),
  headers: letter.headers,
  timestamp_ms: letter.parked_at.getTime()
})

/** Parked records (`dead_letter_events`): park, list, find, re-drive bookkeeping, dismiss. */
export class DeadLetters extends Context.Service<DeadLetters, ReturnType<typeof makeDeadLetters>>()("consumers/DeadLetters") {
  static readonly layer: Layer.Layer<DeadLetters, never, SqlClient.SqlClient> = Layer.effect(
    DeadLetters,
    Effect.gen(function* () {
      return makeDeadLetters(yield* SqlClient.SqlClient)
    })
  )
}
