import { uuidPattern } from "@pay/domain"
import { continueFromRecord, failureText, KafkaProducer, type KafkaError, type KafkaRecord } from "@pay/infra"
import { type DecodedPaymentEvent, decodePaymentEventRecordResult, MalformedEventRecord } from "@pay/outbox/CloudEvents"
import { Cause, Duration, Effect, Metric, Option, Result, Schema } from "effect"
import { SqlClient } from "effect/sql"
import { isSqlError, type SqlError } from "effect/sql/SqlError"
import { backoff_ms, type ConsumerOptions } from "./ConsumerConfig.ts"
import { type ConsumerFaults, type ConsumerHandler, consumerParked, countOutcome, type RecordOutcome } from "./ConsumerModel.ts"
import { type Claim, type Counter, eventIdentity, makeConsumerStore } from "./ConsumerStore.ts"
import { type EarlierDismissal, makeDeadLetters } from "./DeadLetters.ts"

/** One attempt at a record failed in a way that may be the record's fault (parked after the retries). */
class AttemptFailed extends Schema.TaggedError<AttemptFailed>()("AttemptFailed", { message: Schema.String }) {}

/** The shared decoder, plus what our own tables need: ce_id is the outbox row's UUID. Synchronous. */
export const decodeRecordResult = (record: KafkaRecord): Result.Result<DecodedPaymentEvent, MalformedEventRecord> => {
  const decoded = decodePaymentEventRecordResult(record)
  if (Result.isFailure(decoded) || uuidPattern.test(decoded.success.envelope.ce_id)) return decoded
  return Result.fail(new MalformedEventRecord({ message: `ce_id ${decoded.success.envelope.ce_id} is not a UUID` }))
}

/** decodeRecordResult as an Effect. */
export const decodeRecord = (record: KafkaRecord): Effect.Effect<DecodedPaymentEvent, MalformedEventRecord> =>
  Effect.suspend(() => Effect.fromResult(decodeRecordResult(record)))

/**
 * The database being unreachable is not the record's fault: never park for it. Such a failure
 * ends the batch (nothing is committed to Kafka) and the subscription restarts with backoff.
 */
export const isInfrastructure = (error: unknown): error is SqlError =>
  isSqlError(error) && (error.reason._tag === "ConnectionError" || error.reason._tag === "AuthenticationError")


const counterOf = (claim: Claim): Counter =>
  claim === "new" ? "applied_count" : claim === "duplicate" ? "duplicate_count" : "stale_count"

export interface ProcessorSettings {
  readonly handler: ConsumerHandler
  /** `<prefix>payments.events.dlq`, or null to park in the table only. */
  readonly dlqTopic: string | null
  readonly options: ConsumerOptions
  readonly faults?: ConsumerFaults
}

/** Parking: the DLQ topic first (at least once), then the table and the stored offset, in one transaction. */
const makePark = (settings: ProcessorSettings, sql: SqlClient.SqlClient, producer: Option.Option<KafkaProducer["Service"]>) => {
  const store = makeConsumerStore(sql)
  const deadLetters = makeDeadLetters(sql)
  const name = settings.handler.name
  const sendToDlqTopic = (record: KafkaRecord, error: string) =>
    Option.match(producer, {
      onNone: () => Effect.void,
      onSome: (client) =>
        settings.dlqTopic === null ? Effect.void : client.send([{
          topic: settings.dlqTopic,
          key: record.key ?? "",
          value: record.value_bytes,
          headers: {
            ...record.headers,
            dlq_consumer: name,
            dlq_error: error.slice(0, 1_000),
            dlq_source: `${record.topic}/${record.partition}/${record.offset}`
          }
        }]).pipe(Effect.asVoid)
    })

  /**
   * The table and the stored offset, in one transaction: `parked`, or, for a record an operator
   * dismissed (a replay or a backward reset re-read it), `dismissed` (its row dismissed at once, or kept dismissed).
   */
  const storeParked = (record: KafkaRecord, error: string, attempt_count: number, dismissedFor?: EarlierDismissal) =>
    sql.withTransaction(Effect.gen(function* () {
      const next = yield* store.lockOffset(name, record.topic, record.partition)
      if (record.offset < next) return "behind" as const
      yield* deadLetters.park(name, record, error, attempt_count, dismissedFor)
      yield* store.advance(name, record, "parked_count")
      return dismissedFor === undefined ? "parked" as const : "dismissed" as const
    }))

  /** Topic first (at least once: a crash here re-parks, the table keeps one row), then the table. */
  const park = (record: KafkaRecord, error: string, attempt_count: number): Effect.Effect<RecordOutcome, SqlError | KafkaError> =>
    Effect.gen(function* () {
      const earlier = yield* deadLetters.dismissedEarlier(name, record)
      if (earlier !== undefined) {
        // No DLQ topic record, no parked count, no alert: an operator already closed this record.
        yield* Effect.logInfo("consumer skips a record an operator dismissed").pipe(Effect.annotateLogs({
          consumer: name, dismissed_for: earlier.consumer, topic: record.topic, partition: record.partition, offset: String(record.offset),
          event_id: record.headers["ce_id"] ?? null, error: error.split("\n")[0] ?? ""
        }))
        return yield* storeParked(record, error, attempt_count, earlier)
      }
      yield* Effect.logError("consumer parks a record").pipe(Effect.annotateLogs({
        consumer: name, topic: record.topic, partition: record.partition, offset: String(record.offset),
        event_id: record.headers["ce_id"] ?? null, attempts: attempt_count, error
      }))
      // A redelivered record that was handled (or parked) before is not sent to the topic again.
      if (record.offset < (yield* store.storedOffset(name, record.topic, record.partition))) return "behind" as const
      yield* sendToDlqTopic(record, error)
      return yield* storeParked(record, error, attempt_count)
    })

  return park
}

