import { KafkaAdmin, KafkaConsumer, type KafkaError, type KafkaRecord, type KafkaSubscription } from "@pay/infra"
import { Duration, Effect, Fiber, Metric, Ref } from "effect"
import { SqlClient } from "effect/sql"
import type { SqlError } from "effect/sql/SqlError"
import { backoff_ms } from "./ConsumerConfig.ts"
import { consumerLag, consumerName, type ConsumerStatus } from "./ConsumerModel.ts"
import { makeConsumerStore } from "./ConsumerStore.ts"
import { makePartitionHandler } from "./PartitionBatch.ts"
import { makeRecordProcessor, type ProcessorSettings } from "./RecordProcessor.ts"

export interface RunnerSettings extends ProcessorSettings {
  readonly topic: string
  /** The Kafka consumer group: `<topic prefix><consumer name>`. */
  readonly groupId: string
  /**
   * Checked before every poll: false ends the run cleanly (a replay caught up to its target; the
   * live projection moved to another generation). Absent: run until interrupted.
   */
  readonly keepGoing?: Effect.Effect<boolean, SqlError>
}

/** The batch split by topic and partition, each part in offset order (as polled). */
const byPartition = (records: ReadonlyArray<KafkaRecord>): ReadonlyArray<ReadonlyArray<KafkaRecord>> => {
  const parts = new Map<string, Array<KafkaRecord>>()
  for (const record of records) {
    const slot = `${record.topic}\u0000${record.partition}`
    const part = parts.get(slot)
    if (part === undefined) parts.set(slot, [record])
    else part.push(record)
  }
  return [...parts.values()]
}

type PartitionHandler = Effect.Success<ReturnType<typeof makePartitionHandler>>

export const initialStatus = (name: string): ConsumerStatus => ({
  name,
  running: false,
  handled_count: 0,
  consecutiveFailure_count: 0,
  lastError: null,
  lastBatchAt_ms: null
})

/**
 * The seek at start: before joining, the group's committed offsets are set to the ones stored in
 * the database, so the client resumes exactly there. Only an empty group can be altered; with
 * other instances alive (their commits are never ahead of the database) or Kafka refusing, the
 * group's offsets stand and the records below the stored offsets are skipped in their
 * transactions instead ("behind"), which is always correct. After a rebalance the client reads
 * the group's committed offsets again (committed mode): see docs/consumers.md.
 */
const seekGroupToStoredOffsets = (settings: RunnerSettings) =>
  Effect.gen(function* () {
    const admin = yield* KafkaAdmin
    const stored = (yield* makeConsumerStore(yield* SqlClient.SqlClient).offsets(settings.handler.name))
      .filter((row) => row.topic === settings.topic)
      .map((row) => ({ partition: row.partition, offset: row.next_offset }))
    if (stored.length === 0) return
    const outcome = yield* admin.alterGroupOffsets(settings.groupId, settings.topic, stored)
    yield* Effect.logDebug("consumer group seek to the stored offsets").pipe(Effect.annotateLogs({ consumer: settings.handler.name, outcome }))
  }).pipe(
    Effect.catch((error) =>
      Effect.logWarning("consumer group seek failed; records below the stored offsets will be skipped").pipe(
        Effect.annotateLogs({ consumer: settings.handler.name, error: error.message })
      )
    )
  )

/** How often, at most, `keepGoing` is asked while records flow (always after an empty poll). */
const keepGoingCheck_ms = 100

/**
 * The Kafka commits of a subscription, behind the database (which is the position: docs/consumers.md).
 * `handled` remembers the highest record per partition whose transaction committed; `commit`
 * sends those offsets at most every `kafkaCommitInterval_ms` (0: after every poll), in the
 * background while the next poll is handled, at most one commit in flight (the previous one is
 * joined first, so a failure ends the subscription); `flush` commits what is left and waits.
 */
const makeKafkaCommits = (subscription: KafkaSubscription, interval_ms: number) =>
  Effect.gen(function* () {
    const handled = new Map<string, KafkaRecord>()
    let inFlight: Fiber.Fiber<void, KafkaError> | undefined
    let lastCommit_ms = Date.now()
    const join = Effect.gen(function* () {
      const fiber = inFlight
      inFlight = undefined
      if (fiber !== undefined) yield* Fiber.join(fiber)
    })
    const start = Effect.gen(function* () {
      yield* join
      if (handled.size === 0) return
      const records = [...handled.values()]
      handled.clear()
      lastCommit_ms = Date.now()
      inFlight = yield* Effect.forkScoped(subscription.commit(records))
    })
    const remember = (records: ReadonlyArray<KafkaRecord>) =>
      Effect.gen(function* () {
        for (const record of records) {
          const slot = `${record.topic}\u0000${record.partition}`
          const current = handled.get(slot)
          if (current === undefined || current.offset < record.offset) handled.set(slot, record)
        }
        if (Date.now() - lastCommit_ms >= interval_ms) yield* start
      })
    const flush = Effect.andThen(start, join)
    return { remember, flush } as const
  })

/**
 * One subscription's life: poll a bounded batch, handle each partition's records in one
 * transaction per `transactionRecords_max` slice (one per record when a slice fails: see
 * PartitionBatch.ts; uninterruptible: SIGTERM finishes the transaction in flight), then hand
 * the batch to the Kafka commits (makeKafkaCommits: every `kafkaCommitInterval_ms`, pipelined
 * with the next poll, and after an empty poll). Kafka's committed offset is never ahead of the
 * database's; records handled but not yet committed to Kafka (a crash, an interruption, a
 * rebalance) come back as "behind" (below the stored offset, skipped) or as duplicates.
 */
