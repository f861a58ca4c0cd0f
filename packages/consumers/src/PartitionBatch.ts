import { continueFromRecords, failureText, type KafkaError, type KafkaRecord } from "@pay/infra"
import type { DecodedPaymentEvent } from "@pay/outbox/CloudEvents"
import { Cause, Duration, Effect, Result, Schema } from "effect"
import { SqlClient } from "effect/sql"
import type { SqlError } from "effect/sql/SqlError"
import { countOutcomes, HandlerFailed } from "./ConsumerModel.ts"
import { claimSlice, claimSliceCall, sliceOutcomes } from "./BatchClaims.ts"
import { eventIdentity } from "./ConsumerStore.ts"
import { continueRecordTrace, decodeRecordResult, type ProcessorSettings, type RecordProcessor } from "./RecordProcessor.ts"

/** The batch's transaction failed (a handler refused, a statement failed, the bound ran out): rolled back. */
class BatchFailed extends Schema.TaggedError<BatchFailed>()("BatchFailed", { message: Schema.String }) {}

interface Item {
  readonly record: KafkaRecord
  readonly decoded: DecodedPaymentEvent
}

/** Consecutive slices of at most `size` records, in order. */
const chunksOf = <A>(items: ReadonlyArray<A>, size: number): ReadonlyArray<ReadonlyArray<A>> => {
  const chunks: Array<ReadonlyArray<A>> = []
  for (let start = 0; start < items.length; start += size) chunks.push(items.slice(start, start + size))
  return chunks
}

/** Every record decoded, or none (one that does not decode goes the per-record way: parked). */
const decodeAll = (records: ReadonlyArray<KafkaRecord>): Array<Item> | null => {
  const items: Array<Item> = []
  for (const record of records) {
    const decoded = decodeRecordResult(record)
    if (Result.isFailure(decoded)) return null
    items.push({ record, decoded: decoded.success })
  }
  return items
}

/**
 * The records of one partition (as polled, in offset order) in ONE transaction: the consumer's
 * bookkeeping in one statement (claimSlice, BatchClaims.ts: lock the stored offset, skip the
 * records below it ("behind"), claim the others with the version check, store the offset past the
 * last one and the counters), then the handler's effects, in order, for the applied (new and
 * newer) events only. With a handler's `applySlice`, both are ONE statement, committed on its own
 * (one round trip); else BEGIN, the claim, the effects (`applyBatch`, or `apply` one by one),
 * COMMIT. Any failure rolls the whole slice back.
 */
const makeBatchTransaction = (settings: ProcessorSettings, sql: SqlClient.SqlClient) => {
  const { handler } = settings
  const name = handler.name

  /** A new record's effect, in the record's trace. */
  const apply = ({ record, decoded }: Item) =>
    Effect.gen(function* () {
      yield* handler.apply(decoded, record)
      if (settings.faults?.insideTransaction !== undefined) yield* settings.faults.insideTransaction(record)
    }).pipe(continueRecordTrace(name, record))

  /** The new records' effects, in order: at once when the handler can (`applyBatch`), else one by one. */
  const applyAll = (fresh: ReadonlyArray<Item>) =>
    Effect.gen(function* () {
      if (handler.applyBatch === undefined || fresh.length === 0) return yield* Effect.forEach(fresh, apply, { discard: true })
      yield* handler.applyBatch(fresh).pipe(batchSpan(fresh))
      const inside = settings.faults?.insideTransaction
      if (inside !== undefined) yield* Effect.forEach(fresh, (item) => inside(item.record), { discard: true })
    })

  /** The slice's span: its partition and offsets, linked to the requests that changed its first records (continueFromRecords). */
  const batchSpan = (items: ReadonlyArray<Item>) =>
    continueFromRecords("consume batch", items.map((item) => item.record), { "messaging.consumer.group.name": name })

  const claimItems = (items: ReadonlyArray<Item>) => items.map(({ record, decoded }) => ({ record, identity: eventIdentity(decoded) }))

  const inTransaction = (items: ReadonlyArray<Item>) =>
    sql.withTransaction(Effect.gen(function* () {
      const outcomes = yield* claimSlice(sql, name, claimItems(items))
      yield* applyAll(items.filter((_, index) => outcomes[index] === "applied"))
      return outcomes
    }))

  // The claim and the effects in one statement (one round trip, its own implicit transaction)
  // when the handler can give them so; not when a test stops the world between the effects and
  // the COMMIT (`insideTransaction`: there is no such point inside one statement).
  const { applySlice } = handler
  if (applySlice === undefined || settings.faults?.insideTransaction !== undefined) return inTransaction
  return (items: ReadonlyArray<Item>) =>
    Effect.gen(function* () {
      const call = yield* claimSliceCall(sql, name, claimItems(items))
      const statement = yield* Effect.fromResult(Result.mapError(applySlice(call, items), ({ message }) => new HandlerFailed({ message })))
      return yield* sliceOutcomes(statement, items.length)
    }).pipe(batchSpan(items))
}