/**
 * The change's trace goes on across the broker (the record's `traceparent`) in a consumer span,
 * and every log line of the record (retries, parking) carries the request's `correlation_id`.
 */
export const continueRecordTrace = (consumer: string, record: KafkaRecord) =>
  continueFromRecord(`process ${record.topic}`, record.headers, {
    "messaging.system": "kafka",
    "messaging.consumer.group.name": consumer,
    "messaging.destination.name": record.topic,
    "messaging.destination.partition.id": String(record.partition),
    "messaging.kafka.offset": String(record.offset)
  })

/**
 * Handles one record: decode; then, in ONE transaction, lock the partition's stored offset (skip
 * a record below it: already handled), claim (consumer, event_id), check the payment's version,
 * apply the handler's effect only for a new and newer event, store the next offset. Bounded
 * retries with backoff; a record that does not decode, or keeps failing, is parked (DLQ table,
 * and the DLQ topic when configured) and its offset stored, so the partition goes on.
 */
export const makeRecordProcessor = (settings: ProcessorSettings) =>
  Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    const producer = yield* Effect.serviceOption(KafkaProducer)
    const store = makeConsumerStore(sql)
    const { handler, options } = settings
    const name = handler.name

    const once = (record: KafkaRecord, decoded: DecodedPaymentEvent) =>
      sql.withTransaction(Effect.gen(function* () {
        const next = yield* store.lockOffset(name, record.topic, record.partition)
        if (record.offset < next) return "behind" as const
        const identity = eventIdentity(decoded)
        const claim = yield* store.claim(name, identity, record)
        if (claim === "new") yield* handler.apply(decoded, record)
        if (settings.faults?.insideTransaction !== undefined) yield* settings.faults.insideTransaction(record)
        yield* store.advance(name, record, counterOf(claim))
        return claim === "new" ? "applied" as const : claim
      }))

    const park = makePark(settings, sql, producer)
    // The parked counter at 0 from the start: the first park is then an increase Prometheus sees
    // (ConsumerRecordsParked, ops/prometheus/alerts.yml); a series born at 1 would not be.
    yield* Metric.update(Metric.withAttributes(consumerParked, { consumer: name }), 0)

    const attempt = (record: KafkaRecord, decoded: DecodedPaymentEvent) =>
      Effect.gen(function* () {
        if (settings.faults?.beforeTransaction !== undefined) yield* settings.faults.beforeTransaction(record)
        return yield* once(record, decoded)
      }).pipe(
        Effect.timeoutOrElse({
          duration: Duration.millis(options.recordTimeout_ms),
          orElse: () => Effect.fail(new AttemptFailed({ message: `attempt timed out after ${options.recordTimeout_ms} ms` }))
        }),
        Effect.catchCause((cause): Effect.Effect<never, AttemptFailed | SqlError> => {
          if (Cause.hasInterruptsOnly(cause)) return Effect.failCause(Cause.interrupt())
          const error = Cause.squash(cause)
          if (isInfrastructure(error)) return Effect.fail(error)
          // First line: what an operator reads (the database's own message); then the whole cause.
          return Effect.fail(new AttemptFailed({ message: `${failureText(error)}\n${Cause.pretty(cause)}` }))
        })
      )

    const handle = (record: KafkaRecord): Effect.Effect<RecordOutcome, SqlError | KafkaError> =>
      Effect.gen(function* () {
        const decoded = yield* Effect.result(decodeRecord(record))
        if (decoded._tag === "Failure") return yield* park(record, `undecodable: ${decoded.failure.message}`, 1)
        let lastError = ""
        for (let attemptNumber = 1; attemptNumber <= options.attempt_max; attemptNumber++) {
          const result = yield* Effect.result(attempt(record, decoded.success).pipe(
            // An unreachable database: retried like the rest, but never parked for.
            Effect.catchIf(isInfrastructure, (error): Effect.Effect<never, AttemptFailed | SqlError> =>
              attemptNumber < options.attempt_max ? Effect.fail(new AttemptFailed({ message: error.message })) : Effect.fail(error))
          ))
          if (result._tag === "Success") {
            if (settings.faults?.afterTransaction !== undefined) yield* settings.faults.afterTransaction(record)
            return result.success
          }
          if (result.failure._tag !== "AttemptFailed") return yield* Effect.fail(result.failure)
          lastError = result.failure.message
          yield* Effect.logWarning("consumer attempt failed").pipe(Effect.annotateLogs({
            consumer: name, topic: record.topic, partition: record.partition, offset: String(record.offset),
            attempt: attemptNumber, attempts_max: options.attempt_max, error: lastError.split("\n")[0] ?? ""
          }))
          if (attemptNumber < options.attempt_max) {
            yield* Effect.sleep(Duration.millis(backoff_ms(attemptNumber, options.backoffBase_ms, options.backoffMax_ms)))
          }
        }
        return yield* park(record, lastError, options.attempt_max)
      }).pipe(
        Effect.tap((outcome) => countOutcome(name, outcome)),
        continueRecordTrace(name, record)
      )

    return { handle, once, name } as const
  })

export type RecordProcessor = Effect.Success<ReturnType<typeof makeRecordProcessor>>