const runSubscription = (settings: RunnerSettings, handlePartition: PartitionHandler, status: Ref.Ref<ConsumerStatus>) =>
  Effect.scoped(Effect.gen(function* () {
    const kafka = yield* KafkaConsumer
    yield* seekGroupToStoredOffsets(settings)
    const subscription = yield* kafka.subscribe({ groupId: settings.groupId, topics: [settings.topic] })
    const commits = yield* makeKafkaCommits(subscription, settings.options.kafkaCommitInterval_ms)
    yield* Ref.update(status, (current) => ({ ...current, running: true }))
    let lastCheck_ms = 0
    while (true) {
      if (settings.keepGoing !== undefined && Date.now() - lastCheck_ms >= keepGoingCheck_ms) {
        if (!(yield* settings.keepGoing)) return yield* commits.flush
        lastCheck_ms = Date.now()
      }
      const records = yield* subscription.poll({ maxRecords: settings.options.batch_max, timeout_ms: settings.options.pollTimeout_ms })
      if (records.length === 0) {
        yield* commits.flush
        lastCheck_ms = 0
        continue
      }
      // Partitions in parallel (each is its own ordered stream, with its own offset row), records
      // of one partition in order. A batch holds at most as many partitions as the topic has.
      yield* Effect.forEach(byPartition(records), handlePartition, { concurrency: "unbounded", discard: true })
      yield* commits.remember(records)
      yield* Ref.update(status, (current) => ({
        ...current,
        handled_count: current.handled_count + records.length,
        consecutiveFailure_count: 0,
        lastError: null,
        lastBatchAt_ms: Date.now()
      }))
    }
  })).pipe(Effect.ensuring(Ref.update(status, (current) => ({ ...current, running: false }))))

/**
 * A consumer: subscriptions started again after any failure (Kafka or database unreachable,
 * a rebalance that broke the stream), with capped exponential backoff. Returns when
 * `keepGoing` says so; otherwise runs until interrupted.
 */
export const runConsumer = (settings: RunnerSettings, status?: Ref.Ref<ConsumerStatus>) =>
  Effect.gen(function* () {
    if (!consumerName.test(settings.handler.name)) return yield* Effect.die(new Error(`illegal consumer name ${settings.handler.name}`))
    const handlePartition = yield* makePartitionHandler(settings, yield* makeRecordProcessor(settings))
    const state = status ?? (yield* Ref.make(initialStatus(settings.handler.name)))
    while (true) {
      const result = yield* Effect.result(runSubscription(settings, handlePartition, state))
      if (result._tag === "Success") return
      const failure: KafkaError | SqlError = result.failure
      const next = yield* Ref.updateAndGet(state, (current) => ({
        ...current,
        consecutiveFailure_count: current.consecutiveFailure_count + 1,
        lastError: failure.message
      }))
      const delay_ms = backoff_ms(next.consecutiveFailure_count, 100, settings.options.restartBackoffMax_ms)
      yield* Effect.logWarning("consumer subscription failed; starting again").pipe(
        Effect.annotateLogs({ consumer: settings.handler.name, error: failure.message, retry_in_ms: delay_ms })
      )
      yield* Effect.sleep(Duration.millis(delay_ms))
    }
  })

export interface PartitionLag {
  readonly partition: number
  readonly logEndOffset: bigint
  readonly storedOffset: bigint
  readonly lag: bigint
}

/** Lag per partition: the log end offset minus the offset stored in the database (0 if none). */
export const consumerLagOf = (consumer: string, topic: string) =>
  Effect.gen(function* () {
    const kafka = yield* KafkaConsumer
    const store = makeConsumerStore(yield* SqlClient.SqlClient)
    const ends = yield* kafka.endOffsets(topic)
    const stored = yield* store.offsets(consumer)
    return ends.map((logEndOffset, partition): PartitionLag => {
      const storedOffset = stored.find((row) => row.topic === topic && row.partition === partition)?.next_offset ?? 0n
      return { partition, logEndOffset, storedOffset, lag: logEndOffset > storedOffset ? logEndOffset - storedOffset : 0n }
    })
  })

/** Refreshes the `consumer_lag_records` gauge every `interval_ms` (errors logged, never fatal). */
export const reportLag = (consumer: () => string, topic: string, interval_ms: number) =>
  Effect.gen(function* () {
    while (true) {
      const name = consumer()
      yield* consumerLagOf(name, topic).pipe(
        Effect.flatMap((lags) =>
          Effect.forEach(lags, (lag) =>
            Metric.update(Metric.withAttributes(consumerLag, { consumer: name, partition: String(lag.partition) }), Number(lag.lag)), { discard: true })
        ),
        Effect.catch((error) => Effect.logWarning("consumer lag unavailable").pipe(Effect.annotateLogs({ consumer: name, error: error.message })))
      )
      yield* Effect.sleep(Duration.millis(interval_ms))
    }
  })

/** True while any partition's stored offset is below `target` (a replay's end-offset snapshot). */
export const behindTarget = (sql: SqlClient.SqlClient, consumer: string, topic: string, target: ReadonlyArray<bigint>) =>
  Effect.gen(function* () {
    const stored = yield* makeConsumerStore(sql).offsets(consumer)
    return target.some((end, partition) => {
      const offset = stored.find((row) => row.topic === topic && row.partition === partition)?.next_offset ?? 0n
      return offset < end
    })
  })