/**
 * A partition's polled records, `transactionRecords_max` at a time, each slice in one transaction
 * (makeBatchTransaction). A slice that cannot go in one (a record that does not decode, a handler
 * that refuses, an error, the time bound) is rolled back whole and handled again one record per
 * transaction by `processor.handle`: the bounded retries, backoff and parking of a poison record
 * are exactly the per-record path's. A slice's transaction, like a record's, is uninterruptible
 * (SIGTERM finishes it).
 */
export const makePartitionHandler = (settings: ProcessorSettings, processor: RecordProcessor) =>
  Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    const transaction = makeBatchTransaction(settings, sql)
    const { faults, options } = settings
    const name = settings.handler.name

    const oneByOne = (records: ReadonlyArray<KafkaRecord>) =>
      Effect.forEach(records, (record) => Effect.uninterruptible(processor.handle(record)), { discard: true })

    const attemptBatch = (items: ReadonlyArray<Item>) =>
      Effect.gen(function* () {
        if (faults?.beforeTransaction !== undefined) yield* Effect.forEach(items, (item) => faults.beforeTransaction?.(item.record) ?? Effect.void)
        return yield* transaction(items)
      }).pipe(
        Effect.timeoutOrElse({
          duration: Duration.millis(options.recordTimeout_ms),
          orElse: () => Effect.fail(new BatchFailed({ message: `batch timed out after ${options.recordTimeout_ms} ms` }))
        }),
        Effect.catchCause((cause): Effect.Effect<never, BatchFailed> =>
          Cause.hasInterruptsOnly(cause) ? Effect.failCause(Cause.interrupt()) : Effect.fail(new BatchFailed({ message: failureText(Cause.squash(cause)) }))
        )
      )

    const slice = (records: ReadonlyArray<KafkaRecord>): Effect.Effect<void, SqlError | KafkaError> =>
      Effect.gen(function* () {
        const first = records[0]
        if (first === undefined) return
        const items = decodeAll(records)
        if (items === null) return yield* oneByOne(records)
        // Counted inside the uninterruptible region: a subscription restarted between the COMMIT and
        // the count dropped the slice's count (consumer_records_total 359 short: outside operator review).
        const result = yield* Effect.result(Effect.uninterruptible(attemptBatch(items).pipe(Effect.tap((outcomes) => countOutcomes(name, outcomes)))))
        if (result._tag === "Failure") {
          yield* Effect.logWarning("consumer batch rolled back; its records are handled one transaction each").pipe(Effect.annotateLogs({
            consumer: name, topic: first.topic, partition: first.partition, offset: String(first.offset),
            records: records.length, error: result.failure.message.split("\n")[0] ?? ""
          }))
          return yield* oneByOne(records)
        }
        const after = faults?.afterTransaction
        if (after !== undefined) yield* Effect.forEach(items, (item) => after(item.record), { discard: true })
      })

    return (records: ReadonlyArray<KafkaRecord>) =>
      Effect.forEach(chunksOf(records, options.transactionRecords_max), slice, { discard: true })
  })
